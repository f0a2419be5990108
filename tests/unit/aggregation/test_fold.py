"""The fold on its own (no I/O): bounded kept ids, refolding, and what a profile contributes to counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lifelink.aggregation.fold import (
    MAX_COUNTED_PER_DAY,
    FoldContext,
    GroupPolicy,
    fold,
    user_counters,
)
from lifelink.domain.events import parse_event
from lifelink.domain.tags import OrderValueThresholds
from lifelink.store.profiles import Profile, profile_from_json, profile_to_json
from tests.unit.aggregation.helpers import LIFE_APP, at, behaviour, session, today, trade

NOW = datetime.now(UTC)


def ctx() -> FoldContext:
    return FoldContext(GroupPolicy(), NOW, OrderValueThresholds(None, None, 0))


def test_page_views_beyond_the_daily_cap_are_not_counted() -> None:
    d = today() - timedelta(days=1)
    views = [parse_event(behaviour("page_view", at(d, 10) + timedelta(seconds=k), "bot", page="p", foreground_s=1.0))
             for k in range(MAX_COUNTED_PER_DAY + 5)]
    p = Profile(LIFE_APP, "bot")
    out = fold(p, views, ctx())
    assert out.plain[("page_views", "p", d.isoformat())] == MAX_COUNTED_PER_DAY
    assert out.over_cap == 5


def test_refolding_the_same_events_after_a_round_trip_through_json_changes_nothing() -> None:
    d = today() - timedelta(days=2)
    events = [parse_event(e) for e in (
        session(at(d, 9), "u"), behaviour("like", at(d, 9, 5), "u", article_id="a1"),
        trade(at(d, 10), "u", "T9", amount="19.90"),
        behaviour("article_progress", at(d, 9, 3), "u", article_id="a1", depth=1.0, dwell_s=20.0, category="tea"),
    )]
    p = Profile(LIFE_APP, "u")
    first = fold(p, events, ctx())
    stored = profile_to_json(p)
    again = profile_from_json(LIFE_APP, "u", 1, stored)
    again.articles = p.articles
    before = user_counters(again, GroupPolicy().tz)
    second = fold(again, events, ctx())

    assert first.plain and not second.plain  # the session is counted once
    assert profile_to_json(again) == stored
    assert user_counters(again, GroupPolicy().tz) == before
    assert p.articles["a1"].facts.likes == 1
    assert before[("paid_cents", d.isoformat())] == 1990
