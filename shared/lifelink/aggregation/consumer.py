"""The `events` queue consumer, batch at a time: parse every record, run the per-event reactions (audience facts,
welcome jobs: lifelink.reactions), then fold the whole batch at once (lifelink.aggregation.aggregator) and answer
with partial batch failures. A record that does not parse, whose reaction raised, or whose user's write failed
is reported; the rest are acknowledged. Refolding a redelivered record is harmless, and reactions are idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lifelink.aggregation.aggregator import Aggregator, BatchStats
from lifelink.domain.events import DomainEvent, parse_event


class Reacting(Protocol):
    def handle(self, event: DomainEvent) -> None: ...


class MetricsSink(Protocol):
    def add_metric(self, name: str, unit: Any, value: float) -> None: ...


def report_stats(stats: BatchStats, sink: MetricsSink | None) -> None:
    """EMF figures: events folded, write requests, items and counters written, conflicts, per-type counts."""
    if sink is None:
        return
    from aws_lambda_powertools.metrics import MetricUnit

    for name, value in (("EventsFolded", stats.folded), ("Users", stats.groups),
                        ("WriteRequests", stats.write_requests), ("ItemsWritten", stats.items_written),
                        ("CounterUpdates", stats.counter_updates), ("VersionConflicts", stats.conflicts),
                        ("EventsTooLate", stats.too_late), ("EventsOverCap", stats.over_cap),
                        ("EventsWithoutUser", stats.skipped)):
        sink.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for event_type, n in stats.per_type.items():
        sink.add_metric(name=f"Events_{event_type}", unit=MetricUnit.Count, value=n)


class EventsConsumer:
    def __init__(self, aggregator: Aggregator, reactions: Reacting | None = None, *,
                 metrics: MetricsSink | None = None, logger: logging.Logger | Any | None = None,
                 parse: Callable[[str], DomainEvent] = parse_event,
                 after_fold: Callable[[Sequence[tuple[str, DomainEvent]]], list[str]] | None = None) -> None:
        """``after_fold`` (the automation rules) sees the records whose fold was written and names those to
        redeliver."""
        self.aggregator = aggregator
        self._after_fold = after_fold
        self._reactions = reactions
        self._metrics = metrics
        self._log = logger or logging.getLogger("lifelink.aggregation")
        self._parse = parse

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        records = event.get("Records") or []
        failed: list[str] = []
        parsed: list[tuple[str, DomainEvent]] = []
        for record in records:
            message_id = record["messageId"]
            try:
                domain_event = self._parse(record["body"])
            except Exception:
                self._log.exception("unparseable event", extra={"message_id": message_id})
                failed.append(message_id)
                continue
            if self._reactions is not None:
                try:
                    self._reactions.handle(domain_event)
                except Exception:
                    self._log.exception("reaction failed", extra={"message_id": message_id})
                    failed.append(message_id)
                    continue
            parsed.append((message_id, domain_event))
        result = self.aggregator.fold_batch(parsed)
        report_stats(result.stats, self._metrics)
        if result.failed:
            self._log.warning("users not written, redelivering", extra={"records": len(result.failed)})
        failed += sorted(result.failed)
        if self._after_fold is not None:
            failed += self._after_fold([(mid, e) for mid, e in parsed if mid not in result.failed])
        return {"batchItemFailures": [{"itemIdentifier": mid} for mid in dict.fromkeys(failed)]}
