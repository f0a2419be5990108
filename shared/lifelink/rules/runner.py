"""Entry points for the events consumer and the schedules: build the engine once, run it, publish its jobs.

- :func:`run_on_batch` after a batch of domain events is folded (jobs out; event ids to redeliver back);
- :func:`run_scheduled` for EventBridge Scheduler inputs ``{"kind": "rules_due"}`` (every 15 minutes) and
  ``{"kind": "silence_scan"}`` (daily).
Jobs go to ``OUTBOUND_QUEUE_URL`` with SendMessageBatch (10 per call); markers are marked sent only after.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lifelink.domain.events import DomainEvent
from lifelink.domain.messages import OutboundJob
from lifelink.rules.engine import AppDirectory, FollowCheck, Profiles, Registry, RuleEngine
from lifelink.store.rule_state import RuleState

SQS_BATCH = 10
SCHEDULED_KINDS = ("rules_due", "silence_scan")


class OutboundPublisher:
    """Jobs onto the outbound queue, 10 per SendMessageBatch; entries SQS refuses are retried once, then raise."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url
        self.calls = 0

    def publish(self, jobs: Sequence[OutboundJob]) -> int:
        for start in range(0, len(jobs), SQS_BATCH):
            chunk = jobs[start:start + SQS_BATCH]
            entries = [{"Id": str(i), "MessageBody": job.to_body()} for i, job in enumerate(chunk)]
            for _attempt in range(2):
                self.calls += 1
                answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
                refused = {f["Id"] for f in answer.get("Failed", [])}
                entries = [e for e in entries if e["Id"] in refused]
                if not entries:
                    break
            if entries:
                raise RuntimeError(f"outbound queue refused {len(entries)} rule job(s)")
        return len(jobs)


@dataclass
class RuleDeps:
    """What the rules run on. ``profiles`` (a ProfileStore) is needed by first-order history and the silence scan;
    ``follow_check`` by apps with ``confirm_follow``."""

    dynamodb: Any
    state_table: str
    registry: Registry
    publisher: OutboundPublisher
    profiles: Profiles | None = None
    follow_check: FollowCheck | None = None
    logger: logging.Logger | logging.LoggerAdapter | None = None  # type: ignore[type-arg]
    _engine: RuleEngine | None = field(default=None, repr=False)

    @property
    def engine(self) -> RuleEngine:
        if self._engine is None:
            self._engine = RuleEngine(RuleState(self.dynamodb, self.state_table), AppDirectory(self.registry),
                                      profiles=self.profiles, follow_check=self.follow_check, logger=self.logger)
        return self._engine

    @classmethod
    def from_env(cls, logger: Any = None) -> RuleDeps:
        """STATE_TABLE, OUTBOUND_QUEUE_URL, PROFILES_TABLE (optional), ALIPAY_GATEWAY_URL and
        SECRET_MAX_AGE_SECONDS (follow confirmation; the check is built on first use)."""
        from lifelink.store import aws
        from lifelink.store.apps import AppRegistry
        from lifelink.store.profiles import ProfileStore

        ddb = aws.client("dynamodb")
        state = os.environ["STATE_TABLE"]
        registry = AppRegistry(ddb, state)
        profiles_table = os.environ.get("PROFILES_TABLE")
        return cls(ddb, state, registry, OutboundPublisher(aws.client("sqs"), os.environ["OUTBOUND_QUEUE_URL"]),
                   profiles=ProfileStore(ddb, profiles_table) if profiles_table else None,
                   follow_check=_LazyFollowCheck(registry), logger=logger)


class _LazyFollowCheck:
    """Builds :class:`~lifelink.rules.follow_check.AlipayFollowCheck` the first time a follow needs confirming."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._check: FollowCheck | None = None

    def __call__(self, app_id: str, user: Any) -> bool:
        if self._check is None:
            from lifelink.config import DEFAULT_ALIPAY_GATEWAY_URL
            from lifelink.rules.follow_check import AlipayFollowCheck, powertools_secrets

            self._check = AlipayFollowCheck(
                self._registry, powertools_secrets(int(os.environ.get("SECRET_MAX_AGE_SECONDS", "300"))),
                os.environ.get("ALIPAY_GATEWAY_URL") or DEFAULT_ALIPAY_GATEWAY_URL)
        return self._check(app_id, user)


@dataclass(frozen=True)
class BatchOutcome:
    jobs: int  # jobs queued
    failed_event_ids: list[str]  # events to redeliver (report their SQS message ids)


def _publish(engine: RuleEngine, deps: RuleDeps, jobs: list[OutboundJob]) -> int:
    try:
        deps.publisher.publish(jobs)
    except Exception:
        engine.forget()
        raise
    engine.acknowledge()
    return len(jobs)


def run_on_batch(events: Sequence[DomainEvent], deps: RuleDeps, now: datetime | None = None) -> BatchOutcome:
    """The event-driven rules over one batch. Raises when the jobs cannot be queued (redeliver the batch: every
    step is idempotent); events that failed alone come back in ``failed_event_ids``."""
    engine = deps.engine
    jobs = engine.on_events(events, now or datetime.now(UTC))
    failed = list(engine.failed_events)
    return BatchOutcome(_publish(engine, deps, jobs), failed)


RULE_EVENT_TYPES = frozenset({"product_view", "order_paid", "follow", "unfollow"})


def batch_hook(deps: RuleDeps) -> Callable[[Sequence[tuple[str, DomainEvent]]], list[str]]:
    """For the events consumer: ``hook(records)`` ((SQS message id, event) of the folded records) runs the rules
    and returns the message ids to report as batch item failures (all rule-relevant ones when the jobs could not
    be queued)."""

    def hook(records: Sequence[tuple[str, DomainEvent]]) -> list[str]:
        relevant = [(mid, e) for mid, e in records if e.type in RULE_EVENT_TYPES]
        if not relevant:
            return []
        by_event = {e.event_id: mid for mid, e in relevant}
        try:
            outcome = run_on_batch([e for _, e in relevant], deps)
        except Exception:
            logging.getLogger("lifelink.rules").exception("rule jobs not queued: redelivering")
            return list(dict.fromkeys(mid for mid, _ in relevant))
        return list(dict.fromkeys(by_event[i] for i in outcome.failed_event_ids if i in by_event))

    return hook


def run_scheduled(kind: str, deps: RuleDeps, now: datetime | None = None) -> dict[str, Any]:
    """``rules_due``: fire due browse markers. ``silence_scan``: come-back gifts for every registered app with
    ``come_back`` on (each app published and acknowledged on its own)."""
    now = now or datetime.now(UTC)
    engine = deps.engine
    if kind == "rules_due":
        return {"kind": kind, "jobs": _publish(engine, deps, engine.due(now))}
    if kind == "silence_scan":
        per_app: dict[str, int] = {}
        lister = getattr(deps.registry, "list", None)
        for record in lister() if lister is not None else []:
            per_app[record.app_id] = _publish(engine, deps, engine.silence_scan(record.app_id, now))
        return {"kind": kind, "jobs": sum(per_app.values()), "per_app": per_app}
    raise ValueError(f"unknown rules schedule kind {kind!r} (expected one of {', '.join(SCHEDULED_KINDS)})")
