"""The simulator's outbound methods and fault injection over real HTTP, driven by lifelink's AlipayClient
(which signs every request and verifies every answer)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from math import sqrt
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink.alipay.errors import AlipayApiError, AlipayTransportError
from lifelink.alipay.keys import public_key_one_line
from lifelink.alipay.openapi import AlipayClient, OpenApiConfig
from lifelink_local import sim_methods as sm
from lifelink_local.simulator import AlipaySimulator

pytestmark = pytest.mark.integration

APP = "2021000000000001"
U1, U2 = "2088000000000001", "2088000000000002"


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def alipay_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def sim(alipay_key: rsa.RSAPrivateKey, app_key: rsa.RSAPrivateKey) -> Iterator[AlipaySimulator]:
    s = AlipaySimulator(alipay_key, port=0, time_scale=1 / 36000)
    s.start()
    s.register_app(APP, public_key_one_line(app_key))
    yield s
    s.stop()


def make_client(
    sim: AlipaySimulator, app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey, timeout: float = 15.0
) -> AlipayClient:
    config = OpenApiConfig(
        app_id=APP,
        app_private_key=app_key,
        alipay_public_key=alipay_key.public_key(),
        gateway_url=sim.gateway_url,
        timeout=timeout,
    )
    return AlipayClient(config, httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=64)))


@pytest.fixture
def client(sim: AlipaySimulator, app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> Iterator[AlipayClient]:
    c = make_client(sim, app_key, alipay_key)
    yield c
    c.http.close()


def api_error(client: AlipayClient, method: str, biz: dict[str, Any]) -> AlipayApiError:
    with pytest.raises(AlipayApiError) as info:
        client.execute(method, biz)
    return info.value


class Webhook:
    """A loopback webhook answering ``success`` to every push."""

    def __init__(self) -> None:
        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                self.send_response(200)
                self.send_header("content-length", "7")
                self.end_headers()
                self.wfile.write(b"success")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alipay/gateway"


@pytest.fixture
def hook() -> Iterator[Webhook]:
    h = Webhook()
    yield h
    h.server.shutdown()
    h.server.server_close()


def template(template_id: str, user: str) -> dict[str, Any]:
    return {
        "to_user_id": user,
        "template": {
            "template_id": template_id,
            "context": {"head_color": "#85be53", "url": "alipays://x", "keyword1": {"value": "欢迎"}},
        },
    }


def test_welcome_template_message_to_a_new_follower(sim: AlipaySimulator, client: AlipayClient, hook: Webhook) -> None:
    r = httpx.post(f"{sim.url}/sim/templates", json={"app_id": APP, "template_id": "WELCOME"})
    assert r.status_code == 200
    err = api_error(client, sm.SINGLE_SEND, template("WELCOME", U1))
    assert (err.code, err.sub_code, err.retryable) == ("40004", "PUB.MSG_SD_NOFOLLOW", False)
    sim.push_gateway(hook.url, APP, {"MsgType": "event", "EventType": "follow", "FromAlipayUserId": U1})
    answer = client.execute(sm.SINGLE_SEND, template("WELCOME", U1))
    assert answer["code"] == "10000" and len(answer["msg_id"]) == 32
    err = api_error(client, sm.SINGLE_SEND, template("NO_SUCH", U1))
    assert (err.code, err.sub_code, err.retryable) == ("40004", "MSG_TEMPLATE_NOT_EXIST", False)
    delivered = httpx.get(f"{sim.url}/sim/delivered", params={"method": sm.SINGLE_SEND}).json()
    assert delivered == [{"app_id": APP, "method": sm.SINGLE_SEND, "recipient": U1, "count": 1}]
    calls = [c for c in sim.calls() if c["method"] == sm.SINGLE_SEND]
    assert [(c["code"], c["sub_code"]) for c in calls] == [
        ("40004", "PUB.MSG_SD_NOFOLLOW"),
        ("10000", None),
        ("40004", "MSG_TEMPLATE_NOT_EXIST"),
    ]
    assert calls[1]["biz"] == template("WELCOME", U1)  # the call log holds what was received


def test_gateway_pushes_open_the_48_hour_custom_message_window(
    sim: AlipaySimulator, client: AlipayClient, hook: Webhook
) -> None:
    text = {"msg_type": "text", "text": {"title": "t", "content": "您好"}}
    sim.set_follower(APP, U1)
    sim.set_follower(APP, U2)
    err = api_error(client, sm.CUSTOM_SEND, {"to_user_id": U1, **text})
    assert (err.code, err.sub_code) == ("40004", "PUB.MSG_SD_OVER_TIME")
    sim.push_gateway(hook.url, APP, {"MsgType": "text", "FromAlipayUserId": U1, "Text": {"Content": "在吗"}})
    assert client.execute(sm.CUSTOM_SEND, {"to_user_id": U1, **text})["code"] == "10000"
    # an interaction 49 hours ago (admin endpoint) does not open the window; a menu click does
    stale = (sim.openapi.outbound.now() - timedelta(hours=49)).isoformat()
    httpx.post(f"{sim.url}/sim/interactions", json={"app_id": APP, "user_id": U2, "at": stale}).raise_for_status()
    assert api_error(client, sm.CUSTOM_SEND, {"to_user_id": U2, **text}).sub_code == "PUB.MSG_SD_OVER_TIME"
    sim.push_gateway(hook.url, APP, {"MsgType": "event", "EventType": "click", "FromAlipayUserId": U2})
    assert client.execute(sm.CUSTOM_SEND, {"to_user_id": U2, **text})["code"] == "10000"
    sim.advance_clock(timedelta(hours=48, minutes=1))
    assert api_error(client, sm.CUSTOM_SEND, {"to_user_id": U1, **text}).sub_code == "PUB.MSG_SD_OVER_TIME"
    assert {d["recipient"]: d["count"] for d in sim.delivered(sm.CUSTOM_SEND)} == {U1: 1, U2: 1}


def test_broadcast_and_label_sends_over_http(sim: AlipaySimulator, client: AlipayClient) -> None:
    for user in (U1, U2):
        sim.set_follower(APP, user)
    r = httpx.post(f"{sim.url}/sim/labels", json={"app_id": APP, "label_id": "vip", "user_ids": [U2]})
    assert r.status_code == 200
    assert client.execute(sm.LABEL_SEND, {"label_id": "vip", "msg_type": "text"})["code"] == "10000"
    assert client.execute(sm.TOTAL_SEND, {"msg_type": "text", "text": {"content": "周报"}})["code"] == "10000"
    err = api_error(client, sm.TOTAL_SEND, {"msg_type": "text"})
    assert (err.code, err.sub_code, err.retryable) == ("40004", "PUB.MSG_BATCH_SD_OVER", True)
    # U2 had the label message this week, so the broadcast reached U1 only
    assert [(d["method"], d["recipient"]) for d in sim.outbound()] == [(sm.LABEL_SEND, U2), (sm.TOTAL_SEND, U1)]


def test_subscription_messages_need_grants_and_consume_them(sim: AlipaySimulator, client: AlipayClient) -> None:
    sim.register_template(APP, "ORDER_SHIPPED")
    biz = {
        "to_open_id": "040abc",
        "user_template_id": "ORDER_SHIPPED",
        "page": "pages/order/index?id=1&t=tok",
        "data": json.dumps({"keyword1": {"value": "已发货"}}, ensure_ascii=False),
    }
    assert api_error(client, sm.MINI_TEMPLATE_SEND, biz).sub_code == "USER_NOT_SUBSCRIBED"
    grant = {"app_id": APP, "user_id": "040abc", "template_id": "ORDER_SHIPPED", "count": 1}
    httpx.post(f"{sim.url}/sim/grants", json=grant).raise_for_status()
    assert client.execute(sm.MINI_TEMPLATE_SEND, biz)["code"] == "10000"
    assert sim.grants_left(APP, "040abc", "ORDER_SHIPPED") == 0
    assert api_error(client, sm.MINI_TEMPLATE_SEND, biz).sub_code == "USER_NOT_SUBSCRIBED"
    assert api_error(client, sm.MINI_TEMPLATE_SEND, dict(biz, user_template_id="X")).sub_code == "USER_TEMPLATE_ILLEGAL"
    too_long = dict(biz, data=json.dumps({"keyword1": {"value": "x" * 51}}))
    assert api_error(client, sm.MINI_TEMPLATE_SEND, too_long).sub_code == "INVALID_PARAMETER"


def test_coupon_send_is_idempotent_on_out_biz_no_and_card_update_records_level(
    sim: AlipaySimulator, client: AlipayClient
) -> None:
    httpx.post(f"{sim.url}/sim/activities", json={"app_id": APP, "activity_id": "A1", "stock": 1}).raise_for_status()
    biz = {"activity_id": "A1", "user_id": U1, "out_biz_no": "app-camp-welcome-u1-coupon"}
    first = client.execute(sm.VOUCHER_SEND, biz)["voucher_id"]
    assert client.execute(sm.VOUCHER_SEND, biz)["voucher_id"] == first
    err = api_error(client, sm.VOUCHER_SEND, dict(biz, out_biz_no="other"))
    assert (err.code, err.sub_code, err.retryable) == ("40004", "BUDGET_NOT_ENOUGH_ERROR", False)
    assert sim.delivered(sm.VOUCHER_SEND) == [{"app_id": APP, "method": sm.VOUCHER_SEND, "recipient": U1, "count": 1}]
    assert sim.stock_left(APP, "A1") == 0
    client.execute(sm.CARD_UPDATE, {"target_card_no": "C0001", "card_info": {"level": "SILVER"}})
    assert sim.card(APP, "C0001")["level"] == "SILVER"


# -- faults -----------------------------------------------------------------------------------------------
def test_seeded_faults_over_http_reconcile_with_deliveries(sim: AlipaySimulator, client: AlipayClient) -> None:
    n = 400
    sim.register_activity(APP, "A1", n)
    settings = {
        "seed": 3,
        "unknown_error_rate": 0.2,
        "unknown_error_delivered_share": 0.5,
        "rate_limit_rate": 0.1,
        "fatal_rate": 0.05,
    }
    r = httpx.post(f"{sim.url}/sim/faults", json={"reset": True, **settings})
    assert r.status_code == 200 and r.json()["unknown_error_rate"] == 0.2
    outcomes: Counter[tuple[str, str | None, bool]] = Counter()
    vouchers = set()
    for i in range(n):
        try:
            vouchers.add(
                client.execute(sm.VOUCHER_SEND, {"activity_id": "A1", "user_id": U1, "out_biz_no": f"n{i}"})[
                    "voucher_id"
                ]
            )
            outcomes["10000", None, False] += 1
        except AlipayApiError as exc:
            outcomes[str(exc.code), exc.sub_code, exc.retryable] += 1
    for (code, sub_code, retryable), rate in (
        (("20000", "isp.unknow-error", True), 0.2),
        (("40005", "isv.app-call-limited", True), 0.1),  # call limits: retry later
        (("40006", "isv.insufficient-isv-permissions", False), 0.05),
    ):
        got = outcomes[code, sub_code, retryable]
        assert abs(got - n * rate) < 5 * sqrt(n * rate * (1 - rate)), (code, got)
    assert sum(outcomes.values()) == n
    # every success and every executed 20000 issued exactly one coupon; nothing else did
    calls = [c for c in sim.calls() if c["method"] == sm.VOUCHER_SEND]
    executed_unknown = sum(1 for c in calls if c["fault"] == "unknown_error" and c["executed"])
    assert 0 < executed_unknown < outcomes["20000", "isp.unknow-error", True]
    issued = sim.outbound(sm.VOUCHER_SEND)
    assert len(issued) == outcomes["10000", None, False] + executed_unknown == n - sim.stock_left(APP, "A1")
    assert vouchers <= {d["ref"] for d in issued}
    tally = httpx.get(f"{sim.url}/sim/faults").json()["tally"]
    assert tally["unknown_error"] == outcomes["20000", "isp.unknow-error", True]
    assert tally["executed:unknown_error"] == executed_unknown
    # follow.query is outside the default scope
    sim.set_faults(fatal_rate=1.0, unknown_error_rate=0, rate_limit_rate=0)
    assert client.execute("alipay.open.public.user.follow.query", {"user_id": U1})["is_follow"] == "F"


def test_timeouts_deliver_or_not_and_a_retry_replays_the_coupon(
    sim: AlipaySimulator, app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> None:
    sim.register_activity(APP, "A1", 10)
    impatient = make_client(sim, app_key, alipay_key, timeout=0.5)
    sim.set_faults(timeout_rate=1.0, timeout_s=30, timeout_delivered_share=1.0)
    biz = {"activity_id": "A1", "user_id": U1, "out_biz_no": "t1"}
    with pytest.raises(AlipayTransportError):
        impatient.execute(sm.VOUCHER_SEND, biz)
    [issued] = sim.outbound(sm.VOUCHER_SEND)  # delivered although the client never heard back
    sim.set_faults(timeout_delivered_share=0.0)
    with pytest.raises(AlipayTransportError):
        impatient.execute(sm.VOUCHER_SEND, dict(biz, out_biz_no="t2"))
    assert len(sim.outbound(sm.VOUCHER_SEND)) == 1
    sim.clear_faults()
    assert impatient.execute(sm.VOUCHER_SEND, biz)["voucher_id"] == issued["ref"]  # the retry replays it
    assert len(sim.outbound(sm.VOUCHER_SEND)) == 1 and sim.stock_left(APP, "A1") == 9
    assert [(c["fault"], c["executed"]) for c in sim.calls()] == [("timeout", True), ("timeout", False), (None, None)]
    impatient.http.close()


def test_latency_is_applied(sim: AlipaySimulator, client: AlipayClient) -> None:
    sim.register_template(APP, "T")
    sim.set_follower(APP, U1)
    sim.set_faults(latency_ms=300)
    started = time.monotonic()
    client.execute(sm.SINGLE_SEND, template("T", U1))
    # a lower bound only (a sleep cannot end early): says the latency was applied, not how fast anything is
    assert time.monotonic() - started >= 0.3


def test_many_requests_are_served_concurrently_with_latency(sim: AlipaySimulator, client: AlipayClient) -> None:
    barrier = threading.Barrier(25, timeout=30)

    def rendezvous(app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        barrier.wait()  # only returns once 25 requests are inside their handlers at the same time
        return {"n": biz["n"]}

    sim.register_method("alipay.test.rendezvous", rendezvous)
    sim.register_activity(APP, "A1", 1000)
    sim.set_faults(latency_ms=20, jitter_ms=5, methods=["alipay.test.rendezvous", sm.VOUCHER_SEND])
    with ThreadPoolExecutor(max_workers=50) as pool:
        together = list(pool.map(lambda i: client.execute("alipay.test.rendezvous", {"n": i}), range(25)))
        coupons = list(
            pool.map(
                lambda i: client.execute(
                    sm.VOUCHER_SEND, {"activity_id": "A1", "user_id": U1, "out_biz_no": f"c{i % 100}"}
                ),
                range(200),
            )
        )
    assert sorted(a["n"] for a in together) == list(range(25))
    assert all(c["code"] == "10000" for c in coupons)
    assert len({c["voucher_id"] for c in coupons}) == 100  # each out_biz_no sent twice, issued once
    assert len(sim.outbound(sm.VOUCHER_SEND)) == 100 and sim.stock_left(APP, "A1") == 900


def test_fault_settings_are_validated_over_http(sim: AlipaySimulator) -> None:
    r = httpx.post(f"{sim.url}/sim/faults", json={"fatal_rate": 0.7, "timeout_rate": 0.7})
    assert r.status_code == 400 and "more than 1" in r.json()["error"]
    r = httpx.post(f"{sim.url}/sim/faults", json={"latency_ms": 20, "methods": [sm.SINGLE_SEND]})
    assert r.json()["latency_ms"] == 20 and r.json()["methods"] == [sm.SINGLE_SEND]
    assert httpx.get(f"{sim.url}/sim/faults").json()["config"]["latency_ms"] == 20


def test_every_channel_built_by_the_gateway_is_accepted(sim: AlipaySimulator, client: AlipayClient) -> None:
    """The biz_content lifelink.domain.channels builds for each channel is what the simulator understands."""
    from datetime import UTC, datetime

    from lifelink.domain.channels import build_call
    from lifelink.domain.messages import OutboundJob

    sim.set_follower(APP, U1)
    sim.set_follower(APP, U2)
    sim.record_interaction(APP, U1)
    sim.register_template(APP, "T1")
    sim.register_template(APP, "MT")
    sim.grant(APP, U1, "MT")
    sim.register_activity(APP, "A1", 5)
    sim.set_label(APP, "L1", [U2])
    link = "https://m.example.com/p?x=1"
    text = {"msg_type": "text", "text": {"content": "hello"}}
    jobs = [
        (
            "life_template",
            {"user_id": U1},
            {"type": "life_template", "template_id": "T1", "keywords": [{"value": "a"}]},
        ),
        ("life_custom", {"user_id": U1}, {"type": "life_custom", **text}),
        ("life_label", {"label_id": "L1"}, {"type": "life_label", **text}),
        ("life_broadcast", {}, {"type": "life_broadcast", **text}),
        (
            "mini_subscription",
            {"user_id": U1},
            {"type": "mini_subscription", "user_template_id": "MT", "page": link, "data": {"k": "v"}},
        ),
        ("coupon", {"user_id": U1}, {"type": "coupon", "activity_id": "A1"}),
        ("member_card", {"user_id": U1}, {"type": "member_card", "target_card_no": "C1", "level": "SILVER"}),
    ]
    for channel, recipient, content in jobs:
        job = OutboundJob.model_validate(
            {
                "app_id": APP,
                "channel": channel,
                "recipient": recipient,
                "content": content,
                "not_after": datetime.now(UTC) + timedelta(hours=1),
            }
        )
        call = build_call(job, lambda url: url)
        assert client.execute(call.method, call.biz_content)["code"] == "10000", channel
    assert {(d["method"], d["recipient"]) for d in sim.delivered()} == {
        (sm.SINGLE_SEND, U1),
        (sm.CUSTOM_SEND, U1),
        (sm.LABEL_SEND, U2),
        (sm.TOTAL_SEND, U1),  # U2 already had the label message this week
        (sm.MINI_TEMPLATE_SEND, U1),
        (sm.VOUCHER_SEND, U1),
        (sm.CARD_UPDATE, "C1"),
    }
    assert sim.card(APP, "C1")["level"] == "SILVER"
