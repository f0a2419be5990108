"""The campaign runner over moto (template.yaml's tables and queues): a simulated clock drives campaigns through
their phases; every message is counted on the outbound queue."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest

from lifelink.campaign_actions import push
from lifelink.campaign_actions.winners import eligible_hash, redraw
from lifelink.campaign_runner import CampaignRunner, SqsPublisher
from lifelink.domain.campaign_checks import CampaignInvalid, check_campaign
from lifelink.domain.campaigns import Campaign, CampaignState
from lifelink.domain.messages import OutboundJob, parse_job
from lifelink.domain.phases import timeline
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.audience import FOLLOWER_SHARDS, Audience
from lifelink.store.campaigns import CLAIM_LEASE, CampaignStore, RegistryWorld, campaign_audience
from lifelink.store.counters import Counters
from lifelink.store.participation import Participation
from tests.unit.campaigns.factory import LIFE, MINI, TPL, at, campaign, definition

FOLLOWERS = [f"2088{i:012d}" for i in range(1, 21)] + [f"0{i:05d}openid" for i in range(1, 8)]
UNFOLLOWED = [f"2088{i:012d}" for i in range(90, 93)]
KEYS = {"app_private_key": "unused", "alipay_public_key": "unused"}


@dataclass
class Env:
    ddb: Any
    sqs: Any
    table: str
    queue: str
    registry: AppRegistry
    audience: Audience
    store: CampaignStore
    participation: Participation
    runner: CampaignRunner
    finished: list[str]

    def jobs(self) -> list[OutboundJob]:
        """Every job now on the outbound queue (read and deleted)."""
        out: list[OutboundJob] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, VisibilityTimeout=300,
                                           WaitTimeSeconds=0).get("Messages", [])
            if not got:
                return out
            out += [parse_job(m["Body"]) for m in got]
            self.sqs.delete_message_batch(QueueUrl=self.queue, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    def apply(self, c: Campaign) -> None:
        self.store.put(check_campaign(c, RegistryWorld(self.registry, self.audience)))
        assert self.store.transition(c.id, "draft", "scheduled")

    def state(self, campaign_id: str = "double-11") -> CampaignState:
        stored = self.store.get(campaign_id)
        assert stored is not None
        return stored.state

    def boundary(self, c: Campaign, name: str, now: datetime) -> dict[str, Any]:
        when = dict(c.boundaries())[name]
        return self.runner.handle({"kind": "boundary", "campaign_id": c.id, "boundary": name,
                                   "scheduled_at": when.isoformat()}, now)


@pytest.fixture
def env(aws: Any) -> Env:
    ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    table, queue = aws.tables["StateTable"], aws.queues["OutboundQueue"]
    registry = AppRegistry(ddb, table, boto3.client("secretsmanager"))
    registry.register(AppRecord(app_id=LIFE, kind="life", secret_name=f"lifelink/apps/{LIFE}", templates=[TPL]), KEYS)
    registry.register(AppRecord(app_id=MINI, kind="mini", secret_name=f"lifelink/apps/{MINI}", life_account=LIFE),
                      KEYS)
    audience = Audience(ddb, table)
    day_before = at(-24 * 60)
    for user in FOLLOWERS + UNFOLLOWED:
        audience.set_following(LIFE, user, True, day_before)
    for user in UNFOLLOWED:
        audience.set_following(LIFE, user, False, day_before + timedelta(hours=1))
    store = CampaignStore(ddb, table)
    participation = Participation(ddb, table, sqs=sqs, queue_url=queue)
    finished: list[str] = []
    runner = CampaignRunner(store, audience, SqsPublisher(sqs, queue), registry=registry, pools=participation,
                            counters=Counters(ddb, table), on_finished=finished.append)
    return Env(ddb, sqs, table, queue, registry, audience, store, participation, runner, finished)


def by_phase(jobs: list[OutboundJob]) -> Counter[str]:
    return Counter(j.phase for j in jobs if j.campaign == "double-11" and j.channel.value == "life_template")


# ---- followers index and audience ------------------------------------------------------------------------


def test_followers_are_the_current_followers_across_shards(env: Env) -> None:
    assert sorted(env.audience.followers(LIFE)) == sorted(FOLLOWERS)
    # a late, older follow event changes nothing; a re-follow adds the user back
    env.audience.set_following(LIFE, UNFOLLOWED[0], True, at(-24 * 60))
    assert UNFOLLOWED[0] not in set(env.audience.followers(LIFE))
    env.audience.set_following(LIFE, UNFOLLOWED[0], True, at(-60))
    assert UNFOLLOWED[0] in set(env.audience.followers(LIFE))
    assert list(env.audience.followers("2021000000000404")) == []
    listed = list(env.audience.followers(LIFE))
    assert len({push_shard(u) for u in listed}) > 1 and all(0 <= push_shard(u) < FOLLOWER_SHARDS for u in listed)
    # resuming after any user lists exactly the rest, in the same order
    for cut in (0, 5, len(listed) - 1):
        assert list(env.audience.followers(LIFE, after=listed[cut])) == listed[cut + 1 :]


def push_shard(user: str) -> int:
    from lifelink.store.audience import follower_shard

    return follower_shard(user)


def test_audience_expression_selects_on_profiles(env: Env) -> None:
    env.audience.set_profile(LIFE, FOLLOWERS[0], "gold", ["vip"])
    env.audience.set_profile(LIFE, FOLLOWERS[1], "gold", ["silent"])
    env.audience.set_profile(LIFE, FOLLOWERS[2], "silver", ["vip"])
    env.audience.set_profile(LIFE, UNFOLLOWED[0], "gold", [])  # not a follower: never selected
    assert env.audience.profile(LIFE, FOLLOWERS[1]) == ("gold", {"silent"})
    assert env.audience.profile(LIFE, FOLLOWERS[5]) == (None, set())
    c = campaign(audience={"expression": "tier:gold and not tag:silent or tag:vip"})
    assert sorted(campaign_audience(env.audience, c)) == sorted([FOLLOWERS[0], FOLLOWERS[2]])
    world = RegistryWorld(env.registry, env.audience)
    assert world.audience_size(campaign()) == len(FOLLOWERS)
    assert RegistryWorld(env.registry, env.audience, count_limit=5).audience_size(campaign()) == 5
    with pytest.raises(CampaignInvalid) as caught:
        check_campaign(campaign(audience={"expression": "tier:platinum"}), world)
    assert [e["type"] for e in caught.value.errors] == ["audience_empty"]


def test_unknown_template_from_the_registry(env: Env) -> None:
    env.registry.configure(LIFE, templates=["TPL_ONLY"])
    with pytest.raises(CampaignInvalid) as caught:
        check_campaign(definition(), RegistryWorld(env.registry, env.audience))
    assert {e["type"] for e in caught.value.errors} == {"unknown_template"}
    assert len(caught.value.errors) == 6  # every action with a message


# ---- the whole campaign ------------------------------------------------------------------------------------


def test_a_simulated_clock_drives_a_campaign_through_every_phase(env: Env) -> None:
    c = campaign()
    env.apply(c)
    assert env.state() is CampaignState.scheduled
    assert env.runner.handle({"kind": "reconcile"}, at(-5)) == {"done": {"double-11": []}}

    env.boundary(c, "preheat_start", at(0))
    assert env.state() is CampaignState.preheat
    assert by_phase(env.jobs()) == {"preheat.topic": len(FOLLOWERS)}

    env.boundary(c, "action:early", at(10))
    reservers = FOLLOWERS[:3]
    for user in reservers:
        env.participation.reserve(c, "early", user, at(20), state="preheat")
    jobs = env.jobs()
    assert by_phase(jobs) == {"preheat.early": len(FOLLOWERS)}
    assert sum(1 for j in jobs if j.channel.value == "coupon") == 3

    env.boundary(c, "burst_start", at(60))
    assert env.state() is CampaignState.burst
    env.boundary(c, "action:share", at(65))
    env.boundary(c, "action:ugc", at(75))  # no message: fires, sends nothing
    assert by_phase(env.jobs()) == {"burst.flash": len(FOLLOWERS), "burst.share": len(FOLLOWERS)}

    env.boundary(c, "settle_start", at(120))
    assert env.state() is CampaignState.settle
    winner_jobs = env.jobs()
    assert by_phase(winner_jobs) == {"settle.draw": 2}
    winners = sorted(j.user_key for j in winner_jobs)
    assert set(winners) <= set(reservers)
    draw = env.store.get_draw(c.id, "draw")
    assert draw is not None and sorted(draw.winners) == winners and draw.eligible_count == 3

    env.boundary(c, "action:survey", at(150))
    assert by_phase(env.jobs()) == {"settle.survey": len(FOLLOWERS)}
    env.boundary(c, "settle_end", at(180))
    assert env.state() is CampaignState.closed
    assert env.finished == ["double-11"]

    status = env.runner.status(c.id, at(181))
    assert json.loads(json.dumps(status)) == status  # the API answers it as is
    assert status["state"] == "closed" and status["next_boundary"] is None
    assert {k: v["status"] for k, v in status["actions"].items()} == dict.fromkeys(
        ["preheat.topic", "preheat.early", "burst.flash", "burst.share", "burst.ugc", "settle.draw",
         "settle.survey"], "done")
    assert status["actions"]["preheat.topic"]["counts"]["queued"] == len(FOLLOWERS)
    assert status["actions"]["settle.draw"]["draw"]["eligible_count"] == 3


def test_jobs_carry_the_campaign_phase_deadline_and_a_mini_program_link(env: Env) -> None:
    c = campaign()
    env.apply(c)
    env.runner.handle({"kind": "reconcile"}, at(0))
    jobs = env.jobs()
    assert len(jobs) == len(FOLLOWERS)
    job = next(j for j in jobs if j.user_key == FOLLOWERS[0])
    assert (job.app_id, job.campaign, job.phase, job.kind) == (LIFE, "double-11", "preheat.topic", "marketing")
    assert job.not_after == at(60)
    assert job.recipient.user_id == FOLLOWERS[0]
    assert job.content.url == f"alipays://platformapi/startapp?appId={MINI}&page=pages%2Ftopic%2Findex&query=id%3D11"
    assert [k.value for k in job.content.keywords] == ["话题", "11月11日"]
    open_job = next(j for j in jobs if j.user_key == FOLLOWERS[-1])
    assert open_job.recipient.open_id == FOLLOWERS[-1] and open_job.recipient.user_id is None
    assert len({j.ledger_key for j in jobs}) == len(jobs)


def test_holdout_users_get_nothing(env: Env) -> None:
    c = campaign(holdout_share=0.5)
    env.apply(c)
    env.runner.handle({"kind": "reconcile"}, at(0))
    sent = {j.user_key for j in env.jobs()}
    from lifelink.domain.campaigns import in_holdout

    held = {u for u in FOLLOWERS if in_holdout(c.life_account, c.id, u, 0.5)}
    assert held and sent == set(FOLLOWERS) - held
    assert env.store.counts(c.id)["preheat.topic"]["held_out"] == len(held)


def test_schedules_fired_twice_late_and_out_of_order_do_everything_once_in_order(env: Env) -> None:
    c = campaign()
    env.apply(c)
    for user in FOLLOWERS[:4]:
        env.participation.reserve(c, "early", user, at(1), state="preheat")
    env.jobs()
    names = [name for name, _ in c.boundaries()]
    shuffled = names[:]
    random.Random(7).shuffle(shuffled)
    # Every schedule delivered at its own time (in order), then all of them again, shuffled and late.
    for name, when in c.boundaries():
        env.boundary(c, name, when)
    first = by_phase(env.jobs())
    for name in shuffled + shuffled:
        assert env.boundary(c, name, at(400)) == {"done": {"double-11": []}}
    env.runner.handle({"kind": "reconcile"}, at(500))
    assert env.jobs() == []
    assert first == {"preheat.topic": 27, "preheat.early": 27, "burst.flash": 27, "burst.share": 27,
                     "settle.draw": 2, "settle.survey": 27}
    assert env.state() is CampaignState.closed and env.finished == ["double-11"]


def test_one_late_schedule_catches_up_in_order_and_skips_pushes_whose_phase_is_over(env: Env) -> None:
    c = campaign()
    env.apply(c)
    result = env.boundary(c, "action:share", at(66))  # the first run anyone does is an hour late
    assert result["done"]["double-11"] == ["enter:preheat", "fire:preheat.topic", "fire:preheat.early",
                                           "enter:burst", "fire:burst.flash", "fire:burst.share"]
    assert by_phase(env.jobs()) == {"burst.flash": 27, "burst.share": 27}
    counts = env.store.counts(c.id)
    assert counts["preheat.topic"]["not_sent"] == "phase_over" and counts["preheat.topic"]["status"] == "done"
    # an early delivery of a later schedule does nothing before its time
    assert env.boundary(c, "settle_start", at(67)) == {"done": {"double-11": []}}
    assert env.state() is CampaignState.burst


def test_pause_holds_everything_and_resume_catches_up_in_order(env: Env) -> None:
    c = campaign()
    env.apply(c)
    env.runner.handle({"kind": "reconcile"}, at(61))
    env.jobs()
    assert env.runner.pause(c.id) is True
    assert env.runner.pause(c.id) is False
    assert env.state() is CampaignState.paused
    for minute in (65, 75, 100):
        assert env.runner.handle({"kind": "reconcile"}, at(minute)) == {"done": {}}
        assert env.boundary(c, "action:share", at(minute)) == {"done": {"double-11": []}}
    assert env.jobs() == []
    assert env.runner.status(c.id, at(100))["paused_from"] == "burst"

    assert env.runner.resume(c.id, at(100)) is True
    assert env.state() is CampaignState.burst
    assert by_phase(env.jobs()) == {"burst.share": 27}  # flash fired at 60, before the pause
    assert env.store.fired(c.id) >= {"burst.share", "burst.ugc"}
    assert env.runner.resume(c.id, at(100)) is False

    assert env.runner.cancel(c.id) is True
    assert env.finished == ["double-11"]
    assert env.runner.cancel(c.id) is False
    assert env.runner.handle({"kind": "reconcile"}, at(500)) == {"done": {}}
    assert env.boundary(c, "settle_start", at(500)) == {"done": {"double-11": []}}
    assert env.jobs() == [] and env.state() is CampaignState.cancelled
    assert env.runner.resume(c.id, at(500)) is False


def test_status_of_a_running_campaign_names_the_next_boundary(env: Env) -> None:
    c = campaign()
    env.apply(c)
    env.runner.handle({"kind": "reconcile"}, at(3))
    status = env.runner.status(c.id, at(3))
    assert status["state"] == "preheat"
    assert status["next_boundary"] == {"step": "fire:preheat.early", "at": at(10).isoformat()}
    assert status["actions"]["preheat.topic"]["status"] == "done"
    assert status["actions"]["preheat.early"] == {"type": "early_bird", "fires_at": at(10).isoformat(),
                                                  "status": "pending", "counts": {}}


def test_reconcile_moves_the_other_campaigns_when_one_fails(env: Env) -> None:
    env.apply(campaign())
    env.apply(campaign(campaign_id="other"))
    real = env.runner.store.fired

    def broken(campaign_id: str) -> set[str]:
        if campaign_id == "double-11":
            raise RuntimeError("throttled")
        return real(campaign_id)

    env.runner.store.fired = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="throttled"):
        env.runner.handle({"kind": "reconcile"}, at(0))
    assert env.state("other") is CampaignState.preheat
    assert env.state("double-11") is CampaignState.scheduled


def test_a_paused_campaign_can_be_cancelled(env: Env) -> None:
    c = campaign()
    env.apply(c)
    env.runner.handle({"kind": "reconcile"}, at(0))
    assert env.runner.pause(c.id)
    assert env.runner.cancel(c.id)
    assert env.state() is CampaignState.cancelled and env.finished == ["double-11"]


class CrashingPublisher(SqsPublisher):
    def __init__(self, sqs: Any, queue_url: str, batches_before_crash: int) -> None:
        super().__init__(sqs, queue_url)
        self.left = batches_before_crash

    def publish_batch(self, jobs: list[OutboundJob]) -> None:
        if self.left == 0:
            raise RuntimeError("container died")
        self.left -= 1
        super().publish_batch(jobs)


def test_a_fan_out_that_crashed_continues_from_its_cursor_and_sends_each_user_once(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push, "PROGRESS_EVERY", 10)
    c = campaign()
    env.apply(c)
    env.runner.publisher = CrashingPublisher(env.sqs, env.queue, batches_before_crash=2)
    with pytest.raises(RuntimeError, match="container died"):
        env.runner.handle({"kind": "reconcile"}, at(0))
    partial = env.jobs()
    assert len(partial) == 20
    record = env.store.fired_records(c.id)["preheat.topic"]
    assert record.status == "claimed" and record.cursor is not None

    env.runner.publisher = SqsPublisher(env.sqs, env.queue)
    assert env.runner.handle({"kind": "reconcile"}, at(1)) == {"done": {"double-11": []}}  # the claim is held
    env.runner.handle({"kind": "reconcile"}, at(0) + CLAIM_LEASE + timedelta(seconds=1))
    rest = env.jobs()
    topic = [j for j in partial + rest if j.phase == "preheat.topic"]
    assert {j.user_key for j in topic} == set(FOLLOWERS)
    assert len(topic) == len(FOLLOWERS)  # the cursor was saved after the 20 queued: none again
    assert env.store.counts(c.id)["preheat.topic"]["queued"] == len(FOLLOWERS)


class PausingPublisher(SqsPublisher):
    """Publishes, and has the operator pause the campaign after the first batch."""

    def __init__(self, env: Env) -> None:
        super().__init__(env.sqs, env.queue)
        self.env = env

    def publish_batch(self, jobs: list[OutboundJob]) -> None:
        super().publish_batch(jobs)
        if self.env.state() is not CampaignState.paused:
            self.env.runner.pause("double-11")


def test_pausing_stops_a_fan_out_and_resuming_continues_it(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "PROGRESS_EVERY", 10)
    c = campaign()
    env.apply(c)
    env.runner.publisher = PausingPublisher(env)
    assert env.runner.handle({"kind": "reconcile"}, at(0)) == {"done": {"double-11": ["enter:preheat"]}}
    first = env.jobs()
    assert len(first) == 10 and env.state() is CampaignState.paused
    assert env.store.fired_records(c.id)["preheat.topic"].status == "claimed"

    env.runner.publisher = SqsPublisher(env.sqs, env.queue)
    assert env.runner.resume(c.id, at(1)) is True  # the claim was released: no need to wait for the lease
    rest = env.jobs()
    topic = [j.user_key for j in first + rest if j.phase == "preheat.topic"]
    assert sorted(topic) == sorted(FOLLOWERS)
    assert env.store.fired(c.id) == {"preheat.topic"}


def test_a_fan_out_running_out_of_time_stops_and_the_next_run_continues_at_once(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push, "PROGRESS_EVERY", 10)
    c = campaign()
    env.apply(c)
    clock = iter([100.0] * 3 + [5.0] * 100)  # time for two steps and the first progress save, then almost none
    result = env.runner.handle({"kind": "reconcile"}, at(0), time_left=lambda: next(clock))
    assert result == {"done": {"double-11": ["enter:preheat"]}}
    first = env.jobs()
    assert len(first) == 20  # stopped at the second progress save
    assert env.runner.handle({"kind": "reconcile"}, at(0)) == {"done": {"double-11": ["fire:preheat.topic"]}}
    topic = [j.user_key for j in first + env.jobs()]
    assert sorted(topic) == sorted(FOLLOWERS)


def test_runners_racing_each_other_do_every_step_once(env: Env) -> None:
    """A boundary schedule and the reconciler (and a redelivery) running at the same moment in separate
    containers: conditional transitions and claims let each step happen once."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.integration.outbound_support import atomic_moto_backends

    c = campaign()
    env.apply(c)
    runners = [
        CampaignRunner(CampaignStore(env.ddb, env.table), env.audience, SqsPublisher(env.sqs, env.queue),
                       registry=env.registry, pools=env.participation, on_finished=env.finished.append)
        for _ in range(4)
    ]
    events = [{"kind": "reconcile"}, {"kind": "boundary", "campaign_id": c.id, "boundary": "settle_end",
                                      "scheduled_at": at(180).isoformat()}]
    with atomic_moto_backends(), ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: runners[i].handle(events[i % 2], at(200)), range(4)))
    steps = [step for r in results for step_list in r["done"].values() for step in step_list]
    assert sorted(steps) == sorted(s.key for s in timeline(c))
    jobs = env.jobs()
    assert len({j.ledger_key for j in jobs}) == len(jobs)
    assert env.state() is CampaignState.closed and env.finished == ["double-11"]


def test_the_draw_re_runs_from_its_stored_seed(env: Env) -> None:
    c = campaign()
    env.apply(c)
    reservers = FOLLOWERS[:12]
    for user in reservers:
        env.participation.reserve(c, "early", user, at(5), state="preheat")
    env.runner.handle({"kind": "reconcile"}, at(121))
    draw = env.store.get_draw(c.id, "draw")
    assert draw is not None and len(draw.seed) == 32 and len(draw.winners) == 2
    eligible = env.participation.pool_members(c.id, "reservations")
    assert sorted(eligible) == sorted(reservers)
    assert draw.eligible_hash == eligible_hash(reversed(eligible)) and draw.eligible_count == 12
    assert redraw(draw.seed, eligible, 2) == draw.winners
    # the draw is stored once: a later pool change and a re-run of the runner do not move it
    env.participation.reserve(c, "early", FOLLOWERS[15], at(30), state="preheat")
    env.runner.handle({"kind": "reconcile"}, at(125))
    assert env.store.get_draw(c.id, "draw") == draw


def test_a_given_seed_draws_the_same_winners_everywhere() -> None:
    eligible = [f"u{i:03d}" for i in range(50)]
    assert redraw("fixed-seed", eligible, 5) == redraw("fixed-seed", list(reversed(eligible)), 5)
    assert redraw("fixed-seed", eligible, 5) != redraw("other-seed", eligible, 5)
    assert redraw("s", ["b", "a", "a"], 5) == ["a", "b"]


def test_a_changed_definition_is_refused_once_the_campaign_runs(env: Env) -> None:
    c = campaign()
    env.apply(c)
    again = env.store.put(c)
    assert again.version == 2  # put (1) + scheduled (2); same definition: nothing changed
    renamed = campaign(name="Double 11 (renamed)")
    assert env.store.put(renamed).campaign.name == "Double 11 (renamed)"
    env.runner.handle({"kind": "reconcile"}, at(0))
    from lifelink.store.campaigns import CampaignLocked

    with pytest.raises(CampaignLocked):
        env.store.put(campaign(name="Too late"))
    assert env.store.list() == [("double-11", CampaignState.preheat)]


# ---- preview -----------------------------------------------------------------------------------------------


def _item_count(env: Env) -> int:
    return int(env.ddb.scan(TableName=env.table, Select="COUNT")["Count"])


def _queue_depth(env: Env) -> int:
    attrs = env.sqs.get_queue_attributes(QueueUrl=env.queue, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_preview_writes_and_sends_nothing_and_counts_what_policy_would_do(env: Env) -> None:
    c = campaign(holdout_share=0.3)
    env.apply(c)
    for user in FOLLOWERS[:3]:
        env.participation.reserve(c, "early", user, at(5), state="preheat")
    env.jobs()
    items, depth = _item_count(env), _queue_depth(env)

    report = env.runner.preview(c.id, now=at(-60))
    assert _item_count(env) == items and _queue_depth(env) == depth
    assert json.loads(json.dumps(report)) == report
    from lifelink.domain.campaigns import in_holdout

    held_out = sum(1 for u in FOLLOWERS if in_holdout(c.life_account, c.id, u, 0.3))
    assert report["audience"] == {"expression": None, "size": 27, "holdout": held_out, "holdout_share": 0.3,
                                  "expression_terms": None}
    actions = {a["action"]: a for a in report["actions"]}
    reach = 27 - held_out
    topic = actions["preheat.topic"]
    assert (topic["recipients"], topic["holdout"], topic["messages"]) == (reach, held_out, {"life_template": reach})
    # The app's default cap is 3 template messages a day: topic, early and flash go out, share and survey are capped.
    assert [actions[k]["would_send"] for k in ("preheat.topic", "preheat.early", "burst.flash")] == [reach] * 3
    assert actions["burst.share"]["capped"] == {"daily_cap": reach}
    assert actions["settle.survey"]["capped"] == {"daily_cap": reach}
    assert actions["burst.ugc"]["recipients"] == 0 and "no message" in actions["burst.ugc"]["note"]
    assert actions["settle.draw"]["eligible"] == 3 and actions["settle.draw"]["winners"] == 2
    assert report["coupons"]["early"]["stock"] == 100 and report["coupons"]["prize"]["up_to"] == 2
    assert report["totals"]["messages"]["life_template"] == 5 * reach + 2
    # Winners are not held out; a winner in the holdout got nothing earlier that day, so is not capped.
    provisional = sorted(FOLLOWERS[:3])[:2]
    capped = sum(not in_holdout(c.life_account, c.id, u, 0.3) for u in provisional)
    assert actions["settle.draw"]["capped"] == {"daily_cap": capped}
    assert report["totals"]["capped"]["daily_cap"] == 2 * reach + actions["settle.draw"]["capped"]["daily_cap"]

    only_burst = env.runner.preview(c.id, phase="burst", now=at(-60))
    assert [a["action"] for a in only_burst["actions"]] == ["burst.flash", "burst.share", "burst.ugc"]
    assert _item_count(env) == items and _queue_depth(env) == depth


def _night_campaign(campaign_id: str, preheat_end: str) -> Campaign:
    d = definition(campaign_id=campaign_id)
    d["phases"] = {
        "preheat": {"start": "2026-11-11T23:00:00", "end": preheat_end, "actions": [
            {"type": "topic_push", "id": "topic", "message": {"template_id": TPL, "keywords": ["夜"]},
             "link": {"page": "pages/topic/index"}}]},
        "burst": {"start": preheat_end, "end": "2026-11-12T10:00:00"},
        "settle": {"start": "2026-11-12T10:00:00", "end": "2026-11-12T11:00:00"},
    }
    return Campaign.model_validate(d)


def test_preview_reports_pushes_held_by_quiet_hours_or_expiring_there(env: Env) -> None:
    # 23:00 local is inside the default quiet hours (22:00–08:00): held until 08:00 when the phase lasts that long,
    # expired when the phase ends first.
    env.apply(_night_campaign("night-long", "2026-11-12T09:00:00"))
    env.apply(_night_campaign("night-short", "2026-11-11T23:30:00"))
    held = env.runner.preview("night-long", now=at(0))["actions"][0]
    assert held["held"] == {"quiet_hours": 27} and held["would_send"] == 0 and held["expired"] == 0
    expired = env.runner.preview("night-short", now=at(0))["actions"][0]
    assert expired["expired"] == 27 and expired["held"] == {} and expired["would_send"] == 0


def test_a_large_preview_decides_for_a_sample_and_scales_up(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "PREVIEW_SAMPLE", 5)
    c = campaign()
    env.apply(c)
    actions = {a["action"]: a for a in env.runner.preview(c.id, now=at(-60))["actions"]}
    topic, share = actions["preheat.topic"], actions["burst.share"]
    assert topic["sampled"] == {"examined": 5, "of": 27}
    assert (topic["recipients"], topic["would_send"]) == (27, 27)
    assert share["capped"] == {"daily_cap": 27} and share["would_send"] == 0  # the same sample: caps add up
