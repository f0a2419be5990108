"""POST /events through InternalApi.handle with API Gateway payload-2.0 events: on in-process moto (template.yaml
provisioned by the `aws` fixture) and once on moto's server over real HTTP. What lands on the events queue is
read back with parse_event, as the metrics consumer reads it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from lifelink.api import ApiDeps, InternalApi
from lifelink.domain.behaviour import derive_event_id
from lifelink.domain.events import parse_event
from lifelink.store import aws as aws_clients
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink_local.handlers import LambdaContext
from lifelink_local.provision import Provisioned, provision
from tests.unit.api.conftest import iam_event

LIFE_APP = "2021000000000001"
MINI_APP = "2021000000000002"
REGION = "us-east-1"


def post(api: InternalApi, payload: Any) -> tuple[int, Any]:
    body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    result = api.handle(iam_event("POST", "/events", body), LambdaContext(function_name="internal_api"))
    raw = result.get("body") or ""
    if result.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    return result["statusCode"], json.loads(raw) if raw else None


def drain(queue_url: str) -> list[str]:
    sqs, out = boto3.client("sqs"), []
    while msgs := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
        "Messages", []
    ):
        out.extend(m["Body"] for m in msgs)
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in msgs]
        )
    return out


def user(i: int) -> dict[str, str]:
    return {"open_id": f"open-{i:04d}"}


def valid_item(i: int, now: datetime) -> dict[str, Any]:
    """Ten kinds in turn, ten seconds apart; every third carries its own event_id."""
    at = (now - timedelta(hours=2) + timedelta(seconds=10 * i)).isoformat()
    kinds: list[dict[str, Any]] = [
        {"type": "session_start", "scene": "1020", "query": {"ll": f"1tok{i}.mac"}},
        {"type": "page_view", "page": "pages/index/index", "foreground_s": i % 60},
        {"type": "article_open", "article_id": f"a-{i}", "category": "tea"},
        {"type": "article_progress", "article_id": f"a-{i}", "depth": 0.5, "dwell_s": 20},
        {"type": "like", "article_id": f"a-{i}"},
        {"type": "comment", "article_id": f"a-{i}"},
        {"type": "share", "product_id": f"sku-{i}"},
        {"type": "favourite", "article_id": f"a-{i}"},
        {"type": "product_view", "product_id": f"sku-{i}", "price_cents": 990},
        {"type": "order_placed", "out_trade_no": f"T{i:06d}", "amount_cents": 1990, "coupon_used": i % 2 == 0},
    ]
    item = {**kinds[i % 10], "occurred_at": at, "user": user(i)}
    if i % 3 == 0:
        item["event_id"] = f"mp-{i}"
    return item


def expected_id(item: dict[str, Any]) -> str:
    """The id the API must derive, computed here from the item's own fields (the contract's recipe)."""
    if "event_id" in item:
        return str(item["event_id"])
    fields = {k: v for k, v in item.items() if k not in ("type", "occurred_at", "user", "event_id")}
    defaults: dict[str, dict[str, Any]] = {
        "session_start": {"page": None, "attribution_token": item.get("query", {}).get("ll")},
        "article_open": {},
        "article_progress": {"category": None},
        "like": {"product_id": None, "category": None},
        "comment": {"product_id": None, "category": None},
        "share": {"article_id": None, "category": None},
        "favourite": {"product_id": None, "category": None},
    }
    fields = {**defaults.get(item["type"], {}), **fields}
    if item["type"] == "page_view":
        fields["foreground_s"] = float(fields["foreground_s"])
    if item["type"] == "article_progress":
        fields["dwell_s"] = float(fields["dwell_s"])
    occurred = datetime.fromisoformat(item["occurred_at"])
    return derive_event_id(MINI_APP, item["user"]["open_id"], item["type"], occurred, fields)


# ---- in-process moto ----------------------------------------------------------------------------------------------


@pytest.fixture
def api(aws: Provisioned, monkeypatch: pytest.MonkeyPatch) -> InternalApi:
    for k, v in aws.function_environment("InternalApiFunction").items():
        monkeypatch.setenv(k, v)
    registry = AppRegistry(boto3.client("dynamodb"), aws.tables["StateTable"], boto3.client("secretsmanager"))
    secret = {"app_private_key": "unused", "alipay_public_key": "unused"}
    registry.register(AppRecord(app_id=LIFE_APP, kind="life", secret_name=f"lifelink/apps/{LIFE_APP}"), secret)
    registry.register(
        AppRecord(app_id=MINI_APP, kind="mini", secret_name=f"lifelink/apps/{MINI_APP}", life_account=LIFE_APP),
        secret,
    )
    deps = ApiDeps.from_env()
    assert deps.events_queue_url == aws.queues["EventsQueue"]  # template.yaml gives the function the queue
    return InternalApi(deps)


def test_a_valid_batch_lands_on_the_events_queue_one_event_per_message(api: InternalApi, aws: Provisioned) -> None:
    now = datetime.now(UTC)
    items = [valid_item(i, now) for i in range(23)]

    status, answer = post(api, {"app_id": MINI_APP, "events": items})

    assert status == 202, answer
    assert answer == {"accepted": 23, "rejected": []}
    events = [parse_event(body) for body in drain(aws.queues["EventsQueue"])]
    assert sorted(e.event_id for e in events) == sorted(expected_id(i) for i in items)
    assert {e.app_id for e in events} == {MINI_APP}
    assert {e.source for e in events} == {"ingest"}
    assert sorted(e.type for e in events) == sorted(i["type"] for i in items)
    sessions = [e for e in events if e.type == "session_start"]
    assert sorted(e.attribution_token for e in sessions) == sorted(f"1tok{i}.mac" for i in range(0, 23, 10))  # type: ignore[union-attr]
    assert drain(aws.queues["OutboundQueue"]) == []


def test_a_retried_batch_yields_the_same_ids(api: InternalApi, aws: Provisioned) -> None:
    now = datetime.now(UTC)
    batch = {"app_id": MINI_APP, "events": [valid_item(i, now) for i in range(1, 12)]}
    assert post(api, batch)[0] == 202
    first = sorted(parse_event(b).event_id for b in drain(aws.queues["EventsQueue"]))
    assert post(api, batch)[0] == 202
    second = sorted(parse_event(b).event_id for b in drain(aws.queues["EventsQueue"]))
    assert first == second and len(set(first)) == 11


def test_500_items_with_invalid_ones_reports_each_by_index(api: InternalApi, aws: Provisioned) -> None:
    now = datetime.now(UTC)
    items: list[Any] = [valid_item(i, now) for i in range(500)]
    items[11] = {**items[11], "foreground_s": -3, "page": "has space"}  # page_view: two problems
    items[42] = {k: v for k, v in items[42].items() if k != "user"}
    items[99] = {**items[99], "type": "teleport"}
    items[250] = "not an object"
    items[311] = {**items[311], "occurred_at": "2026-01-01T10:00:00"}  # no zone
    items[499] = {**items[499], "occurred_at": (now + timedelta(days=1)).isoformat()}
    items[123] = {**items[123], "app_id": LIFE_APP}  # the batch names the app
    invalid = {11, 42, 99, 123, 250, 311, 499}

    status, answer = post(api, {"app_id": MINI_APP, "events": items})

    assert status == 202
    assert answer["accepted"] == 500 - len(invalid)
    reasons = {r["index"]: {(tuple(e["loc"]), e["type"]) for e in r["errors"]} for r in answer["rejected"]}
    assert reasons == {
        11: {(("foreground_s",), "greater_than_equal"), (("page",), "string_pattern_mismatch")},
        42: {(("user",), "missing")},
        99: {(("type",), "union_tag_invalid")},
        123: {(("app_id",), "extra_forbidden")},
        250: {((), "dict_type")},
        311: {(("occurred_at",), "timezone_aware")},
        499: {(("occurred_at",), "out_of_window")},
    }
    assert [r["index"] for r in answer["rejected"]] == sorted(invalid)
    assert all(r["errors"] and all(e["msg"] for e in r["errors"]) for r in answer["rejected"])
    landed = [parse_event(body) for body in drain(aws.queues["EventsQueue"])]
    assert len(landed) == 500 - len(invalid)
    assert sorted(e.event_id for e in landed) == sorted(expected_id(items[i]) for i in range(500) if i not in invalid)


def test_501_items_is_422_and_nothing_is_queued(api: InternalApi, aws: Provisioned) -> None:
    now = datetime.now(UTC)
    status, answer = post(api, {"app_id": MINI_APP, "events": [valid_item(i % 500, now) for i in range(501)]})
    assert status == 422
    assert [(e["loc"], e["type"]) for e in answer["errors"]] == [(["body", "events"], "too_long")]
    assert drain(aws.queues["EventsQueue"]) == []


def test_invalid_envelopes_are_422(api: InternalApi, aws: Provisioned) -> None:
    now = datetime.now(UTC)
    unknown = post(api, {"app_id": "2021999999999999", "events": [valid_item(1, now)]})
    assert unknown[0] == 422
    assert [(e["loc"], e["type"]) for e in unknown[1]["errors"]] == [(["body", "app_id"], "unknown_app")]
    empty = post(api, {"app_id": MINI_APP, "events": []})
    assert empty[0] == 422 and [e["loc"] for e in empty[1]["errors"]] == [["body", "events"]]
    no_app = post(api, {"events": [valid_item(1, now)]})
    assert no_app[0] == 422 and [e["loc"] for e in no_app[1]["errors"]] == [["body", "app_id"]]
    not_json = post(api, "{not json")
    assert not_json[0] == 422
    assert drain(aws.queues["EventsQueue"]) == []


def test_a_body_over_the_limit_is_413(api: InternalApi, aws: Provisioned) -> None:
    big = {"app_id": MINI_APP, "events": [{"type": "page_view", "pad": "x" * 1024}] * 300}
    status, answer = post(api, big)
    assert status == 413
    assert answer["errors"][0]["type"] == "too_large"
    assert drain(aws.queues["EventsQueue"]) == []


# ---- moto's server over real HTTP -------------------------------------------------------------------------------


@pytest.fixture
def server_stack() -> Iterator[Provisioned]:
    mp = pytest.MonkeyPatch()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        mp.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }.items():
            mp.setenv(name, value)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        aws_clients.client.cache_clear()
        provisioned = provision(prefix="events-ingest")
        for k, v in provisioned.function_environment("InternalApiFunction").items():
            mp.setenv(k, v)
        registry = AppRegistry(
            boto3.client("dynamodb"), provisioned.tables["StateTable"], boto3.client("secretsmanager")
        )
        registry.register(
            AppRecord(app_id=MINI_APP, kind="mini", secret_name=f"lifelink/apps/{MINI_APP}"),
            {"app_private_key": "unused", "alipay_public_key": "unused"},
        )
        yield provisioned
    finally:
        server.stop()
        aws_clients.client.cache_clear()
        mp.undo()


@pytest.mark.integration
def test_events_reach_sqs_over_http_and_a_refusing_queue_loses_nothing(server_stack: Provisioned) -> None:
    now = datetime.now(UTC)
    items = [valid_item(i, now) for i in range(37)]
    api = InternalApi(ApiDeps.from_env())

    status, answer = post(api, {"app_id": MINI_APP, "events": items})

    assert status == 202 and answer == {"accepted": 37, "rejected": []}
    landed = [parse_event(body) for body in drain(server_stack.queues["EventsQueue"])]
    assert sorted(e.event_id for e in landed) == sorted(expected_id(i) for i in items)

    # The queue is gone: every valid item comes back as rejected ("queue"), the invalid one with its reason.
    boto3.client("sqs").delete_queue(QueueUrl=server_stack.queues["EventsQueue"])
    status, answer = post(api, {"app_id": MINI_APP, "events": [*items[:12], {"type": "like"}]})
    assert status == 202
    assert answer["accepted"] == 0
    assert [r["index"] for r in answer["rejected"]] == list(range(13))
    assert {r["errors"][0]["type"] for r in answer["rejected"][:12]} == {"queue"}
    assert answer["rejected"][12]["errors"][0]["type"] != "queue"
