"""The automation rules through the real stores (moto): events folded by the real aggregator into profiles, the
rules' markers in the state table, jobs read back from the outbound queue; and follow confirmation against the
Alipay simulator over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lifelink.aggregation.aggregator import Aggregator
from lifelink.aggregation.groups import GroupDirectory
from lifelink.alipay.keys import public_key_one_line
from lifelink.domain.events import DomainEvent, SessionStartEvent, UserRef
from lifelink.domain.messages import OutboundJob, parse_job
from lifelink.rules import OutboundPublisher, RuleDeps, run_on_batch, run_scheduled
from lifelink.rules.follow_check import FOLLOW_QUERY, AlipayFollowCheck
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.profiles import ProfileStore
from lifelink_local.simulator import AlipaySimulator
from tests.unit.rules.conftest import GUIDE, LIFE, MINI, U1, U2, follow, paid, view

pytestmark = pytest.mark.integration

T = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
U3, U4 = "2088000000000003", "2088000000000004"
MINI_RULES = {"rules": {
    "browse_no_order": {"enabled": True, "hours": 24, "activity_id": "ACT_BROWSE"},
    "first_order": {"enabled": True, "message": GUIDE},
    "come_back": {"enabled": True, "silent_days": 30, "activity_id": "ACT_BACK"},
}}
LIFE_RULES = {"rules": {"tiers": {"tier_on_follow": "silver", "card_template_id": "CT_MEMBER"}}}


def drain(sqs: Any, url: str) -> list[OutboundJob]:
    jobs: list[OutboundJob] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            return jobs
        for m in messages:
            jobs.append(parse_job(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def session(at: datetime, user: str) -> SessionStartEvent:
    return SessionStartEvent(event_id=f"s-{user}-{at.timestamp()}", app_id=MINI, occurred_at=at, received_at=at,
                             user=UserRef(user_id=user), scene="1001")


@pytest.fixture
def stack(aws: Any) -> Iterator[tuple[Any, RuleDeps, Aggregator]]:
    ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    state = aws.tables["StateTable"]
    registry = AppRegistry(ddb, state, boto3.client("secretsmanager"))
    registry.register(AppRecord(app_id=LIFE, kind="life", secret_name="s/life", policy=LIFE_RULES),
                      {"app_private_key": "x"})
    registry.register(AppRecord(app_id=MINI, kind="mini", secret_name="s/mini", life_account=LIFE,
                                policy=MINI_RULES), {"app_private_key": "x"})
    deps = RuleDeps(ddb, state, registry, OutboundPublisher(sqs, aws.queues["OutboundQueue"]),
                    profiles=ProfileStore(ddb, aws.tables["ProfilesTable"]))
    aggregator = Aggregator(ddb, aws.tables["ProfilesTable"], aws.tables["MetricsTable"], GroupDirectory(registry),
                            state_table=state, clock=lambda: T + timedelta(hours=1))
    yield aws, deps, aggregator


def consume(aggregator: Aggregator, deps: RuleDeps, events: list[DomainEvent], now: datetime) -> None:
    """What the events consumer does with a batch: fold it, then run the rules."""
    result = aggregator.fold_batch([(e.event_id, e) for e in events])
    assert not result.failed
    outcome = run_on_batch(events, deps, now)
    assert outcome.failed_event_ids == []


def test_rules_end_to_end_on_the_real_stores(stack: tuple[Any, RuleDeps, Aggregator]) -> None:
    aws, deps, aggregator = stack
    sqs, url = boto3.client("sqs"), aws.queues["OutboundQueue"]
    old = T - timedelta(days=40)
    batch: list[DomainEvent] = [
        view(T, user=U1), view(T, user=U2), paid(T + timedelta(hours=2), "T-U2", user=U2),
        follow(T, user=U3), session(old, U4),
    ]
    consume(aggregator, deps, batch, T + timedelta(hours=1))
    first = drain(sqs, url)
    assert sorted((j.rule, j.recipient.user_id, j.channel.value) for j in first) == [
        ("first_order", U2, "mini_subscription"), ("member_tier", U3, "member_card")]

    # the same batch delivered again: no new guide (its marker is sent); the card job again (the ledger drops it)
    consume(aggregator, deps, batch, T + timedelta(hours=1, minutes=5))
    again = drain(sqs, url)
    assert [(j.rule, j.ledger_key) for j in again] == [(j.rule, j.ledger_key) for j in first if j.rule == "member_tier"]

    assert run_scheduled("rules_due", deps, T + timedelta(hours=23))["jobs"] == 0
    assert run_scheduled("rules_due", deps, T + timedelta(hours=24, minutes=5))["jobs"] == 1
    (coupon,) = drain(sqs, url)
    assert (coupon.rule, coupon.recipient.user_id, coupon.content.activity_id) == ("browse_no_order", U1,
                                                                                   "ACT_BROWSE")
    assert coupon.campaign == "rule-browse_no_order" and coupon.app_id == MINI
    assert run_scheduled("rules_due", deps, T + timedelta(hours=24, minutes=20))["jobs"] == 0

    scan = run_scheduled("silence_scan", deps, T + timedelta(days=1))
    assert scan["per_app"] == {LIFE: 0, MINI: 1}
    (gift,) = drain(sqs, url)
    assert (gift.rule, gift.recipient.user_id, gift.content.activity_id) == ("come_back", U4, "ACT_BACK")
    assert run_scheduled("silence_scan", deps, T + timedelta(days=2))["jobs"] == 0
    assert drain(sqs, url) == []


def test_the_due_index_is_read_hour_by_hour_not_scanned(stack: tuple[Any, RuleDeps, Aggregator]) -> None:
    _aws, deps, aggregator = stack
    consume(aggregator, deps, [view(T, user=U1)], T)
    ddb = boto3.client("dynamodb")
    calls: list[str] = []
    ddb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    deps.dynamodb = ddb
    deps._engine = None
    assert run_scheduled("rules_due", deps, T + timedelta(hours=24, minutes=5))["jobs"] == 1
    assert "Scan" not in calls and "Query" in calls


def test_follow_confirmation_against_the_simulator(aws: Any, app_keys: Any, alipay_keys: Any) -> None:
    sim = AlipaySimulator(alipay_keys.private, port=0)
    sim.start()
    try:
        sim.register_app(LIFE, public_key_one_line(app_keys.private))
        sim.set_follower(LIFE, U1)
        ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        state = aws.tables["StateTable"]
        registry = AppRegistry(ddb, state, boto3.client("secretsmanager"))
        policy = {"rules": {"tiers": {"confirm_follow": True, "card_template_id": "CT_MEMBER"}}}
        registry.register(AppRecord(app_id=LIFE, kind="life", secret_name="s/life", policy=policy),
                          {"app_private_key": "x"})
        secret = {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_keys.public_pem}
        check = AlipayFollowCheck(registry, lambda name: secret, sim.gateway_url)
        assert check(LIFE, UserRef(user_id=U1)) is True
        assert check(LIFE, UserRef(user_id=U2)) is False

        deps = RuleDeps(ddb, state, registry, OutboundPublisher(sqs, aws.queues["OutboundQueue"]), follow_check=check)
        now = datetime.now(UTC)
        outcome = run_on_batch([follow(now, user=U1), follow(now, user=U2)], deps, now)
        assert outcome.jobs == 1 and outcome.failed_event_ids == []
        (job,) = drain(sqs, aws.queues["OutboundQueue"])
        assert (job.recipient.user_id, job.content.level) == (U1, "silver")
        queried = [c for c in sim.openapi.call_log() if c["method"] == FOLLOW_QUERY]
        assert [(c["biz"], c["code"]) for c in queried][-2:] == [({"user_id": U1}, "10000"),
                                                                  ({"user_id": U2}, "10000")]

        sim.register_app("2021009999999999", public_key_one_line(app_keys.private))  # not in our registry
        with pytest.raises(LookupError):
            check("2021009999999999", UserRef(user_id=U1))
    finally:
        sim.stop()
