"""The Alipay simulator over real HTTP on loopback: /gateway.do and the push side."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink.alipay.callbacks import CallbackFamily, parse_form, verify_callback
from lifelink.alipay.errors import SignatureError
from lifelink.alipay.keys import public_key_one_line
from lifelink.alipay.signing import beijing_timestamp, canonical_string, sign, verify
from lifelink_local.sim_push import RETRY_DELAYS_S
from lifelink_local.simulator import AlipaySimulator

pytestmark = pytest.mark.integration

APP_ID = "2021000000000001"
SCALE = 1 / 36000  # 4 min -> 6.7 ms; 15 h -> 1.5 s


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def alipay_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture
def sim(alipay_key: rsa.RSAPrivateKey, app_key: rsa.RSAPrivateKey) -> Iterator[AlipaySimulator]:
    pem = alipay_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    s = AlipaySimulator(pem, port=0, time_scale=SCALE)
    s.start()
    s.register_app(APP_ID, public_key_one_line(app_key))
    yield s
    s.stop()


def signed_request(
    key: rsa.RSAPrivateKey, method: str, biz: dict[str, Any], timestamp: str | None = None, charset: str = "utf-8"
) -> tuple[dict[str, str], str]:
    params = {
        "app_id": APP_ID,
        "method": method,
        "format": "JSON",
        "charset": charset,
        "sign_type": "RSA2",
        "timestamp": timestamp or beijing_timestamp(),
        "version": "1.0",
        "biz_content": json.dumps(biz, ensure_ascii=False),
    }
    params["sign"] = sign(canonical_string(params), key, charset)
    return params, charset


def call(sim: AlipaySimulator, params: dict[str, str], charset: str = "utf-8") -> str:
    query = {k: v for k, v in params.items() if k != "biz_content"}
    body = urlencode({"biz_content": params["biz_content"]}, encoding=charset)
    r = httpx.post(
        f"{sim.gateway_url}?{urlencode(query, encoding=charset)}",
        content=body,
        headers={"content-type": f"application/x-www-form-urlencoded;charset={charset}"},
    )
    assert r.status_code == 200
    return r.content.decode(charset)


def node_and_sign(raw: str, node: str) -> tuple[str, str]:
    """Extract the node text by hand from the raw answer (the text between the key and ',"sign":')."""
    prefix = '{"' + node + '":'
    assert raw.startswith(prefix)
    text, _, tail = raw[len(prefix) :].rpartition(',"sign":')
    return text, json.loads(tail[:-1])


def test_signed_request_gets_a_verifiable_10000_answer(
    sim: AlipaySimulator, app_key: rsa.RSAPrivateKey, alipay_key
) -> None:
    sim.set_follower(APP_ID, "2088000000000001")
    params, _ = signed_request(app_key, "alipay.open.public.user.follow.query", {"user_id": "2088000000000001"})
    raw = call(sim, params)
    text, signature = node_and_sign(raw, "alipay_open_public_user_follow_query_response")
    assert verify(text, signature, alipay_key.public_key())
    assert json.loads(text) == {"code": "10000", "msg": "Success", "is_follow": "T"}
    params, _ = signed_request(app_key, "alipay.open.public.user.follow.query", {"user_id": "2088000000000002"})
    assert (
        json.loads(node_and_sign(call(sim, params), "alipay_open_public_user_follow_query_response")[0])["is_follow"]
        == "F"
    )
    calls = httpx.get(f"{sim.url}/sim/calls").json()
    assert [(c["app_id"], c["method"], c["biz"], c["code"]) for c in calls] == [
        (APP_ID, "alipay.open.public.user.follow.query", {"user_id": "2088000000000001"}, "10000"),
        (APP_ID, "alipay.open.public.user.follow.query", {"user_id": "2088000000000002"}, "10000"),
    ]


def test_gbk_request_with_chinese_content_and_custom_send(sim: AlipaySimulator, app_key, alipay_key) -> None:
    biz = {"to_user_id": "2088000000000001", "msg_type": "text", "text": {"title": "标题", "content": "你好 & 再见+"}}
    sim.set_follower(APP_ID, "2088000000000001")
    sim.record_interaction(APP_ID, "2088000000000001")  # custom sends only within 48 h of an interaction
    params, charset = signed_request(app_key, "alipay.open.public.message.custom.send", biz, charset="GBK")
    raw = call(sim, params, charset)
    text, signature = node_and_sign(raw, "alipay_open_public_message_custom_send_response")
    assert verify(text.encode("gbk"), signature, alipay_key.public_key())
    answer = json.loads(text)
    assert answer["code"] == "10000" and len(answer["msg_id"]) == 32
    assert sim.calls()[-1]["biz"] == biz


def test_tampered_request_gets_invalid_signature_quoting_the_signed_string(
    sim: AlipaySimulator, app_key, alipay_key
) -> None:
    params, _ = signed_request(app_key, "alipay.open.public.user.follow.query", {"user_id": "2088000000000001"})
    params["biz_content"] = json.dumps({"user_id": "2088000000000009"})
    raw = call(sim, params)
    text, signature = node_and_sign(raw, "error_response")
    assert verify(text, signature, alipay_key.public_key())
    err = json.loads(text)
    assert (err["code"], err["sub_code"]) == ("40002", "isv.invalid-signature")
    expected = canonical_string(params)
    assert err["sub_msg"].startswith("验签出错")
    assert err["sub_msg"].endswith("网关生成的验签字符串为：" + expected)


def test_key_from_another_app_is_refused(sim: AlipaySimulator) -> None:
    params, _ = signed_request(new_key(), "alipay.open.public.user.follow.query", {"user_id": "1"})
    err = json.loads(node_and_sign(call(sim, params), "error_response")[0])
    assert err["sub_code"] == "isv.invalid-signature"


def test_stale_timestamp_is_invalid_timestamp(sim: AlipaySimulator, app_key) -> None:
    stale = (datetime.now().astimezone() - timedelta(minutes=16)).astimezone()
    params, _ = signed_request(
        app_key, "alipay.open.public.user.follow.query", {"user_id": "1"}, beijing_timestamp(stale)
    )
    err = json.loads(node_and_sign(call(sim, params), "error_response")[0])
    assert (err["code"], err["sub_code"]) == ("40002", "isv.invalid-timestamp")
    # host-local time (8 hours off on a UTC machine, as the official SDKs do) is refused too
    utc_as_if_beijing = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    params, _ = signed_request(app_key, "alipay.open.public.user.follow.query", {"user_id": "1"}, utc_as_if_beijing)
    err = json.loads(node_and_sign(call(sim, params), "error_response")[0])
    assert err["sub_code"] == "isv.invalid-timestamp"


def test_unknown_app_missing_params_and_unknown_method(sim: AlipaySimulator, app_key) -> None:
    params, _ = signed_request(app_key, "alipay.open.public.user.follow.query", {"user_id": "1"})
    other = dict(params, app_id="2021999999999999")
    err = json.loads(node_and_sign(call(sim, other), "error_response")[0])
    assert (err["code"], err["sub_code"]) == ("40002", "isv.invalid-app-id")
    for missing, sub_code in (("method", "isv.missing-method"), ("sign", "isv.missing-signature")):
        partial = {k: v for k, v in params.items() if k != missing}
        err = json.loads(node_and_sign(call(sim, partial), "error_response")[0])
        assert (err["code"], err["sub_code"]) == ("40001", sub_code)
    params, _ = signed_request(app_key, "alipay.no.such.method", {})
    err = json.loads(node_and_sign(call(sim, params), "error_response")[0])
    assert (err["code"], err["sub_code"]) == ("40002", "isv.invalid-method")


def test_adding_a_method_is_one_function_and_business_errors_are_40004(sim: AlipaySimulator, app_key) -> None:
    sim.register_method("alipay.test.echo", lambda app_id, biz: {"echo": biz["v"], "app": app_id})
    params, _ = signed_request(app_key, "alipay.test.echo", {"v": "x"})
    answer = json.loads(node_and_sign(call(sim, params), "alipay_test_echo_response")[0])
    assert answer == {"code": "10000", "msg": "Success", "echo": "x", "app": APP_ID}
    params, _ = signed_request(app_key, "alipay.open.public.message.custom.send", {"msg_type": "text"})
    answer = json.loads(node_and_sign(call(sim, params), "alipay_open_public_message_custom_send_response")[0])
    assert (answer["code"], answer["sub_code"]) == ("40004", "INVALID_PARAMETER")


def test_apps_register_over_http(sim: AlipaySimulator) -> None:
    key = new_key()
    r = httpx.post(
        f"{sim.url}/sim/apps", json={"app_id": "2021000000000077", "app_public_key": public_key_one_line(key)}
    )
    assert r.status_code == 200
    params, _ = signed_request(key, "alipay.open.public.user.follow.query", {"user_id": "1"})
    params["app_id"] = "2021000000000077"
    params["sign"] = sign(canonical_string(params), key)
    raw = call(sim, params)
    assert json.loads(node_and_sign(raw, "alipay_open_public_user_follow_query_response")[0])["code"] == "10000"


# -- push side --------------------------------------------------------------------------------------------
class Webhook:
    """A loopback webhook that records bodies and answers from a script."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.received: list[tuple[bytes, str]] = []
        hook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                hook.received.append((body, self.headers.get("content-type", "")))
                i = min(len(hook.received), len(hook.answers)) - 1
                data = hook.answers[i].encode()
                self.send_response(200)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_factory() -> Iterator[Any]:
    hooks: list[Webhook] = []

    def make(answers: list[str]) -> Webhook:
        hooks.append(Webhook(answers))
        return hooks[-1]

    yield make
    for h in hooks:
        h.close()


def test_gateway_push_is_gbk_and_verifies_with_verify_callback(sim: AlipaySimulator, alipay_key, hook_factory) -> None:
    hook = hook_factory(["<ack/>"])
    fields = {"FromAlipayUserId": "2088000000000001", "MsgType": "text", "Text": {"Content": "你好，小店 100%"}}
    response = sim.push_gateway(hook.url, APP_ID, fields)
    assert response.text == "<ack/>"
    body, content_type = hook.received[0]
    params, charset = parse_form(body, content_type)
    assert charset.upper() == "GBK"
    assert params["service"] == "alipay.mobile.public.message.notify"
    assert "<Content><![CDATA[你好，小店 100%]]></Content>" in params["biz_content"]
    assert verify_callback(params, charset, alipay_key.public_key()) is CallbackFamily.GATEWAY
    tampered = dict(params, biz_content=params["biz_content"].replace("小店", "大店"))
    with pytest.raises(SignatureError):
        verify_callback(tampered, charset, alipay_key.public_key())


def test_gateway_check_and_follow_state(sim: AlipaySimulator, alipay_key, hook_factory) -> None:
    hook = hook_factory(["ok"])
    sim.push_gateway(hook.url, APP_ID, {"MsgType": "event", "EventType": "verifygw"})
    params, charset = parse_form(*hook.received[0])
    assert params["service"] == "alipay.service.check"
    assert verify_callback(params, charset, alipay_key.public_key()) is CallbackFamily.GATEWAY
    sim.push_gateway(
        hook.url, APP_ID, {"MsgType": "event", "EventType": "follow", "FromAlipayUserId": "2088000000000005"}
    )
    assert sim.openapi.is_follower(APP_ID, "2088000000000005")
    sim.push_gateway(
        hook.url, APP_ID, {"MsgType": "event", "EventType": "unfollow", "FromAlipayUserId": "2088000000000005"}
    )
    assert not sim.openapi.is_follower(APP_ID, "2088000000000005")


def test_notification_answered_fail_is_retried_on_the_scaled_schedule(
    sim: AlipaySimulator, alipay_key, hook_factory
) -> None:
    hook = hook_factory(["fail"])
    delivery = sim.push_notify(hook.url, {"app_id": APP_ID, "out_trade_no": "T1", "trade_status": "TRADE_SUCCESS"})
    assert sim.wait_idle(timeout=60)
    log = {d["delivery_id"]: d for d in httpx.get(f"{sim.url}/sim/deliveries").json()}[delivery.delivery_id]
    attempts = log["attempts"]
    assert len(attempts) == 1 + len(RETRY_DELAYS_S) == 8
    assert [a["scheduled_delay_s"] for a in attempts] == pytest.approx([0.0] + [d * SCALE for d in RETRY_DELAYS_S])
    assert all(a["answer"] == "fail" and a["status"] == 200 for a in attempts)
    assert log["state"] == "failed"
    # every attempt is the same notification: same notify_id, same signature
    bodies = {b for b, _ in hook.received}
    assert len(hook.received) == 8 and len(bodies) == 1
    params, charset = parse_form(*hook.received[0])
    assert params["notify_id"] == delivery.notify_id and params["notify_time"]
    assert verify_callback(params, charset, alipay_key.public_key()) is CallbackFamily.TRADE


def test_success_stops_the_retries_and_redeliver_duplicates(sim: AlipaySimulator, hook_factory) -> None:
    hook = hook_factory(["fail", "oops", "success"])
    delivery = sim.push_notify(hook.url, {"app_id": APP_ID, "out_trade_no": "T2", "trade_status": "TRADE_SUCCESS"})
    assert sim.wait_idle(timeout=60)
    assert [a.answer for a in delivery.attempts] == ["fail", "oops", "success"]
    assert delivery.state == "delivered"
    sim.redeliver(delivery.delivery_id)
    assert len(hook.received) == 4
    assert hook.received[3] == hook.received[0]  # an exact duplicate, same notify_id
    assert delivery.attempts[-1].redelivery


def test_message_service_push_uses_the_trade_rule(sim: AlipaySimulator, alipay_key, hook_factory) -> None:
    hook = hook_factory(["success"])
    delivery = sim.push_message(hook.url, APP_ID, "alipay.marketing.activity.message.received", {"activity_id": "A1"})
    params, charset = parse_form(*hook.received[0])
    assert params["version"] == "1.1" and params["utc_timestamp"].isdigit()
    assert params["notify_id"] == delivery.notify_id
    assert verify_callback(params, charset, alipay_key.public_key()) is CallbackFamily.MESSAGE
    assert delivery.state == "delivered"


def test_protocol_core_client_round_trips_against_the_simulator(sim: AlipaySimulator, app_key, alipay_key) -> None:
    from lifelink.alipay.errors import AlipayApiError
    from lifelink.alipay.openapi import AlipayClient, OpenApiConfig

    sim.set_follower(APP_ID, "2088000000000003")
    config = OpenApiConfig(
        app_id=APP_ID, app_private_key=app_key, alipay_public_key=alipay_key.public_key(), gateway_url=sim.gateway_url
    )
    with AlipayClient(config) as client:
        answer = client.execute("alipay.open.public.user.follow.query", {"user_id": "2088000000000003"})
        assert answer["is_follow"] == "T"
        with pytest.raises(AlipayApiError) as info:
            client.execute("alipay.no.such.method", {})
        assert info.value.sub_code == "isv.invalid-method"
    wrong = OpenApiConfig(
        app_id=APP_ID, app_private_key=new_key(), alipay_public_key=alipay_key.public_key(), gateway_url=sim.gateway_url
    )
    with AlipayClient(wrong) as client, pytest.raises(AlipayApiError) as info:
        client.execute("alipay.open.public.user.follow.query", {"user_id": "2088000000000003"})
    assert info.value.sub_code == "isv.invalid-signature"
