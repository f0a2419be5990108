"""Participation rules that need no storage: phase windows, vote days, survey validation and summary, ranking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lifelink.domain.campaigns import CampaignState, Survey
from lifelink.domain.messages import Recipient
from lifelink.store.participation import (
    Entry,
    _recipient,
    phase_open,
    rank_entries,
    summarise_answers,
    user_key,
    validate_answers,
    vote_day,
)
from tests.unit.participation.factory import campaign

START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def survey() -> Survey:
    found = campaign(START).action("survey")
    assert found is not None
    return found[1]


def test_a_phase_is_open_only_in_its_state_and_inside_its_window() -> None:
    c = campaign(START)
    inside = START + timedelta(hours=3)
    assert phase_open(c, CampaignState.preheat, "preheat", inside) is None
    assert "state scheduled" in (phase_open(c, CampaignState.scheduled, "preheat", inside) or "")
    assert "state burst" in (phase_open(c, "burst", "preheat", inside) or "")
    assert "opens at" in (phase_open(c, "preheat", "preheat", START - timedelta(seconds=1)) or "")
    assert phase_open(c, "preheat", "preheat", START) is None
    assert "ended at" in (phase_open(c, "preheat", "preheat", c.phases.preheat.end) or "")


def test_vote_days_are_calendar_days_in_shanghai() -> None:
    c = campaign(START)
    # 15:59 UTC is 23:59 in Shanghai; 16:00 UTC is already the next day there.
    assert vote_day(c, datetime(2026, 3, 2, 15, 59, tzinfo=UTC)) == "2026-03-02"
    assert vote_day(c, datetime(2026, 3, 2, 16, 0, tzinfo=UTC)) == "2026-03-03"


def test_valid_answers_have_no_errors() -> None:
    assert validate_answers(survey(), {"overall": 5, "best": "live", "say": "more of this"}) == []
    assert validate_answers(survey(), {"overall": 1}) == []


def test_every_problem_with_an_answer_is_reported_at_once() -> None:
    errors = validate_answers(survey(), {"overall": 6, "best": "music", "say": "x" * 501, "nope": 1})
    by_loc = {tuple(e["loc"]): e["type"] for e in errors}
    assert by_loc == {
        ("body", "answers", "overall"): "rating",
        ("body", "answers", "best"): "choice",
        ("body", "answers", "say"): "text_too_long",
        ("body", "answers", "nope"): "unknown_question",
    }


@pytest.mark.parametrize("value", [0, 6, True, 3.5, "5"])
def test_a_rating_is_a_whole_number_from_one_to_five(value: object) -> None:
    assert [e["type"] for e in validate_answers(survey(), {"overall": value})] == ["rating"]


def test_an_empty_answer_and_an_empty_text_are_refused() -> None:
    assert [e["type"] for e in validate_answers(survey(), {})] == ["missing"]
    assert [e["type"] for e in validate_answers(survey(), {"say": "   "})] == ["text"]
    assert validate_answers(survey(), {"say": "x" * 500}) == []


def test_the_summary_counts_answers_averages_ratings_and_counts_options() -> None:
    summary = summarise_answers(
        survey(),
        [
            {"overall": 5, "best": "live"},
            {"overall": 4, "best": "live", "say": "great"},
            {"overall": 2, "best": "coupons"},
            {"say": "ok"},
        ],
    )
    assert summary.answers == 4
    assert summary.average_rating == {"overall": round(11 / 3, 2)}
    assert summary.option_counts == {"best": {"coupons": 1, "live": 2}}
    assert summary.text_answers == {"say": 2}


def test_a_summary_of_nothing_has_no_average() -> None:
    summary = summarise_answers(survey(), [])
    assert (summary.answers, summary.average_rating["overall"]) == (0, None)


def test_entries_rank_by_votes_then_the_earlier_entry() -> None:
    def entry(entry_id: str, votes: int, at: str) -> Entry:
        return Entry(entry_id, "ugc", f"user-{entry_id}", entry_id, None, at, votes)

    ranked = rank_entries(
        [
            entry("late-three", 3, "2026-03-02T02:00:00.000+00:00"),
            entry("one", 1, "2026-03-02T00:00:00.000+00:00"),
            entry("early-three", 3, "2026-03-02T01:00:00.000+00:00"),
            entry("five", 5, "2026-03-02T03:00:00.000+00:00"),
        ]
    )
    assert [e.entry_id for e in ranked] == ["five", "early-three", "late-three", "one"]


def test_users_are_keyed_by_their_id_and_coupons_go_to_the_right_kind_of_id() -> None:
    assert user_key(Recipient(open_id="abc")) == "abc"
    assert user_key("2088000000000001") == "2088000000000001"
    assert _recipient("2088000000000001") == Recipient(user_id="2088000000000001")
    assert _recipient("074a1Z0hq0IxGtN0Yb0c") == Recipient(open_id="074a1Z0hq0IxGtN0Yb0c")
    # Said explicitly, an open_id that happens to look like a user id stays an open_id.
    assert _recipient(Recipient(open_id="2088000000000001")) == Recipient(open_id="2088000000000001")
