"""What the aggregator needs to know about apps, looked up once per container and refreshed now and then:
an app's group (the life account a mini program is bound to; otherwise itself) with the group's policy, and the
group's order-value percentiles for the value tags."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from lifelink.aggregation.aggregator import GroupInfo
from lifelink.aggregation.fold import GroupPolicy
from lifelink.domain.metrics import DEFAULT_TZ, zone_of
from lifelink.domain.tags import OrderValueThresholds, TagPolicy, percentile
from lifelink.store.apps import AppRecord
from lifelink.store.metrics_store import MetricsStore

CACHE_SECONDS = 300.0


class Registry(Protocol):
    def get(self, app_id: str) -> AppRecord | None: ...


def policy_of(record: AppRecord | None) -> GroupPolicy:
    """The group's zone (policy ``timezone``), tier settings (``tier_on_follow``, default silver;
    ``tier_on_unfollow``, default keep) and tag thresholds (``tags``: TagPolicy fields) from AppRecord.policy."""
    policy: dict[str, Any] = (record.policy or {}) if record else {}
    tags = TagPolicy.model_validate(policy["tags"]) if isinstance(policy.get("tags"), dict) else TagPolicy()
    return GroupPolicy(
        tz=zone_of(str(policy.get("timezone") or DEFAULT_TZ)),
        tier_on_follow=policy.get("tier_on_follow", "silver"),
        tier_on_unfollow=policy.get("tier_on_unfollow"),
        tags=tags,
    )


class GroupDirectory:
    """``app_id`` → :class:`GroupInfo` through the app registry, cached for :data:`CACHE_SECONDS`."""

    def __init__(self, registry: Registry, ttl: float = CACHE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._ttl = ttl
        self._now = monotonic
        self._cache: dict[str, tuple[float, GroupInfo]] = {}

    def __call__(self, app_id: str) -> GroupInfo:
        hit = self._cache.get(app_id)
        if hit is not None and self._now() - hit[0] < self._ttl:
            return hit[1]
        record = self._registry.get(app_id)
        group = record.life_account if record is not None and record.life_account else app_id
        owner = record if group == app_id else self._registry.get(group)
        info = GroupInfo(group, frozenset({app_id, group}), policy_of(owner or record))
        self._cache[app_id] = (self._now(), info)
        return info


def thresholds_from_counters(values: dict[str, float | int], policy: TagPolicy) -> OrderValueThresholds:
    """Percentiles from ``order_value`` counters (sk ``<day>#<amount cents>`` → number of paid orders)."""
    amounts: list[int] = []
    for sk, n in values.items():
        amount = int(sk.rsplit("#", 1)[1])
        amounts += [amount] * int(n)
    return OrderValueThresholds(percentile(amounts, policy.high_value_percentile),
                                percentile(amounts, policy.price_percentile), len(amounts))


class ThresholdCache:
    """A group's order-value percentiles over the percentile window, from the metrics table, cached an hour."""

    def __init__(self, store: MetricsStore, directory: Callable[[str], GroupInfo], ttl: float = 3600.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._directory = directory
        self._ttl = ttl
        self._clock = clock
        self._now = monotonic
        self._cache: dict[str, tuple[float, OrderValueThresholds]] = {}

    def __call__(self, group: str) -> OrderValueThresholds:
        hit = self._cache.get(group)
        if hit is not None and self._now() - hit[0] < self._ttl:
            return hit[1]
        policy = self._directory(group).policy
        today: date = self._clock().astimezone(policy.tz).date()
        first = today - (policy.tags.percentile_window - timedelta(days=1))
        values = self._store.counters(group, "order_value", first.isoformat(), today.isoformat())
        found = thresholds_from_counters(values, policy.tags)
        self._cache[group] = (self._now(), found)
        return found
