import itertools
import random
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from lifelink.domain.metrics import ActivityFacts, day_n_retention, local_day, return_rate_7d, return_rates_7d

from .helpers import DAY0, d, sh


def facts(*times: datetime, tz: str = "Asia/Shanghai") -> ActivityFacts:
    f = ActivityFacts()
    for t in times:
        f = f.observe(t, tz)
    return f


def test_issue_scenario_three_users_return_day1_day5_never() -> None:
    users = [facts(sh(d(0)), sh(d(1))), facts(sh(d(0)), sh(d(5))), facts(sh(d(0), 9), sh(d(0), 21))]
    r = return_rate_7d(DAY0, users, today=d(10))
    assert (r.numerator, r.denominator) == (2, 3)
    assert r.value is not None and round(r.value, 2) == 0.67
    on1 = day_n_retention(DAY0, 1, users, today=d(10))
    assert (on1.numerator, on1.denominator) == (1, 3)
    assert on1.value is not None and round(on1.value, 2) == 0.33
    on5 = day_n_retention(DAY0, 5, users, today=d(10))
    assert on5.numerator == 1
    assert day_n_retention(DAY0, 0, users, today=d(10)).value == 1.0


def test_same_day_activity_is_not_a_return_and_day_8_is_too_late() -> None:
    users = [facts(sh(d(0), 8), sh(d(0), 23, 59)), facts(sh(d(0)), sh(d(8))), facts(sh(d(0)), sh(d(7), 23, 59))]
    r = return_rate_7d(DAY0, users, today=d(20))
    assert (r.numerator, r.denominator) == (1, 3)


def test_2345_then_0001_shanghai_is_a_return_on_day_1() -> None:
    first = datetime(2026, 11, 2, 15, 45, tzinfo=UTC)  # 23:45 in Shanghai
    again = datetime(2026, 11, 2, 16, 1, tzinfo=UTC)  # 00:01 the next day in Shanghai
    assert local_day(first) == DAY0 and local_day(again) == d(1)
    user = facts(first, again)
    assert return_rate_7d(DAY0, [user], today=d(9)).value == 1.0
    assert day_n_retention(DAY0, 1, [user], today=d(9)).value == 1.0
    # the zone is configurable: on UTC days the same two events are one day, so no return
    utc_user = facts(first, again, tz="UTC")
    assert return_rate_7d(DAY0, [utc_user], today=d(9)).value == 0.0


def test_maturity_return_rate_is_complete_only_after_d7_has_ended() -> None:
    users = [facts(sh(d(0)), sh(d(1)))]
    assert return_rate_7d(DAY0, users, today=d(7)).complete is False  # D+7 is still running
    assert return_rate_7d(DAY0, users, today=d(8)).complete is True
    assert day_n_retention(DAY0, 1, users, today=d(1)).complete is False
    assert day_n_retention(DAY0, 1, users, today=d(2)).complete is True


def test_empty_cohort_has_no_value() -> None:
    r = return_rate_7d(DAY0, [facts(sh(d(1)))], today=d(30))
    assert (r.numerator, r.denominator, r.value) == (0, 0, None)


def test_events_out_of_order_and_a_day_late_give_the_same_facts() -> None:
    events = [sh(d(3)), sh(d(5)), sh(d(3), 18), sh(d(1))]  # the day-1 event arrives last, two days late
    orders = {facts(*p) for p in itertools.permutations(events)}
    assert len(orders) == 1
    user = orders.pop()
    assert user.first_active_day == d(1)  # the late event moved the user into the day-1 cohort
    assert return_rate_7d(d(1), [user], today=d(20)).numerator == 1
    assert return_rate_7d(d(3), [user], today=d(20)).denominator == 0


def test_redelivered_events_change_nothing() -> None:
    once = facts(sh(d(0)), sh(d(4)))
    twice = facts(sh(d(0)), sh(d(4)), sh(d(4)), sh(d(0)))
    assert once == twice


def test_all_cohorts_in_one_pass_agree_with_one_cohort_at_a_time() -> None:
    rng = random.Random(5)
    users = [ActivityFacts.from_days(d(rng.randrange(20)) for _ in range(rng.randrange(1, 6))) for _ in range(300)]
    today = d(12)
    every = return_rates_7d(users, today)
    for day, rate in every.items():
        assert rate == return_rate_7d(day, users, today)
    assert sum(r.denominator for r in every.values()) == len(users)


def test_day_numbers_round_trip_for_the_store() -> None:
    user = facts(sh(d(0)), sh(d(2)), sh(d(9)))
    assert ActivityFacts.from_day_numbers(user.day_numbers()) == user
    assert user.active_days == {d(0), d(2), d(9)}


days_st = st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=15)


@given(days_st, st.randoms())
def test_any_fold_order_and_merge_split_equal_the_set(offsets: list[int], rnd: random.Random) -> None:
    base = date(2026, 1, 1)
    days = [base + timedelta(days=o) for o in offsets]
    shuffled = days[:]
    rnd.shuffle(shuffled)
    folded = ActivityFacts()
    for day in shuffled + shuffled[: len(shuffled) // 2]:
        folded = folded.observe_day(day)
    cut = len(shuffled) // 2
    left, right = ActivityFacts.from_days(shuffled[:cut]), ActivityFacts.from_days(shuffled[cut:])
    assert folded == ActivityFacts.from_days(days) == left.merge(right) == right.merge(left)
    assert folded.active_days == set(days)


def test_day_end_is_local_midnight() -> None:
    from lifelink.domain.metrics import day_end

    assert day_end(DAY0) == datetime(2026, 11, 2, 16, 0, tzinfo=UTC)  # 00:00 on the 3rd in Shanghai
    assert day_end(DAY0, "UTC") == datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
