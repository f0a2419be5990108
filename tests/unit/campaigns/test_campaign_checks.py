from __future__ import annotations

from typing import Any

import pytest

from lifelink.domain.campaign_checks import CampaignInvalid, check_campaign
from tests.unit.campaigns.factory import LIFE, MINI, FakeApp, FakeWorld, definition, edit, iso


def errors_of(d: dict[str, Any], world: FakeWorld | None = None) -> list[dict[str, Any]]:
    with pytest.raises(CampaignInvalid) as caught:
        check_campaign(d, world or FakeWorld())
    return caught.value.errors


def only(d: dict[str, Any], world: FakeWorld | None = None) -> dict[str, Any]:
    errors = errors_of(d, world)
    assert len(errors) == 1, errors
    return errors[0]


ACTIONS = ["phases", "preheat", "actions"]


def test_a_good_definition_passes_and_is_returned_as_a_campaign() -> None:
    campaign = check_campaign(definition(), FakeWorld())
    assert campaign.id == "double-11" and len(campaign.actions()) == 7


def test_pydantic_errors_have_the_field_path_without_the_union_tag() -> None:
    d = edit(definition(), [*ACTIONS, 0, "message", "keywords"], [])
    e = only(d)
    assert e["loc"] == ["phases", "preheat", "actions", 0, "message", "keywords"]
    assert e["type"] == "too_short"


def test_a_phase_that_ends_before_it_starts() -> None:
    d = edit(definition(), ["phases", "burst", "end"], iso(50))
    errors = errors_of(d)
    assert {"loc": ["phases", "burst", "end"], "type": "window_order"} in [
        {"loc": e["loc"], "type": e["type"]} for e in errors
    ]
    assert any("burst ends at 2026-11-11 10:50 (Asia/Shanghai)" in e["msg"] for e in errors)


def test_overlapping_phases_name_both_times_in_local_time() -> None:
    d = edit(definition(), ["phases", "preheat", "end"], iso(70))
    e = only(d)
    assert e["loc"] == ["phases", "burst", "start"] and e["type"] == "phase_overlap"
    assert "burst starts at 2026-11-11 11:00 (Asia/Shanghai), before preheat ends at 2026-11-11 11:10" in e["msg"]


def test_action_at_outside_its_phase() -> None:
    e = only(edit(definition(), [*ACTIONS, 1, "at"], iso(61)))
    assert e["loc"] == [*ACTIONS, 1, "at"] and e["type"] == "action_outside_phase"
    assert "early" in e["msg"] and "outside preheat" in e["msg"]


def test_flash_windows_must_lie_inside_the_burst_and_not_overlap() -> None:
    windows = ["phases", "burst", "actions", 0, "windows"]
    e = only(edit(definition(), [*windows, 1, "end"], iso(125)))
    assert e["loc"] == [*windows, 1, "start"] and e["type"] == "flash_outside_burst"
    e = only(edit(definition(), [*windows, 1, "start"], iso(75)))
    assert e["loc"] == [*windows, 1, "start"] and e["type"] == "flash_overlap"
    assert "before flash window w1 ends" in e["msg"]


def test_action_ids_are_unique_across_phases() -> None:
    e = only(edit(definition(), ["phases", "settle", "actions", 1, "id"], "topic"))
    assert e["loc"] == ["phases", "settle", "actions", 1, "id"] and e["type"] == "duplicate_id"
    assert "phases.preheat.actions.0" in e["msg"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ([*ACTIONS, 1], "coupon"),
        (["phases", "burst", "actions", 1], "reward"),
        (["phases", "settle", "actions", 0], "prize"),
    ],
)
def test_coupons_named_by_actions_must_exist(path: list[Any], field: str) -> None:
    e = only(edit(definition(), [*path, field], "nope"))
    assert e["loc"] == [*path, field] and e["type"] == "unknown_coupon"
    assert "'nope'" in e["msg"] and "early, prize, share" in e["msg"]


def test_life_account_must_be_a_registered_life_account() -> None:
    e = errors_of(definition(life_account="2021009999999999"), FakeWorld(size=5))[0]
    assert e == {"loc": ["life_account"], "type": "unknown_app",
                 "msg": "life account 2021009999999999 is not registered (lifelink apps register)"}
    e = errors_of(definition(life_account=MINI))[0]
    assert e["loc"] == ["life_account"] and e["type"] == "app_kind"


def test_mini_programs_must_be_registered_minis_bound_to_the_life_account() -> None:
    world = FakeWorld()
    world.apps["2021000000000009"] = FakeApp("2021000000000009", "mini", life_account="2021000000000777")
    world.apps["2021000000000008"] = FakeApp("2021000000000008", "life")
    d = definition(mini_programs=[MINI, "2021000000000009", "2021000000000008", "2021000000000007"])
    errors = errors_of(d, world)
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["mini_programs", 1], "not_bound"),
        (["mini_programs", 2], "app_kind"),
        (["mini_programs", 3], "unknown_app"),
    ]
    assert "is bound to 2021000000000777, not to " + LIFE in errors[0]["msg"]


def test_links_must_name_one_of_the_campaigns_mini_programs() -> None:
    e = only(edit(definition(), [*ACTIONS, 0, "link", "mini_program"], "2021000000000444"))
    assert e["loc"] == [*ACTIONS, 0, "link", "mini_program"] and e["type"] == "unknown_mini_program"


def test_unknown_template_when_the_life_account_lists_its_templates() -> None:
    d = edit(definition(), [*ACTIONS, 0, "message", "template_id"], "TPL_OTHER")
    e = only(d)
    assert e["loc"] == [*ACTIONS, 0, "message", "template_id"] and e["type"] == "unknown_template"
    world = FakeWorld()
    world.apps[LIFE] = FakeApp(LIFE, "life", templates=None)  # not listed: not checked
    assert check_campaign(d, world).id == "double-11"


def test_audience_expression_syntax_error_has_the_position() -> None:
    e = only(definition(audience={"expression": "tier:gold or (tag:vip"}))
    assert e["loc"] == ["audience", "expression"] and e["type"] == "audience_syntax"
    assert "character 22" in e["msg"]


def test_an_audience_that_matches_nobody() -> None:
    world = FakeWorld(size=0)
    e = only(definition(audience={"expression": "tier:gold"}), world)
    assert e["loc"] == ["audience"] and e["type"] == "audience_empty"
    assert "'tier:gold'" in e["msg"] and "matches nobody" in e["msg"]
    e = only(definition(audience={"all_followers": False}))
    assert e["type"] == "audience_empty"


def test_every_error_at_once() -> None:
    d = definition(life_account="2021009999999999", audience={"expression": "tier:"})
    d = edit(d, ["phases", "preheat", "end"], iso(70))
    d = edit(d, [*ACTIONS, 1, "coupon"], "nope")
    d = edit(d, ["phases", "settle", "actions", 1, "id"], "topic")
    d = edit(d, [*ACTIONS, 0, "link", "mini_program"], "2021000000000444")
    types = sorted(e["type"] for e in errors_of(d))
    assert types == sorted(["unknown_app", "not_bound", "audience_syntax", "phase_overlap", "unknown_coupon",
                            "duplicate_id", "unknown_mini_program"])


def test_field_errors_and_world_errors_together() -> None:
    d = definition(life_account="2021009999999999", audience={"expression": "tag:a or"})
    d = edit(d, ["phases", "burst", "start"], "not a time")
    errors = errors_of(d)
    assert sorted((e["type"], tuple(e["loc"])) for e in errors) == [
        ("audience_syntax", ("audience", "expression")),
        ("datetime_from_date_parsing", ("phases", "burst", "start")),
        ("not_bound", ("mini_programs", 0)),
        ("unknown_app", ("life_account",)),
    ]


def test_the_audience_is_not_counted_when_the_life_account_is_wrong() -> None:
    world = FakeWorld(size=0)
    errors = errors_of(definition(life_account="2021009999999999"), world)
    assert [e["type"] for e in errors] == ["unknown_app", "not_bound"]
    assert world.asked == []


def test_a_campaign_object_is_checked_like_its_definition() -> None:
    from lifelink.domain.campaigns import Campaign

    good = Campaign.model_validate(definition())
    assert check_campaign(good, FakeWorld()) is good
    bad = Campaign.model_validate(edit(definition(), ["phases", "preheat", "end"], iso(70)))
    with pytest.raises(CampaignInvalid) as caught:
        check_campaign(bad, FakeWorld())
    assert [e["type"] for e in caught.value.errors] == ["phase_overlap"]
