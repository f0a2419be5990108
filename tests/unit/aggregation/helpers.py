"""Building domain events as the queue carries them, SQS batches around them, and API calls for the answers."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from lifelink.api import InternalApi
from lifelink_local.handlers import LambdaContext
from tests.unit.api.conftest import iam_event

SHANGHAI = ZoneInfo("Asia/Shanghai")
LIFE_APP = "2021000000000001"
MINI_APP = "2021000000000002"
_ids = itertools.count(1)


def today() -> date:
    return datetime.now(SHANGHAI).date()


def at(day: date, hh: int = 12, mm: int = 0) -> datetime:
    """``day`` at hh:mm in Shanghai."""
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=SHANGHAI)


def _base(type_: str, when: datetime, user: str, app: str, source: str, event_id: str | None) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": event_id or f"ev-{next(_ids)}",
        "type": type_,
        "app_id": app,
        "source": source,
        "occurred_at": when.isoformat(),
        "received_at": (when + timedelta(seconds=2)).isoformat(),
        "user": {"open_id": user},
    }


def behaviour(type_: str, when: datetime, user: str, *, app: str = MINI_APP, event_id: str | None = None,
              **fields: Any) -> dict[str, Any]:
    return {**_base(type_, when, user, app, "ingest", event_id), **fields}


def session(when: datetime, user: str, scene: str = "1001", token: str | None = None, **kw: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"scene": scene, "page": "pages/index"}
    if token:
        extra["query"] = {"ll": token}
    return behaviour("session_start", when, user, **extra, **kw)


def follow(when: datetime, user: str, followed: bool = True, **kw: Any) -> dict[str, Any]:
    return {**_base("follow" if followed else "unfollow", when, user, LIFE_APP, "life_gateway",
                    kw.get("event_id"))}


def trade(when: datetime, user: str, out_trade_no: str, status: str = "TRADE_SUCCESS", amount: str = "100.00",
          refund: str | None = None, notify_id: str | None = None) -> dict[str, Any]:
    event_type = "order_paid" if status in ("TRADE_SUCCESS", "TRADE_FINISHED") else "order_closed"
    body = {**_base(event_type, when, user, MINI_APP, "trade_notify", None), "out_trade_no": out_trade_no,
            "trade_status": status, "total_amount": amount, "notify_id": notify_id or f"n-{next(_ids)}"}
    if refund is not None:
        body["refund_fee"] = refund
    return body


def sqs_batch(events: list[dict[str, Any]], prefix: str = "m") -> dict[str, Any]:
    """An SQS event for Lambda; message ids follow the event ids so a redelivery has the same ids."""
    return {"Records": [{"messageId": f"{prefix}-{e['event_id']}", "receiptHandle": "r", "body": json.dumps(e),
                         "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events", "awsRegion": "us-east-1"}
                        for e in events]}


def api_get(api: InternalApi, path: str, **params: Any) -> tuple[int, Any]:
    event = iam_event("GET", path)
    query = {k.rstrip("_"): str(v) for k, v in params.items() if v is not None}
    event["rawQueryString"] = urlencode(query)
    if query:
        event["queryStringParameters"] = query
    result = api.handle(event, LambdaContext(function_name="internal_api"))
    raw = result.get("body") or ""
    if result.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    return result["statusCode"], json.loads(raw) if raw else None


def metric(api: InternalApi, name: str, first: date, last: date, **params: Any) -> list[dict[str, Any]]:
    status, body = api_get(api, "/metrics", app=LIFE_APP, metric=name, from_=first.isoformat(),
                           to=last.isoformat(), **params)
    assert status == 200, body
    return list(body["points"])


def utc(when: datetime) -> datetime:
    return when.astimezone(UTC)
