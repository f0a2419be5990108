"""The entry points: the events consumer's hook (message ids to redeliver) and the scheduled kinds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import boto3
import pytest

from lifelink.domain.events import SessionStartEvent, UserRef
from lifelink.domain.messages import OutboundJob
from lifelink.rules import RuleDeps, batch_hook, run_scheduled

from .conftest import COUPON, GUIDE, MINI, NOW, U1, U2, Registry, paid, view


class Publisher:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.jobs: list[OutboundJob] = []

    def publish(self, jobs: Sequence[OutboundJob]) -> int:
        if self.fail and jobs:
            raise RuntimeError("queue unavailable")
        self.jobs += jobs
        return len(jobs)


def deps_for(aws: Any, publisher: Publisher) -> RuleDeps:
    registry = Registry()
    registry.add(MINI, "mini", {"rules": {"first_order": {"enabled": True, "message": GUIDE},
                                          "browse_no_order": {"enabled": True, "activity_id": COUPON}}})
    return RuleDeps(boto3.client("dynamodb"), aws.tables["StateTable"], registry, publisher)  # type: ignore[arg-type]


def session(user: str) -> SessionStartEvent:
    return SessionStartEvent(event_id=f"s-{user}", app_id=MINI, occurred_at=NOW, received_at=NOW,
                             user=UserRef(user_id=user), scene="1001")


def test_the_hook_queues_jobs_and_reports_nothing_when_all_went_well(aws: Any) -> None:
    publisher = Publisher()
    hook = batch_hook(deps_for(aws, publisher))
    assert hook([("m1", paid(NOW, user=U1)), ("m2", session(U2)), ("m3", view(NOW, user=U2))]) == []
    assert [j.rule for j in publisher.jobs] == ["first_order"]


def test_when_the_jobs_cannot_be_queued_every_rule_event_comes_back(aws: Any) -> None:
    publisher = Publisher(fail=True)
    deps = deps_for(aws, publisher)
    hook = batch_hook(deps)
    assert hook([("m1", paid(NOW, user=U1)), ("m2", session(U2)), ("m3", view(NOW, user=U2))]) == ["m1", "m3"]
    publisher.fail = False  # the redelivery goes through and makes the same job
    assert hook([("m1", paid(NOW, user=U1))]) == []
    assert [j.ledger_key for j in publisher.jobs] == [f"{MINI}|rule-first_order|ever|{U1}|mini_subscription"]


def test_scheduled_kinds(aws: Any) -> None:
    publisher = Publisher()
    deps = deps_for(aws, publisher)
    batch_hook(deps)([("m1", view(NOW, user=U1))])
    assert run_scheduled("rules_due", deps, NOW + timedelta(hours=24)) == {"kind": "rules_due", "jobs": 1}
    assert run_scheduled("silence_scan", deps, NOW) == {"kind": "silence_scan", "jobs": 0, "per_app": {MINI: 0}}
    with pytest.raises(ValueError, match="unknown rules schedule kind"):
        run_scheduled("rollup", deps, NOW)
