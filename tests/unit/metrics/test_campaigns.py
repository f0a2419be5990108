from datetime import timedelta

from lifelink.domain.metrics import (
    CampaignUser,
    CouponGrant,
    Jump,
    OrderFacts,
    Rate,
    attribute_order,
    conversion,
    coupon_redemption_rate,
    post_jump_conversion_rate,
    uplift,
)

from .helpers import d, sh


def paid(no: str, at: object) -> dict[str, OrderFacts]:
    return {no: OrderFacts(no).observe_trade("TRADE_SUCCESS", at, 1000)}  # type: ignore[arg-type]


def test_last_click_through_wins() -> None:
    jumps = [Jump(sh(d(0)), "A"), Jump(sh(d(1)), "B")]
    assert attribute_order(jumps, sh(d(2))) == "B"
    assert attribute_order(list(reversed(jumps)), sh(d(2))) == "B"  # the order of arrival does not matter
    assert attribute_order(jumps, sh(d(0), 18)) == "A"  # before B's jump
    assert attribute_order(jumps, sh(d(0), 6)) is None  # before any jump


def test_attribution_window_is_7_days_from_the_jump() -> None:
    jumps = [Jump(sh(d(0)), "A")]
    assert attribute_order(jumps, sh(d(0)) + timedelta(days=7)) == "A"
    assert attribute_order(jumps, sh(d(0)) + timedelta(days=7, seconds=1)) is None
    # the most recent jump is too old: no older jump takes over
    assert attribute_order([Jump(sh(d(0)), "A"), Jump(sh(d(1)), "B")], sh(d(9))) is None


def test_same_instant_tie_is_deterministic() -> None:
    t = sh(d(0))
    assert attribute_order([Jump(t, "A"), Jump(t, "B")], sh(d(1))) == attribute_order(
        [Jump(t, "B"), Jump(t, "A")], sh(d(1))) == "B"


def test_post_jump_conversion_rate_hand_computed() -> None:
    both = CampaignUser(frozenset({Jump(sh(d(0)), "A"), Jump(sh(d(1)), "B")}), paid("o1", sh(d(2))))
    a_buyer = CampaignUser(frozenset({Jump(sh(d(0)), "A")}), paid("o2", sh(d(6))))
    a_late = CampaignUser(frozenset({Jump(sh(d(0)), "A")}), paid("o3", sh(d(9))))
    a_none = CampaignUser(frozenset({Jump(sh(d(0)), "A")}))
    b_refunded = CampaignUser(frozenset({Jump(sh(d(0)), "B")}), {
        "o4": OrderFacts("o4").observe_trade("TRADE_SUCCESS", sh(d(1)), 500)
                              .observe_trade("TRADE_CLOSED", sh(d(2)), 500, 500)})
    users = [both, a_buyer, a_late, a_none, b_refunded]
    ra = post_jump_conversion_rate("A", users, now=sh(d(30)))
    assert (ra.numerator, ra.denominator, ra.complete) == (1, 4, True)  # o1 went to B: last click wins
    rb = post_jump_conversion_rate("B", users, now=sh(d(30)))
    assert (rb.numerator, rb.denominator) == (1, 2)
    assert post_jump_conversion_rate("A", users, now=sh(d(6))).complete is False
    assert post_jump_conversion_rate("C", users, now=sh(d(30))).value is None


def test_conversion_counts_from_the_first_jump_even_after_a_second_jump_of_the_same_campaign() -> None:
    # second jump on day 5 makes the day-10 order attributable to A, but it is > 7 days after the first jump
    u = CampaignUser(frozenset({Jump(sh(d(0)), "A"), Jump(sh(d(5)), "A")}), paid("o", sh(d(10))))
    assert attribute_order(u.jumps, sh(d(10))) == "A"
    assert post_jump_conversion_rate("A", [u], now=sh(d(30))).numerator == 0


def test_coupon_redemption_rate_dedupes_grants() -> None:
    grants = [CouponGrant("g1"), CouponGrant("g2", redeemed=True), CouponGrant("g2"),
              CouponGrant("g3", issued=False, redeemed=True), CouponGrant("g1")]
    r = coupon_redemption_rate(grants)
    assert (r.numerator, r.denominator) == (2, 3)
    assert coupon_redemption_rate([]).value is None


def test_uplift_is_treated_minus_holdout() -> None:
    treated = conversion([True] * 30 + [False] * 70)
    holdout = conversion([True] * 2 + [False] * 18)
    u = uplift(treated, holdout)
    assert u.value is not None and round(u.value, 6) == 0.2
    assert uplift(treated, conversion([])).value is None
    assert uplift(treated, Rate.of(1, 10, complete=False)).complete is False
