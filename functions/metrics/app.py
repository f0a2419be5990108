"""Consumes the `events` queue a whole batch at a time (partial batch responses): the per-event reactions
(audience facts, welcome jobs) and the aggregation into profiles and counters (lifelink.aggregation). The
daily schedule ({"kind": "rollup"}) rolls yesterday's counters up.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import Metrics

from lifelink.aggregation.aggregator import Aggregator
from lifelink.aggregation.consumer import EventsConsumer
from lifelink.aggregation.groups import GroupDirectory, ThresholdCache
from lifelink.reactions import Reactions
from lifelink.store import aws
from lifelink.store.apps import AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.events_queue import EventPublisher
from lifelink.store.metrics_store import MetricsStore

logger = Logger(service="metrics")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "lifelink"), service="metrics")
_consumer: EventsConsumer | None = None


def _attribution_keys() -> tuple[bytes, ...]:
    name = os.environ.get("ATTRIBUTION_SECRET_NAME")
    if not name:
        return ()
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(name, max_age=int(os.environ.get("SECRET_MAX_AGE_SECONDS", "300")))
    text = value.decode() if isinstance(value, bytes) else str(value)
    return (text.encode(),)


def _build() -> EventsConsumer:
    dynamodb = aws.client("dynamodb")
    state = os.environ["STATE_TABLE"]
    registry = AppRegistry(dynamodb, state)
    directory = GroupDirectory(registry)
    store = MetricsStore(dynamodb, os.environ["METRICS_TABLE"])
    aggregator = Aggregator(
        dynamodb,
        os.environ["PROFILES_TABLE"],
        os.environ["METRICS_TABLE"],
        directory,
        state_table=state,
        attribution_keys=_attribution_keys,
        thresholds=ThresholdCache(store, directory),
    )
    reactions = Reactions(
        Audience(dynamodb, state),
        registry,
        EventPublisher(aws.client("sqs"), os.environ["OUTBOUND_QUEUE_URL"]),
        logger=logger,
    )
    return EventsConsumer(aggregator, reactions, metrics=metrics, logger=logger)


def _rollup() -> dict[str, Any]:
    from lifelink.aggregation.rollup import roll_up_yesterday

    dynamodb = aws.client("dynamodb")
    registry = AppRegistry(dynamodb, os.environ["STATE_TABLE"])
    done = roll_up_yesterday(MetricsStore(dynamodb, os.environ["METRICS_TABLE"]),
                             [r.app_id for r in registry.list()], GroupDirectory(registry))
    return {"rolled_up": {group: {"day": day.isoformat(), "counters": n} for group, (day, n) in done.items()}}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _consumer
    if event.get("kind") == "rollup":
        return _rollup()
    if _consumer is None:
        _consumer = _build()
    return _consumer.handle(event)
