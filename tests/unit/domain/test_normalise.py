"""Verified callbacks → domain events: fields, times in Beijing time, refusals, JSON round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from lifelink.alipay.lifegateway import parse_gateway_xml
from lifelink.domain.events import parse_event
from lifelink.domain.normalise import (
    NormaliseError,
    beijing_time,
    event_id_for,
    from_gateway,
    from_message,
    from_notify,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
APP = "2021000000000001"


def trade(**kw: str) -> dict[str, str]:
    p = {"notify_type": "trade_status_sync", "notify_id": "n1", "out_trade_no": "O1", "trade_no": "T1",
         "trade_status": "TRADE_SUCCESS", "total_amount": "10.00", "buyer_open_id": "074a…open",
         "gmt_payment": "2026-11-24 20:01:02", "notify_time": "2026-11-24 20:01:05"}
    p.update(kw)
    return p


def test_event_ids_are_deterministic_per_delivery_and_differ_across_apps():
    assert event_id_for(APP, "notify:n1") == event_id_for(APP, "notify:n1")
    assert event_id_for(APP, "notify:n1") != event_id_for("2021000000000002", "notify:n1")


def test_beijing_time_is_utc_plus_8():
    assert beijing_time("2026-11-24 08:00:00") == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    assert beijing_time("24/11/2026") is None


@pytest.mark.parametrize(
    ("status", "kind", "time_field"),
    [("TRADE_SUCCESS", "order_paid", "gmt_payment"), ("TRADE_FINISHED", "order_paid", "gmt_payment"),
     ("TRADE_CLOSED", "order_closed", "gmt_close"), ("WAIT_BUYER_PAY", "order_pending", "gmt_create")],
)
def test_trade_status_decides_the_event(status, kind, time_field):
    params = trade(trade_status=status, **{time_field: "2026-11-24 09:30:00"})
    event = from_notify(APP, params, event_id="e", received_at=NOW)
    assert event.type == kind
    assert event.occurred_at == datetime(2026, 11, 24, 1, 30, tzinfo=UTC)
    assert event.user.open_id == "074a…open" and event.user.user_id is None


def test_partial_refund_keeps_the_order_paid_with_its_refund_fee_and_refund_time():
    event = from_notify(APP, trade(refund_fee="3.50", gmt_refund="2026-11-25 10:00:00"), event_id="e", received_at=NOW)
    assert (event.type, event.refund_fee) == ("order_paid", Decimal("3.50"))
    assert event.occurred_at == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"total_amount": "abc"}, "not an amount"), ({"total_amount": "1.001"}, "two decimals"),
     ({"total_amount": "-1"}, "amount"), ({"total_amount": "NaN"}, "amount"), ({"out_trade_no": ""}, "out_trade_no"),
     ({"trade_status": "TRADE_WHATEVER"}, "unknown trade_status"), ({"notify_id": ""}, "notify_id")],
)
def test_incomplete_or_odd_trades_are_refused(change, message):
    with pytest.raises(NormaliseError, match=message):
        from_notify(APP, trade(**change), event_id="e", received_at=NOW)


def test_other_notify_types_are_recorded_as_unknown():
    params = {"notify_type": "servicemarket_order_notify", "notify_id": "n9", "method": "x", "phone": "178…"}
    event = from_notify(APP, params, event_id="e", received_at=NOW, family="gateway")
    assert (event.type, event.family, event.kind) == ("unknown", "gateway", "servicemarket_order_notify")
    assert "phone" not in event.fields  # only a safe subset is carried


def test_message_push_decodes_biz_content_and_refuses_non_objects():
    params = {"msg_method": "alipay.marketing.activity.message.send", "utc_timestamp": "1795003200000",
              "notify_id": "n2", "biz_content": '{"voucher_id": "V", "open_id": "o1"}'}
    event = from_message(APP, params, event_id="e", received_at=NOW)
    assert event.biz == {"voucher_id": "V", "open_id": "o1"} and event.user.open_id == "o1"
    assert event.occurred_at.timestamp() == 1795003200
    for bad in ("[1]", "{not json"):
        with pytest.raises(NormaliseError):
            from_message(APP, {**params, "biz_content": bad}, event_id="e", received_at=NOW)


def test_gateway_kinds_and_unknown_fallback():
    xml = ("<XML><AppId><![CDATA[{a}]]></AppId><MsgType><![CDATA[event]]></MsgType>"
           "<EventType><![CDATA[{t}]]></EventType><FromAlipayUserId><![CDATA[2088]]></FromAlipayUserId>"
           "<ActionParam><![CDATA[{{\"scene\":{{\"sceneId\":\"s1\"}}}}]]></ActionParam></XML>")
    enter = from_gateway(APP, parse_gateway_xml(xml.format(a=APP, t="enter")), event_id="e", received_at=NOW)
    assert (enter.type, enter.scene_id, enter.user.user_id) == ("enter", "s1", "2088")
    odd = from_gateway(APP, parse_gateway_xml(xml.format(a=APP, t="somethingnew")), event_id="e", received_at=NOW)
    assert (odd.type, odd.kind) == ("unknown", "event/somethingnew")
    assert odd.occurred_at == NOW  # no CreateTime: arrival time


def test_events_round_trip_through_json():
    event = from_notify(APP, trade(), event_id="e", received_at=NOW)
    again = parse_event(event.model_dump_json())
    assert again == event and isinstance(again.total_amount, Decimal)
