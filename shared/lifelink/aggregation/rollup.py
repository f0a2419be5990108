"""The daily rollup (EventBridge Scheduler, once a day): for every app group, yesterday's counters (in the group's
zone) summed over their shards into one item per (group, day).

What it buys: a closed day is one item instead of SHARDS items per counter, so reports over months read one
Query per group; and it is a dated snapshot (``rolled_at``): a later difference between the live counters and
the rollup is exactly what late events and refunds changed since. Running it again for the same day overwrites
the item with the current sums (harmless; it also picks up late events).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta

from lifelink.aggregation.aggregator import GroupInfo
from lifelink.store.metrics_store import MetricsStore

# Counters keyed by day (see lifelink.domain.metrics and lifelink.aggregation.fold).
DAY_COUNTERS = (
    "cohort", "returned_7d", "on", "gained", "lost", "sessions", "life_sessions", "page_views", "page_seconds",
    "orders_30d", "buyers_30d", "repeat_buyers_30d", "paid_orders", "paid_cents", "order_value",
    "attributed_orders", "attributed_cents", "jumpers", "converted", "treated", "treated_converted",
    "coupons_issued", "coupons_redeemed",
)


def roll_up_yesterday(store: MetricsStore, app_ids: Iterable[str], directory: Callable[[str], GroupInfo],
                      now: datetime | None = None) -> dict[str, tuple[date, int]]:
    """Roll up yesterday for each group of ``app_ids``; returns group → (day, counters rolled)."""
    now = now or datetime.now(UTC)
    done: dict[str, tuple[date, int]] = {}
    for app_id in app_ids:
        info = directory(app_id)
        if info.group in done:
            continue
        day = now.astimezone(info.policy.tz).date() - timedelta(days=1)
        done[info.group] = (day, store.roll_up(info.group, day, DAY_COUNTERS, now))
    return done
