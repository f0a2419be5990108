"""decide(): consent, deadlines, quiet hours in Asia/Shanghai, Alipay's windows and limits, caps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from outbound_helpers import NOW, job
from pydantic import ValidationError

from lifelink.domain.policy import (
    Capped,
    Expired,
    FrequencyCap,
    Hold,
    MessagePolicy,
    QuietHours,
    Send,
    SendFacts,
    Skip,
    UserState,
    decide,
)

POLICY = MessagePolicy()
FOLLOWER = SendFacts(user=UserState(following=True, last_interaction_at=NOW - timedelta(hours=1)))


def shanghai(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h - 8, mi, tzinfo=UTC) if h >= 8 else datetime(y, mo, d - 1, h + 16, mi, tzinfo=UTC)


def test_a_follower_gets_a_template_message_at_noon() -> None:
    assert decide(job(), POLICY, FOLLOWER, NOW) == Send()


def test_consent_life_account_pushes_only_to_followers() -> None:
    assert decide(job(), POLICY, SendFacts(), NOW) == Skip("not_follower")
    unfollowed = SendFacts(user=UserState(following=False, last_interaction_at=NOW))
    assert decide(job(), POLICY, unfollowed, NOW) == Skip("unfollowed")
    assert decide(job("life_custom"), POLICY, unfollowed, NOW) == Skip("unfollowed")
    lenient = MessagePolicy(assume_follower_when_unknown=True)
    assert decide(job(), lenient, SendFacts(), NOW) == Send()
    assert decide(job(), lenient, unfollowed, NOW) == Skip("unfollowed")


def test_subscription_messages_need_a_grant() -> None:
    assert decide(job("mini_subscription"), POLICY, SendFacts(grants=0), NOW) == Skip("no_grant")
    assert decide(job("mini_subscription"), POLICY, SendFacts(grants=1), NOW) == Send()


def test_past_not_after_is_expired() -> None:
    j = job(not_after=(NOW - timedelta(seconds=1)).isoformat())
    assert decide(j, POLICY, FOLLOWER, NOW) == Expired()
    assert Expired().reason == "expired"


def test_custom_messages_only_within_48_hours_of_the_last_interaction() -> None:
    inside = SendFacts(user=UserState(True, NOW - timedelta(hours=47, minutes=59)))
    outside = SendFacts(user=UserState(True, NOW - timedelta(hours=48, minutes=1)))
    never = SendFacts(user=UserState(True, None))
    assert decide(job("life_custom"), POLICY, inside, NOW) == Send()
    assert decide(job("life_custom"), POLICY, outside, NOW) == Skip("outside_48h_window")
    assert decide(job("life_custom"), POLICY, never, NOW) == Skip("outside_48h_window")


def test_custom_window_is_checked_at_release_not_at_hold() -> None:
    night = shanghai(2025, 3, 5, 23)
    last = night - timedelta(hours=40)  # still inside at 23:00, outside by 08:00 the next morning
    facts = SendFacts(user=UserState(True, last))
    j = job("life_custom", created_at=night.isoformat())
    assert decide(j, POLICY, facts, night) == Skip("outside_48h_window")


def test_custom_messages_at_most_100_per_user_per_day_even_transactional() -> None:
    facts = SendFacts(user=FOLLOWER.user, sent_today=100)
    assert decide(job("life_custom", kind="transactional"), POLICY, facts, NOW) == Capped("custom_daily_limit")
    ok = SendFacts(user=FOLLOWER.user, sent_today=99)
    assert decide(job("life_custom", kind="transactional"), POLICY, ok, NOW) == Send()


def test_quiet_hours_hold_until_08_00_shanghai_across_midnight() -> None:
    for h, mi in ((22, 0), (23, 30)):
        at = shanghai(2025, 3, 5, h, mi)
        decision = decide(job(created_at=at.isoformat()), POLICY, FOLLOWER, at)
        assert decision == Hold(shanghai(2025, 3, 6, 8), "quiet_hours")
    after_midnight = shanghai(2025, 3, 6, 2)
    decision = decide(job(created_at=after_midnight.isoformat()), POLICY, FOLLOWER, after_midnight)
    assert decision == Hold(shanghai(2025, 3, 6, 8), "quiet_hours")
    for h, mi in ((8, 0), (21, 59)):
        at = shanghai(2025, 3, 6, h, mi)
        assert decide(job(created_at=at.isoformat()), POLICY, FOLLOWER, at) == Send()


def test_quiet_hours_are_shanghai_time_not_utc() -> None:
    # 23:00 UTC is 07:00 in Shanghai (quiet); 14:00 UTC is 22:00 (quiet); 13:59 UTC is 21:59 (open).
    for utc_hour, minute, held in ((23, 0, True), (14, 0, True), (13, 59, False), (0, 0, False)):
        at = datetime(2025, 3, 5, utc_hour, minute, tzinfo=UTC)
        decision = decide(job(created_at=at.isoformat()), POLICY, FOLLOWER, at)
        assert isinstance(decision, Hold) is held, (utc_hour, minute, decision)


def test_transactional_messages_ignore_quiet_hours_unless_configured() -> None:
    night = shanghai(2025, 3, 5, 23)
    j = job(kind="transactional", created_at=night.isoformat())
    assert decide(j, POLICY, FOLLOWER, night) == Send()
    strict = MessagePolicy(quiet_hours=QuietHours(include_transactional=True))
    assert isinstance(decide(j, strict, FOLLOWER, night), Hold)


def test_held_longer_than_max_hold_is_dropped_and_past_deadline_expires() -> None:
    night = shanghai(2025, 3, 5, 23)
    short = MessagePolicy(quiet_hours=QuietHours(max_hold=timedelta(hours=6)))
    assert decide(job(created_at=night.isoformat()), short, FOLLOWER, night) == Skip("quiet_hours_max_hold")
    # created earlier in the evening and held since: the hold counts from creation
    created = shanghai(2025, 3, 5, 20)
    assert decide(job(created_at=created.isoformat()), MessagePolicy(), FOLLOWER, night) == Hold(
        shanghai(2025, 3, 6, 8), "quiet_hours"
    )
    deadline = job(created_at=night.isoformat(), not_after=shanghai(2025, 3, 6, 7).isoformat())
    assert decide(deadline, POLICY, FOLLOWER, night) == Expired()


def test_quiet_hours_within_one_day_and_disabled() -> None:
    lunch = MessagePolicy(quiet_hours=QuietHours(start="12:00", end="14:00"))  # type: ignore[arg-type]
    at = shanghai(2025, 3, 5, 13)
    assert decide(job(created_at=at.isoformat()), lunch, FOLLOWER, at) == Hold(shanghai(2025, 3, 5, 14), "quiet_hours")
    off = MessagePolicy(quiet_hours=QuietHours(enabled=False))
    night = shanghai(2025, 3, 5, 23)
    assert decide(job(created_at=night.isoformat()), off, FOLLOWER, night) == Send()


def test_daily_cap_skips_or_defers_and_transactional_is_exempt() -> None:
    capped = SendFacts(user=FOLLOWER.user, sent_today=3)
    assert decide(job(), POLICY, capped, NOW) == Capped("daily_cap")
    assert decide(job(kind="transactional"), POLICY, capped, NOW) == Send()
    assert decide(job(), POLICY, SendFacts(user=FOLLOWER.user, sent_today=2), NOW) == Send()
    defer = MessagePolicy(caps={"life_template": FrequencyCap(per_day=3, on_exceed="defer")})  # type: ignore[dict-item]
    # deferred to the next Shanghai day, past its quiet hours: 08:00 on 6 March
    assert decide(job(), defer, capped, NOW) == Hold(shanghai(2025, 3, 6, 8), "daily_cap_deferred")
    soon = job(not_after=(NOW + timedelta(hours=6)).isoformat())
    assert decide(soon, defer, capped, NOW) == Expired()


def test_daily_cap_counts_the_shanghai_calendar_day() -> None:
    policy = MessagePolicy()
    assert policy.day(datetime(2025, 3, 5, 15, 59, tzinfo=UTC)).isoformat() == "2025-03-05"
    assert policy.day(datetime(2025, 3, 5, 16, 0, tzinfo=UTC)).isoformat() == "2025-03-06"


def test_group_sends_once_per_user_per_week() -> None:
    assert decide(job("life_broadcast"), POLICY, SendFacts(), NOW) == Send()
    assert decide(job("life_broadcast"), POLICY, SendFacts(group_this_week=1), NOW) == Capped("weekly_limit")
    assert decide(job("life_label"), POLICY, SendFacts(total_this_week=1, group_this_week=1), NOW) == Capped(
        "weekly_limit"
    )
    assert decide(job("life_label"), POLICY, SendFacts(label_this_week=1, group_this_week=1), NOW) == Capped(
        "weekly_limit"
    )
    assert decide(job("life_label"), POLICY, SendFacts(group_this_week=4), NOW) == Send()
    assert decide(job("life_label"), POLICY, SendFacts(group_this_week=5), NOW) == Capped("label_weekly_calls")


def test_weeks_are_iso_weeks_in_shanghai() -> None:
    # Sunday 23:30 in Shanghai and Monday 00:30 are different weeks.
    assert POLICY.week(shanghai(2025, 3, 9, 23, 30)) != POLICY.week(shanghai(2025, 3, 10, 0, 30))
    assert POLICY.week(shanghai(2025, 3, 10, 0, 30)) == POLICY.week(shanghai(2025, 3, 16, 23, 0))


def test_policy_parses_from_the_registry_json_with_defaults() -> None:
    p = MessagePolicy.parse('{"rate_per_second": 2.5, "caps": {"coupon": {"per_day": 1}}}')
    assert p.rate_per_second == 2.5
    assert p.caps["coupon"].per_day == 1  # type: ignore[index]
    assert p.quiet_hours.start.hour == 22
    assert MessagePolicy.parse(None) == MessagePolicy()


def test_an_apps_policy_document_carries_other_sections_beside_the_message_policy() -> None:
    document = {"rate_per_second": 5, "tier_on_follow": "gold", "tier_on_unfollow": "drop", "tags": {"silent_days": 20},
                "rules": {"first_order": {"enabled": True}}}
    assert MessagePolicy.parse(document).rate_per_second == 5
    assert MessagePolicy.parse(json.dumps(document)).rate_per_second == 5
    with pytest.raises(ValidationError):  # a typo is still refused, not silently ignored
        MessagePolicy.parse({"rate_per_secnd": 5})
