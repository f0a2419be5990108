"""The aggregation's public names in one place (the code lives in :mod:`lifelink.aggregation`).

- :class:`Aggregator` folds a batch of domain events into profiles and sharded counters, exactly once;
- :class:`EventsConsumer` is the `events` queue's batch handler (reactions + aggregation, partial failures);
- :class:`ProfileStore` / :class:`Profile` read a user's facts (rules and the daily scans use them);
- :class:`MetricsStore` / :class:`MetricsReader` read the counters and answer ``GET /metrics``.
"""

from __future__ import annotations

from lifelink.aggregation.aggregator import Aggregator, BatchResult, BatchStats, GroupInfo
from lifelink.aggregation.consumer import EventsConsumer
from lifelink.aggregation.fold import FoldContext, GroupPolicy, fold, user_counters
from lifelink.aggregation.groups import GroupDirectory, ThresholdCache, policy_of
from lifelink.aggregation.queries import MetricQuery, MetricsReader, campaign_uplift, read_profile
from lifelink.aggregation.rollup import roll_up_yesterday
from lifelink.store.metrics_store import MetricsStore
from lifelink.store.profiles import Profile, ProfileStore

__all__ = [
    "Aggregator", "BatchResult", "BatchStats", "EventsConsumer", "FoldContext", "GroupDirectory", "GroupInfo",
    "GroupPolicy", "MetricQuery", "MetricsReader", "MetricsStore", "Profile", "ProfileStore", "ThresholdCache",
    "campaign_uplift", "fold", "policy_of", "read_profile", "roll_up_yesterday", "user_counters",
]
