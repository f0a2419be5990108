"""Campaign participation through the internal API's handler (API Gateway v2 events), against moto's server over
real HTTP on loopback, with many concurrent requests: stock is never oversold, nothing is granted twice, a vote
counts once per voter per entry per day and a share's reward is unlocked once.

moto's DynamoDB backend does not serialise its own operations (a TransactWriteItems there is check-then-write,
and a cancelled one restores a copy of the whole table taken before it), so the server runs with
:func:`tests.integration.outbound_support.atomic_moto_backends`: each DynamoDB or SQS request is atomic, as on
AWS. The requests of one participation call still interleave freely with other threads' requests, which is what
these tests are about.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from aws_lambda_powertools.logging import Logger
from moto.server import ThreadedMotoServer

from lifelink.api.resolver import ApiDeps, InternalApi
from lifelink.domain.campaigns import Campaign, CampaignState
from lifelink.domain.messages import Recipient
from lifelink.store import aws as aws_clients
from lifelink.store.apps import AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.campaigns import CampaignStore, Draw
from lifelink.store.ledger import Ledger, Status
from lifelink.store.participation import Participation, Refused, vote_day
from lifelink_local.handlers import LambdaContext
from lifelink_local.provision import Provisioned, provision
from tests.aws_env import use_moto_endpoint
from tests.integration.outbound_support import atomic_moto_backends
from tests.unit.api.conftest import iam_event
from tests.unit.participation.factory import DAY, MINI_APP, definition, store_in_state

pytestmark = pytest.mark.integration

REGION = "us-east-1"
THREADS = 16
CONTAINERS = 4  # worker processes: each imports the whole stack, and CI machines may have two cores


@dataclass
class Stack:
    """``call`` answers one request at a time, as a Lambda container does: Powertools' resolver keeps the current
    event on a class attribute, so concurrent requests go to separate processes (see ``containers``)."""

    provisioned: Provisioned
    ddb: Any
    sqs: Any
    deps: ApiDeps

    @cached_property
    def api(self) -> InternalApi:
        return InternalApi(self.deps)

    @property
    def table(self) -> str:
        return self.provisioned.tables["StateTable"]

    @property
    def queue(self) -> str:
        return self.provisioned.queues["OutboundQueue"]

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> tuple[int, Any]:
        event = iam_event(method, path, None if body is None else json.dumps(body))
        if query:
            event["rawQueryString"] = urlencode(query)
            event["queryStringParameters"] = {k: str(v) for k, v in query.items()}
        result = self.api.handle(event, LambdaContext(function_name="internal_api"))
        raw = result.get("body") or ""
        if result.get("isBase64Encoded"):
            raw = base64.b64decode(raw).decode()
        return result["statusCode"], json.loads(raw) if raw else None

    def jobs(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while msgs := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, VisibilityTimeout=300).get(
            "Messages", []
        ):
            out.extend(json.loads(m["Body"]) for m in msgs)
            self.sqs.delete_message_batch(
                QueueUrl=self.queue,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
            )
        return out

    def participation(self) -> Participation:
        return Participation(self.ddb, self.table, sqs=self.sqs, queue_url=self.queue)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    mp = pytest.MonkeyPatch()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with atomic_moto_backends():
            use_moto_endpoint(mp, f"http://{host}:{port}", REGION)
            provisioned = provision(prefix="participation")
            ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
            table = provisioned.tables["StateTable"]
            deps = ApiDeps(
                registry=AppRegistry(ddb, table),
                audience=Audience(ddb, table),
                sqs=sqs,
                outbound_queue_url=provisioned.queues["OutboundQueue"],
                ledger=Ledger(ddb, table),
                logger=Logger(service="participation-test"),
                dynamodb=ddb,
                state_table=table,
            )
            yield Stack(provisioned, ddb, sqs, deps)
    finally:
        server.stop()
        aws_clients.client.cache_clear()
        mp.undo()


def live(stack: Stack, campaign_id: str, phase: str, **overrides: Any) -> Campaign:
    """A campaign whose ``phase`` is running now (an hour and five minutes in), stored in that state."""
    offset = {"preheat": timedelta(0), "burst": DAY, "settle": 2 * DAY}[phase]
    start = datetime.now(UTC) - offset - timedelta(hours=1, minutes=5)
    campaign = Campaign.model_validate(definition(start, id=campaign_id, **overrides))
    store_in_state(stack.ddb, stack.table, campaign, CampaignState(phase))
    return campaign


def coupons(**stock: int) -> dict[str, Any]:
    base = definition(datetime.now(UTC))["coupons"]
    return {name: {**spec, "stock": stock.get(name, spec["stock"])} for name, spec in base.items()}


# ---- concurrency -------------------------------------------------------------------------------------------

_container: InternalApi | None = None


def _handle_in_container(method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """One request in a worker process: a Lambda-like container with its own InternalApi (built from the
    environment, as functions/internal_api/app.py does), handling one event at a time."""
    global _container
    if _container is None:
        _container = InternalApi(ApiDeps.from_env())
    result = _container.handle(iam_event(method, path, json.dumps(body)), LambdaContext(function_name="internal_api"))
    return result["statusCode"], json.loads(result["body"])


@pytest.fixture(scope="module")
def containers(stack: Stack) -> Iterator[ProcessPoolExecutor]:
    """CONTAINERS worker processes talking to the same moto server (their environment names its table and queue)."""
    env = {"STATE_TABLE": stack.table, "OUTBOUND_QUEUE_URL": stack.queue, "POWERTOOLS_LOG_LEVEL": "WARNING"}
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with ProcessPoolExecutor(max_workers=CONTAINERS, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_concurrently(calls: list[Any]) -> list[Any]:
    """Each call on one of THREADS threads, in a shuffled order."""
    random.Random(7).shuffle(calls)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(lambda f: f(), calls))


def outcome(call: Any) -> tuple[str, Any]:
    """("granted", result) or ("refused", kind)."""
    try:
        return "granted", call()
    except Refused as exc:
        return "refused", exc.kind


def check_reservations(stack: Stack, campaign_id: str, users: list[str], answers: list[tuple[str, int, Any]]) -> None:
    """20 units: exactly 20 users reserved, once each, 20 coupon jobs to them, stock 0; everyone else sold out."""
    assert {status for _, status, _ in answers} <= {200, 201, 409}, answers
    created = Counter(user for user, status, _ in answers if status == 201)
    assert sum(created.values()) == 20 and set(created.values()) == {1}
    for user, status, body in answers:
        if status == 409:
            assert body["errors"][0]["type"] == "sold_out" and user not in created
        elif status == 200:
            assert body["result"] == "already_reserved" and user in created
    jobs = stack.jobs()
    assert sorted(j["recipient"]["open_id"] for j in jobs) == sorted(created)
    assert {(j["channel"], j["content"]["activity_id"], j["phase"]) for j in jobs} == {
        ("coupon", "ACT_EARLY", "preheat.early")
    }
    p = stack.participation()
    stored = p.load(campaign_id)
    assert stored is not None
    assert p.pool_members(campaign_id, "reservations") == sorted(created)
    assert p.counts(stored.campaign)["early"] == {"reservations": 20, "stock_left": 0}


def test_concurrent_reservations_through_the_api_never_oversell_and_never_grant_twice(
    stack: Stack, containers: ProcessPoolExecutor
) -> None:
    """60 users × 2 requests through the internal API handler in CONTAINERS Lambda-like processes at once."""
    live(stack, "rush", "preheat", coupons=coupons(early=20))
    users = [f"open-{i:03d}" for i in range(60)]
    requests = [u for u in users for _ in range(2)]
    random.Random(3).shuffle(requests)
    bodies = [{"action": "early", "user": {"open_id": u}} for u in requests]
    answers = containers.map(
        _handle_in_container, ["POST"] * len(bodies), ["/campaigns/rush/reservations"] * len(bodies), bodies
    )
    check_reservations(stack, "rush", users, [(u, *a) for u, a in zip(requests, answers, strict=True)])


def test_concurrent_reservations_from_threads_never_oversell_and_never_grant_twice(stack: Stack) -> None:
    """The same rush from THREADS threads sharing one store (boto3 clients are thread-safe)."""
    campaign = live(stack, "rush-threads", "preheat", coupons=coupons(early=20))
    users = [f"open-{i:03d}" for i in range(60)]
    p = stack.participation()

    def reserve(user: str) -> Any:
        def call() -> Any:
            return user, *outcome(
                lambda: p.reserve(campaign, "early", Recipient(open_id=user), datetime.now(UTC), state="preheat")
            )

        return call

    answers = []
    for user, kind, result in run_concurrently([reserve(u) for u in users for _ in range(2)]):
        if kind == "refused":
            answers.append((user, 409, {"errors": [{"type": result}]}))
        else:
            answers.append((user, 201 if result.created else 200, {"result": "already_reserved"}))
    check_reservations(stack, "rush-threads", users, answers)


def test_concurrent_shares_are_recorded_once_and_unlock_the_reward_once(stack: Stack) -> None:
    campaign = live(stack, "sharing", "burst", coupons=coupons(thanks=10))
    users = [f"sharer-{i:02d}" for i in range(30)]
    p = stack.participation()

    def share(user: str) -> Any:
        return lambda: (user, p.share(campaign, "share", Recipient(open_id=user), datetime.now(UTC), state="burst"))

    answers = run_concurrently([share(u) for u in users for _ in range(2)])

    assert Counter(grant.created for _, grant in answers) == {True: 30, False: 30}
    rewarded = {user for user, grant in answers if grant.created and grant.coupon_status == "queued"}
    assert len(rewarded) == 10
    assert {user for user, grant in answers if grant.coupon_status == "sold_out"} == set(users) - rewarded
    jobs = stack.jobs()
    assert sorted(j["recipient"]["open_id"] for j in jobs) == sorted(rewarded)
    assert p.pool_members("sharing", "shares") == sorted(users)
    assert p.counts(campaign)["share"] == {"shares": 30, "rewarded": 10, "stock_left": 0}


def test_concurrent_votes_count_once_per_voter_per_entry_per_day(stack: Stack) -> None:
    campaign = live(stack, "voting", "burst")
    p = stack.participation()
    now = datetime.now(UTC)
    entry = p.submit_entry(campaign, "ugc", "author", "Mine", None, now, state="burst")
    other = p.submit_entry(campaign, "ugc", "rival", "Theirs", None, now, state="burst")
    voters = [f"voter-{i:02d}" for i in range(40)]
    audience = Audience(stack.ddb, stack.table)
    for voter in voters[:30]:
        audience.touch(MINI_APP, voter, now)  # the last 10 are strangers to the app
    day = vote_day(campaign, now)

    def vote(voter: str, entry_id: str) -> Any:
        return lambda: (
            voter,
            entry_id,
            *outcome(lambda: p.vote(campaign, "ugc", entry_id, voter, datetime.now(UTC), state="burst")),
        )

    calls = [vote(v, entry.entry_id) for v in voters for _ in range(3)]
    calls += [vote(v, other.entry_id) for v in voters[:10]]
    answers = run_concurrently(calls)
    if vote_day(campaign, datetime.now(UTC)) != day:
        pytest.skip("the Shanghai day changed during the test")

    counted = Counter((v, e) for v, e, kind, _ in answers if kind == "granted")
    assert set(counted.values()) == {1}
    assert {v for v, e in counted if e == entry.entry_id} == set(voters[:30])
    assert {v for v, e in counted if e == other.entry_id} == set(voters[:10])
    assert Counter(result for _, _, kind, result in answers if kind == "refused") == {
        "already_voted": 60,
        "unknown_voter": 30,
    }
    status, board = stack.call("GET", "/campaigns/voting/leaderboard", query={"action": "ugc", "limit": 5})
    assert status == 200
    assert [(e["title"], e["votes"], e["rank"]) for e in board["entries"]] == [("Mine", 30, 1), ("Theirs", 10, 2)]
    assert p.pool_members("voting", "voters", "ugc") == sorted(voters[:30])
    assert stack.jobs() == []


# ---- the routes, one by one --------------------------------------------------------------------------------


def test_unknown_campaigns_and_actions_are_404(stack: Stack) -> None:
    live(stack, "routes-pre", "preheat")
    status, body = stack.call("POST", "/campaigns/nope/reservations", {"action": "early", "user": {"open_id": "u"}})
    assert status == 404 and body["errors"][0]["loc"] == ["path", "campaign_id"]
    status, body = stack.call(
        "POST", "/campaigns/routes-pre/reservations", {"action": "later", "user": {"open_id": "u"}}
    )
    assert status == 404 and body["errors"][0]["loc"] == ["body", "action"]
    status, body = stack.call("GET", "/campaigns/routes-pre/leaderboard", query={"action": "nope"})
    assert status == 404 and body["errors"][0]["loc"] == ["query", "action"]


def test_invalid_bodies_get_every_field_error_at_once(stack: Stack) -> None:
    live(stack, "routes-422", "preheat")
    status, body = stack.call(
        "POST",
        "/campaigns/routes-422/reservations",
        {"action": "Not An Id", "user": {"open_id": "o", "user_id": "2088000000000001"}, "app_id": "bad app"},
    )
    assert status == 422
    locs = {tuple(e["loc"][:2]) for e in body["errors"]}
    assert {("body", "action"), ("body", "user"), ("body", "app_id")} <= locs
    assert "2088000000000001" not in json.dumps(body)  # never echoes the user's id
    status, body = stack.call(
        "POST", "/campaigns/routes-422/reservations", {"action": "early", "user": {"open_id": "u"}, "app_id": "2021999"}
    )
    assert status == 422 and body["errors"][0]["loc"] == ["body", "app_id"]
    status, body = stack.call(
        "POST", "/campaigns/routes-422/reservations", {"action": "share", "user": {"open_id": "u"}}
    )
    assert status == 422 and body["errors"][0]["type"] == "wrong_action"


def test_a_reservation_answers_201_then_200_and_409_outside_its_phase(stack: Stack) -> None:
    live(stack, "routes-res", "preheat")
    request = {"action": "early", "user": {"user_id": "2088000000000007"}}
    status, first = stack.call("POST", "/campaigns/routes-res/reservations", request)
    assert status == 201 and (first["result"], first["coupon_status"], first["coupon"]) == (
        "reserved",
        "queued",
        "early",
    )
    status, again = stack.call("POST", "/campaigns/routes-res/reservations", request)
    assert status == 200 and again["result"] == "already_reserved" and again["at"] == first["at"]
    [job] = stack.jobs()
    assert job["recipient"] == {"user_id": "2088000000000007"} and job["app_id"] == MINI_APP

    assert CampaignStore(stack.ddb, stack.table).transition("routes-res", "preheat", "burst")
    status, body = stack.call(
        "POST", "/campaigns/routes-res/reservations", {"action": "early", "user": {"open_id": "x"}}
    )
    assert status == 409 and body["errors"][0]["type"] == "closed" and "not preheat" in body["errors"][0]["msg"]
    assert stack.jobs() == []


def test_flash_sales_entries_and_leaderboard_routes(stack: Stack) -> None:
    live(stack, "routes-burst", "burst")
    request = {"action": "flash", "window": "w1", "user": {"open_id": "buyer"}}
    status, taken = stack.call("POST", "/campaigns/routes-burst/flash-sales", request)
    assert status == 201 and (taken["result"], taken["sku"]) == ("taken", "SKU-1")
    assert stack.call("POST", "/campaigns/routes-burst/flash-sales", request)[1]["result"] == "already_taken"
    status, body = stack.call("POST", "/campaigns/routes-burst/flash-sales", {**request, "window": "w7"})
    assert status == 404 and body["errors"][0]["loc"] == ["body", "window"]

    entry = {
        "action": "ugc",
        "user": {"open_id": "maker"},
        "title": "  Spring look  ",
        "content_url": "https://img.example.test/1.jpg",
    }
    status, made = stack.call("POST", "/campaigns/routes-burst/entries", entry)
    assert status == 201 and (made["title"], made["votes"]) == ("Spring look", 0)
    assert stack.call("POST", "/campaigns/routes-burst/entries", entry)[0] == 201
    status, body = stack.call("POST", "/campaigns/routes-burst/entries", entry)
    assert status == 409 and body["errors"][0]["type"] == "entry_limit"
    status, body = stack.call("POST", "/campaigns/routes-burst/entries", {**entry, "content_url": "ftp://x"})
    assert status == 422
    status, board = stack.call("GET", "/campaigns/routes-burst/leaderboard")  # the campaign's only challenge
    assert status == 200 and board["action"] == "ugc" and len(board["entries"]) == 2
    status, body = stack.call("GET", "/campaigns/routes-burst/leaderboard", query={"limit": 0})
    assert status == 422


def test_claim_and_survey_routes_with_summaries(stack: Stack) -> None:
    live(stack, "routes-settle", "settle")
    claim = {"action": "draw", "user": {"open_id": "lucky"}}
    status, body = stack.call("POST", "/campaigns/routes-settle/claims", claim)
    assert status == 409 and body["errors"][0]["type"] == "not_drawn"
    CampaignStore(stack.ddb, stack.table).put_draw("routes-settle", "draw", Draw("s", "h", 3, ["lucky", "other"]))
    status, body = stack.call("POST", "/campaigns/routes-settle/claims", {**claim, "user": {"open_id": "unlucky"}})
    assert status == 409 and body["errors"][0]["type"] == "not_a_winner"
    status, claimed = stack.call("POST", "/campaigns/routes-settle/claims", claim)
    assert status == 201 and claimed["result"] == "claimed"
    assert stack.call("POST", "/campaigns/routes-settle/claims", claim)[1]["result"] == "already_claimed"
    [job] = stack.jobs()
    assert job["content"]["activity_id"] == "ACT_PRIZE" and job["phase"] == "settle.draw"

    status, summary = stack.call("GET", "/campaigns/routes-settle/claims", query={"action": "draw"})
    assert status == 200 and (summary["winners"], summary["claimed"], summary["fulfilled"]) == (2, 1, 0)
    ledger = Ledger(stack.ddb, stack.table)
    from lifelink.domain.messages import parse_job

    outbound = parse_job(json.dumps(job))
    ledger.claim(outbound, "gw", datetime.now(UTC), lease=timedelta(seconds=30), idempotent=True)
    ledger.finish(claimed["ledger_key"], "gw", Status.sent, datetime.now(UTC))
    status, summary = stack.call("GET", "/campaigns/routes-settle/claims")
    assert (summary["fulfilled"], summary["claim_rate"], summary["redemption_rate"]) == (1, 0.5, 0.5)

    answer = {"action": "survey", "user": {"open_id": "lucky"}, "answers": {"overall": 4, "best": "live"}}
    status, body = stack.call("POST", "/campaigns/routes-settle/survey", answer)
    assert status == 201 and body["result"] == "answered"
    assert stack.call("POST", "/campaigns/routes-settle/survey", answer)[0] == 200
    status, body = stack.call("POST", "/campaigns/routes-settle/survey", {**answer, "answers": {"overall": 2}})
    assert status == 409 and body["errors"][0]["type"] == "already_answered"
    bad = {**answer, "user": {"open_id": "someone"}, "answers": {"overall": 7, "best": "music", "say": "x" * 501}}
    status, body = stack.call("POST", "/campaigns/routes-settle/survey", bad)
    assert status == 422
    assert {tuple(e["loc"]) for e in body["errors"]} == {
        ("body", "answers", "overall"),
        ("body", "answers", "best"),
        ("body", "answers", "say"),
    }
    status, summary = stack.call("GET", "/campaigns/routes-settle/survey")
    assert status == 200
    assert (summary["answers"], summary["average_rating"], summary["option_counts"]["best"]) == (
        1,
        {"overall": 4.0},
        {"coupons": 0, "live": 1},
    )


class _FailingQueue:
    """The outbound queue unreachable (every put fails), other SQS calls as usual."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs

    def send_message(self, **_: Any) -> dict[str, Any]:
        raise ConnectionError("queue unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


def test_a_reservation_whose_coupon_could_not_be_queued_fails_and_its_retry_queues_it(stack: Stack) -> None:
    live(stack, "routes-503", "preheat")
    broken = InternalApi(ApiDeps(**{**vars(stack.deps), "sqs": _FailingQueue(stack.sqs)}))
    request = {"action": "early", "user": {"open_id": "unlucky-timing"}}
    event = iam_event("POST", "/campaigns/routes-503/reservations", json.dumps(request))

    failed = broken.handle(event, LambdaContext(function_name="internal_api"))
    assert failed["statusCode"] == 503
    assert json.loads(failed["body"])["errors"][0]["type"] == "queue_unavailable"
    assert stack.jobs() == []

    status, retried = stack.call("POST", "/campaigns/routes-503/reservations", request)
    assert status == 200 and (retried["result"], retried["coupon_status"]) == ("already_reserved", "queued")
    [job] = stack.jobs()
    assert job["recipient"] == {"open_id": "unlucky-timing"} and job["content"]["activity_id"] == "ACT_EARLY"
    assert stack.call("POST", "/campaigns/routes-503/reservations", request)[0] == 200
    assert stack.jobs() == []  # queued once; the stock was taken once
    stored = stack.participation().load("routes-503")
    assert stored is not None and stack.participation().stock_left(stored.campaign, "early") == 4
