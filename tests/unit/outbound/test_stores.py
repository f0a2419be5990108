"""Ledger, counters and the shared rate limit on DynamoDB (moto, in process)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from datetime import timedelta
from typing import Any

import pytest
from outbound_helpers import NOW, job

from lifelink.domain.policy import MessagePolicy, UserState
from lifelink.store.counters import Counters, plan_for
from lifelink.store.ledger import OUTCOME_UNKNOWN, Ledger, Status
from lifelink.store.rate_limit import RateLimiter

LEASE = timedelta(seconds=90)


# ---- ledger ----------------------------------------------------------------------------------------------


def test_claim_finish_and_a_redelivery_finds_it_done(ddb: Any, table: str) -> None:
    ledger = Ledger(ddb, table)
    j = job()
    first = ledger.claim(j, "A", NOW, lease=LEASE, idempotent=False)
    assert first.result == "claimed" and first.entry and first.entry.attempts == 1
    assert first.entry.status is Status.sending
    done = ledger.finish(j.ledger_key, "A", Status.sent, NOW, alipay_ref="m1", attempt=1)
    assert done and done.status is Status.sent and done.terminal and done.alipay_ref == "m1"
    again = ledger.claim(j, "B", NOW + timedelta(seconds=1), lease=LEASE, idempotent=False)
    assert again.result == "done"
    assert [h["status"] for h in ledger.get(j.ledger_key).history] == ["sending", "sent"]  # type: ignore[union-attr]


def test_only_one_of_many_concurrent_claims_wins(ddb: Any, table: str) -> None:
    ledger = Ledger(ddb, table)
    j = job()
    results: list[str] = []
    barrier = threading.Barrier(8)

    def claim(owner: str) -> None:
        barrier.wait()
        results.append(ledger.claim(j, owner, NOW, lease=LEASE, idempotent=False).result)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["busy"] * 7 + ["claimed"]
    assert ledger.get(j.ledger_key).attempts == 1  # type: ignore[union-attr]


def test_only_the_lease_holder_finishes(ddb: Any, table: str) -> None:
    ledger = Ledger(ddb, table)
    j = job()
    ledger.claim(j, "A", NOW, lease=LEASE, idempotent=False)
    assert ledger.finish(j.ledger_key, "B", Status.sent, NOW) is None
    assert ledger.get(j.ledger_key).status is Status.sending  # type: ignore[union-attr]


def test_expired_lease_without_idempotency_key_is_settled_unknown_never_resent(ddb: Any, table: str) -> None:
    ledger = Ledger(ddb, table)
    j = job()
    ledger.claim(j, "A", NOW, lease=LEASE, idempotent=False)
    later = NOW + LEASE + timedelta(seconds=1)
    assert ledger.claim(j, "B", later, lease=LEASE, idempotent=False).result == "unknown"
    assert ledger.settle_unknown(j.ledger_key, NOW) is None  # lease still live then
    settled = ledger.settle_unknown(j.ledger_key, later)
    assert settled and settled.status is Status.failed and settled.reason == OUTCOME_UNKNOWN and settled.terminal
    assert ledger.claim(j, "B", later, lease=LEASE, idempotent=False).result == "done"
    # the slow original process reports late: its real outcome wins
    late = ledger.finish(j.ledger_key, "A", Status.sent, later)
    assert late and late.status is Status.sent


def test_expired_lease_of_a_coupon_is_claimed_again(ddb: Any, table: str) -> None:
    ledger = Ledger(ddb, table)
    j = job("coupon")
    ledger.claim(j, "A", NOW, lease=LEASE, idempotent=True)
    assert ledger.claim(j, "B", NOW + timedelta(seconds=10), lease=LEASE, idempotent=True).result == "busy"
    again = ledger.claim(j, "B", NOW + LEASE + timedelta(seconds=1), lease=LEASE, idempotent=True)
    assert again.result == "claimed" and again.entry and again.entry.attempts == 2
    assert ledger.finish(j.ledger_key, "A", Status.sent, NOW) is None  # A's lease is gone


def test_retryable_failure_can_be_claimed_again_fatal_cannot(ddb: Any, table: str) -> None:
    ledger = Ledger(ddb, table)
    j, k = job(), job(phase="p2")
    ledger.claim(j, "A", NOW, lease=LEASE, idempotent=False)
    e = ledger.finish(
        j.ledger_key, "A", Status.failed, NOW, reason="20000", sub_code="isp.unknow-error", retryable=True
    )
    assert e and not e.terminal and e.retryable
    assert ledger.claim(j, "B", NOW, lease=LEASE, idempotent=False).entry.attempts == 2  # type: ignore[union-attr]
    ledger.claim(k, "A", NOW, lease=LEASE, idempotent=False)
    f = ledger.finish(
        k.ledger_key, "A", Status.failed, NOW, reason="40004", sub_code="MSG_TEMPLATE_NOT_EXIST", retryable=False
    )
    assert f and f.terminal and f.sub_code == "MSG_TEMPLATE_NOT_EXIST"
    assert ledger.claim(k, "B", NOW, lease=LEASE, idempotent=False).result == "done"


def test_hold_then_skip_and_no_transition_out_of_a_terminal_state(ddb: Any, table: str) -> None:
    ledger = Ledger(ddb, table)
    j = job()
    held = ledger.hold(j, NOW + timedelta(hours=8), "quiet_hours", NOW)
    assert held and held.status is Status.held and held.hold_until == NOW + timedelta(hours=8)
    assert held.app_id == j.app_id and held.campaign == "spring" and held.out_biz_no == j.out_biz_no
    skipped = ledger.close(j, Status.skipped, "expired", NOW)
    assert skipped and skipped.status is Status.skipped and skipped.hold_until is None
    assert ledger.hold(j, NOW, "quiet_hours", NOW) is None
    assert ledger.close(j, Status.capped, "daily_cap", NOW) is None
    assert ledger.claim(j, "A", NOW, lease=LEASE, idempotent=False).result == "done"
    public = ledger.get(j.ledger_key).to_public()  # type: ignore[union-attr]
    assert [h["status"] for h in public["history"]] == ["held", "skipped"]
    assert public["history"][1]["reason"] == "expired"


def test_release_returns_a_claim_unused(ddb: Any, table: str) -> None:
    ledger = Ledger(ddb, table)
    j = job()
    ledger.claim(j, "A", NOW, lease=LEASE, idempotent=False)
    assert ledger.release(j.ledger_key, "B", NOW, "rate_limited") is None
    released = ledger.release(j.ledger_key, "A", NOW, "rate_limited")
    assert released and released.status is Status.planned
    assert ledger.claim(j, "B", NOW, lease=LEASE, idempotent=False).result == "claimed"


# ---- counters --------------------------------------------------------------------------------------------


def test_daily_cap_slots_are_atomic_and_given_back(ddb: Any, table: str) -> None:
    counters = Counters(ddb, table)
    policy = MessagePolicy()  # life_template: 3 a day
    plan = plan_for(job(), policy, NOW)
    assert [counters.take(plan) for _ in range(4)] == [True, True, True, False]
    assert counters.facts(plan, UserState()).sent_today == 3
    counters.give_back(plan)
    assert counters.facts(plan, UserState()).sent_today == 2
    assert counters.take(plan)
    tomorrow = plan_for(job(), policy, NOW + timedelta(days=1))
    assert counters.take(tomorrow)
    item = ddb.get_item(TableName=table, Key={"pk": {"S": plan.day.pk}, "sk": {"S": plan.day.sk}})["Item"]  # type: ignore[union-attr]
    assert int(item["ttl"]["N"]) > NOW.timestamp()


def test_concurrent_takes_never_exceed_the_cap(ddb: Any, table: str) -> None:
    counters = Counters(ddb, table)
    plan = plan_for(job(), MessagePolicy(), NOW)
    results: list[bool] = []
    barrier = threading.Barrier(10)

    def take() -> None:
        barrier.wait()
        results.append(counters.take(plan))

    threads = [threading.Thread(target=take) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 3


def test_transactional_sends_count_but_are_not_limited(ddb: Any, table: str) -> None:
    counters = Counters(ddb, table)
    plan = plan_for(job(kind="transactional"), MessagePolicy(), NOW)
    assert all(counters.take(plan) for _ in range(5))
    marketing = plan_for(job(), MessagePolicy(), NOW)
    assert counters.facts(marketing, UserState()).sent_today == 5
    assert not counters.take(marketing)


def test_weekly_group_markers(ddb: Any, table: str) -> None:
    counters = Counters(ddb, table)
    policy = MessagePolicy()
    label = plan_for(job("life_label"), policy, NOW)
    assert counters.take(label)
    assert not counters.take(label)  # same label twice in a week
    other = plan_for(job("life_label", recipient={"label_id": "L10"}), policy, NOW)
    assert counters.take(other)
    broadcast = plan_for(job("life_broadcast"), policy, NOW)
    assert not counters.take(broadcast)  # labels went out this week
    facts = counters.facts(broadcast, UserState())
    assert facts.group_this_week == 2 and facts.total_this_week == 0
    next_week = plan_for(job("life_broadcast"), policy, NOW + timedelta(days=7))
    assert counters.take(next_week)
    assert not counters.take(
        plan_for(job("life_label", recipient={"label_id": "L11"}), policy, NOW + timedelta(days=7))
    )


# ---- rate limit ------------------------------------------------------------------------------------------


def test_reservations_are_spaced_one_interval_apart_across_limiters(ddb: Any, table: str) -> None:
    clock = [1_000_000.25]
    a = RateLimiter(ddb, table, clock=lambda: clock[0], lead_s=0)
    b = RateLimiter(ddb, table, clock=lambda: clock[0], lead_s=0)  # another container, same table
    waits = [(a if i % 2 else b).reserve("app1", 5, max_wait=5) for i in range(7)]
    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2])
    # any one-second span holds at most the rate: slots at 0.0 .. 0.8 in the first second, 1.0 starts the next
    assert sum(1 for w in waits if w is not None and w < 1.0) == 5
    assert a.reserve("app2", 5, max_wait=5) == 0.0  # per app
    clock[0] += 10  # idle: no credit piles up, the next send starts at once and the one after waits again
    assert a.reserve("app1", 5, max_wait=5) == 0.0
    assert b.reserve("app1", 5, max_wait=5) == pytest.approx(0.2)


def test_acquire_sleeps_until_its_slot_or_gives_up(ddb: Any, table: str) -> None:
    clock = [2_000_000.5]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(ddb, table, clock=lambda: clock[0], sleep=sleep, lead_s=0)

    async def run(n: int, rate: float, max_wait: float) -> list[bool]:
        return [await limiter.acquire("app", rate, max_wait=max_wait) for _ in range(n)]

    assert asyncio.run(run(4, 2, 5)) == [True] * 4
    assert slept == pytest.approx([0.5, 1.0, 1.5])
    clock[0] = 3_000_000.5
    assert asyncio.run(run(3, 1, 1.0)) == [True, True, False]  # the third slot would be 2 s away


class SlowWrites:
    """A store whose writes take ``delay`` seconds on the given clock (the real moto table underneath)."""

    def __init__(self, ddb: Any, clock: list[float], delay: float) -> None:
        self._ddb, self._clock, self.delay = ddb, clock, delay

    def update_item(self, **kwargs: Any) -> Any:
        self._clock[0] += self.delay
        return self._ddb.update_item(**kwargs)


def test_slow_writes_lengthen_the_lead_instead_of_handing_out_late_slots(ddb: Any, table: str) -> None:
    clock = [100.0]
    slow = SlowWrites(ddb, clock, delay=0.3)
    limiter = RateLimiter(slow, table, clock=lambda: clock[0], lead_s=0.02)
    first = limiter.reserve("app", 5, max_wait=5)  # slot 100.02, write returns at 100.3: late, retried
    assert first is not None and first >= 0.0
    assert limiter.lead == pytest.approx(0.6)  # twice the write latency it saw
    sent = [clock[0] + first]
    for _ in range(4):
        wait = limiter.reserve("app", 5, max_wait=5)
        assert wait is not None
        sent.append(clock[0] + wait)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.2 - 1e-6, gaps  # every send a whole interval after the one before
