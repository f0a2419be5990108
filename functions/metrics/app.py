"""Consumes the `events` queue a whole batch at a time (partial batch responses): the per-event reactions
(audience facts, welcome jobs), the aggregation into profiles and counters (lifelink.aggregation), then the
automation rules on what was folded (lifelink.rules). Scheduled inputs: {"kind": "rollup"} (daily: yesterday's
counters rolled up), {"kind": "rules_due"} (every 15 minutes: browsed-not-ordered coupons that came due) and
{"kind": "silence_scan"} (daily: come-back gifts).
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
from lifelink.rules import RuleDeps, batch_hook, run_scheduled
from lifelink.store import aws
from lifelink.store.apps import AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.events_queue import EventPublisher
from lifelink.store.metrics_store import MetricsStore

logger = Logger(service="metrics")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "lifelink"), service="metrics")
_consumer: EventsConsumer | None = None
_rules: RuleDeps | None = None


def _rules_deps() -> RuleDeps:
    global _rules
    if _rules is None:
        _rules = RuleDeps.from_env(logger=logger)
    return _rules


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
    return EventsConsumer(aggregator, reactions, metrics=metrics, logger=logger, after_fold=batch_hook(_rules_deps()))


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
    if event.get("kind") in ("rules_due", "silence_scan"):
        return run_scheduled(event["kind"], _rules_deps())
    if _consumer is None:
        _consumer = _build()
    return _consumer.handle(event)
