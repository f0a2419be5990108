"""The participation store against moto (in-process, template.yaml provisioned): every rule, one at a time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lifelink.domain.campaigns import Campaign, CampaignState
from lifelink.domain.messages import Recipient, parse_job
from lifelink.store.audience import Audience
from lifelink.store.campaigns import CampaignStore, Draw
from lifelink.store.ledger import Ledger, Status
from lifelink.store.participation import QUEUE_LEASE, Participation, QueueFailed, Refused
from tests.unit.participation.factory import DAY, LIFE_APP, MINI_APP, OTHER_MINI, campaign

START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
PREHEAT = START + timedelta(hours=2)
BURST = START + DAY + timedelta(hours=1, minutes=30)  # inside flash window w1
SETTLE = START + 2 * DAY + timedelta(hours=2)


@dataclass
class World:
    ddb: Any
    sqs: Any
    table: str
    queue: str
    campaign: Campaign
    p: Participation

    def jobs(self) -> list[dict[str, Any]]:
        out = []
        while msgs := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
            for m in msgs:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
        return out


@pytest.fixture
def world(aws: Any) -> World:
    ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    table, queue = aws.tables["StateTable"], aws.queues["OutboundQueue"]
    c = campaign(START)
    CampaignStore(ddb, table).put(c)
    return World(ddb, sqs, table, queue, c, Participation(ddb, table, sqs=sqs, queue_url=queue))


def refused(kind: str, call: Any) -> Refused:
    with pytest.raises(Refused) as caught:
        call()
    assert caught.value.kind == kind, caught.value.message
    return caught.value


class FailingSqs:
    """An SQS client whose puts fail (the queue is unreachable)."""

    def send_message(self, **_: Any) -> dict[str, Any]:
        raise ConnectionError("queue unreachable")


# ---- reservations ------------------------------------------------------------------------------------------


def test_a_reservation_takes_one_unit_and_queues_one_coupon_job(world: World) -> None:
    grant = world.p.reserve(world.campaign, "early", Recipient(open_id="u1"), PREHEAT, state="preheat")

    assert (grant.created, grant.coupon, grant.coupon_status) == (True, "early", "queued")
    [job] = world.jobs()
    assert job["channel"] == "coupon"
    assert job["content"]["activity_id"] == "ACT_EARLY"
    assert job["recipient"] == {"open_id": "u1"}
    assert (job["app_id"], job["campaign"], job["phase"], job["kind"]) == (
        MINI_APP,
        "spring",
        "preheat.early",
        "transactional",
    )
    assert datetime.fromisoformat(job["not_after"]) == world.campaign.phases.settle.end
    assert grant.ledger_key == parse_job(json.dumps(job)).ledger_key
    assert world.p.stock_left(world.campaign, "early") == 4


def test_a_second_reservation_answers_the_first_and_queues_nothing(world: World) -> None:
    first = world.p.reserve(world.campaign, "early", "2088000000000001", PREHEAT, state="preheat")
    again = world.p.reserve(world.campaign, "early", "2088000000000001", PREHEAT + timedelta(hours=1), state="preheat")

    assert again.created is False
    assert (again.at, again.ledger_key, again.coupon_status) == (first.at, first.ledger_key, "queued")
    assert len(world.jobs()) == 1
    assert world.p.stock_left(world.campaign, "early") == 4


def test_stock_runs_out_and_then_every_new_user_is_refused(world: World) -> None:
    for i in range(5):
        assert world.p.reserve(world.campaign, "early", f"user-{i}", PREHEAT, state="preheat").created
    error = refused("sold_out", lambda: world.p.reserve(world.campaign, "early", "late", PREHEAT, state="preheat"))
    assert "sold out" in error.message
    # A user who got one before the stock ran out still gets their reservation back.
    assert world.p.reserve(world.campaign, "early", "user-0", PREHEAT, state="preheat").created is False
    assert world.p.stock_left(world.campaign, "early") == 0
    assert len(world.jobs()) == 5


def test_reservations_are_open_only_in_preheat(world: World) -> None:
    c = world.campaign
    assert (
        "state scheduled"
        in refused("closed", lambda: world.p.reserve(c, "early", "u", PREHEAT, state="scheduled")).message
    )
    refused("closed", lambda: world.p.reserve(c, "early", "u", BURST, state="preheat"))
    refused("closed", lambda: world.p.reserve(c, "early", "u", BURST, state="burst"))
    refused("closed", lambda: world.p.reserve(c, "early", "u", START - timedelta(minutes=1), state="preheat"))
    assert world.jobs() == []
    assert world.p.stock_left(c, "early") == 5


def test_unknown_or_mistyped_actions_and_foreign_apps_are_refused(world: World) -> None:
    c = world.campaign
    refused("not_found", lambda: world.p.reserve(c, "nope", "u", PREHEAT, state="preheat"))
    assert (
        "share_task"
        in refused("wrong_action", lambda: world.p.reserve(c, "share", "u", PREHEAT, state="preheat")).message
    )
    refused("invalid", lambda: world.p.reserve(c, "early", "u", PREHEAT, state="preheat", app_id="2021999"))
    grant = world.p.reserve(c, "early", "u", PREHEAT, state="preheat", app_id=OTHER_MINI)
    assert grant.created and world.jobs()[0]["app_id"] == OTHER_MINI


def test_a_failed_queue_put_fails_the_request_and_its_retry_queues_the_coupon(world: World) -> None:
    broken = Participation(world.ddb, world.table, sqs=FailingSqs(), queue_url=world.queue)
    with pytest.raises(QueueFailed):
        broken.reserve(world.campaign, "early", "u1", PREHEAT, state="preheat")
    assert world.jobs() == []
    assert world.p.stock_left(world.campaign, "early") == 4  # the reservation stands

    retry = world.p.reserve(world.campaign, "early", "u1", PREHEAT + timedelta(seconds=1), state="preheat")
    assert (retry.created, retry.coupon_status) == (False, "queued")
    [job] = world.jobs()
    assert job["recipient"] == {"open_id": "u1"} and job["content"]["activity_id"] == "ACT_EARLY"
    # Queued now: a further repeat queues nothing.
    world.p.reserve(world.campaign, "early", "u1", PREHEAT + timedelta(seconds=2), state="preheat")
    assert world.jobs() == [] and world.p.stock_left(world.campaign, "early") == 4


def test_a_repeat_during_another_requests_queue_lease_does_not_queue_until_the_lease_expires(world: World) -> None:
    broken = Participation(world.ddb, world.table, sqs=FailingSqs(), queue_url=world.queue)
    with pytest.raises(QueueFailed):
        broken.reserve(world.campaign, "early", "u1", PREHEAT, state="preheat")
    # As if the first request had died holding its lease (it could not release it).
    until = int((PREHEAT + QUEUE_LEASE).timestamp() * 1000)
    world.ddb.update_item(
        TableName=world.table,
        Key={"pk": {"S": "CAMPAIGN#spring"}, "sk": {"S": "RES#early#u1"}},
        UpdateExpression="SET lease_until = :u",
        ExpressionAttributeValues={":u": {"N": str(until)}},
    )
    during = world.p.reserve(world.campaign, "early", "u1", PREHEAT + timedelta(seconds=5), state="preheat")
    assert during.coupon_status == "queueing" and world.jobs() == []

    after = world.p.reserve(
        world.campaign, "early", "u1", PREHEAT + QUEUE_LEASE + timedelta(seconds=1), state="preheat"
    )
    assert after.coupon_status == "queued" and len(world.jobs()) == 1


# ---- flash sales -----------------------------------------------------------------------------------------


def test_flash_stock_is_taken_once_per_user_only_inside_its_window(world: World) -> None:
    c, p = world.campaign, world.p
    window_start = c.phases.burst.start + timedelta(hours=1)
    refused("closed", lambda: p.flash_take(c, "flash", "w1", "u1", window_start - timedelta(seconds=1), state="burst"))
    refused("closed", lambda: p.flash_take(c, "flash", "w1", "u1", window_start + timedelta(hours=1), state="burst"))
    refused("not_found", lambda: p.flash_take(c, "flash", "w9", "u1", BURST, state="burst"))

    taken = [p.flash_take(c, "flash", "w1", f"u{i}", BURST, state="burst") for i in range(3)]
    assert [t.created for t in taken] == [True] * 3 and {t.sku for t in taken} == {"SKU-1"}
    assert p.flash_take(c, "flash", "w1", "u0", BURST, state="burst").created is False
    refused("sold_out", lambda: p.flash_take(c, "flash", "w1", "u9", BURST, state="burst"))
    assert p.counts(c)["flash"] == {"taken.w1": 3, "left.w1": 0}
    assert world.jobs() == []  # a flash-sale unit is not a coupon


# ---- shares ----------------------------------------------------------------------------------------------


def test_the_first_share_unlocks_the_reward_once_and_shares_past_the_stock_are_still_recorded(world: World) -> None:
    c, p = world.campaign, world.p
    first = p.share(c, "share", "u1", BURST, state="burst")
    again = p.share(c, "share", "u1", BURST, state="burst")
    assert (first.created, first.coupon_status) == (True, "queued")
    assert (again.created, again.coupon_status) == (False, "queued")
    [job] = world.jobs()
    assert (job["content"]["activity_id"], job["phase"]) == ("ACT_THANKS", "burst.share")

    assert p.share(c, "share", "u2", BURST, state="burst").coupon_status == "queued"
    late = p.share(c, "share", "u3", BURST, state="burst")  # the reward's stock (2) is gone
    assert (late.created, late.coupon_status) == (True, "sold_out")
    assert p.share(c, "share", "u3", BURST, state="burst").created is False
    assert len(world.jobs()) == 1
    assert p.counts(c)["share"] == {"shares": 3, "rewarded": 2, "stock_left": 0}
    assert p.pool_members(c.id, "shares") == ["u1", "u2", "u3"]
    refused("closed", lambda: p.share(c, "share", "u4", PREHEAT, state="preheat"))


# ---- entries, votes, leaderboard -------------------------------------------------------------------------


def known(world: World, *users: str) -> None:
    for user in users:
        Audience(world.ddb, world.table).touch(MINI_APP, user, START)


def test_entries_are_limited_per_user(world: World) -> None:
    c, p = world.campaign, world.p
    p.submit_entry(c, "ugc", "u1", "First", None, BURST, state="burst")
    p.submit_entry(c, "ugc", "u1", "Second", "https://img.example.test/2.jpg", BURST, state="burst")
    refused("entry_limit", lambda: p.submit_entry(c, "ugc", "u1", "Third", None, BURST, state="burst"))
    p.submit_entry(c, "ugc", "u2", "Other", None, BURST, state="burst")
    assert sorted(e.title for e in p.entries(c.id, "ugc")) == ["First", "Other", "Second"]
    refused("closed", lambda: p.submit_entry(c, "ugc", "u3", "Late", None, SETTLE, state="settle"))


def test_one_vote_per_voter_per_entry_per_day_only_from_known_users(world: World) -> None:
    c, p = world.campaign, world.p
    entry = p.submit_entry(c, "ugc", "author", "Mine", None, BURST, state="burst")
    refused("unknown_voter", lambda: p.vote(c, "ugc", entry.entry_id, "stranger", BURST, state="burst"))
    Audience(world.ddb, world.table).set_following(LIFE_APP, "follower", True, START)  # known in the life account
    known(world, "fan")

    assert p.vote(c, "ugc", entry.entry_id, "fan", BURST, state="burst").votes == 1
    refused("already_voted", lambda: p.vote(c, "ugc", entry.entry_id, "fan", BURST + timedelta(hours=1), state="burst"))
    assert p.vote(c, "ugc", entry.entry_id, "follower", BURST, state="burst").votes == 2
    refused("not_found", lambda: p.vote(c, "ugc", "feedbeef0000", "fan", BURST, state="burst"))
    assert p.entry(c.id, "ugc", entry.entry_id).votes == 2  # type: ignore[union-attr]


def test_a_vote_the_next_shanghai_day_counts_again(world: World) -> None:
    c = world.campaign  # burst: 2026-03-02 00:00 to 2026-03-03 00:00 UTC
    p = world.p
    entry = p.submit_entry(c, "ugc", "author", "Mine", None, BURST, state="burst")
    known(world, "fan")
    late_evening = datetime(2026, 3, 2, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai
    just_after_midnight = datetime(2026, 3, 2, 16, 1, tzinfo=UTC)
    assert p.vote(c, "ugc", entry.entry_id, "fan", late_evening, state="burst").day == "2026-03-02"
    second = p.vote(c, "ugc", entry.entry_id, "fan", just_after_midnight, state="burst")
    assert (second.day, second.votes) == ("2026-03-03", 2)


def test_the_leaderboard_ranks_by_votes_then_entry_time(world: World) -> None:
    c, p = world.campaign, world.p
    a = p.submit_entry(c, "ugc", "ua", "A", None, BURST, state="burst")
    b = p.submit_entry(c, "ugc", "ub", "B", None, BURST + timedelta(minutes=1), state="burst")
    d = p.submit_entry(c, "ugc", "ud", "D", None, BURST + timedelta(minutes=2), state="burst")
    known(world, "v1", "v2", "v3")
    for voter in ("v1", "v2"):
        p.vote(c, "ugc", d.entry_id, voter, BURST, state="burst")
    p.vote(c, "ugc", b.entry_id, "v3", BURST, state="burst")
    p.vote(c, "ugc", a.entry_id, "v3", BURST, state="burst")

    board = p.leaderboard(c, "ugc", limit=10)
    assert [(e.title, e.votes) for e in board] == [("D", 2), ("A", 1), ("B", 1)]
    assert [e.title for e in p.leaderboard(c, "ugc", limit=2)] == ["D", "A"]
    assert p.pool_members(c.id, "top_entries", "ugc", top=1) == ["ud"]
    assert p.pool_members(c.id, "top_entries", "ugc", top=2) == ["ua", "ud"]
    assert p.pool_members(c.id, "entrants") == ["ua", "ub", "ud"]
    assert p.pool_members(c.id, "voters", "ugc") == ["v1", "v2", "v3"]
    assert p.counts(c)["ugc"] == {"entries": 3, "votes": 4}


# ---- claims ----------------------------------------------------------------------------------------------


def test_only_winners_claim_once_and_fulfilment_follows_the_ledger(world: World) -> None:
    c, p = world.campaign, world.p
    refused("not_drawn", lambda: p.claim(c, "draw", "w1", SETTLE, state="settle"))
    CampaignStore(world.ddb, world.table).put_draw("spring", "draw", Draw("seed", "hash", 5, ["w1", "w2"]))
    refused("not_a_winner", lambda: p.claim(c, "draw", "loser", SETTLE, state="settle"))
    refused("closed", lambda: p.claim(c, "draw", "w1", BURST, state="burst"))

    claim = p.claim(c, "draw", "w1", SETTLE, state="settle")
    assert (claim.created, claim.coupon_status) == (True, "queued")
    assert p.claim(c, "draw", "w1", SETTLE + timedelta(minutes=5), state="settle").created is False
    [job] = world.jobs()
    assert (job["content"]["activity_id"], job["phase"], job["recipient"]) == (
        "ACT_PRIZE",
        "settle.draw",
        {"open_id": "w1"},
    )

    summary = p.claims_summary(c, "draw")
    assert (summary.winners, summary.claimed, summary.fulfilled, summary.claim_rate) == (2, 1, 0, 0.5)

    outbound = parse_job(json.dumps(job))
    ledger = Ledger(world.ddb, world.table)
    assert ledger.claim(outbound, "gw", SETTLE, lease=timedelta(seconds=30), idempotent=True).result == "claimed"
    ledger.finish(outbound.ledger_key, "gw", Status.sent, SETTLE)
    summary = p.claims_summary(c, "draw")
    assert (summary.fulfilled, summary.redemption_rate) == (1, 0.5)
    assert p.counts(c)["draw"] == {"winners": 2, "claims": 1}


# ---- survey ----------------------------------------------------------------------------------------------


def test_one_survey_answer_per_user_with_a_summary(world: World) -> None:
    c, p = world.campaign, world.p
    assert p.answer(c, "survey", "u1", {"overall": 5, "best": "live"}, SETTLE, state="settle").created
    assert p.answer(c, "survey", "u1", {"overall": 5, "best": "live"}, SETTLE, state="settle").created is False
    refused("already_answered", lambda: p.answer(c, "survey", "u1", {"overall": 1}, SETTLE, state="settle"))
    p.answer(c, "survey", "u2", {"overall": 3, "say": "nice"}, SETTLE, state="settle")
    error = refused("invalid", lambda: p.answer(c, "survey", "u3", {"overall": 9, "best": "x"}, SETTLE, state="settle"))
    assert len(error.errors) == 2
    refused("closed", lambda: p.answer(c, "survey", "u4", {"overall": 4}, BURST, state="burst"))

    summary = p.survey_summary(c, "survey")
    assert (summary.answers, summary.average_rating, summary.option_counts, summary.text_answers) == (
        2,
        {"overall": 4.0},
        {"best": {"coupons": 0, "live": 1}},
        {"say": 1},
    )
    assert p.counts(c)["survey"] == {"answers": 2}


def test_pools_across_actions_and_unknown_pools(world: World) -> None:
    c, p = world.campaign, world.p
    for user in ("b", "a"):
        p.reserve(c, "early", user, PREHEAT, state="preheat")
    assert p.pool_members(c.id, "reservations") == ["a", "b"]
    assert p.pool_members(c.id, "reservations", "early") == ["a", "b"]
    assert p.pool_members(c.id, "reservations", "other") == []
    with pytest.raises(ValueError, match="unknown pool"):
        p.pool_members(c.id, "everyone")
    assert p.counts(c)["early"] == {"reservations": 2, "stock_left": 3}


def test_the_campaign_is_read_through_the_campaign_store(world: World) -> None:
    stored = world.p.load("spring")
    assert stored is not None and stored.campaign == world.campaign and stored.state is CampaignState.draft
    assert world.p.load("nope") is None


class ConflictingDynamoDB:
    """DynamoDB as under contention: the first ``n`` transactions are cancelled with TransactionConflict."""

    def __init__(self, ddb: Any, n: int) -> None:
        self._ddb, self.left, self.transactions = ddb, n, 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        self.transactions += 1
        if self.left > 0:
            self.left -= 1
            reasons = [{"Code": "TransactionConflict"} for _ in kwargs["TransactItems"]]
            error = {"Error": {"Code": "TransactionCanceledException", "Message": "conflict"}}
            raise ClientError({**error, "CancellationReasons": reasons}, "TransactWriteItems")  # type: ignore[arg-type]
        return self._ddb.transact_write_items(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ddb, name)


def test_transaction_conflicts_are_retried(world: World) -> None:
    ddb = ConflictingDynamoDB(world.ddb, 3)
    p = Participation(ddb, world.table, sqs=world.sqs, queue_url=world.queue, sleep=lambda _: None)
    known(world, "fan")
    entry = p.submit_entry(world.campaign, "ugc", "author", "Mine", None, BURST, state="burst")
    assert p.vote(world.campaign, "ugc", entry.entry_id, "fan", BURST, state="burst").votes == 1
    assert ddb.transactions == 5  # three conflicts, then the entry and the vote


def test_endless_conflicts_end_in_contended(world: World) -> None:
    from lifelink.store.participation import Contended

    p = Participation(ConflictingDynamoDB(world.ddb, 10**6), world.table, sleep=lambda _: None)
    with pytest.raises(Contended):
        p.submit_entry(world.campaign, "ugc", "author", "Mine", None, BURST, state="burst")
