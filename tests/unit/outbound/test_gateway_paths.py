"""The message gateway's policy paths through the real OutboundGateway: DynamoDB and SQS on in-process moto
(tables and queues from template.yaml), the Alipay simulator over real HTTP on loopback, and a clock the test
moves. Every check is what an operator would look at: the ledger entry (state, reason, hold_until), the
outcome events on the events queue, what the simulator received, and how long SQS keeps a record hidden."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from lifelink.alipay.keys import public_key_one_line
from lifelink.domain.messages import parse_job
from lifelink.outbound import MAX_VISIBILITY_S, OutboundGateway, QueueRecord, RecordOutcome, SqsJobQueue
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.counters import Counters
from lifelink.store.events_queue import EventPublisher
from lifelink.store.ledger import OUTCOME_UNKNOWN, Ledger, Status
from lifelink.store.rate_limit import LATE_SLOT_S, RateLimiter
from lifelink.store.send_state import SendStateReader
from lifelink_local.simulator import AlipaySimulator
from tests.conftest import KeyPair
from tests.outcomes import distinct_outcomes

LIFE = "2021000000000901"  # a life account
MINI = "2021000000000902"  # a mini program
TEMPLATE_ID = "TPL-NEWS"
SUBSCRIPTION_TEMPLATE = "UT-ORDER"
ACTIVITY = "ACT-GW"
SINGLE_SEND = "alipay.open.public.message.single.send"
MINI_SEND = "alipay.open.app.mini.templatemessage.send"
VOUCHER_SEND = "alipay.marketing.activity.voucher.send"
BEIJING = ZoneInfo("Asia/Shanghai")
NO_QUIET_HOURS = {"quiet_hours": {"enabled": False}}


def beijing(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> datetime:
    """A Beijing wall-clock time, as the aware UTC instant the gateway's clock returns."""
    return datetime(y, mo, d, h, mi, s, tzinfo=BEIJING).astimezone(UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Crash(BaseException):
    """The container dies: not an Exception, so nothing in the gateway catches it."""


class CrashBeforeRecording(Ledger):
    """A ledger whose container dies right after Alipay answered, before the answer is written."""

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        raise Crash("died between Alipay's answer and the ledger write")


# ---- the harness ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(app_keys: KeyPair, alipay_keys: KeyPair) -> Iterator[AlipaySimulator]:
    s = AlipaySimulator(alipay_keys.private, port=0)
    s.start()
    for app in (LIFE, MINI):
        s.register_app(app, public_key_one_line(app_keys.private))
    s.register_template(LIFE, TEMPLATE_ID)
    s.register_template(MINI, SUBSCRIPTION_TEMPLATE)
    s.register_activity(LIFE, ACTIVITY, stock=1000)
    yield s
    s.stop()


class Harness:
    """One container's gateway on the shared moto account, plus the operator's view of the result."""

    def __init__(
        self, aws: Any, ddb: Any, sqs: Any, sim: AlipaySimulator, app_keys: KeyPair, alipay_keys: KeyPair
    ) -> None:
        self.sim = sim
        self.ddb = ddb
        self.sqs = sqs
        self.sm = boto3.client("secretsmanager")
        env = aws.function_environment("MessageGatewayFunction")
        self.table = env["STATE_TABLE"]
        self.outbound_url = env["OUTBOUND_QUEUE_URL"]
        self.events_url = env["EVENTS_QUEUE_URL"]
        self.registry = AppRegistry(ddb, self.table, self.sm)
        self.audience = Audience(ddb, self.table)
        self.ledger = Ledger(ddb, self.table)
        self.clock = Clock(beijing(2025, 3, 5, 12))
        self.seen_events: list[dict[str, Any]] = []
        self._loops: list[tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = []
        secret = {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_keys.public_pem}
        for app, kind in ((LIFE, "life"), (MINI, "mini")):
            self.registry.register(AppRecord(app_id=app, kind=kind, secret_name=f"test/apps/{app}"), secret)
        self.gateway, self._loop = self.container()

    def container(
        self,
        *,
        ledger: Ledger | None = None,
        real_time: bool = False,
        concurrency: int = 10,
        on_request: Any = None,
        rate_limiter: RateLimiter | None = None,
    ) -> tuple[OutboundGateway, asyncio.AbstractEventLoop]:
        """A gateway as one Lambda container builds it: its own loop and pooled client, shared AWS."""
        loop = asyncio.new_event_loop()
        # as functions/message_gateway/app.py sizes it: a thread for every concurrent job's AWS calls
        loop.set_default_executor(ThreadPoolExecutor(max_workers=concurrency * 2 + 4))
        hooks = {"request": [on_request]} if on_request else {}
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), event_hooks=hooks)
        self._loops.append((loop, http))
        gateway = OutboundGateway(
            registry=self.registry,
            secrets=lambda name: json.loads(self.sm.get_secret_value(SecretId=name)["SecretString"]),
            audience=self.audience,
            ledger=ledger or self.ledger,
            counters=Counters(self.ddb, self.table),
            rate_limiter=rate_limiter or RateLimiter(self.ddb, self.table),
            publisher=EventPublisher(self.sqs, self.events_url),
            queue=SqsJobQueue(self.sqs, self.outbound_url),
            http=http,
            attribution_key=lambda: b"attribution-key-for-tests-0123456789",
            default_gateway_url=self.sim.gateway_url,
            concurrency=concurrency,
            # the production read (one BatchGetItem) unless a test wraps the ledger to watch or break it
            state_reader=SendStateReader(self.ddb, self.table) if ledger is None else None,
            **({} if real_time else {"clock": self.clock}),
        )
        return gateway, loop

    def close(self) -> None:
        for loop, http in self._loops:
            loop.run_until_complete(http.aclose())
            loop.close()

    # -- setup -------------------------------------------------------------------------------------------
    def policy(self, app: str = LIFE, **policy: Any) -> None:
        self.registry.configure(app, policy=policy)

    def follower(self) -> str:
        user = "2088" + uuid.uuid4().hex[:12]
        self.sim.set_follower(LIFE, user)
        self.audience.set_following(LIFE, user, True, self.clock() - timedelta(days=30))
        return user

    # -- the queue, driven like Lambda's event source ----------------------------------------------------
    def enqueue(self, body: dict[str, Any]) -> None:
        self.sqs.send_message(QueueUrl=self.outbound_url, MessageBody=json.dumps(body))

    def poll(
        self, gateway: OutboundGateway | None = None, loop: asyncio.AbstractEventLoop | None = None
    ) -> list[RecordOutcome]:
        """Receive what is visible, run it through a gateway, delete what it acknowledged."""
        got = self.sqs.receive_message(
            QueueUrl=self.outbound_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        records = [
            QueueRecord(m["MessageId"], m["ReceiptHandle"], m["Body"], int(m["Attributes"]["ApproximateReceiveCount"]))
            for m in got
        ]
        report = (loop or self._loop).run_until_complete((gateway or self.gateway).process(records))
        for m, outcome in zip(got, report.outcomes, strict=True):
            if outcome.disposition == "ack":
                self.sqs.delete_message(QueueUrl=self.outbound_url, ReceiptHandle=m["ReceiptHandle"])
        return report.outcomes

    def deliver(self, body: dict[str, Any]) -> RecordOutcome:
        self.enqueue(body)
        (outcome,) = self.poll()
        return outcome

    def hidden_seconds(self) -> list[int]:
        """How much longer SQS keeps each in-flight outbound record hidden (moto's backend, this process)."""
        return [round((m.visible_at - time.time() * 1000) / 1000) for m in self._queue_messages() if _hidden(m)]

    def time_passes(self) -> None:
        """Every hidden record becomes visible again (the clock was moved past its hold or backoff)."""
        for m in self._queue_messages():
            m.change_visibility(0)

    def _queue_messages(self) -> list[Any]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sqs.models import sqs_backends

        name = self.outbound_url.rsplit("/", 1)[1]
        return list(sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues[name]._messages)

    # -- what an operator looks at -----------------------------------------------------------------------
    def events(self, ledger_key: str) -> list[dict[str, Any]]:
        while got := self.sqs.receive_message(QueueUrl=self.events_url, MaxNumberOfMessages=10).get("Messages"):
            for m in got:
                self.seen_events.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.events_url, ReceiptHandle=m["ReceiptHandle"])
        mine = (e for e in self.seen_events if e.get("type") == "message_outcome" and e["ledger_key"] == ledger_key)
        return distinct_outcomes(mine)

    def calls_for(self, user: str, method: str = SINGLE_SEND) -> list[dict[str, Any]]:
        return [c for c in self.sim.calls() if c["method"] == method and user in json.dumps(c["biz"])]


def _hidden(message: Any) -> bool:
    return bool(message.visible_at > time.time() * 1000)


@pytest.fixture
def gw(
    aws: Any, ddb: Any, sqs: Any, sim: AlipaySimulator, app_keys: KeyPair, alipay_keys: KeyPair
) -> Iterator[Harness]:
    h = Harness(aws, ddb, sqs, sim, app_keys, alipay_keys)
    yield h
    h.close()


def template_job(gw: Harness, user: str, campaign: str, kind: str = "marketing", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "app_id": LIFE,
        "channel": "life_template",
        "recipient": {"user_id": user},
        "content": {"template_id": TEMPLATE_ID, "url": "pages/news/index", "keywords": [{"value": "春季上新"}]},
        "campaign": campaign,
        "phase": "p1",
        "kind": kind,
        "created_at": gw.clock().isoformat(),
        "not_after": (gw.clock() + timedelta(days=3)).isoformat(),
    }
    body.update(kw)
    return body


def key_of(body: dict[str, Any]) -> str:
    return parse_job(body).ledger_key


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["status"], e["reason"]) for e in events]


# ---- 1. quiet hours --------------------------------------------------------------------------------------


def test_a_marketing_message_at_2330_beijing_is_held_until_0800_then_sent_once(gw: Harness) -> None:
    user = gw.follower()
    gw.clock.at = beijing(2025, 3, 5, 23, 30)
    body = template_job(gw, user, "night")
    key = key_of(body)

    held = gw.deliver(body)
    assert (held.status, held.reason, held.disposition) == ("held", "quiet_hours", "retry")
    until_eight = (beijing(2025, 3, 6, 8) - gw.clock()).total_seconds()  # 8 h 30 min
    assert held.visibility_s is not None and abs(held.visibility_s - until_eight) <= 2
    (hidden,) = gw.hidden_seconds()  # what SQS itself was told
    assert abs(hidden - until_eight) <= 5
    entry = gw.ledger.get(key)
    assert entry and entry.status is Status.held and entry.reason == "quiet_hours"
    assert entry.hold_until == beijing(2025, 3, 6, 8)
    (event,) = gw.events(key)
    assert (event["status"], event["reason"]) == ("held", "quiet_hours")
    assert datetime.fromisoformat(event["hold_until"]) == beijing(2025, 3, 6, 8)
    assert gw.calls_for(user) == []

    gw.clock.at = beijing(2025, 3, 6, 8, 0, 30)
    gw.time_passes()
    (sent,) = gw.poll()
    assert (sent.status, sent.disposition) == ("sent", "ack")
    gw.enqueue(body)  # and a stray redelivery afterwards
    (again,) = gw.poll()
    assert again.status == "duplicate"

    calls = gw.calls_for(user)
    assert len(calls) == 1 and calls[0]["code"] == "10000"
    entry = gw.ledger.get(key)
    assert entry and entry.status is Status.sent and entry.attempts == 1
    assert [h["status"] for h in entry.history] == ["held", "sending", "sent"]
    assert summary(gw.events(key)) == [("held", "quiet_hours"), ("sent", None)]


def test_a_hold_longer_than_sqs_allows_is_capped_at_12_hours_and_held_again_without_a_second_event(
    gw: Harness,
) -> None:
    gw.policy(quiet_hours={"start": "18:00", "end": "12:00", "max_hold": "P1D"})
    user = gw.follower()
    gw.clock.at = beijing(2025, 3, 5, 18, 30)  # 17 h 30 min before the window opens
    body = template_job(gw, user, "long-hold")
    key = key_of(body)

    first = gw.deliver(body)
    assert (first.status, first.visibility_s) == ("held", MAX_VISIBILITY_S)
    (hidden,) = gw.hidden_seconds()
    assert abs(hidden - MAX_VISIBILITY_S) <= 5 and hidden <= 12 * 3600

    gw.clock.at += timedelta(seconds=MAX_VISIBILITY_S)  # 06:29 the next morning: still quiet
    gw.time_passes()
    (second,) = gw.poll()
    assert second.status == "held"
    rest = (beijing(2025, 3, 6, 12) - gw.clock()).total_seconds()
    assert second.visibility_s is not None and abs(second.visibility_s - rest) <= 2
    entry = gw.ledger.get(key)
    assert entry and entry.hold_until == beijing(2025, 3, 6, 12)
    assert summary(gw.events(key)) == [("held", "quiet_hours")]  # one hold, one event

    gw.clock.at = beijing(2025, 3, 6, 12, 0, 5)
    gw.time_passes()
    assert [o.status for o in gw.poll()] == ["sent"]
    assert len(gw.calls_for(user)) == 1


def test_a_hold_beyond_the_max_hold_ends_skipped(gw: Harness) -> None:
    user = gw.follower()
    created = beijing(2025, 3, 5, 19)  # planned at 19:00; reaches the gateway at 23:30 (13 h before 08:00)
    gw.clock.at = beijing(2025, 3, 5, 23, 30)
    body = template_job(gw, user, "late", created_at=created.isoformat())
    key = key_of(body)

    outcome = gw.deliver(body)
    assert (outcome.status, outcome.reason, outcome.disposition) == ("skipped", "quiet_hours_max_hold", "ack")
    entry = gw.ledger.get(key)
    assert entry and entry.status is Status.skipped and entry.reason == "quiet_hours_max_hold" and entry.terminal
    assert summary(gw.events(key)) == [("skipped", "quiet_hours_max_hold")]
    assert gw.calls_for(user) == [] and gw.hidden_seconds() == []


def test_a_transactional_message_at_2330_goes_out_unless_the_policy_holds_transactional_too(gw: Harness) -> None:
    user = gw.follower()
    gw.clock.at = beijing(2025, 3, 5, 23, 30)
    order = template_job(gw, user, "order-shipped", kind="transactional")
    assert gw.deliver(order).status == "sent"
    assert summary(gw.events(key_of(order))) == [("sent", None)]
    assert len(gw.calls_for(user)) == 1

    gw.policy(quiet_hours={"include_transactional": True})
    strict = template_job(gw, user, "order-delivered", kind="transactional")
    outcome = gw.deliver(strict)
    assert (outcome.status, outcome.reason) == ("held", "quiet_hours")
    entry = gw.ledger.get(key_of(strict))
    assert entry and entry.status is Status.held and entry.hold_until == beijing(2025, 3, 6, 8)
    assert len(gw.calls_for(user)) == 1


# ---- 2. daily caps ---------------------------------------------------------------------------------------


def test_the_third_marketing_message_of_the_day_is_capped_and_transactional_is_exempt(gw: Harness) -> None:
    gw.policy(caps={"life_template": {"per_day": 2, "on_exceed": "skip"}}, **NO_QUIET_HOURS)
    user = gw.follower()
    bodies = [template_job(gw, user, f"promo{i}") for i in range(3)]
    assert [gw.deliver(b).status for b in bodies] == ["sent", "sent", "capped"]

    third = gw.ledger.get(key_of(bodies[2]))
    assert third and third.status is Status.capped and third.reason == "daily_cap" and third.terminal
    assert summary(gw.events(key_of(bodies[2]))) == [("capped", "daily_cap")]
    assert len(gw.calls_for(user)) == 2

    receipt = template_job(gw, user, "receipt", kind="transactional")
    assert gw.deliver(receipt).status == "sent"
    assert len(gw.calls_for(user)) == 3


def test_in_defer_mode_the_third_message_waits_for_the_next_beijing_day(gw: Harness) -> None:
    gw.policy(caps={"life_template": {"per_day": 2, "on_exceed": "defer"}}, **NO_QUIET_HOURS)
    user = gw.follower()
    gw.clock.at = beijing(2025, 3, 5, 20)
    bodies = [template_job(gw, user, f"promo{i}") for i in range(3)]
    outcomes = [gw.deliver(b) for b in bodies]
    assert [(o.status, o.reason) for o in outcomes] == [("sent", None), ("sent", None), ("held", "daily_cap_deferred")]
    midnight = beijing(2025, 3, 6, 0)  # 16:00 UTC: the Beijing day, not the UTC one
    entry = gw.ledger.get(key_of(bodies[2]))
    assert entry and entry.status is Status.held and entry.hold_until == midnight
    (hidden,) = gw.hidden_seconds()
    assert abs(hidden - (midnight - gw.clock()).total_seconds()) <= 5
    assert len(gw.calls_for(user)) == 2

    gw.clock.at = beijing(2025, 3, 6, 0, 0, 30)
    gw.time_passes()
    assert [o.status for o in gw.poll()] == ["sent"]
    assert len(gw.calls_for(user)) == 3
    assert summary(gw.events(key_of(bodies[2]))) == [("held", "daily_cap_deferred"), ("sent", None)]


def test_a_deferred_cap_also_respects_quiet_hours(gw: Harness) -> None:
    gw.policy(caps={"life_template": {"per_day": 1, "on_exceed": "defer"}})  # default quiet hours 22-08
    user = gw.follower()
    bodies = [template_job(gw, user, f"promo{i}") for i in range(2)]
    assert [gw.deliver(b).status for b in bodies] == ["sent", "held"]
    entry = gw.ledger.get(key_of(bodies[1]))
    assert entry and entry.reason == "daily_cap_deferred" and entry.hold_until == beijing(2025, 3, 6, 8)


def test_the_cap_resets_at_beijing_midnight_not_utc_midnight(gw: Harness) -> None:
    gw.policy(caps={"life_template": {"per_day": 2, "on_exceed": "skip"}}, **NO_QUIET_HOURS)
    user = gw.follower()

    def send_at(at: datetime, campaign: str) -> str:
        gw.clock.at = at
        return gw.deliver(template_job(gw, user, campaign)).status

    assert send_at(beijing(2025, 3, 5, 23, 58), "a") == "sent"
    assert send_at(beijing(2025, 3, 5, 23, 58, 30), "b") == "sent"
    assert send_at(beijing(2025, 3, 5, 23, 59), "c") == "capped"
    # 00:01 in Beijing is 16:01 UTC on the same UTC date: a new day all the same
    assert send_at(beijing(2025, 3, 6, 0, 1), "d") == "sent"
    assert send_at(beijing(2025, 3, 6, 7, 59), "e") == "sent"  # 23:59 UTC
    # 08:01 in Beijing is 00:01 UTC: a new UTC day, but still the same Beijing day, so still capped
    assert send_at(beijing(2025, 3, 6, 8, 1), "f") == "capped"
    assert len(gw.calls_for(user)) == 4


# ---- 3. the shared rate limit --------------------------------------------------------------------------


class RecordingLimiter(RateLimiter):
    """The real limiter, noting each slot it hands out (wall clock)."""

    def __init__(self, *args: Any, slots: list[float], lock: threading.Lock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots, self._lock = slots, lock

    def reserve(self, app_id: str, rate_per_second: float, max_wait: float) -> float | None:
        wait = super().reserve(app_id, rate_per_second, max_wait)
        if wait is not None:
            with self._lock:
                self._slots.append(time.time() + wait)
        return wait


def test_two_containers_share_the_apps_rate_limit(gw: Harness) -> None:
    """Real time: two containers (own loops, clients and limiters) share one reservation schedule in DynamoDB.
    The slots they are handed are one interval apart across both, so no second holds more than the rate; and
    no request leaves before its slot (httpx's request hook). A request can leave late when its container is
    busy: that only ever delays a send."""
    rate = 5
    gw.policy(rate_per_second=rate)
    user = gw.follower()
    now, day = datetime.now(UTC).isoformat(), (datetime.now(UTC) + timedelta(days=1)).isoformat()
    bodies = [
        json.dumps(template_job(gw, user, f"rate{i}", kind="transactional", created_at=now, not_after=day))
        for i in range(30)
    ]
    slots: list[float] = []
    sent_at: list[float] = []
    lock = threading.Lock()

    async def record(request: httpx.Request) -> None:
        with lock:
            sent_at.append(time.time())

    containers = [
        gw.container(real_time=True, concurrency=15, on_request=record,
                     rate_limiter=RecordingLimiter(gw.ddb, gw.table, slots=slots, lock=lock))
        for _ in range(2)
    ]
    reports: list[list[str]] = [[], []]

    def work(n: int) -> None:
        gateway, loop = containers[n]
        records = [QueueRecord(f"m{n}-{i}", f"rh{n}-{i}", b) for i, b in enumerate(bodies[n::2])]
        reports[n] = [o.status for o in loop.run_until_complete(gateway.process(records)).outcomes]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert reports[0] + reports[1] == ["sent"] * 30
    assert len(gw.calls_for(user)) == 30
    slots.sort()
    sent_at.sort()
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    # one interval apart across containers (less LATE_SLOT_S: a slot may be used up to 10 ms after its time
    # without pushing the schedule back)
    assert len(slots) == 30 and min(gaps) >= 1 / rate - LATE_SLOT_S - 1e-3, gaps
    assert all(sent >= slot - 1e-3 for sent, slot in zip(sent_at, slots, strict=True))  # never before its slot


def test_a_job_still_waiting_for_the_rate_on_its_fourth_receive_goes_back_as_a_fresh_copy(gw: Harness) -> None:
    """Waiting for the app's own rate is not a failure, but every wait is an SQS receive: a backlog far above the
    rate must not walk jobs into the DLQ (maxReceiveCount 5). From the fourth receive on, a rate wait re-enqueues a
    fresh copy (receive count 0) and acknowledges the old one; the ledger entry stays open, nothing is sent twice."""
    gw.policy(rate_per_second=0.001)  # one slot per ~1,000 s
    user = gw.follower()
    # another container takes the app's current slot (if a slot is free at all): the next is ~1,000 s away, beyond
    # the gateway's maximum wait
    RateLimiter(gw.ddb, gw.table).reserve(LIFE, 0.001, 60.0)
    body = template_job(gw, user, "rate-second", kind="transactional")
    key = key_of(body)

    outcomes = [gw.deliver(body)]
    for _ in range(3):
        gw.time_passes()
        outcomes += gw.poll()
    assert [(o.status, o.reason) for o in outcomes] == [("busy", "rate_limited")] * 4
    assert [o.disposition for o in outcomes] == ["retry", "retry", "retry", "ack"]

    gw.time_passes()
    copies = gw.sqs.receive_message(
        QueueUrl=gw.outbound_url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert [(json.loads(m["Body"])["campaign"], m["Attributes"]["ApproximateReceiveCount"]) for m in copies] == [
        ("rate-second", "1")
    ]
    entry = gw.ledger.get(key)
    assert entry is not None and not entry.terminal and entry.status is not Status.sending
    assert gw.calls_for(user) == []  # nothing reached Alipay


# ---- 4. expired leases ---------------------------------------------------------------------------------


def test_a_template_message_stuck_in_sending_is_settled_unknown_and_never_resent(gw: Harness) -> None:
    user = gw.follower()
    body = template_job(gw, user, "crash")
    key = key_of(body)
    crashing, loop = gw.container(ledger=CrashBeforeRecording(gw.ddb, gw.table))
    gw.enqueue(body)
    with pytest.raises(Crash):
        gw.poll(crashing, loop)
    entry = gw.ledger.get(key)
    assert entry and entry.status is Status.sending and entry.attempts == 1
    assert len(gw.calls_for(user)) == 1  # Alipay did get it; nobody wrote that down

    gw.clock.at += timedelta(seconds=30)  # lease (90 s) still live: the redelivery waits for it
    gw.time_passes()
    (busy,) = gw.poll()
    assert (busy.status, busy.reason, busy.disposition) == ("busy", "in_flight", "retry")
    assert busy.visibility_s is not None and 55 <= busy.visibility_s <= 65

    gw.clock.at += timedelta(minutes=5)
    gw.time_passes()
    (settled,) = gw.poll()
    assert (settled.status, settled.reason, settled.disposition) == ("failed", OUTCOME_UNKNOWN, "ack")
    entry = gw.ledger.get(key)
    assert entry and entry.status is Status.failed and entry.reason == OUTCOME_UNKNOWN
    assert entry.retryable is False and entry.terminal
    (event,) = gw.events(key)
    assert (event["status"], event["reason"], event["retryable"]) == ("failed", OUTCOME_UNKNOWN, False)
    assert len(gw.calls_for(user)) == 1  # at most once: not called again
    gw.enqueue(body)
    assert [o.status for o in gw.poll()] == ["duplicate"] and len(gw.calls_for(user)) == 1


class ThrottledOnce(RateLimiter):
    """A rate limiter whose first write is still throttled after the SDK's retries."""

    failures = 1

    def reserve(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "UpdateItem")
        return super().reserve(*args, **kwargs)


def test_a_write_failing_between_the_claim_and_the_call_gives_the_claim_back_and_the_job_is_sent(
    gw: Harness,
) -> None:
    user = gw.follower()
    body = template_job(gw, user, "throttled", kind="transactional")
    key = key_of(body)
    throttled, loop = gw.container(rate_limiter=ThrottledOnce(gw.ddb, gw.table))
    gw.enqueue(body)
    (failed,) = gw.poll(throttled, loop)
    assert failed.disposition == "retry"
    entry = gw.ledger.get(key)
    assert entry and entry.status is Status.planned and gw.calls_for(user) == []  # claim given back, no call
    gw.clock.at += timedelta(minutes=5)  # long past the 90 s lease: nothing to settle as outcome_unknown
    gw.time_passes()
    (sent,) = gw.poll(throttled, loop)
    assert (sent.status, sent.disposition) == ("sent", "ack")
    assert gw.ledger.get(key).status is Status.sent and len(gw.calls_for(user)) == 1


def test_a_coupon_stuck_in_sending_is_resent_with_the_same_out_biz_no_and_issued_once(gw: Harness) -> None:
    user = "2088" + uuid.uuid4().hex[:12]
    body = {
        "app_id": LIFE,
        "channel": "coupon",
        "recipient": {"user_id": user},
        "content": {"activity_id": ACTIVITY},
        "campaign": "crash-coupon",
        "created_at": gw.clock().isoformat(),
        "not_after": (gw.clock() + timedelta(days=1)).isoformat(),
    }
    key = key_of(body)
    stock = gw.sim.stock_left(LIFE, ACTIVITY)
    assert stock is not None
    crashing, loop = gw.container(ledger=CrashBeforeRecording(gw.ddb, gw.table))
    gw.enqueue(body)
    with pytest.raises(Crash):
        gw.poll(crashing, loop)
    assert gw.ledger.get(key).status is Status.sending  # type: ignore[union-attr]

    gw.clock.at += timedelta(minutes=5)
    gw.time_passes()
    (outcome,) = gw.poll()
    assert (outcome.status, outcome.disposition) == ("sent", "ack")

    entry = gw.ledger.get(key)
    assert entry and entry.status is Status.sent and entry.attempts == 2
    calls = gw.calls_for(user, VOUCHER_SEND)
    assert [c["biz"]["out_biz_no"] for c in calls] == [entry.out_biz_no, entry.out_biz_no]
    issued = [d for d in gw.sim.outbound(VOUCHER_SEND, LIFE) if d["recipient"] == user]
    assert len(issued) == 1 and entry.alipay_ref == issued[0]["ref"]
    assert gw.sim.stock_left(LIFE, ACTIVITY) == stock - 1
    assert summary(gw.events(key)) == [("sent", None)]


# ---- 5. consent ------------------------------------------------------------------------------------------


def test_a_user_who_unfollowed_gets_no_life_account_push(gw: Harness) -> None:
    user = gw.follower()
    gw.audience.set_following(LIFE, user, False, gw.clock() - timedelta(hours=1))
    body = template_job(gw, user, "after-unfollow", kind="transactional")
    outcome = gw.deliver(body)
    assert (outcome.status, outcome.reason, outcome.disposition) == ("skipped", "unfollowed", "ack")
    entry = gw.ledger.get(key_of(body))
    assert entry and entry.status is Status.skipped and entry.reason == "unfollowed"
    assert summary(gw.events(key_of(body))) == [("skipped", "unfollowed")]
    assert gw.calls_for(user) == []


def test_a_subscription_message_needs_a_grant_and_consumes_exactly_one(gw: Harness) -> None:
    user = "2088" + uuid.uuid4().hex[:12]

    def subscription(campaign: str) -> dict[str, Any]:
        return {
            "app_id": MINI,
            "channel": "mini_subscription",
            "recipient": {"user_id": user},
            "content": {
                "user_template_id": SUBSCRIPTION_TEMPLATE,
                "page": "pages/order/detail?id=7",
                "data": {"keyword1": "已发货"},
            },
            "campaign": campaign,
            "kind": "transactional",
            "created_at": gw.clock().isoformat(),
            "not_after": (gw.clock() + timedelta(days=1)).isoformat(),
        }

    before = subscription("ungranted")
    outcome = gw.deliver(before)
    assert (outcome.status, outcome.reason) == ("skipped", "no_grant")
    assert summary(gw.events(key_of(before))) == [("skipped", "no_grant")]
    assert gw.calls_for(user, MINI_SEND) == []

    gw.audience.grant(MINI, user, SUBSCRIPTION_TEMPLATE, 1, at=gw.clock())
    gw.sim.grant(MINI, user, SUBSCRIPTION_TEMPLATE, 1)
    shipped, delivered = subscription("shipped"), subscription("delivered")
    assert gw.deliver(shipped).status == "sent"
    assert gw.audience.grants(MINI, user, SUBSCRIPTION_TEMPLATE) == 0
    outcome = gw.deliver(delivered)  # the one grant is used up
    assert (outcome.status, outcome.reason) == ("skipped", "no_grant")

    assert summary(gw.events(key_of(shipped))) == [("sent", None)]
    calls = gw.calls_for(user, MINI_SEND)
    assert len(calls) == 1 and calls[0]["code"] == "10000"
    assert gw.sim.grants_left(MINI, user, SUBSCRIPTION_TEMPLATE) == 0
