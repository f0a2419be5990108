"""Product viewed and no paid order within N hours → one coupon per user per window, through the due index."""

from __future__ import annotations

from datetime import timedelta

from lifelink.rules.engine import RESEND_AFTER

from .conftest import COUPON, MINI, NOW, U1, U2, World, paid, view

RULES = {"browse_no_order": {"enabled": True, "hours": 24, "activity_id": COUPON, "window_days": 7}}


def armed(world: World) -> None:
    world.policy(MINI, RULES)


def test_a_view_with_no_order_gets_one_coupon_when_due_and_never_again(world: World) -> None:
    armed(world)
    e = world.engine
    assert e.on_events([view(NOW)], NOW) == []
    assert e.due(NOW + timedelta(hours=23, minutes=59)) == []
    e.acknowledge()
    (job,) = e.due(NOW + timedelta(hours=24))
    assert (job.app_id, job.channel.value, job.content.activity_id) == (MINI, "coupon", COUPON)
    assert (job.rule, job.campaign, job.recipient.user_id) == ("browse_no_order", "rule-browse_no_order", U1)
    # 7-day windows start on Mondays: Tue 2026-11-24 (Shanghai) is in the one from Mon 11-23
    assert job.phase == "w20261123"
    assert job.ledger_key == f"{MINI}|rule-browse_no_order|w20261123|{U1}|coupon"
    assert job.not_after == NOW + timedelta(hours=48)
    e.acknowledge()
    assert e.due(NOW + timedelta(hours=25)) == []
    assert e.due(NOW + timedelta(days=3)) == []


def test_a_second_view_inside_the_window_does_not_re_arm(world: World) -> None:
    armed(world)
    e = world.engine
    e.on_events([view(NOW), view(NOW + timedelta(hours=5), product="P2")], NOW + timedelta(hours=5))
    assert e.due(NOW + timedelta(hours=24)) != []  # due on the first view, not pushed back by the second
    e.acknowledge()
    later = NOW + timedelta(days=2)  # same window, after the coupon went out
    e.on_events([view(later)], later)
    assert e.due(later + timedelta(hours=24)) == []
    e.acknowledge()
    next_window = NOW + timedelta(days=8)
    e.on_events([view(next_window)], next_window)
    (job,) = e.due(next_window + timedelta(hours=24))
    assert job.phase == "w20261130"


def test_an_order_before_the_due_time_cancels_the_coupon(world: World) -> None:
    armed(world)
    e = world.engine
    e.on_events([view(NOW)], NOW)
    e.on_events([paid(NOW + timedelta(hours=3))], NOW + timedelta(hours=3))
    assert e.due(NOW + timedelta(hours=24)) == []
    e.acknowledge()
    (marker,) = [m for m in [world.state.marker(MINI, U1, "browse_no_order#w20261123")] if m]
    assert marker.state == "cancelled"
    # after an order, a new view in the same window may arm again (nothing fired yet)
    again = NOW + timedelta(hours=30)
    e.on_events([view(again)], again)
    assert len(e.due(again + timedelta(hours=24))) == 1


def test_an_order_arriving_before_an_earlier_view_still_counts(world: World) -> None:
    armed(world)
    e = world.engine
    e.on_events([paid(NOW + timedelta(hours=2))], NOW + timedelta(hours=2))  # delivered first
    e.on_events([view(NOW)], NOW + timedelta(hours=3))  # the view happened before the order
    assert e.due(NOW + timedelta(hours=24)) == []


def test_an_order_paid_before_the_view_does_not_cancel(world: World) -> None:
    armed(world)
    e = world.engine
    e.on_events([paid(NOW - timedelta(hours=1)), view(NOW)], NOW)
    assert len(e.due(NOW + timedelta(hours=24))) == 1


def test_a_view_of_another_user_is_that_users_own(world: World) -> None:
    armed(world)
    e = world.engine
    e.on_events([view(NOW, user=U1), view(NOW + timedelta(hours=1), user=U2)], NOW)
    e.on_events([paid(NOW + timedelta(hours=2), user=U1)], NOW + timedelta(hours=2))
    jobs = e.due(NOW + timedelta(hours=26))
    assert [j.recipient.user_id for j in jobs] == [U2]


def test_a_job_whose_publishing_failed_is_made_again_and_then_never(world: World) -> None:
    armed(world)
    e = world.engine
    e.on_events([view(NOW)], NOW)
    first = e.due(NOW + timedelta(hours=24))
    e.forget()  # the queue refused it
    assert e.due(NOW + timedelta(hours=24, minutes=1)) == []  # fired moments ago: the firing run may still send
    again = e.due(NOW + timedelta(hours=24) + RESEND_AFTER)
    assert [j.ledger_key for j in again] == [j.ledger_key for j in first]
    e.acknowledge()
    assert e.due(NOW + timedelta(hours=30)) == []


def test_two_racing_runs_make_one_job(world: World) -> None:
    armed(world)
    world.engine.on_events([view(NOW)], NOW)
    other = type(world.engine)(world.state, world.engine._apps)
    at = NOW + timedelta(hours=24)
    assert len(world.engine.due(at)) + len(other.due(at)) == 1


def test_a_disabled_rule_arms_nothing(world: World) -> None:
    world.policy(MINI, {"browse_no_order": {"enabled": False, "activity_id": COUPON}})
    world.engine.on_events([view(NOW)], NOW)
    assert world.state.marker(MINI, U1, "browse_no_order#w20261123") is None
    assert world.engine.due(NOW + timedelta(days=2)) == []


def test_turning_the_rule_off_before_the_due_time_cancels(world: World) -> None:
    armed(world)
    world.engine.on_events([view(NOW)], NOW)
    world.policy(MINI, {"browse_no_order": {"enabled": False}})
    assert world.engine.due(NOW + timedelta(hours=24)) == []


def test_a_late_run_past_the_coupon_validity_sends_nothing(world: World) -> None:
    armed(world)
    world.engine.on_events([view(NOW)], NOW)
    assert world.engine.due(NOW + timedelta(hours=49)) == []


def test_a_view_reported_days_late_is_due_in_the_current_hour(world: World) -> None:
    armed(world)
    late = NOW + timedelta(hours=30)
    world.engine.on_events([view(NOW)], late)  # due 6 h ago, still within validity
    (job,) = world.engine.due(late + timedelta(minutes=15))
    assert job.not_after == NOW + timedelta(hours=48)


def test_a_repeated_view_costs_one_read_and_no_write(world: World) -> None:
    armed(world)
    world.engine.on_events([view(NOW)], NOW)
    calls: list[str] = []
    world.state._ddb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    world.engine.on_events([view(NOW + timedelta(hours=1))], NOW + timedelta(hours=1))
    assert calls == ["BatchGetItem"]
