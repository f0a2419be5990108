"""The rules settings in AppRecord.policy["rules"]: defaults, validation, the aggregator's tier keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from lifelink.domain.metrics import zone_of
from lifelink.rules.config import RulesConfig, rules_config
from lifelink.rules.engine import AppDirectory, browse_window

from .conftest import MINI, Registry


def test_defaults_everything_off_but_silver_on_follow() -> None:
    c = rules_config(None)
    assert (c.browse_no_order.enabled, c.first_order.enabled, c.come_back.enabled) == (False, False, False)
    assert (c.browse_no_order.hours, c.browse_no_order.window_days, c.come_back.silent_days) == (24, 7, 30)
    assert (c.tiers.tier_on_follow, c.tiers.on_unfollow, c.tiers.card_template_id, c.tiers.confirm_follow) == (
        "silver", "keep", None, False)


@pytest.mark.parametrize("rules", [
    {"browse_no_order": {"enabled": True}},  # no coupon
    {"first_order": {"enabled": True}},  # no message
    {"come_back": {"enabled": True}},  # no gift
    {"come_back": {"activity_id": "A", "message": {"channel": "coupon", "content": {"activity_id": "A"}}}},
    {"first_order": {"message": {"channel": "life_template", "content": {"template_id": "T"}}}},  # no keywords
    {"first_order": {"message": {"channel": "member_card", "content": {}}}},
    {"browse_no_order": {"hours": 0}},
    {"browse_no_order": {"enabeld": True}},  # a typo is refused, not ignored
    {"tiers": {"confirm": True}},
    {"tiers": {"tier_on_follow": "silver member"}},  # a tier name becomes part of a ledger key: no spaces
])
def test_invalid_settings_are_refused(rules: dict) -> None:
    with pytest.raises(ValidationError):
        rules_config({"rules": rules})


def test_the_aggregators_tier_keys_apply_when_rules_have_no_tiers() -> None:
    assert rules_config({"tier_on_follow": "gold"}).tiers.tier_on_follow == "gold"
    assert rules_config({"tier_on_unfollow": None}).tiers.on_unfollow == "keep"
    assert rules_config({"tier_on_unfollow": "none"}).tiers.on_unfollow == "drop"
    assert rules_config({"tier_on_unfollow": "bronze"}).tiers.on_unfollow == "bronze"
    both = rules_config({"tier_on_follow": "gold", "rules": {"tiers": {"tier_on_follow": "platinum"}}})
    assert both.tiers.tier_on_follow == "platinum"


def test_an_invalid_policy_turns_every_rule_off() -> None:
    registry = Registry()
    registry.add(MINI, "mini", {"rules": {"browse_no_order": {"enabled": True}}})
    found = AppDirectory(registry)(MINI)
    assert found is not None and found.rules == RulesConfig.model_validate({"tiers": {"tier_on_follow": None}})


def test_windows_are_calendar_days_in_the_apps_zone() -> None:
    tz = zone_of("Asia/Shanghai")
    late_sunday = datetime(2026, 11, 29, 15, 59, tzinfo=UTC)  # 23:59 Sunday in Shanghai
    monday = datetime(2026, 11, 29, 16, 1, tzinfo=UTC)  # 00:01 Monday in Shanghai
    assert browse_window(late_sunday, tz, 7) == "w20261123"
    assert browse_window(monday, tz, 7) == "w20261130"
    assert browse_window(monday, tz, 1) == "w20261130"
