"""The message gateway: the ``outbound`` queue in batches, partial batch responses out.

Thin: records in, lifelink.outbound does the work, ``batchItemFailures`` out (the records that must come
back later; their visibility is already set for backoff or a quiet-hours hold). No Tracer.

One event loop, one pooled ``httpx.AsyncClient`` (lifelink.alipay.transport: at most SEND_CONCURRENCY
connections) and one set of clients per container: an AsyncClient belongs to the loop it first ran on, so
the loop is kept, not re-created per invocation with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from aws_lambda_powertools.logging import Logger

from lifelink.alipay.transport import pooled_async_client
from lifelink.config import GatewaySettings
from lifelink.outbound import OutboundGateway, QueueRecord, SqsJobQueue
from lifelink.store import aws
from lifelink.store.app_keys import AppKeyring
from lifelink.store.apps import AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.counters import Counters
from lifelink.store.events_queue import EventPublisher
from lifelink.store.ledger import Ledger
from lifelink.store.rate_limit import RateLimiter
from lifelink.store.send_state import SendStateReader

logger = Logger(service="message_gateway")
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
_state: tuple[asyncio.AbstractEventLoop, OutboundGateway] | None = None


def _attribution_key(name: str, max_age: int) -> bytes:
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(name, max_age=max_age)
    text = value.decode() if isinstance(value, bytes) else str(value)
    if len(text) < 32:
        raise ValueError(f"attribution key in {name} is shorter than 32 characters")
    return text.encode()


def _build() -> tuple[asyncio.AbstractEventLoop, OutboundGateway]:
    settings = GatewaySettings.from_env()
    loop = asyncio.new_event_loop()
    # boto3 calls run in threads beside the sends: enough of them for every concurrent job.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=settings.send_concurrency * 2 + 4))
    n = settings.send_concurrency
    http = pooled_async_client(n, HTTP_TIMEOUT)
    dynamodb = aws.client("dynamodb")
    keyring = AppKeyring(max_age=settings.secret_max_age)
    gateway = OutboundGateway(
        registry=AppRegistry(dynamodb, settings.state_table),
        secrets=keyring.secret,
        audience=Audience(dynamodb, settings.state_table),
        ledger=Ledger(dynamodb, settings.state_table),
        counters=Counters(dynamodb, settings.state_table),
        rate_limiter=RateLimiter(dynamodb, settings.state_table),
        publisher=EventPublisher(aws.client("sqs"), settings.events_queue_url),
        queue=SqsJobQueue(aws.client("sqs"), settings.outbound_queue_url),
        http=http,
        attribution_key=lambda: _attribution_key(settings.attribution_secret_name, settings.secret_max_age),
        default_gateway_url=settings.alipay_gateway_url,
        concurrency=n,
        logger=logger,
        state_reader=SendStateReader(dynamodb, settings.state_table),
    )
    return loop, gateway


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _state
    if _state is None:
        _state = _build()
    loop, gateway = _state
    records = [QueueRecord.from_lambda(r) for r in event.get("Records") or []]
    report = loop.run_until_complete(gateway.process(records))
    logger.info(
        "batch done",
        extra={
            "records": len(records),
            "sent": report.count("sent"),
            "retry": len(report.batch_item_failures()),
        },
    )
    return report.response()
