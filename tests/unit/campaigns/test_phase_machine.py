from __future__ import annotations

from lifelink.domain.campaigns import CampaignState
from lifelink.domain.phases import can_transition, due, next_step, timeline
from tests.unit.campaigns.factory import at, campaign

ALL_FIRED = {"preheat.topic", "preheat.early", "burst.flash", "burst.share", "burst.ugc", "settle.draw",
             "settle.survey"}


def keys(steps: list) -> list[str]:
    return [s.key for s in steps]


def test_timeline_enters_a_phase_before_its_actions_and_closes_last() -> None:
    assert keys(timeline(campaign())) == [
        "enter:preheat", "fire:preheat.topic", "fire:preheat.early",
        "enter:burst", "fire:burst.flash", "fire:burst.share", "fire:burst.ugc",
        "enter:settle", "fire:settle.draw", "fire:settle.survey", "close",
    ]


def test_nothing_is_due_before_the_start() -> None:
    assert due(campaign(), CampaignState.scheduled, set(), at(-1)) == []


def test_due_at_the_start_enters_preheat_and_fires_its_first_action() -> None:
    assert keys(due(campaign(), "scheduled", set(), at(0))) == ["enter:preheat", "fire:preheat.topic"]


def test_done_steps_are_not_due_again() -> None:
    assert keys(due(campaign(), "preheat", {"preheat.topic"}, at(5))) == []
    assert keys(due(campaign(), "preheat", {"preheat.topic"}, at(10))) == ["fire:preheat.early"]


def test_late_run_catches_up_every_step_in_order() -> None:
    assert keys(due(campaign(), "scheduled", set(), at(500))) == keys(timeline(campaign()))
    assert keys(due(campaign(), "burst", {"preheat.topic"}, at(70))) == [
        "fire:preheat.early", "fire:burst.flash", "fire:burst.share",
    ]


def test_paused_draft_cancelled_and_closed_have_nothing_due() -> None:
    for state in ("paused", "draft", "cancelled", "closed"):
        assert due(campaign(), state, set(), at(500)) == []


def test_closing_is_due_after_everything_fired() -> None:
    assert keys(due(campaign(), "settle", ALL_FIRED, at(180))) == ["close"]
    assert keys(due(campaign(), "settle", ALL_FIRED, at(179))) == []


def test_next_step_is_the_first_not_yet_due() -> None:
    step = next_step(campaign(), "preheat", {"preheat.topic"}, at(5))
    assert step is not None and (step.key, step.at) == ("fire:preheat.early", at(10))
    assert next_step(campaign(), "closed", ALL_FIRED, at(500)) is None


def test_transitions() -> None:
    assert can_transition("draft", "scheduled")
    assert can_transition("scheduled", "preheat")
    assert can_transition("preheat", "settle")  # catching up skips nothing by itself: due() orders steps
    assert not can_transition("burst", "preheat")
    assert not can_transition("draft", "preheat")
    assert can_transition("burst", "paused") and can_transition("paused", "burst")
    assert not can_transition("draft", "paused")
    assert can_transition("paused", "cancelled") and can_transition("draft", "cancelled")
    assert not can_transition("closed", "cancelled") and not can_transition("cancelled", "scheduled")
    assert can_transition("settle", "closed") and not can_transition("scheduled", "closed")
