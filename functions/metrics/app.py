"""Consumes the `events` queue in batches with partial batch responses (Powertools batch processing).

Today: audience facts and the welcome-on-follow rule (lifelink.reactions). Issue 5 adds metrics.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from lifelink.domain.events import parse_event
from lifelink.reactions import Reactions
from lifelink.store import aws
from lifelink.store.apps import AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.events_queue import EventPublisher

logger = Logger(service="metrics")
processor = BatchProcessor(event_type=EventType.SQS, logger=logger)
_reactions: Reactions | None = None


def _build() -> Reactions:
    import os

    dynamodb = aws.client("dynamodb")
    state = os.environ["STATE_TABLE"]
    return Reactions(
        Audience(dynamodb, state),
        AppRegistry(dynamodb, state),
        EventPublisher(aws.client("sqs"), os.environ["OUTBOUND_QUEUE_URL"]),
        logger=logger,
    )


def record_handler(record: SQSRecord) -> None:
    assert _reactions is not None
    _reactions.handle(parse_event(record.body))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _reactions
    if _reactions is None:
        _reactions = _build()
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
