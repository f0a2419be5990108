"""Paid orders, refunds, attribution and conversion through the real consumer, read back through GET /metrics."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.unit.aggregation.conftest import World
from tests.unit.aggregation.helpers import LIFE_APP, api_get, at, metric, session, today, trade


def test_a_paid_order_notified_twice_counts_once(world: World) -> None:
    d = today() - timedelta(days=2)
    paid = trade(at(d, 10), "buyer", "T1", amount="88.00")
    again = trade(at(d, 10), "buyer", "T1", amount="88.00")  # Alipay's retry: another event id, same trade
    world.consume([paid])
    world.consume([again, paid])  # and the first one redelivered

    (freq,) = metric(world.api, "purchase_frequency_30d", d, d)
    (repeat,) = metric(world.api, "repeat_buyer_rate_30d", d, d)
    assert (freq["numerator"], freq["denominator"]) == (1, 1)
    assert (repeat["numerator"], repeat["denominator"]) == (0, 1)
    status, profile = api_get(world.api, "/profiles/2021000000000001/buyer")
    assert status == 200
    assert profile["orders"]["30d"] == {"orders": 1, "amount_cents": 8800, "active_days": 1}


def test_two_orders_make_a_repeat_buyer_for_thirty_days(world: World) -> None:
    d = today() - timedelta(days=40)
    world.consume([trade(at(d, 10), "rb", "A"), trade(at(d + timedelta(days=3), 10), "rb", "B"),
                   trade(at(d + timedelta(days=3), 11), "one", "C")])
    points = {p["day"]: p for p in metric(world.api, "repeat_buyer_rate_30d", d, d + timedelta(days=35))}
    assert (points[d.isoformat()]["numerator"], points[d.isoformat()]["denominator"]) == (0, 1)
    inside = points[(d + timedelta(days=29)).isoformat()]  # both orders in its 30 days
    assert (inside["numerator"], inside["denominator"]) == (1, 2)
    after = points[(d + timedelta(days=30)).isoformat()]  # the first order has left the window
    assert (after["numerator"], after["denominator"]) == (0, 2)
    assert (d + timedelta(days=33)).isoformat() not in points  # no order in that window at all


def test_a_full_refund_removes_the_order_and_a_partial_one_keeps_it(world: World) -> None:
    d = today() - timedelta(days=5)
    world.consume([trade(at(d, 9), "r1", "FULL", amount="50.00"), trade(at(d, 9), "r2", "PART", amount="50.00")])
    (before,) = metric(world.api, "purchase_frequency_30d", d, d)
    assert (before["numerator"], before["denominator"]) == (2, 2)

    world.consume([trade(at(d + timedelta(days=1), 9), "r1", "FULL", status="TRADE_CLOSED", amount="50.00",
                         refund="50.00"),
                   trade(at(d + timedelta(days=1), 9), "r2", "PART", status="TRADE_SUCCESS", amount="50.00",
                         refund="10.00")])

    (after,) = metric(world.api, "purchase_frequency_30d", d, d)
    assert (after["numerator"], after["denominator"]) == (1, 1)
    status, r1 = api_get(world.api, "/profiles/2021000000000001/r1")
    assert (status, r1["orders"]["paid"]) == (200, 0)


def test_an_order_after_two_jumps_goes_to_the_last_campaign(world: World) -> None:
    d = today() - timedelta(days=3)
    first, second = at(d, 9), at(d, 15)
    events = [session(first, "jumper", token=world.token("spring", first)),
              session(second, "jumper", token=world.token("summer", second)),
              trade(at(d + timedelta(days=1), 10), "jumper", "ORD", amount="30.00")]
    world.consume(events)

    attributed = metric(world.api, "attributed_orders", d, d + timedelta(days=1))
    assert [(p["campaign"], p["orders"], p["amount_cents"]) for p in attributed] == [("summer", 1, 3000)]
    conversion = {p["campaign"]: p for p in metric(world.api, "post_jump_conversion_rate", d, d)}
    assert (conversion["spring"]["numerator"], conversion["spring"]["denominator"]) == (0, 1)
    assert (conversion["summer"]["numerator"], conversion["summer"]["denominator"]) == (1, 1)
    assert conversion["summer"]["complete"] is False  # the 7 days after the jump have not all passed


def test_a_forged_token_is_no_jump_and_no_life_traffic(world: World) -> None:
    d = today() - timedelta(days=1)
    good = world.token("spring", at(d, 9))
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    world.consume([session(at(d, 9), "u1", token=good), session(at(d, 10), "u2", token=forged),
                   session(at(d, 11), "u3", scene="1020"), session(at(d, 12), "u4")])

    (share,) = metric(world.api, "life_traffic_share", d, d)
    assert (share["numerator"], share["denominator"]) == (2, 4)
    (conv,) = metric(world.api, "post_jump_conversion_rate", d, d)
    assert (conv["campaign"], conv["denominator"]) == ("spring", 1)


def _voucher(when: datetime, user: str, voucher: str, kind: str) -> dict[str, Any]:
    return {"schema_version": 1, "event_id": f"push-{voucher}-{kind}-{when.timestamp()}", "type": "message_push",
            "app_id": LIFE_APP, "source": "message_service", "occurred_at": when.isoformat(),
            "received_at": when.isoformat(), "user": {"user_id": user},
            "msg_method": f"alipay.marketing.activity.message.{kind}",
            "biz": {"voucher_id": voucher, "activity_id": "act-1", "user_id": user}}


def test_coupon_redemption_counts_each_grant_once_and_a_redemption_implies_the_issue(world: World) -> None:
    d = today() - timedelta(days=2)
    world.consume([_voucher(at(d, 9), "2088001", "V1", "received"),
                   _voucher(at(d, 9, 5), "2088002", "V2", "received"),
                   _voucher(at(d, 18), "2088002", "V2", "used"),
                   _voucher(at(d, 19), "2088003", "V3", "used")])  # its "received" push never came
    world.consume([_voucher(at(d, 9), "2088001", "V1", "received")])  # pushed again

    (rate,) = metric(world.api, "coupon_redemption_rate", d, d)
    assert (rate["activity"], rate["numerator"], rate["denominator"]) == ("act-1", 2, 3)
