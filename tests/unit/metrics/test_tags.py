from datetime import datetime, timedelta

import pytest

from lifelink.domain.metrics import ArticleFacts, OrderFacts
from lifelink.domain.tags import (
    OrderValueThresholds,
    TagPolicy,
    high_value,
    interest_tags,
    order_value_thresholds,
    percentile,
    price_sensitive,
    silent,
    user_tags,
)

from .helpers import d, sh

NOW = sh(d(60))


def read(article: str, at: datetime, category: str = "tea") -> ArticleFacts:
    return ArticleFacts(article, category).observe_open(at).observe_progress(at, 1.0, 30)


def fav(article: str, at: datetime, category: str = "tea") -> ArticleFacts:
    return ArticleFacts(article, category).observe_reaction("favourite", at)


def order(no: str, at: datetime, cents: int, coupon: bool = False) -> OrderFacts:
    return OrderFacts(no).observe_trade("TRADE_SUCCESS", at, cents).observe_placed(cents, coupon)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([400, 100, 300, 200], 75) == 300
    assert percentile([400, 100, 300, 200], 25) == 100
    assert percentile(list(range(1, 11)), 25) == 3  # rank ⌈2.5⌉ = 3
    assert percentile(list(range(1, 11)), 75) == 8  # rank ⌈7.5⌉ = 8
    assert percentile([7], 75) == 7
    assert percentile([], 75) is None
    with pytest.raises(ValueError):
        percentile([1], 0)


def test_thresholds_use_paid_orders_in_the_window_only() -> None:
    refunded = order("r", days_ago(1), 99_999).observe_trade("TRADE_CLOSED", days_ago(0.5), 99_999, 99_999)
    orders = [order("a", days_ago(1), 100), order("b", days_ago(2), 200), order("c", days_ago(3), 300),
              order("d", days_ago(4), 400), order("old", days_ago(91), 50_000), refunded]
    t = order_value_thresholds(orders, NOW)
    assert (t.p_high, t.p_low, t.orders) == (300, 100, 4)


def test_interest_needs_three_completed_reads_in_30_days() -> None:
    two = [read("a1", days_ago(1)), read("a2", days_ago(2))]
    assert interest_tags(two, NOW) == []
    three = [*two, read("a3", days_ago(29))]
    [tag] = interest_tags(three, NOW)
    assert tag.name == "interest:tea"
    assert tag.evidence["completed_reads"] == ["a1", "a2", "a3"]
    assert tag.expires_at == days_ago(29) + timedelta(days=30)  # the third read leaves the window
    on_the_edge = [*two, read("a3", days_ago(30))]  # exactly 30 days ago is outside
    assert interest_tags(on_the_edge, NOW) == []


def test_interest_from_two_favourites_and_categories_apart() -> None:
    items = [fav("a1", days_ago(3)), fav("a2", days_ago(4)), fav("b1", days_ago(1), "shoes"),
             read("b2", days_ago(1), "shoes"), ArticleFacts("a9", "tea").observe_open(days_ago(1))]
    tags = interest_tags(items, NOW)
    assert [t.name for t in tags] == ["interest:tea"]
    assert tags[0].evidence["favourites"] == ["a1", "a2"]


def test_interest_thresholds_are_per_app() -> None:
    policy = TagPolicy(interest_min_completed_reads=1)
    assert [t.name for t in interest_tags([read("a1", days_ago(1))], NOW, policy)] == ["interest:tea"]


THRESHOLDS = OrderValueThresholds(p_high=5000, p_low=1000, orders=100)


def test_high_value_boundaries() -> None:
    at_p75 = [order("o1", days_ago(1), 4000), order("o2", days_ago(20), 6000)]  # AOV 5000 = p75
    tag = high_value(at_p75, NOW, THRESHOLDS)
    assert tag is not None and tag.evidence["aov_cents"] == 5000
    assert tag.expires_at == days_ago(20) + timedelta(days=30)
    below = [order("o1", days_ago(1), 4000), order("o2", days_ago(20), 5998)]  # AOV 4999
    assert high_value(below, NOW, THRESHOLDS) is None
    one_big = [order("o1", days_ago(1), 90_000)]
    assert high_value(one_big, NOW, THRESHOLDS) is None
    one_old = [order("o1", days_ago(1), 9000), order("o2", days_ago(31), 9000)]
    assert high_value(one_old, NOW, THRESHOLDS) is None
    assert high_value(at_p75, NOW, OrderValueThresholds(None, None, 0)) is None


def test_price_sensitive_by_coupon_share_or_low_value() -> None:
    half = [order("o1", days_ago(1), 3000, coupon=True), order("o2", days_ago(80), 3000)]
    tag = price_sensitive(half, NOW, THRESHOLDS)
    assert tag is not None and tag.evidence["because"] == ["coupons"]
    assert tag.expires_at == days_ago(80) + timedelta(days=90)
    third = [*half, order("o3", days_ago(2), 3000)]
    assert price_sensitive(third, NOW, THRESHOLDS) is None
    cheap = [order("o1", days_ago(1), 900), order("o2", days_ago(2), 1100)]  # AOV 1000 = p25
    tag = price_sensitive(cheap, NOW, THRESHOLDS)
    assert tag is not None and tag.evidence["because"] == ["low_value"]
    assert price_sensitive([], NOW, THRESHOLDS) is None


def test_silent_after_30_days_without_open_read_or_order() -> None:
    known = days_ago(400)
    assert silent(None, None, days_ago(30), known, NOW) is not None
    assert silent(None, None, days_ago(29.9), known, NOW) is None
    assert silent(days_ago(40), days_ago(5), days_ago(50), known, NOW) is None  # a read 5 days ago
    never = silent(None, None, None, days_ago(31), NOW)
    assert never is not None and never.evidence["last_engaged_at"] is None
    assert never.expires_at == NOW + timedelta(days=1)
    assert silent(None, None, None, days_ago(10), NOW) is None
    assert silent(None, None, days_ago(8), known, NOW, TagPolicy(silent_after=timedelta(days=7))) is not None


def test_user_tags_together() -> None:
    arts = [read(f"a{i}", days_ago(i + 1)) for i in range(3)]
    ords = [order("o1", days_ago(1), 8000), order("o2", days_ago(2), 8000)]
    names = {t.name for t in user_tags(arts, ords, last_open_at=days_ago(1), known_since=days_ago(90), now=NOW,
                                       thresholds=THRESHOLDS)}
    assert names == {"interest:tea", "high_value"}
    quiet = user_tags([], [], last_open_at=days_ago(45), known_since=days_ago(90), now=NOW, thresholds=THRESHOLDS)
    assert [t.name for t in quiet] == ["silent"]
