import itertools

from lifelink.domain.metrics import FollowFacts, net_follower_growth

from .helpers import DAY0, d, sh


def fold(*obs: tuple[object, bool]) -> FollowFacts:
    f = FollowFacts()
    for at, followed in obs:
        f = f.observe(at, followed)  # type: ignore[arg-type]
    return f


def test_repeated_follow_changes_nothing_and_follow_unfollow_same_day_nets_zero() -> None:
    repeat = fold((sh(d(0), 9), True), (sh(d(0), 10), True), (sh(d(1), 10), True))
    same_day = fold((sh(d(0), 11), True), (sh(d(0), 15), False))
    g0 = net_follower_growth(DAY0, [repeat, same_day])
    assert (g0.gained, g0.lost, g0.net) == (2, 1, 1)
    assert net_follower_growth(d(1), [repeat, same_day]).net == 0  # the repeated follow on day 1 is no change
    assert net_follower_growth(DAY0, [same_day]).net == 0


def test_an_unfollow_seen_first_is_a_loss() -> None:
    # followed before lifelink saw them: the first observation is the unfollow
    g = net_follower_growth(DAY0, [fold((sh(d(0)), False))])
    assert (g.gained, g.lost, g.net) == (0, 1, -1)


def test_refollow_after_unfollow_counts_again() -> None:
    f = fold((sh(d(0)), True), (sh(d(1)), False), (sh(d(2)), True))
    assert [net_follower_growth(d(i), [f]).net for i in range(3)] == [1, -1, 1]
    assert f.following() is True
    assert f.following(sh(d(1), 13)) is False
    assert f.following(sh(d(0), 1)) is None


def test_order_and_redelivery_do_not_matter() -> None:
    obs = [(sh(d(0), 9), True), (sh(d(0), 18), False), (sh(d(2), 9), True), (sh(d(2), 9), True)]
    results = {fold(*p) for p in itertools.permutations(obs)}
    assert len(results) == 1
    f = results.pop()
    assert [net_follower_growth(d(i), [f]).net for i in range(3)] == [0, 0, 1]


def test_a_late_unfollow_between_two_follows_makes_the_second_follow_a_change() -> None:
    f = fold((sh(d(0)), True), (sh(d(2)), True))
    assert net_follower_growth(d(2), [f]).net == 0
    f = f.observe(sh(d(1)), False)  # arrives a day late
    assert [net_follower_growth(d(i), [f]).net for i in range(3)] == [1, -1, 1]


def test_day_is_the_shanghai_calendar_day() -> None:
    f = fold((sh(d(1), 0, 30), True))  # 16:30 UTC on day 0
    assert net_follower_growth(d(1), [f]).net == 1
    assert net_follower_growth(DAY0, [f], tz="UTC").net == 1


def test_compact_keeps_the_changes() -> None:
    f = fold((sh(d(0)), True), (sh(d(1)), True), (sh(d(3)), False), (sh(d(4)), False), (sh(d(9)), True))
    small = f.compact(before=sh(d(5)))
    assert len(small.observations) == 3
    assert small.transitions() == f.transitions()
