"""Alipay callbacks over HTTP API: POST /alipay/gateway and POST /alipay/notify.

Thin: turn the API Gateway event into bytes, let lifelink.webhook do the work, shape the answer.
Imports no httpx and no Tracer; clients and keys are created once per container.
"""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools.logging import Logger

from lifelink.config import Settings
from lifelink.store import aws
from lifelink.store.app_keys import AppKeyring
from lifelink.store.apps import AppRegistry
from lifelink.store.dedupe import Deduper
from lifelink.store.events_queue import EventPublisher
from lifelink.webhook import Reply, WebhookService

logger = Logger(service="webhook")
_service: tuple[WebhookService, Deduper] | None = None


def _build() -> tuple[WebhookService, Deduper]:
    settings = Settings.from_env()
    dynamodb = aws.client("dynamodb")
    deduper = Deduper(settings.idempotency_table, dynamodb=dynamodb)
    service = WebhookService(
        AppRegistry(dynamodb, settings.state_table),
        AppKeyring(max_age=settings.secret_max_age),
        EventPublisher(aws.client("sqs"), settings.events_queue_url),
        deduper,
        logger=logger,
    )
    return service, deduper


def _body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode("utf-8")


def _response(reply: Reply) -> dict[str, Any]:
    return {
        "statusCode": reply.status,
        "headers": {"content-type": reply.content_type},
        "body": base64.b64encode(reply.body).decode("ascii"),
        "isBase64Encoded": True,
    }


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _service
    if _service is None:
        _service = _build()
    service, deduper = _service
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        deduper.config.register_lambda_context(context)
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    return _response(service.handle(_body(event), headers.get("content-type")))
