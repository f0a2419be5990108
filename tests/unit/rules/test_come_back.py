"""Silent for N days (no open, read or order) → a come-back gift, once per silence."""

from __future__ import annotations

from datetime import timedelta

from lifelink.domain.metrics import OrderFacts
from lifelink.store.profiles import Profile

from .conftest import LIFE, MINI, NOW, U1, U2, World

GIFT = {"come_back": {"enabled": True, "silent_days": 30, "activity_id": "ACT_BACK"}}


def profile(user: str, last_open_days_ago: int | None, group: str = MINI, **kw: object) -> Profile:
    last = None if last_open_days_ago is None else NOW - timedelta(days=last_open_days_ago)
    return Profile(group, user, version=1, user_id=user, known_since=NOW - timedelta(days=200), last_open_at=last,
                   **kw)  # type: ignore[arg-type]


def test_a_user_silent_for_thirty_days_gets_one_gift_per_silence(world: World) -> None:
    world.policy(MINI, GIFT)
    world.profiles.by_key[(MINI, U1)] = profile(U1, 31)
    world.profiles.by_key[(MINI, U2)] = profile(U2, 28)
    (job,) = world.engine.silence_scan(MINI, NOW)
    assert (job.recipient.user_id, job.channel.value, job.content.activity_id) == (U1, "coupon", "ACT_BACK")
    assert (job.rule, job.campaign, job.kind) == ("come_back", "rule-come_back", "marketing")
    assert job.phase == "since" + (NOW - timedelta(days=31)).strftime("%Y%m%d")
    world.engine.acknowledge()
    assert world.engine.silence_scan(MINI, NOW + timedelta(days=1)) == []  # still the same silence
    # U2 reaches 30 silent days two days later
    (job2,) = world.engine.silence_scan(MINI, NOW + timedelta(days=2))
    assert job2.recipient.user_id == U2


def test_a_user_who_came_back_and_fell_silent_again_gets_a_new_gift(world: World) -> None:
    world.policy(MINI, GIFT)
    world.profiles.by_key[(MINI, U1)] = profile(U1, 31)
    (first,) = world.engine.silence_scan(MINI, NOW)
    world.engine.acknowledge()
    world.profiles.by_key[(MINI, U1)] = profile(U1, 0)  # opened the mini program today
    assert world.engine.silence_scan(MINI, NOW) == []
    later = NOW + timedelta(days=31)
    (second,) = world.engine.silence_scan(MINI, later)
    assert second.ledger_key != first.ledger_key


def test_an_order_or_a_recent_open_is_not_silence(world: World) -> None:
    world.policy(MINI, GIFT)
    world.profiles.by_key[(MINI, U1)] = profile(U1, 60, orders={"T1": OrderFacts("T1", 900, NOW - timedelta(days=3))})
    world.profiles.by_key[(MINI, U2)] = profile(U2, 2)
    assert world.engine.silence_scan(MINI, NOW) == []


def test_a_scan_whose_jobs_were_not_queued_sends_them_again_later(world: World) -> None:
    world.policy(MINI, GIFT)
    world.profiles.by_key[(MINI, U1)] = profile(U1, 31)
    (job,) = world.engine.silence_scan(MINI, NOW)
    world.engine.forget()
    (again,) = world.engine.silence_scan(MINI, NOW + timedelta(hours=1))
    assert again.ledger_key == job.ledger_key


def test_a_message_gift_and_the_configured_silence(world: World) -> None:
    message = {"channel": "life_template", "content": {"template_id": "TM_BACK", "keywords": [{"value": "想你了"}]}}
    world.policy(LIFE, {"come_back": {"enabled": True, "silent_days": 7, "message": message}}, kind="life")
    world.profiles.by_key[(LIFE, U1)] = profile(U1, 8, group=LIFE)
    (job,) = world.engine.silence_scan(LIFE, NOW)
    assert (job.channel.value, job.content.template_id) == ("life_template", "TM_BACK")


def test_a_mini_program_using_its_life_accounts_rules_is_not_scanned_twice(world: World) -> None:
    world.policy(LIFE, GIFT, kind="life")
    world.registry.add(MINI, "mini", None, life_account=LIFE)
    world.profiles.by_key[(LIFE, U1)] = profile(U1, 31, group=LIFE)
    assert len(world.engine.silence_scan(LIFE, NOW)) == 1
    assert world.engine.silence_scan(MINI, NOW) == []


def test_off_by_default(world: World) -> None:
    world.policy(MINI, {})
    world.profiles.by_key[(MINI, U1)] = profile(U1, 90)
    assert world.engine.silence_scan(MINI, NOW) == []
