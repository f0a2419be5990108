from collections import Counter
from decimal import Decimal

import pytest

from lifelink.domain.metrics import (
    PageView,
    Session,
    avg_page_stay_seconds,
    life_traffic_share,
    page_view_counters,
    session_counters,
    to_cents,
)

from .helpers import DAY0, d, sh


def test_life_traffic_share_counts_scene_1020_or_a_valid_token() -> None:
    sessions = [
        Session(sh(d(0), 9), scene="1020"),
        Session(sh(d(0), 10), scene="1011", token_valid=True),
        Session(sh(d(0), 11), scene="1001", token_valid=False),  # a token that did not verify
        Session(sh(d(0), 12), scene="1001"),
        Session(sh(d(0), 0, 0), scene="1020"),  # midnight: day 0
        Session(sh(d(-1), 23, 59), scene="1020"),  # the day before
    ]
    r = life_traffic_share(DAY0, sessions)
    assert (r.numerator, r.denominator, r.value) == (3, 5, 0.6)
    assert life_traffic_share(d(5), sessions).value is None


def test_page_stay_is_capped_at_30_minutes_per_view() -> None:
    views = [
        PageView("p", sh(d(0), 9), 10), PageView("p", sh(d(0), 10), 50), PageView("p", sh(d(0), 11), 7200),
        PageView("q", sh(d(0), 9), 500), PageView("p", sh(d(1), 9), 500),
    ]
    r = avg_page_stay_seconds("p", DAY0, views)
    assert (r.numerator, r.denominator, r.value) == (1860, 3, 620)
    assert avg_page_stay_seconds("p", DAY0, [PageView("p", sh(d(0)), 1800)]).value == 1800


def test_negative_stay_is_refused() -> None:
    with pytest.raises(ValueError):
        avg_page_stay_seconds("p", DAY0, [PageView("p", sh(d(0)), -1)])


def test_session_and_page_counters_match_the_definitions() -> None:
    sessions = [Session(sh(d(0), 9), "1020"), Session(sh(d(0), 10), "1001", True), Session(sh(d(0), 11), "1001"),
                Session(sh(d(1), 0, 1), "1020")]
    total: Counter[tuple[str, ...]] = Counter()
    for s in sessions:
        total.update(session_counters(s))
    r = life_traffic_share(DAY0, sessions)
    key = DAY0.isoformat()
    assert (total[("life_sessions", key)], total[("sessions", key)]) == (r.numerator, r.denominator) == (2, 3)
    views = [PageView("p", sh(d(0), 9), 10), PageView("p", sh(d(0), 10), 4000)]
    pages: Counter[tuple[str, ...]] = Counter()
    for v in views:
        pages.update(page_view_counters(v))
    stay = avg_page_stay_seconds("p", DAY0, views)
    assert (pages[("page_seconds", "p", key)], pages[("page_views", "p", key)]) == (stay.numerator, stay.denominator)


def test_to_cents() -> None:
    assert to_cents("12.30") == 1230
    assert to_cents(Decimal("0.01")) == 1
    assert to_cents(5) == 500
    with pytest.raises(ValueError):
        to_cents("0.001")
