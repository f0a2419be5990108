"""The webhook handler end to end in one process: API Gateway v2 event in, Alipay's answer out,
domain events on the `events` queue (moto). Callbacks are signed by the simulator's push side, an
implementation independent of lifelink.alipay, playing Alipay with a throwaway key."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest

from lifelink.alipay.keys import load_public_key
from lifelink.alipay.lifegateway import reply_inner, reply_signature
from lifelink.alipay.signing import verify
from lifelink.domain.events import parse_event
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink_local.handlers import LambdaContext
from lifelink_local.sim_push import Pusher, form_encode
from tests.conftest import KeyPair, load_function

LIFE_APP = "2021000000000001"
USER = "2088102122458832"


@pytest.fixture
def pusher(alipay_keys: KeyPair) -> Iterator[Pusher]:
    p = Pusher(alipay_keys.private)
    yield p
    p.close()


@pytest.fixture
def stack(aws: Any, app_keys: KeyPair, alipay_keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> Any:
    for k, v in aws.function_environment("WebhookFunction").items():
        monkeypatch.setenv(k, v)
    registry = AppRegistry(boto3.client("dynamodb"), aws.tables["StateTable"], boto3.client("secretsmanager"))
    registry.register(
        AppRecord(app_id=LIFE_APP, kind="life", secret_name=f"lifelink/apps/{LIFE_APP}", seller_id="2088000000000001"),
        {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_keys.public_pem},
    )
    return aws


@pytest.fixture
def call(stack: Any) -> Any:
    module = load_function("webhook")

    def invoke(body: bytes, path: str = "/alipay/gateway", content_type: str | None = None) -> dict[str, Any]:
        event = {
            "version": "2.0",
            "routeKey": f"POST {path}",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {"content-type": content_type or "application/x-www-form-urlencoded"},
            "requestContext": {"http": {"method": "POST", "path": path}, "requestId": "r1"},
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
        }
        return module.handler(event, LambdaContext(function_name="webhook"))

    return invoke


def body_of(response: dict[str, Any]) -> bytes:
    raw = response["body"]
    return base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()


def queued(stack: Any) -> list[Any]:
    sqs = boto3.client("sqs")
    url = stack.queues["EventsQueue"]
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)
        msgs = got.get("Messages", [])
        if not msgs:
            return out
        out.extend(parse_event(m["Body"]) for m in msgs)


def idempotency_items(stack: Any) -> int:
    return boto3.client("dynamodb").scan(TableName=stack.tables["IdempotencyTable"])["Count"]


def gateway_form(pusher: Pusher, fields: dict[str, Any], charset: str = "GBK") -> bytes:
    return form_encode(pusher.build_gateway(LIFE_APP, fields, charset), charset)


def trade_params(**overrides: str) -> dict[str, str]:
    params = {
        "app_id": LIFE_APP,
        "notify_id": "2026112400222102023008121054923345",
        "trade_no": "2026112422001400000000000001",
        "out_trade_no": "ORDER-1001",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "88.80",
        "seller_id": "2088000000000001",
        "buyer_id": USER,
        "gmt_payment": "2026-11-24 20:01:02",
    }
    params.update(overrides)
    return params


def test_gateway_check_gets_the_app_public_key_in_a_reply_signed_by_the_app(call, pusher, stack, app_keys):
    response = call(gateway_form(pusher, {"MsgType": "event", "EventType": "verifygw"}))
    assert response["statusCode"] == 200
    document = body_of(response)
    assert document.startswith(b'<?xml version="1.0" encoding="GBK"?><alipay><response>')
    inner = reply_inner(document)
    one_line = "".join(app_keys.public_pem.splitlines()[1:-1])
    assert inner == f"<success>true</success><biz_content>{one_line}</biz_content>"
    sign, _ = reply_signature(document)
    assert verify(inner, sign, load_public_key(app_keys.public_pem), "GBK")
    assert [e.type for e in queued(stack)] == ["gateway_check"]


def test_tampered_gateway_check_gets_verify_failed_and_writes_nothing(call, pusher, stack, app_keys):
    params = pusher.build_gateway(LIFE_APP, {"MsgType": "event", "EventType": "verifygw"})
    params["biz_content"] = params["biz_content"].replace("verifygw", "verifygw ")
    response = call(form_encode(params, "GBK"))
    inner = reply_inner(body_of(response))
    assert "<success>false</success><error_code>VERIFY_FAILED</error_code>" in inner
    sign, _ = reply_signature(body_of(response))
    assert verify(inner, sign, load_public_key(app_keys.public_pem), "GBK")
    assert queued(stack) == []
    assert idempotency_items(stack) == 0


def test_gateway_check_signed_by_a_forger_is_refused(call, other_keys, stack):
    forger = Pusher(other_keys.private)
    try:
        response = call(gateway_form(forger, {"MsgType": "event", "EventType": "verifygw"}))
    finally:
        forger.close()
    assert "VERIFY_FAILED" in reply_inner(body_of(response))
    assert queued(stack) == []


def test_follow_with_scene_becomes_a_follow_event_and_is_acked(call, pusher, stack):
    fields = {
        "MsgType": "event",
        "EventType": "follow",
        "FromAlipayUserId": USER,
        "ActionParam": json.dumps({"scene": {"sceneId": "qr-store-7"}}),
        "MsgId": "m-follow-1",
        "CreateTime": "1795003200000",
    }
    response = call(gateway_form(pusher, fields))
    inner = reply_inner(body_of(response))
    assert f"<ToUserId><![CDATA[{USER}]]></ToUserId>" in inner
    assert "<MsgType><![CDATA[ack]]></MsgType>" in inner
    (event,) = queued(stack)
    assert event.type == "follow"
    assert event.scene_id == "qr-store-7"
    assert event.user.user_id == USER
    assert event.occurred_at.timestamp() == 1795003200


def test_a_redelivered_gateway_message_is_acked_again_but_queued_once(call, pusher, stack):
    form = gateway_form(pusher, {"MsgType": "event", "EventType": "click", "ActionParam": "menu-coupon",
                                 "FromAlipayUserId": USER, "MsgId": "m-click-1"})
    first, second = call(form), call(form)
    assert first["statusCode"] == second["statusCode"] == 200
    events = queued(stack)
    assert [(e.type, e.menu_key) for e in events] == [("menu_click", "menu-coupon")]


def test_gbk_text_message_is_decoded_once(call, pusher, stack):
    fields = {"MsgType": "text", "FromAlipayUserId": USER, "MsgId": "m-text-1",
              "Text": {"Content": "你好，早鸟券还有吗？"}}
    call(gateway_form(pusher, fields, "GBK"))
    (event,) = queued(stack)
    assert (event.type, event.text) == ("user_message", "你好，早鸟券还有吗？")


def test_paid_trade_notification_answers_success_and_its_retry_is_dropped(call, pusher, stack):
    form = form_encode(pusher.build_notify(trade_params()), "utf-8")
    first = call(form, "/alipay/notify")
    again = call(form, "/alipay/notify")
    assert body_of(first) == body_of(again) == b"success"
    (event,) = queued(stack)
    assert event.type == "order_paid"
    assert event.total_amount == Decimal("88.80")
    assert event.out_trade_no == "ORDER-1001"


def test_gbk_trade_notification_with_a_value_that_breaks_when_decoded_twice(call, pusher, stack):
    passback = "coupon=%E6%97%A9%E9%B8%9F&rate=100%25 早鸟"
    form = form_encode(pusher.build_notify(trade_params(passback_params=passback, subject="早鸟券套餐"), "GBK"), "GBK")
    assert body_of(call(form, "/alipay/notify")) == b"success"
    (event,) = queued(stack)
    assert event.passback_params == passback


@pytest.mark.parametrize(
    ("field", "value"), [("total_amount", "0.01"), ("trade_status", "TRADE_FINISHED"), ("out_trade_no", "X")]
)
def test_a_tampered_trade_notification_is_refused_and_writes_nothing(call, pusher, stack, field, value):
    params = pusher.build_notify(trade_params())
    params[field] = value
    response = call(form_encode(params, "utf-8"), "/alipay/notify")
    assert response["statusCode"] == 403
    assert body_of(response) != b"success"
    assert queued(stack) == []
    assert idempotency_items(stack) == 0


def test_unknown_app_is_refused(call, pusher, stack):
    form = form_encode(pusher.build_notify(trade_params(app_id="2021999999999999")), "utf-8")
    response = call(form, "/alipay/notify")
    assert response["statusCode"] == 403
    assert b"unknown app" in body_of(response)
    assert queued(stack) == []


def test_trade_for_another_seller_is_refused(call, pusher, stack):
    form = form_encode(pusher.build_notify(trade_params(seller_id="2088999999999999")), "utf-8")
    response = call(form, "/alipay/notify")
    assert response["statusCode"] == 400
    assert queued(stack) == [] and idempotency_items(stack) == 0


def test_oversized_body_is_refused_before_parsing(call, stack):
    response = call(b"a=" + b"x" * (64 * 1024), "/alipay/notify")
    assert response["statusCode"] == 413
    assert queued(stack) == []


def test_mis_encoded_body_is_refused(call, stack):
    response = call(b"charset=GBK&service=alipay.mobile.public.message.notify&biz_content=%FF%FF%FF&sign=x")
    assert response["statusCode"] == 400
    assert queued(stack) == [] and idempotency_items(stack) == 0


def test_xxe_in_biz_content_is_refused_even_when_signed(call, pusher, stack):
    params = pusher.build_gateway(LIFE_APP, {"MsgType": "text", "MsgId": "m-x"})
    evil = ('<?xml version="1.0"?><!DOCTYPE XML [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            f"<XML><AppId><![CDATA[{LIFE_APP}]]></AppId><MsgType>&x;</MsgType></XML>")
    params["biz_content"] = evil
    signed = pusher._sign({k: v for k, v in params.items() if k != "sign"}, ("sign",), "GBK")
    response = call(form_encode(signed, "GBK"))
    assert response["statusCode"] == 400
    assert b"root" not in body_of(response)
    assert queued(stack) == []


def test_message_service_push_becomes_a_message_push_event(call, pusher, stack):
    biz = {"voucher_id": "V1", "user_id": USER, "activity_id": "A1", "biz_type": "V_USE"}
    form = form_encode(pusher.build_message(LIFE_APP, "alipay.marketing.activity.message.used", biz), "utf-8")
    assert body_of(call(form)) == b"success"
    (event,) = queued(stack)
    assert (event.type, event.msg_method, event.biz["voucher_id"]) == (
        "message_push", "alipay.marketing.activity.message.used", "V1")


def test_a_failed_enqueue_is_answered_as_failure_and_the_retry_succeeds(call, pusher, stack, monkeypatch):
    """No lost message: if SQS refuses, Alipay is told to retry and the dedupe record is released."""
    form = form_encode(pusher.build_notify(trade_params()), "utf-8")
    from lifelink.store.events_queue import EventPublisher

    real = EventPublisher.publish

    def broken(self: EventPublisher, event: Any) -> str:
        raise RuntimeError("SQS unavailable")

    monkeypatch.setattr(EventPublisher, "publish", broken)
    with pytest.raises(RuntimeError):
        call(form, "/alipay/notify")  # Lambda error → API Gateway 500 → Alipay retries
    assert idempotency_items(stack) == 0
    monkeypatch.setattr(EventPublisher, "publish", real)
    assert body_of(call(form, "/alipay/notify")) == b"success"
    assert [e.type for e in queued(stack)] == ["order_paid"]
