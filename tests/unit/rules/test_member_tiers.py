"""Follow → the app's member tier (silver by default), optionally confirmed with Alipay; unfollow per settings;
a member-card update job only when the app has a card template."""

from __future__ import annotations

from datetime import timedelta

from .conftest import LIFE, NOW, U1, U2, World, follow, unfollow

CARD = {"card_template_id": "CT_MEMBER"}


def test_a_follow_grants_silver_by_default_and_no_card_job_without_a_card_template(world: World) -> None:
    world.policy(LIFE, {}, kind="life")
    assert world.engine.on_events([follow(NOW)], NOW) == []
    record = world.state.tier(LIFE, U1)
    assert (record.tier, record.following, record.granted) == ("silver", True, NOW)
    assert world.follow.calls == []  # no confirmation unless configured


def test_with_a_card_template_the_grant_queues_one_card_update(world: World) -> None:
    world.policy(LIFE, {"tiers": CARD}, kind="life")
    (job,) = world.engine.on_events([follow(NOW)], NOW)
    assert (job.channel.value, job.rule, job.campaign, job.kind) == ("member_card", "member_tier",
                                                                    "rule-member_tier", "transactional")
    c = job.content
    assert (c.target_card_no, c.target_card_no_type, c.level) == (U1, "D_ALIPAY_UID", "silver")
    # the same follow delivered again makes the same job (the ledger drops it); a later follow by a follower none
    (again,) = world.engine.on_events([follow(NOW)], NOW + timedelta(minutes=1))
    assert again.ledger_key == job.ledger_key
    assert world.engine.on_events([follow(NOW + timedelta(hours=1))], NOW + timedelta(hours=1)) == []


def test_the_configured_tier_is_granted(world: World) -> None:
    world.policy(LIFE, {"tiers": {"tier_on_follow": "gold", **CARD}}, kind="life")
    (job,) = world.engine.on_events([follow(NOW)], NOW)
    assert job.content.level == "gold" and world.state.tier(LIFE, U1).tier == "gold"


def test_the_aggregators_tier_settings_apply_when_rules_name_none(world: World) -> None:
    world.policy(LIFE, {}, kind="life", tier_on_follow="gold", tier_on_unfollow="none")
    world.engine.on_events([follow(NOW)], NOW)
    assert world.state.tier(LIFE, U1).tier == "gold"
    world.engine.on_events([unfollow(NOW + timedelta(hours=1))], NOW + timedelta(hours=1))
    assert world.state.tier(LIFE, U1).tier is None


def test_unfollow_keeps_the_tier_by_default(world: World) -> None:
    world.policy(LIFE, {"tiers": CARD}, kind="life")
    world.engine.on_events([follow(NOW)], NOW)
    assert world.engine.on_events([unfollow(NOW + timedelta(hours=1))], NOW + timedelta(hours=1)) == []
    record = world.state.tier(LIFE, U1)
    assert (record.tier, record.following) == ("silver", False)
    # following again keeps the tier it still has: nothing new to write to the card
    assert world.engine.on_events([follow(NOW + timedelta(hours=2))], NOW + timedelta(hours=2)) == []


def test_unfollow_drop_removes_the_tier_and_a_new_follow_grants_it_again(world: World) -> None:
    world.policy(LIFE, {"tiers": {"on_unfollow": "drop", **CARD}}, kind="life")
    (first,) = world.engine.on_events([follow(NOW)], NOW)
    world.engine.on_events([unfollow(NOW + timedelta(hours=1))], NOW + timedelta(hours=1))
    assert world.state.tier(LIFE, U1).tier is None
    (second,) = world.engine.on_events([follow(NOW + timedelta(days=1))], NOW + timedelta(days=1))
    assert second.content.level == "silver" and second.ledger_key != first.ledger_key


def test_unfollow_to_a_named_tier_updates_the_card(world: World) -> None:
    world.policy(LIFE, {"tiers": {"on_unfollow": "bronze", **CARD}}, kind="life")
    world.engine.on_events([follow(NOW)], NOW)
    (job,) = world.engine.on_events([unfollow(NOW + timedelta(hours=1))], NOW + timedelta(hours=1))
    assert job.content.level == "bronze" and world.state.tier(LIFE, U1).tier == "bronze"


def test_an_unfollow_delivered_before_its_earlier_follow_wins(world: World) -> None:
    world.policy(LIFE, {"tiers": {"on_unfollow": "drop", **CARD}}, kind="life")
    world.engine.on_events([unfollow(NOW + timedelta(minutes=5))], NOW + timedelta(minutes=6))
    assert world.engine.on_events([follow(NOW)], NOW + timedelta(minutes=7)) == []
    record = world.state.tier(LIFE, U1)
    assert (record.tier, record.following) == (None, False)


def test_confirm_follow_asks_alipay_and_grants_only_to_confirmed_followers(world: World) -> None:
    world.policy(LIFE, {"tiers": {"confirm_follow": True, **CARD}}, kind="life")
    world.follow.following = {U1}
    jobs = world.engine.on_events([follow(NOW, user=U1), follow(NOW, user=U2)], NOW)
    assert [j.recipient.user_id for j in jobs] == [U1]
    assert sorted(world.follow.calls) == [U1, U2]
    assert world.state.tier(LIFE, U1).tier == "silver"
    assert world.state.tier(LIFE, U2).tier is None


def test_a_confirmation_that_fails_reports_the_event_for_redelivery(world: World) -> None:
    world.policy(LIFE, {"tiers": {"confirm_follow": True, **CARD}}, kind="life")

    def broken(app_id: str, user: object) -> bool:
        raise TimeoutError("alipay did not answer")

    world.engine._follow_check = broken
    event = follow(NOW)
    assert world.engine.on_events([event], NOW) == []
    assert world.engine.failed_events == [event.event_id]
    assert not world.state.tier(LIFE, U1).exists  # nothing half-done: the redelivery starts afresh


def test_no_tier_on_follow_grants_nothing(world: World) -> None:
    world.policy(LIFE, {"tiers": {"tier_on_follow": None, **CARD}}, kind="life")
    assert world.engine.on_events([follow(NOW)], NOW) == []
    assert world.state.tier(LIFE, U1).tier is None
