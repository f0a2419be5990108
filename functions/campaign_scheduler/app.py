"""Campaign boundaries and the reconciler, delivered by EventBridge Scheduler as raw input.

    {"kind": "boundary", "campaign_id": ..., "boundary": "burst_start", "scheduled_at": "...+08:00"}
    {"kind": "reconcile"}

Thin: lifelink.campaign_runner.CampaignRunner does the work (guarded transitions, actions fired once). A boundary
delivery is also made idempotent with Powertools on (campaign_id, boundary, scheduled_at) when IDEMPOTENCY_TABLE is
set, which saves a redelivery its reads; correctness never depends on it (the runner's writes are conditional).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.logging import Logger

logger = Logger(service="campaign_scheduler")
_run: tuple[Any, Callable[..., Any] | None] | None = None
IDEMPOTENCY_SECONDS = 24 * 3600


def event_time(event: dict[str, Any]) -> datetime:
    """The runner's "now": the clock, but never before a boundary's scheduled time (Scheduler may deliver a few
    milliseconds before this container's clock reaches it; the boundary is due all the same)."""
    now = datetime.now(UTC)
    scheduled = event.get("scheduled_at") if event.get("kind") == "boundary" else None
    if isinstance(scheduled, str):
        try:
            at = datetime.fromisoformat(scheduled)
        except ValueError:
            return now
        if at.tzinfo is not None and at > now:
            return at.astimezone(UTC)
    return now


def _build() -> tuple[Any, Callable[..., Any] | None]:
    from lifelink.campaign_runner import CampaignRunner
    from lifelink.scheduling import CampaignSchedules
    from lifelink.store import aws

    schedules = CampaignSchedules(
        aws.client("scheduler"), os.environ.get("SCHEDULER_TARGET_ARN", ""), os.environ.get("SCHEDULER_ROLE_ARN", "")
    )
    runner = CampaignRunner.from_env(on_finished=schedules.remove, logger=logger)
    once = None
    table = os.environ.get("IDEMPOTENCY_TABLE")
    if table:
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        config = IdempotencyConfig(
            event_key_jmespath="[campaign_id, boundary, scheduled_at]",
            expires_after_seconds=IDEMPOTENCY_SECONDS,
            raise_on_no_idempotency_key=True,
        )

        def handle_boundary(boundary: dict[str, Any]) -> Any:
            return _jsonable(runner.handle(boundary, event_time(boundary)))

        once = idempotent_function(
            data_keyword_argument="boundary",
            persistence_store=DynamoDBPersistenceLayer(table_name=table, boto3_client=aws.client("dynamodb")),
            config=config,
        )(handle_boundary)
        once.config = config  # type: ignore[attr-defined]
    return runner, once


def _jsonable(result: Any) -> Any:
    """What the runner returned, as JSON-able data (a dataclass or pydantic model is turned into a dict)."""
    if result is None or isinstance(result, str | int | float | bool | list | dict):
        return result
    if hasattr(result, "model_dump"):
        return result.model_dump(mode="json")
    import dataclasses

    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {k: _jsonable(v) if not isinstance(v, datetime) else v.isoformat()
                for k, v in dataclasses.asdict(result).items()}
    return str(result)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> Any:
    global _run
    if _run is None:
        _run = _build()
    runner, once = _run
    kind = event.get("kind") if isinstance(event, dict) else None
    logger.append_keys(kind=kind, campaign_id=event.get("campaign_id") if isinstance(event, dict) else None)
    if kind == "boundary" and once is not None:
        once.config.register_lambda_context(context)  # type: ignore[attr-defined]
        return once(boundary=event)
    return _jsonable(runner.handle(event, event_time(event) if isinstance(event, dict) else datetime.now(UTC)))
