import itertools
from datetime import datetime

from lifelink.domain.metrics import (
    OrderFacts,
    observe_trade,
    paid_in_window,
    purchase_frequency_30d,
    repeat_buyer_rate_30d,
    window_days,
)

from .helpers import d, sh

AS_OF = d(40)
Notification = tuple[str, str, datetime, int, int | None]  # out_trade_no, status, at, amount, refund


def fold(*notes: Notification) -> dict[str, OrderFacts]:
    orders: dict[str, OrderFacts] = {}
    for no, status, at, amount, refund in notes:
        orders = observe_trade(orders, no, status, at, amount, refund)
    return orders


def test_window_is_30_calendar_days_ending_with_as_of() -> None:
    assert window_days(AS_OF, 30) == (d(11), d(40))


def test_paid_notified_twice_is_one_order() -> None:
    orders = fold(("A", "TRADE_SUCCESS", sh(d(30)), 5000, None), ("A", "TRADE_SUCCESS", sh(d(30)), 5000, None))
    assert list(orders) == ["A"]
    assert repeat_buyer_rate_30d([orders], AS_OF).value == 0.0
    assert purchase_frequency_30d([orders], AS_OF).value == 1.0


def test_full_refund_removes_the_order_and_a_partial_keeps_it() -> None:
    full = fold(("B", "TRADE_SUCCESS", sh(d(30)), 5000, None), ("B", "TRADE_CLOSED", sh(d(31)), 5000, 5000))
    assert not full["B"].paid
    by_fee = fold(("B", "TRADE_SUCCESS", sh(d(30)), 5000, None), ("B", "TRADE_SUCCESS", sh(d(31)), 5000, 5000))
    assert not by_fee["B"].paid
    partial = fold(("C", "TRADE_SUCCESS", sh(d(30), 9), 5000, None), ("C", "TRADE_SUCCESS", sh(d(32)), 5000, 1000))
    assert partial["C"].paid
    assert partial["C"].paid_at == sh(d(30), 9)  # the refund notification's later time is not the payment
    assert partial["C"].refunded_cents == 1000


def test_unpaid_and_closed_unpaid_orders_are_not_paid() -> None:
    orders = fold(("D", "WAIT_BUYER_PAY", sh(d(30)), 100, None), ("E", "TRADE_CLOSED", sh(d(30)), 100, None))
    assert not any(o.paid for o in orders.values())


def test_refund_arriving_before_the_payment_notification() -> None:
    notes: list[Notification] = [("F", "TRADE_CLOSED", sh(d(31)), 800, 800),
                                 ("F", "TRADE_SUCCESS", sh(d(30)), 800, None)]
    for perm in itertools.permutations(notes):
        assert not fold(*perm)["F"].paid


def test_notifications_in_any_order_give_the_same_facts() -> None:
    notes: list[Notification] = [
        ("G", "WAIT_BUYER_PAY", sh(d(29)), 700, None),
        ("G", "TRADE_SUCCESS", sh(d(30), 9), 700, None),
        ("G", "TRADE_SUCCESS", sh(d(33)), 700, 200),
        ("G", "TRADE_FINISHED", sh(d(35)), 700, 200),
    ]
    assert len({fold(*p)["G"] for p in itertools.permutations(notes)}) == 1


def test_repeat_buyers_and_frequency_hand_computed() -> None:
    x = fold(("X1", "TRADE_SUCCESS", sh(d(20)), 3000, None), ("X1", "TRADE_SUCCESS", sh(d(20)), 3000, None),
             ("X2", "TRADE_FINISHED", sh(d(38)), 1000, None))  # 2 paid
    y = fold(("Y1", "TRADE_SUCCESS", sh(d(25)), 2000, None),
             ("Y2", "TRADE_SUCCESS", sh(d(26)), 2000, None), ("Y2", "TRADE_CLOSED", sh(d(27)), 2000, 2000))  # 1 paid
    z = fold(("Z1", "TRADE_SUCCESS", sh(d(12)), 900, None), ("Z1", "TRADE_SUCCESS", sh(d(13)), 900, 100),
             ("Z2", "TRADE_SUCCESS", sh(d(40), 23, 59), 900, None))  # 2 paid (one partly refunded)
    w = fold(("W1", "TRADE_SUCCESS", sh(d(10), 23, 59), 900, None),  # the day before the window
             ("W2", "TRADE_SUCCESS", sh(d(41), 0, 0), 900, None),  # the day after
             ("W3", "WAIT_BUYER_PAY", sh(d(30)), 900, None))
    users = [x, y, z, w]
    freq = purchase_frequency_30d(users, AS_OF, today=d(41))
    assert (freq.numerator, freq.denominator) == (5, 3)
    repeat = repeat_buyer_rate_30d(users, AS_OF, today=d(41))
    assert (repeat.numerator, repeat.denominator) == (2, 3)
    assert repeat.complete is True
    assert repeat_buyer_rate_30d(users, AS_OF, today=AS_OF).complete is False
    assert repeat_buyer_rate_30d([w], AS_OF).value is None


def test_order_placed_adds_the_coupon_flag_in_any_order() -> None:
    paid = OrderFacts("H").observe_trade("TRADE_SUCCESS", sh(d(1)), 500)
    placed = OrderFacts("H").observe_placed(500, coupon_used=True)
    assert paid.merge(placed) == placed.merge(paid)
    assert paid.merge(placed).coupon_used and paid.merge(placed).paid


def test_paid_in_window_uses_the_app_zone() -> None:
    o = OrderFacts("I").observe_trade("TRADE_SUCCESS", sh(d(1), 0, 30), 500)  # day 0 in UTC
    assert paid_in_window([o], d(1), d(1)) == [o]
    assert paid_in_window([o], d(1), d(1), tz="UTC") == []
    assert paid_in_window([o], d(0), d(0), tz="UTC") == [o]
