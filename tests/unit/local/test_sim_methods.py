"""The simulator's outbound methods and fault injection, in process (no HTTP): limits, grants, stock, draws."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from math import sqrt
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink_local import sim_methods as sm
from lifelink_local.sim_faults import Fault, FaultDecision, FaultInjector
from lifelink_local.sim_gateway import BusinessError, OpenApiSimulator

APP = "2021000000000001"
U1, U2, U3 = "2088000000000001", "2088000000000002", "2088000000000003"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def gw(key: rsa.RSAPrivateKey) -> OpenApiSimulator:
    return OpenApiSimulator(key)


def fails(fn: Callable[..., Any], *args: Any) -> str:
    with pytest.raises(BusinessError) as info:
        fn(*args)
    return info.value.sub_code


def single(template_id: str, **to: str) -> dict:
    return {**to, "template": {"template_id": template_id, "context": {"first": {"value": "hi"}}}}


def test_outbound_methods_are_registered_beside_follow_query(gw: OpenApiSimulator) -> None:
    assert set(sm.OUTBOUND_METHODS) | {"alipay.open.public.user.follow.query"} <= set(gw.methods)


def test_single_send_needs_a_registered_template_and_a_follower(gw: OpenApiSimulator) -> None:
    out = gw.outbound
    assert fails(out.single_send, APP, single("T1", to_user_id=U1)) == "MSG_TEMPLATE_NOT_EXIST"
    out.register_template(APP, "T1")
    assert fails(out.single_send, APP, single("T1", to_user_id=U1)) == "PUB.MSG_SD_NOFOLLOW"
    gw.set_follower(APP, U1)
    answer = out.single_send(APP, single("T1", to_user_id=U1))
    assert len(answer["msg_id"]) == 32
    # a template registered for another app does not count
    assert fails(out.single_send, "2021000000000002", single("T1", to_user_id=U1)) == "MSG_TEMPLATE_NOT_EXIST"
    assert fails(out.single_send, APP, {"template": {"template_id": "T1"}}) == "INVALID_PARAMETER"
    assert out.delivered() == [{"app_id": APP, "method": sm.SINGLE_SEND, "recipient": U1, "count": 1}]
    assert out.outbound()[0]["ref"] == answer["msg_id"]


def test_custom_send_window_is_48_hours_from_the_last_interaction(gw: OpenApiSimulator) -> None:
    out = gw.outbound
    gw.set_follower(APP, U1)
    text = {"to_user_id": U1, "msg_type": "text", "text": {"content": "hi"}}
    assert fails(out.custom_send, APP, text) == "PUB.MSG_SD_OVER_TIME"  # never interacted
    out.record_interaction(APP, U1, out.now() - timedelta(hours=47, minutes=59))
    out.custom_send(APP, text)
    out.advance_clock(timedelta(minutes=2))  # now 48 h 01 min after the interaction
    assert fails(out.custom_send, APP, text) == "PUB.MSG_SD_OVER_TIME"
    out.record_interaction(APP, U1, out.now() - timedelta(days=3))  # an older interaction does not go back
    assert fails(out.custom_send, APP, text) == "PUB.MSG_SD_OVER_TIME"
    out.record_interaction(APP, U1)
    out.custom_send(APP, text)
    gw.set_follower(APP, U1, False)
    assert fails(out.custom_send, APP, text) == "PUB.MSG_SD_NOFOLLOW"
    assert fails(out.custom_send, APP, {"to_user_id": U1, "msg_type": "video"}) == "INVALID_PARAMETER"
    assert out.delivered(sm.CUSTOM_SEND)[0]["count"] == 2


def test_custom_send_caps_at_100_per_user_per_beijing_day(gw: OpenApiSimulator) -> None:
    out = gw.outbound
    for user in (U1, U2):
        gw.set_follower(APP, user)
        out.record_interaction(APP, user)
    # start the day at 00:30 Beijing time so the 100 sends share one calendar day
    now = out.now()
    out.advance_clock(now.replace(hour=0, minute=30, second=0, microsecond=0) + timedelta(days=1) - now)
    assert (out.now().hour, out.now().minute) == (0, 30)
    out.record_interaction(APP, U1)
    out.record_interaction(APP, U2)
    for _ in range(sm.CUSTOM_PER_USER_PER_DAY):
        out.custom_send(APP, {"to_user_id": U1, "msg_type": "text"})
    assert fails(out.custom_send, APP, {"to_user_id": U1, "msg_type": "text"}) == "PUB.MSG_SD_OVER_LIMIT"
    out.custom_send(APP, {"to_user_id": U2, "msg_type": "text"})  # per user
    out.advance_clock(timedelta(hours=24))  # next Beijing day, still inside 48 h
    out.custom_send(APP, {"to_user_id": U1, "msg_type": "text"})
    counts = {d["recipient"]: d["count"] for d in out.delivered(sm.CUSTOM_SEND)}
    assert counts == {U1: 101, U2: 1}


def test_total_send_once_a_week_to_every_follower(gw: OpenApiSimulator) -> None:
    out = gw.outbound
    for user in (U1, U2):
        gw.set_follower(APP, user)
    out.total_send(APP, {"msg_type": "text", "text": {"content": "news"}})
    assert fails(out.total_send, APP, {"msg_type": "text"}) == "PUB.MSG_BATCH_SD_OVER"
    out.advance_clock(timedelta(days=6, hours=23))
    assert fails(out.total_send, APP, {"msg_type": "text"}) == "PUB.MSG_BATCH_SD_OVER"
    out.advance_clock(timedelta(hours=1))
    gw.set_follower(APP, U3)
    out.total_send(APP, {"msg_type": "text"})
    assert {d["recipient"]: d["count"] for d in out.delivered(sm.TOTAL_SEND)} == {U1: 2, U2: 2, U3: 1}


def test_label_send_skips_users_with_a_batch_message_this_week_and_allows_5_calls(gw: OpenApiSimulator) -> None:
    out = gw.outbound
    for user in (U1, U2, U3):
        gw.set_follower(APP, user)
    out.set_label(APP, "L1", [U1, U2, "2088000000000099"])  # the last one does not follow
    out.set_label(APP, "L2", [U2, U3])
    out.label_send(APP, {"label_id": "L1", "msg_type": "text"})
    out.label_send(APP, {"filter": {"exprs": [{"label_id": "L2"}]}, "msg_type": "image-text"})
    # U2 already had one this week: only U3 gets L2
    assert {(d["recipient"], d["count"]) for d in out.delivered(sm.LABEL_SEND)} == {(U1, 1), (U2, 1), (U3, 1)}
    # total.send also skips them within the week
    gw.set_follower(APP, "2088000000000004")
    out.total_send(APP, {"msg_type": "text"})
    assert [d["recipient"] for d in out.delivered(sm.TOTAL_SEND)] == ["2088000000000004"]
    for _ in range(3):
        out.label_send(APP, {"label_id": "L1", "msg_type": "text"})
    assert fails(out.label_send, APP, {"label_id": "L1", "msg_type": "text"}) == "PUB.MSG_BATCH_SD_OVER"
    assert fails(out.label_send, APP, {"msg_type": "text"}) == "INVALID_PARAMETER"
    out.advance_clock(sm.BATCH_WINDOW)
    out.label_send(APP, {"label_id": "L1", "msg_type": "text"})
    assert {d["recipient"]: d["count"] for d in out.delivered(sm.LABEL_SEND)} == {U1: 2, U2: 2, U3: 1}


def mini(user: str, template: str, data: dict | str) -> dict:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return {"to_open_id": user, "user_template_id": template, "page": "pages/index?x=1", "data": text}


def test_mini_template_message_consumes_one_time_grants(gw: OpenApiSimulator) -> None:
    out = gw.outbound
    data = {"keyword1": {"value": "订单已发货"}}
    assert fails(out.mini_template_send, APP, mini(U1, "MT", data)) == "USER_TEMPLATE_ILLEGAL"
    out.register_template(APP, "MT")
    assert fails(out.mini_template_send, APP, mini(U1, "MT", data)) == "USER_NOT_SUBSCRIBED"
    assert out.grant(APP, U1, "MT", 2) == 2
    out.grant(APP, U1, "OTHER", 5)
    out.mini_template_send(APP, mini(U1, "MT", data))
    assert out.grants_left(APP, U1, "MT") == 1
    out.mini_template_send(APP, mini(U1, "MT", data))
    assert out.grants_left(APP, U1, "MT") == 0
    assert fails(out.mini_template_send, APP, mini(U1, "MT", data)) == "USER_NOT_SUBSCRIBED"
    assert out.grants_left(APP, U1, "OTHER") == 5
    assert out.delivered(sm.MINI_TEMPLATE_SEND) == [
        {"app_id": APP, "method": sm.MINI_TEMPLATE_SEND, "recipient": U1, "count": 2}
    ]


def test_mini_template_data_is_a_json_string_with_values_of_at_most_50_chars(gw: OpenApiSimulator) -> None:
    out = gw.outbound
    out.register_template(APP, "MT")
    out.grant(APP, U1, "MT", 10)
    out.mini_template_send(APP, mini(U1, "MT", {"k": {"value": "字" * 50}}))
    for bad in ({"k": {"value": "字" * 51}}, {"k": {"value": 5}}, "[1]", "{not json"):
        assert fails(out.mini_template_send, APP, mini(U1, "MT", bad)) == "INVALID_PARAMETER"
    as_object = dict(mini(U1, "MT", "{}"), data={"k": {"value": "v"}})
    assert fails(out.mini_template_send, APP, as_object) == "INVALID_PARAMETER"
    assert out.grants_left(APP, U1, "MT") == 9  # failed sends consume nothing


def test_voucher_send_is_idempotent_on_out_biz_no_and_runs_out_of_stock(gw: OpenApiSimulator) -> None:
    out = gw.outbound
    biz = {"activity_id": "A1", "user_id": U1, "out_biz_no": "job1"}
    assert fails(out.voucher_send, APP, biz) == "ACTIVITY_NOT_EXIST"
    out.register_activity(APP, "A1", 2)
    first = out.voucher_send(APP, biz)["voucher_id"]
    assert out.voucher_send(APP, biz)["voucher_id"] == first
    assert out.stock_left(APP, "A1") == 1
    second = out.voucher_send(APP, dict(biz, out_biz_no="job2", user_id=U2))["voucher_id"]
    assert second != first
    assert fails(out.voucher_send, APP, dict(biz, out_biz_no="job3")) == "BUDGET_NOT_ENOUGH_ERROR"
    assert out.voucher_send(APP, biz)["voucher_id"] == first  # replays still answer once the stock is gone
    assert fails(out.voucher_send, APP, {"activity_id": "A1", "user_id": U1}) == "INVALID_PARAMETER"
    assert [(d["recipient"], d["ref"]) for d in out.outbound(sm.VOUCHER_SEND)] == [(U1, first), (U2, second)]


def test_card_update_records_the_level(gw: OpenApiSimulator) -> None:
    out = gw.outbound
    assert out.card(APP, "C1") is None
    assert out.card_update(APP, {"target_card_no": "C1", "card_info": {"level": "VIP1"}}) == {}
    out.card_update(APP, {"target_card_no": "C1", "card_info": {"level": "VIP2", "point": "10"}})
    assert out.card(APP, "C1")["level"] == "VIP2"
    assert fails(out.card_update, APP, {"target_card_no": "C1"}) == "INVALID_PARAMETER"
    assert out.delivered(sm.CARD_UPDATE)[0]["count"] == 2


# -- fault injection --------------------------------------------------------------------------------------
RATES = {"unknown_error_rate": 0.10, "timeout_rate": 0.05, "rate_limit_rate": 0.04, "fatal_rate": 0.01}


def run_draws(injector: FaultInjector, bodies: list[str]) -> dict[str, FaultDecision]:
    return {b: injector.decide(APP, sm.VOUCHER_SEND, b) for b in bodies}


def test_seeded_fault_rates_fall_within_binomial_bounds() -> None:
    n = 20_000
    injector = FaultInjector(sm.OUTBOUND_METHODS)
    injector.configure(seed=42, unknown_error_delivered_share=0.3, **RATES)
    decisions = [injector.decide(APP, sm.VOUCHER_SEND, f'{{"out_biz_no":"{i}"}}') for i in range(n)]
    counts = Counter(d.fault for d in decisions)
    expected = {
        Fault.UNKNOWN_ERROR: RATES["unknown_error_rate"],
        Fault.TIMEOUT: RATES["timeout_rate"],
        Fault.RATE_LIMITED: RATES["rate_limit_rate"],
        Fault.FATAL: RATES["fatal_rate"],
    }
    for fault, p in expected.items():
        sigma = sqrt(n * p * (1 - p))
        assert abs(counts[fault] - n * p) < 5 * sigma, (fault, counts[fault])
    unknown = [d for d in decisions if d.fault is Fault.UNKNOWN_ERROR]
    share = sum(d.execute for d in unknown) / len(unknown)
    assert abs(share - 0.3) < 5 * sqrt(0.3 * 0.7 / len(unknown))
    assert all(not d.execute for d in decisions if d.fault in (Fault.FATAL, Fault.RATE_LIMITED))
    assert all((d.code, d.sub_code) == ("20000", "isp.unknow-error") for d in unknown)
    tally = injector.tally()
    assert tally["unknown_error"] == len(unknown) and tally["executed:unknown_error"] == sum(d.execute for d in unknown)


def test_seeded_decisions_do_not_depend_on_arrival_order_and_retries_draw_afresh() -> None:
    bodies = [f'{{"n":{i}}}' for i in range(500)]
    a, b = FaultInjector(sm.OUTBOUND_METHODS), FaultInjector(sm.OUTBOUND_METHODS)
    a.configure(seed=7, **RATES)
    b.configure(seed=7, **RATES)
    shuffled = bodies[:]
    random.Random(1).shuffle(shuffled)
    assert run_draws(a, bodies) == run_draws(b, shuffled)
    # the second sight of each body is a new draw: some that failed the first time pass now
    first = run_draws(a, bodies)
    second = run_draws(a, bodies)
    assert first != second
    other = FaultInjector(sm.OUTBOUND_METHODS)
    other.configure(seed=8, **RATES)
    b.configure(seed=7)  # setting the seed starts the per-request counts afresh
    assert run_draws(other, bodies) != run_draws(b, bodies)


def test_fault_scope_latency_and_validation() -> None:
    injector = FaultInjector(sm.OUTBOUND_METHODS)
    injector.configure(seed=1, fatal_rate=1.0, latency_ms=20, jitter_ms=10)
    d = injector.decide(APP, sm.SINGLE_SEND, "{}")
    assert d.fault is Fault.FATAL and (d.code, d.sub_code) == ("40006", "isv.insufficient-isv-permissions")
    assert 0.020 <= d.latency_s <= 0.030
    follow = injector.decide(APP, "alipay.open.public.user.follow.query", "{}")
    assert follow.fault is None and follow.latency_s == 0  # not in the default scope
    injector.configure(methods=["alipay.open.public.user.follow.query"])
    assert injector.decide(APP, "alipay.open.public.user.follow.query", "{}").fault is Fault.FATAL
    assert injector.decide(APP, sm.SINGLE_SEND, "{}").fault is None
    assert injector.clear().fatal_rate == 0
    for bad in (
        {"fatal_rate": 0.6, "timeout_rate": 0.5},
        {"fatal_rate": -0.1},
        {"latency_ms": "20"},
        {"no_such_setting": 1},
        {"methods": "alipay.x"},
        {"unknown_error_delivered_share": 2},
    ):
        with pytest.raises(ValueError):
            injector.configure(**bad)
    assert injector.config.fatal_rate == 0  # a refused change leaves the settings alone
