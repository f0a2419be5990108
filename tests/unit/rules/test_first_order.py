"""First paid order → the member-guide message, once ever per user (profile history first, then a marker)."""

from __future__ import annotations

from datetime import timedelta

from lifelink.domain.metrics import OrderFacts
from lifelink.store.profiles import Profile

from .conftest import GUIDE, MINI, NOW, U1, U2, World, paid

RULES = {"first_order": {"enabled": True, "message": GUIDE}}


def test_the_first_paid_order_queues_the_guide_once(world: World) -> None:
    world.policy(MINI, RULES)
    (job,) = world.engine.on_events([paid(NOW, "T1")], NOW)
    assert (job.channel.value, job.rule, job.campaign, job.phase, job.kind) == (
        "mini_subscription", "first_order", "rule-first_order", "ever", "transactional")
    assert job.content.user_template_id == "TPL_GUIDE" and job.recipient.user_id == U1
    world.engine.acknowledge()
    assert world.engine.on_events([paid(NOW + timedelta(days=1), "T2")], NOW + timedelta(days=1)) == []
    assert world.engine.on_events([paid(NOW, "T1")], NOW + timedelta(days=1)) == []  # redelivered after sending


def test_a_redelivered_first_order_not_yet_sent_makes_the_same_job(world: World) -> None:
    world.policy(MINI, RULES)
    (job,) = world.engine.on_events([paid(NOW, "T1")], NOW)
    world.engine.forget()  # publishing failed: the batch comes back
    (again,) = world.engine.on_events([paid(NOW, "T1")], NOW + timedelta(minutes=3))
    assert again.ledger_key == job.ledger_key


def test_two_first_orders_in_one_batch_make_one_job(world: World) -> None:
    world.policy(MINI, RULES)
    jobs = world.engine.on_events([paid(NOW + timedelta(minutes=1), "T2"), paid(NOW, "T1")], NOW)
    assert len(jobs) == 1


def test_a_user_whose_profile_has_an_earlier_paid_order_gets_no_guide(world: World) -> None:
    world.policy(MINI, RULES)
    old = OrderFacts("T0", 1000, NOW - timedelta(days=40))
    world.profiles.by_key[(MINI, U1)] = Profile(MINI, U1, version=3, orders={"T0": old})
    world.profiles.by_key[(MINI, U2)] = Profile(MINI, U2, version=1, orders={"T9": OrderFacts("T9", 500)})  # unpaid
    jobs = world.engine.on_events([paid(NOW, "T1", user=U1), paid(NOW, "T5", user=U2)], NOW)
    assert [j.recipient.user_id for j in jobs] == [U2]


def test_the_profile_holding_this_very_order_still_counts_it_as_first(world: World) -> None:
    world.policy(MINI, RULES)
    world.profiles.by_key[(MINI, U1)] = Profile(MINI, U1, version=1, orders={"T1": OrderFacts("T1", 1000, NOW)})
    assert len(world.engine.on_events([paid(NOW, "T1")], NOW)) == 1


def test_off_by_default(world: World) -> None:
    world.policy(MINI, {})
    assert world.engine.on_events([paid(NOW)], NOW) == []
