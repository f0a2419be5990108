"""Profile tags (BRIEF §4): pure rules over the facts of lifelink.domain.metrics, each tag with its evidence
(what made it true) and an expiry (when that evidence stops being enough if nothing new happens; the
aggregator recomputes a user's tags on their events and in the daily scan).

- ``interest:<category>``: ≥ 3 completed reads or ≥ 2 favourites of articles in the category in 30 days;
- ``high_value``: ≥ 2 paid orders in 30 days and their average order value ≥ the app's 75th percentile;
- ``price_sensitive``: ≥ 50 % of the paid orders of 90 days used a coupon, or their average ≤ the 25th
  percentile;
- ``silent``: no open, read or order for N days (default 30).

Thresholds are per app (:class:`TagPolicy`). Percentiles are of the app's paid order values (each order once)
by the nearest-rank definition (:func:`percentile`). Windows are rolling (``now`` minus the window).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lifelink.domain.metrics import ArticleFacts, OrderFacts

INTEREST_PREFIX = "interest:"
HIGH_VALUE = "high_value"
PRICE_SENSITIVE = "price_sensitive"
SILENT = "silent"


class TagPolicy(BaseModel):
    """Per-app thresholds (the defaults are BRIEF's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interest_window: timedelta = timedelta(days=30)
    interest_min_completed_reads: int = Field(default=3, ge=1)
    interest_min_favourites: int = Field(default=2, ge=1)
    high_value_window: timedelta = timedelta(days=30)
    high_value_min_orders: int = Field(default=2, ge=1)
    high_value_percentile: float = Field(default=75.0, gt=0, le=100)
    price_window: timedelta = timedelta(days=90)
    price_coupon_share: float = Field(default=0.5, gt=0, le=1)
    price_percentile: float = Field(default=25.0, gt=0, le=100)
    silent_after: timedelta = timedelta(days=30)
    rescan_every: timedelta = timedelta(days=1)  # expiry of tags whose evidence is an absence (silent)
    percentile_window: timedelta = timedelta(days=90)  # orders the app's percentiles are taken over


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    evidence: dict[str, Any]
    assigned_at: datetime
    expires_at: datetime


def percentile(values: Sequence[int], p: float) -> int | None:
    """Nearest-rank percentile: the smallest value such that at least p % of the values are ≤ it
    (rank ⌈p/100 · n⌉ of the sorted values; always one of the values, no interpolation). None when empty."""
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered) - 1e-9))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class OrderValueThresholds:
    """The app's percentiles of paid order values (cents) over ``policy.percentile_window``."""

    p_high: int | None  # default the 75th
    p_low: int | None  # default the 25th
    orders: int  # how many order values they were taken over


def order_value_thresholds(all_orders: Iterable[OrderFacts], now: datetime,
                           policy: TagPolicy | None = None) -> OrderValueThresholds:
    """The app's 75th / 25th percentiles (per policy) of its paid orders' values paid in the percentile window."""
    policy = policy or TagPolicy()
    since = now - policy.percentile_window
    values = [o.amount_cents for o in all_orders if o.paid and o.paid_at is not None and since < o.paid_at <= now]
    return OrderValueThresholds(percentile(values, policy.high_value_percentile),
                                percentile(values, policy.price_percentile), len(values))


def _recent(times: Iterable[datetime | None], since: datetime, now: datetime) -> list[datetime]:
    return sorted((t for t in times if t is not None and since < t <= now), reverse=True)


def interest_tags(articles: Iterable[ArticleFacts], now: datetime, policy: TagPolicy | None = None) -> list[Tag]:
    """``interest:<category>`` for each category with enough completed reads or favourites in the window.
    Evidence: the counting article ids; expiry: when the k-th most recent counting event leaves the window."""
    policy = policy or TagPolicy()
    since = now - policy.interest_window
    by_cat: dict[str, list[ArticleFacts]] = {}
    for a in articles:
        if a.category:
            by_cat.setdefault(a.category, []).append(a)
    tags = []
    for cat, items in sorted(by_cat.items()):
        reads = _recent((a.completed_at for a in items if a.completed), since, now)
        favs = _recent((a.favourited_at for a in items if a.favourites), since, now)
        expiries = []
        if len(reads) >= policy.interest_min_completed_reads:
            expiries.append(reads[policy.interest_min_completed_reads - 1] + policy.interest_window)
        if len(favs) >= policy.interest_min_favourites:
            expiries.append(favs[policy.interest_min_favourites - 1] + policy.interest_window)
        if expiries:
            evidence = {
                "completed_reads": sorted(a.article_id for a in items
                                          if a.completed and a.completed_at and since < a.completed_at <= now),
                "favourites": sorted(a.article_id for a in items
                                     if a.favourites and a.favourited_at and since < a.favourited_at <= now),
                "window_days": policy.interest_window.days,
            }
            tags.append(Tag(f"{INTEREST_PREFIX}{cat}", evidence, now, max(expiries)))
    return tags


def _paid_since(orders: Iterable[OrderFacts], since: datetime, now: datetime) -> list[OrderFacts]:
    out = [o for o in orders if o.paid and o.paid_at is not None and since < o.paid_at <= now]
    out.sort(key=lambda o: o.paid_at or now, reverse=True)
    return out


def high_value(orders: Iterable[OrderFacts], now: datetime, thresholds: OrderValueThresholds,
               policy: TagPolicy | None = None) -> Tag | None:
    """≥ 2 paid orders in 30 days and their average value ≥ the app's 75th percentile. Expiry: when the
    second most recent of them leaves the window."""
    policy = policy or TagPolicy()
    recent = _paid_since(orders, now - policy.high_value_window, now)
    k = policy.high_value_min_orders
    if len(recent) < k or thresholds.p_high is None:
        return None
    aov = sum(o.amount_cents for o in recent) / len(recent)
    if aov < thresholds.p_high:
        return None
    kth = recent[k - 1].paid_at
    assert kth is not None
    evidence = {"orders": [o.out_trade_no for o in recent], "aov_cents": aov, "p_high_cents": thresholds.p_high,
                "percentile": policy.high_value_percentile, "window_days": policy.high_value_window.days}
    return Tag(HIGH_VALUE, evidence, now, kth + policy.high_value_window)


def price_sensitive(orders: Iterable[OrderFacts], now: datetime, thresholds: OrderValueThresholds,
                    policy: TagPolicy | None = None) -> Tag | None:
    """≥ 50 % of the paid orders in 90 days used a coupon, or their average value ≤ the app's 25th percentile.
    No orders, no tag. Expiry: when the oldest of those orders leaves the window (the share or the average
    may change then)."""
    policy = policy or TagPolicy()
    recent = _paid_since(orders, now - policy.price_window, now)
    if not recent:
        return None
    with_coupon = sum(1 for o in recent if o.coupon_used)
    share = with_coupon / len(recent)
    aov = sum(o.amount_cents for o in recent) / len(recent)
    by_coupon = share >= policy.price_coupon_share
    by_value = thresholds.p_low is not None and aov <= thresholds.p_low
    if not (by_coupon or by_value):
        return None
    oldest = recent[-1].paid_at
    assert oldest is not None
    evidence = {"orders": len(recent), "with_coupon": with_coupon, "coupon_share": share, "aov_cents": aov,
                "p_low_cents": thresholds.p_low, "because": [r for r, ok in (("coupons", by_coupon),
                                                                            ("low_value", by_value)) if ok],
                "window_days": policy.price_window.days}
    return Tag(PRICE_SENSITIVE, evidence, now, oldest + policy.price_window)


def silent(last_open_at: datetime | None, last_read_at: datetime | None, last_order_at: datetime | None,
           known_since: datetime, now: datetime, policy: TagPolicy | None = None) -> Tag | None:
    """No open, read or order for ``silent_after`` (30 days by default) up to ``now``. A user we have known for
    that long who never did any of them is silent too. Expiry: the next scan (``rescan_every``)."""
    policy = policy or TagPolicy()
    seen = [t for t in (last_open_at, last_read_at, last_order_at) if t is not None]
    last = max(seen) if seen else None
    since = last if last is not None else known_since
    if now - since < policy.silent_after:
        return None
    evidence = {"last_engaged_at": last.isoformat() if last else None, "known_since": known_since.isoformat(),
                "silent_days": (now - since).days, "after_days": policy.silent_after.days}
    return Tag(SILENT, evidence, now, now + policy.rescan_every)


def user_tags(articles: Iterable[ArticleFacts], orders: Iterable[OrderFacts], *, last_open_at: datetime | None,
              known_since: datetime, now: datetime, thresholds: OrderValueThresholds,
              policy: TagPolicy | None = None) -> list[Tag]:
    """Every tag of one user. ``last_open_at`` is their last session start; reads and orders come from the facts."""
    policy = policy or TagPolicy()
    arts = list(articles)
    ords = list(orders)
    last_read = max((a.last_read_at for a in arts if a.last_read_at is not None), default=None)
    last_order = max((o.paid_at for o in ords if o.paid_at is not None), default=None)
    tags = interest_tags(arts, now, policy)
    for tag in (high_value(ords, now, thresholds, policy), price_sensitive(ords, now, thresholds, policy),
                silent(last_open_at, last_read, last_order, known_since, now, policy)):
        if tag is not None:
            tags.append(tag)
    return tags
