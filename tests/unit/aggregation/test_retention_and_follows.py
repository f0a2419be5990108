"""Retention and follower growth through the real consumer, read back through GET /metrics."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest

from lifelink.store.apps import AppRegistry
from lifelink_local.provision import Provisioned
from tests.unit.aggregation.conftest import World, make_world
from tests.unit.aggregation.helpers import LIFE_APP, api_get, at, behaviour, follow, metric, session, today


def test_three_users_day_one_on_is_a_third_and_return_rate_7d_two_thirds(world: World) -> None:
    d0 = today() - timedelta(days=12)
    events = [session(at(d0, 9), u) for u in ("ann", "bob", "cat")]
    events += [session(at(d0 + timedelta(days=1), 10), "ann"), session(at(d0 + timedelta(days=5), 10), "bob")]
    events += [behaviour("page_view", at(d0, 18), "cat", page="pages/index", foreground_s=5.0)]  # same day: no return

    assert world.consume(events) == []

    (rate,) = metric(world.api, "return_rate_7d", d0, d0)
    assert (rate["numerator"], rate["denominator"], rate["complete"]) == (2, 3, True)
    assert round(rate["value"], 2) == 0.67
    (day1,) = metric(world.api, "day_n_retention", d0, d0, n=1)
    assert (day1["numerator"], day1["denominator"]) == (1, 3)
    (day5,) = metric(world.api, "day_n_retention", d0, d0, n=5)
    assert (day5["numerator"], day5["denominator"]) == (1, 3)


def test_a_cohort_is_incomplete_until_d_plus_7_has_ended(world: World) -> None:
    d0 = today() - timedelta(days=7)
    world.consume([session(at(d0, 9), "ann"), session(at(d0 + timedelta(days=2), 9), "ann")])
    (rate,) = metric(world.api, "return_rate_7d", d0, d0)
    assert (rate["numerator"], rate["denominator"], rate["complete"]) == (1, 1, False)


def test_23_45_then_00_01_is_a_return_on_day_one(world: World) -> None:
    d0 = today() - timedelta(days=3)
    world.consume([session(at(d0, 23, 45), "owl"), session(at(d0 + timedelta(days=1), 0, 1), "owl")])

    (cohort,) = metric(world.api, "day_n_retention", d0, d0 + timedelta(days=1), n=1)
    assert (cohort["day"], cohort["numerator"], cohort["denominator"]) == (d0.isoformat(), 1, 1)


def test_a_late_first_visit_moves_the_user_to_the_earlier_cohort(world: World) -> None:
    d1 = today() - timedelta(days=4)
    d0 = d1 - timedelta(days=1)
    world.consume([session(at(d1, 10), "eve"), session(at(d1 + timedelta(days=2), 10), "eve")])
    assert [(p["day"], p["denominator"]) for p in metric(world.api, "return_rate_7d", d0, d1)] == [
        (d1.isoformat(), 1)
    ]

    world.consume([session(at(d0, 22), "eve")])  # a day late, and before everything already counted

    points = metric(world.api, "return_rate_7d", d0, d1)
    assert [(p["day"], p["numerator"], p["denominator"]) for p in points] == [(d0.isoformat(), 1, 1)]
    (day1,) = metric(world.api, "day_n_retention", d0, d0, n=1)
    assert day1["numerator"] == 1


def test_events_out_of_order_count_the_same_as_in_order(world: World) -> None:
    d0 = today() - timedelta(days=6)
    events = [session(at(d0 + timedelta(days=k), 8), u) for u in ("a1", "a2") for k in (0, 2, 3)]
    for e in reversed(events):  # one at a time, newest first
        assert world.consume([e]) == []
    (rate,) = metric(world.api, "return_rate_7d", d0, d0)
    (day2,) = metric(world.api, "day_n_retention", d0, d0, n=2)
    sessions = metric(world.api, "life_traffic_share", d0, d0 + timedelta(days=3))
    assert (rate["numerator"], rate["denominator"]) == (2, 2)
    assert day2["numerator"] == 2
    assert [p["denominator"] for p in sessions] == [2, 2, 2]


def test_follower_growth_counts_state_changes_and_sets_the_default_tier(world: World) -> None:
    d = today() - timedelta(days=1)
    world.consume([
        follow(at(d, 9), "f1"), follow(at(d, 10), "f1"),  # a repeated follow changes nothing
        follow(at(d, 9), "f2"), follow(at(d, 15), "f2", followed=False),  # follow and unfollow: net 0
        follow(at(d, 11), "f3", followed=False),  # an unfollow first: a follower from before
    ])
    (point,) = metric(world.api, "net_follower_growth", d, d)
    assert (point["gained"], point["lost"], point["net"]) == (2, 2, 0)

    status, profile = api_get(world.api, "/profiles/2021000000000001/f1")
    assert status == 200
    assert (profile["following"], profile["tier"]) == (True, "silver")
    status, gone = api_get(world.api, "/profiles/2021000000000001/f2")
    assert (gone["following"], gone["tier"]) == (False, "silver")  # unfollow keeps the tier by default


def test_the_tiers_follows_grant_and_unfollows_take_are_the_apps(aws: Provisioned,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(aws, monkeypatch)
    AppRegistry(boto3.client("dynamodb"), aws.tables["StateTable"]).configure(
        LIFE_APP, policy={"tier_on_follow": "gold", "tier_on_unfollow": "none"})
    d = today() - timedelta(days=1)
    world.consume([follow(at(d, 15), "g2", followed=False), follow(at(d, 9), "g1"), follow(at(d, 9), "g2")])

    _, g1 = api_get(world.api, f"/profiles/{LIFE_APP}/g1")
    _, g2 = api_get(world.api, f"/profiles/{LIFE_APP}/g2")
    assert (g1["following"], g1["tier"]) == (True, "gold")
    assert (g2["following"], g2["tier"]) == (False, None)  # followed at 9:00 (gold), unfollowed at 15:00 (none)


def test_product_viewers_count_each_user_once_a_day_whatever_the_views_or_redeliveries(world: World) -> None:
    d0 = today() - timedelta(days=3)
    views = [behaviour("product_view", at(d0, 9, m), "ann", product_id="tea") for m in (0, 5, 10)]
    views += [behaviour("product_view", at(d0, 11), "bob", product_id="cup"),
              behaviour("product_view", at(d0 + timedelta(days=1), 8), "ann", product_id="tea")]

    assert world.consume(views) == []
    assert world.consume(views[::-1]) == []  # redelivered, out of order: nothing new

    by_day = metric(world.api, "product_viewers", d0, d0 + timedelta(days=1))
    d1 = d0 + timedelta(days=1)
    assert [(p["day"], p["viewers"]) for p in by_day] == [(d0.isoformat(), 2), (d1.isoformat(), 1)]
    (total,) = metric(world.api, "product_viewers", d0, d0 + timedelta(days=1), by="total")
    assert total["viewers"] == 3  # viewer-days
