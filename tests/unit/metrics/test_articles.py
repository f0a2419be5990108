import pytest

from lifelink.domain.metrics import ArticleFacts, exit_band, interaction_rate, is_read_complete, read_completion_rate

from .helpers import d, sh

ART = "a1"


def test_read_completion_and_exit_bands() -> None:
    t = sh(d(0))
    users = [
        ArticleFacts(ART).observe_open(t).observe_progress(t, 0.5, 4).observe_progress(t, 1.0, 30),  # completes
        ArticleFacts(ART).observe_open(t).observe_progress(t, 0.96, 5),  # at the end, too fast
        ArticleFacts(ART).observe_open(t).observe_progress(t, 0.5, 60),  # left half way
        ArticleFacts(ART).observe_open(t),  # opened, never scrolled
        ArticleFacts(ART).observe_progress(t, 0.97, 12),  # the open event is missing: still a reader
        ArticleFacts("other").observe_open(t).observe_progress(t, 1.0, 99),
    ]
    r = read_completion_rate(ART, users)
    assert (r.rate.numerator, r.rate.denominator, r.rate.value) == (2, 5, 0.4)
    assert r.exit_bands == (1, 0, 1, 0, 3)
    assert r.exit_shares == (0.2, 0.0, 0.2, 0.0, 0.6)


def test_completion_needs_both_in_one_report() -> None:
    assert is_read_complete(0.95, 10.0)
    assert not is_read_complete(0.9499, 10.0)
    assert not is_read_complete(0.95, 9.99)
    # depth and dwell reached in different reports is not a completed read
    f = ArticleFacts(ART).observe_progress(sh(d(0)), 1.0, 3).observe_progress(sh(d(0)), 0.3, 40)
    assert not f.completed and f.max_depth == 1.0


@pytest.mark.parametrize(("depth", "band"), [(0.0, 0), (0.199, 0), (0.2, 1), (0.4, 2), (0.6, 3), (0.79, 3),
                                             (0.8, 4), (1.0, 4)])
def test_exit_band_edges(depth: float, band: int) -> None:
    assert exit_band(depth) == band


def test_progress_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        ArticleFacts(ART).observe_progress(sh(d(0)), 1.2, 3)


def test_no_openers_no_value() -> None:
    r = read_completion_rate(ART, [])
    assert r.rate.value is None and r.exit_bands == (0, 0, 0, 0, 0)
    assert r.exit_shares == (None,) * 5


def test_interaction_rate_and_raw_counts() -> None:
    t = sh(d(0))
    u1 = ArticleFacts(ART).observe_open(t).observe_reaction("like", t).observe_reaction("like", t)
    u2 = ArticleFacts(ART).observe_open(t).observe_reaction("comment", t)
    u3 = ArticleFacts(ART).observe_open(t).observe_reaction("favourite", t)  # a favourite is not an interaction
    u4 = ArticleFacts(ART).observe_reaction("share", t)  # shared without opening: counted raw, not a reader
    r = interaction_rate(ART, [u1, u2, u3, u4])
    assert (r.rate.numerator, r.rate.denominator) == (2, 3)
    assert (r.likes, r.comments, r.shares) == (2, 1, 1)


def test_merge_is_order_insensitive_for_the_state_fields() -> None:
    t1, t2 = sh(d(0), 9), sh(d(0), 10)
    a = ArticleFacts(ART, "tea").observe_open(t1)
    b = ArticleFacts(ART).observe_progress(t2, 0.99, 20)
    assert a.merge(b) == b.merge(a)
    m = a.merge(b)
    assert m.completed and m.category == "tea" and m.completed_at == t2 and m.last_read_at == t2
