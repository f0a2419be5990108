"""The events consumer's reactions: audience facts that only move forward in event time, and one welcome
job per new follower for apps that configure one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lifelink.domain.events import FollowEvent, UnfollowEvent, UserMessageEvent, UserRef
from lifelink.domain.messages import OutboundJob
from lifelink.reactions import Reactions
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.audience import Audience

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LIFE, PLAIN = "2021004100000001", "2021004100000003"
WELCOME = {"template_id": "TM_W", "keywords": [{"value": "银卡会员"}],
           "url": "alipays://platformapi/startapp?appId=2021004100000002&page=pages%2Fmember%2Findex"}


class Jobs:
    def __init__(self) -> None:
        self.jobs: list[OutboundJob] = []

    def publish(self, job: Any) -> str:
        self.jobs.append(job)
        return str(len(self.jobs))


@pytest.fixture
def world(aws: Any) -> tuple[Reactions, Audience, Jobs]:
    ddb = boto3.client("dynamodb")
    table = aws.tables["StateTable"]
    registry = AppRegistry(ddb, table, boto3.client("secretsmanager"))
    registry.register(AppRecord(app_id=LIFE, kind="life", secret_name="s1", welcome=WELCOME), {"app_private_key": "x"})
    registry.register(AppRecord(app_id=PLAIN, kind="life", secret_name="s2"), {"app_private_key": "x"})
    audience, jobs = Audience(ddb, table), Jobs()
    return Reactions(audience, registry, jobs, clock=lambda: NOW), audience, jobs


def ev(cls: type, at: datetime, user: str = "2088000000000001", app: str = LIFE, **kw: Any) -> Any:
    return cls(event_id=f"{cls.__name__}{at.isoformat()}", app_id=app, source="life_gateway", occurred_at=at,
               received_at=NOW, user=UserRef(user_id=user), **kw)


def test_a_new_follower_gets_exactly_the_configured_welcome_job(world):
    reactions, audience, jobs = world
    reactions.handle(ev(FollowEvent, NOW - timedelta(minutes=1)))
    (job,) = jobs.jobs
    assert (job.channel, job.campaign, job.rule, job.kind) == ("life_template", "welcome", "welcome_on_follow",
                                                               "transactional")
    assert job.content.template_id == "TM_W" and job.recipient.user_id == "2088000000000001"
    assert job.ledger_key == f"{LIFE}|welcome|-|2088000000000001|life_template"
    facts = audience.facts(LIFE, "2088000000000001")
    assert facts.following is True and facts.last_interaction_at == NOW - timedelta(minutes=1)


def test_a_redelivered_follow_queues_the_same_welcome_job_again(world):
    reactions, audience, jobs = world
    follow = ev(FollowEvent, NOW - timedelta(minutes=1))
    reactions.handle(follow)
    reactions.handle(follow)
    assert len(jobs.jobs) == 2 and jobs.jobs[0].ledger_key == jobs.jobs[1].ledger_key  # the gateway sends it once
    assert audience.facts(LIFE, "2088000000000001").follow_changed_at == NOW - timedelta(minutes=1)


def test_a_consumer_killed_after_recording_the_follow_still_welcomes_on_redelivery(world):
    reactions, audience, jobs = world
    follow = ev(FollowEvent, NOW - timedelta(minutes=1))
    audience.set_following(LIFE, "2088000000000001", True, follow.occurred_at)  # the write before the crash
    reactions.handle(follow)  # SQS redelivers the event
    (job,) = jobs.jobs
    assert job.ledger_key == f"{LIFE}|welcome|-|2088000000000001|life_template"


def test_a_follow_older_than_the_fact_on_record_queues_nothing(world):
    reactions, _, jobs = world
    reactions.handle(ev(FollowEvent, NOW - timedelta(minutes=1)))
    reactions.handle(ev(UnfollowEvent, NOW - timedelta(seconds=30)))
    reactions.handle(ev(FollowEvent, NOW - timedelta(minutes=1)))  # the first follow redelivered after the unfollow
    assert len(jobs.jobs) == 1


def test_out_of_order_unfollow_does_not_undo_a_later_follow(world):
    reactions, audience, _ = world
    reactions.handle(ev(FollowEvent, NOW - timedelta(minutes=1)))
    reactions.handle(ev(UnfollowEvent, NOW - timedelta(minutes=5)))  # older, arrives late
    assert audience.facts(LIFE, "2088000000000001").following is True
    reactions.handle(ev(UnfollowEvent, NOW))
    assert audience.facts(LIFE, "2088000000000001").following is False


def test_no_welcome_for_stale_follows_or_apps_without_one(world):
    reactions, audience, jobs = world
    reactions.handle(ev(FollowEvent, NOW - timedelta(days=2)))
    reactions.handle(ev(FollowEvent, NOW, user="2088000000000002", app=PLAIN))
    assert jobs.jobs == []
    assert audience.facts(PLAIN, "2088000000000002").following is True


def test_messages_count_as_interactions_for_the_48h_window(world):
    reactions, audience, _ = world
    reactions.handle(ev(UserMessageEvent, NOW - timedelta(hours=1), msg_type="text", text="hi"))
    reactions.handle(ev(UserMessageEvent, NOW - timedelta(hours=3), msg_type="text", text="older"))
    assert audience.facts(LIFE, "2088000000000001").last_interaction_at == NOW - timedelta(hours=1)
