"""`lifelink apps configure --policy`: the message policy and the other sections of an app's policy document."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lifelink.domain.policy import MessagePolicy
from lifelink.rules import rules_config
from lifelink_local.cli import _policy_document


def test_the_rules_tags_and_tiers_are_kept_beside_the_message_policy() -> None:
    given = {
        "rate_per_second": 5,
        "tier_on_follow": "gold",
        "tags": {"silent_after": "P20D"},
        "rules": {"first_order": {"enabled": True, "message": {
            "channel": "life_template", "content": {"template_id": "TPL-GUIDE", "keywords": [{"value": "欢迎"}]}}}},
    }
    stored = _policy_document(given)
    assert MessagePolicy.parse(stored).rate_per_second == 5
    assert (stored["tier_on_follow"], stored["tags"], stored["rules"]) == ("gold", given["tags"], given["rules"])
    assert rules_config(stored).first_order.enabled


@pytest.mark.parametrize(
    "bad", [{"rules": {"browse_no_order": {"enabled": True, "hours": -1}}}, {"tags": {"silent_days": 20}}]
)
def test_a_bad_section_is_refused_before_anything_is_stored(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _policy_document(bad)
