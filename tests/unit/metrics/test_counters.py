"""Counters kept by deltas give exactly what the metric functions compute over the facts, in any event order."""

import random
from collections import Counter
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from lifelink.domain.metrics import (
    ActivityFacts,
    ArticleFacts,
    CounterKey,
    FollowFacts,
    OrderFacts,
    activity_counters,
    article_counters,
    counter_delta,
    day_n_retention,
    follow_counters,
    net_follower_growth,
    purchase_counters,
    read_completion_rate,
    repeat_buyer_rate_30d,
    return_rate_7d,
)

from .helpers import d, sh


def apply(counters: Counter[CounterKey], delta: dict[CounterKey, int]) -> None:
    for k, v in delta.items():
        counters[k] += v
        if not counters[k]:
            del counters[k]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 25), min_size=1, max_size=6), min_size=1, max_size=25), st.randoms())
def test_retention_counters_by_delta_match_the_definition(users_days: list[list[int]], rnd: random.Random) -> None:
    events = [(u, d(o)) for u, offsets in enumerate(users_days) for o in offsets]
    rnd.shuffle(events)
    events += events[: len(events) // 3]  # redelivery
    facts = [ActivityFacts() for _ in users_days]
    counters: Counter[CounterKey] = Counter()
    for u, day in events:
        after = facts[u].observe_day(day)
        apply(counters, counter_delta(activity_counters(facts[u]), activity_counters(after)))
        facts[u] = after
    today = d(40)
    for day in {f.first_active_day for f in facts}:
        assert day is not None
        key = day.isoformat()
        r = return_rate_7d(day, facts, today)
        assert (counters[("returned_7d", key)], counters[("cohort", key)]) == (r.numerator, r.denominator)
        for n in (1, 3, 7):
            assert counters[("on", key, str(n))] == day_n_retention(day, n, facts, today).numerator


def test_a_late_first_visit_moves_the_user_between_cohorts() -> None:
    late = ActivityFacts.from_days([d(3), d(4)])
    early = late.observe_day(d(1))
    delta = counter_delta(activity_counters(late), activity_counters(early))
    k1, k3 = d(1).isoformat(), d(3).isoformat()
    assert delta[("cohort", k3)] == -1 and delta[("returned_7d", k3)] == -1
    assert delta[("cohort", k1)] == 1 and delta[("returned_7d", k1)] == 1
    assert delta[("on", k1, "2")] == 1 and delta[("on", k3, "1")] == -1


def test_follow_counters_match_growth() -> None:
    rnd = random.Random(3)
    obs = [(u, sh(d(rnd.randrange(5)), rnd.randrange(24)), rnd.random() < 0.6) for u in range(20) for _ in range(4)]
    rnd.shuffle(obs)
    facts = [FollowFacts() for _ in range(20)]
    counters: Counter[CounterKey] = Counter()
    for u, at, followed in obs:
        after = facts[u].observe(at, followed)
        apply(counters, counter_delta(follow_counters(facts[u]), follow_counters(after)))
        facts[u] = after
    for i in range(5):
        g = net_follower_growth(d(i), facts)
        key = d(i).isoformat()
        assert (counters[("gained", key)], counters[("lost", key)]) == (g.gained, g.lost)


def test_article_counters_match_completion() -> None:
    t = sh(d(0))
    users = [ArticleFacts("a").observe_open(t).observe_progress(t, x / 10, 5 + x * 3) for x in range(11)]
    users.append(ArticleFacts("a").observe_reaction("like", t))  # not an opener
    total: Counter[CounterKey] = Counter()
    for f in users:
        total.update(article_counters(f))
    r = read_completion_rate("a", users)
    assert (total[("completers", "a")], total[("openers", "a")]) == (r.rate.numerator, r.rate.denominator)
    assert tuple(total[("exit_band", "a", str(i))] for i in range(5)) == r.exit_bands


def test_purchase_counters_match_repeat_buyers() -> None:
    rnd = random.Random(9)
    users: list[dict[str, OrderFacts]] = []
    for u in range(40):
        orders: dict[str, OrderFacts] = {}
        for k in range(rnd.randrange(4)):
            at: datetime = sh(d(rnd.randrange(60)), rnd.randrange(24))
            o = OrderFacts(f"{u}-{k}").observe_trade("TRADE_SUCCESS", at, 1000)
            if rnd.random() < 0.2:
                o = o.observe_trade("TRADE_CLOSED", at + timedelta(hours=1), 1000, 1000)
            orders[o.out_trade_no] = o
        users.append(orders)
    total: Counter[CounterKey] = Counter()
    for orders in users:
        total.update(purchase_counters(orders))
    for as_of in (d(10), d(29), d(45), d(70)):
        r = repeat_buyer_rate_30d(users, as_of)
        key = as_of.isoformat()
        assert (total[("repeat_buyers_30d", key)], total[("buyers_30d", key)]) == (r.numerator, r.denominator)
