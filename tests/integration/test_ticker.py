"""The local Scheduler ticker against moto's server over HTTP, on a fake clock: schedules created by
CampaignSchedules (the code that creates them on AWS) fire once, in time order, and go away; rate() repeats."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lifelink.domain.campaigns import Campaign
from lifelink.scheduling import CampaignSchedules
from lifelink_local.motoserver import MotoServer
from lifelink_local.provision import load_template
from lifelink_local.ticker import RateSchedule, ScaledClock, SchedulerTicker, parse_at, parse_rate

pytestmark = pytest.mark.integration

TARGET = "arn:aws:lambda:us-east-1:123456789012:function:lifelink-local-campaign-scheduler"
ROLE = "arn:aws:iam::123456789012:role/lifelink-local-SchedulerInvokeRole"
T0 = datetime(2030, 11, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[Any]:
    server = MotoServer(port=0)
    url = server.start()
    yield boto3.client("scheduler", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    server.stop()


def _campaign(campaign_id: str) -> Campaign:
    """Phases 10 minutes each from T0, a topic push at +3 minutes."""
    def at(minutes: int) -> str:
        return (T0 + timedelta(minutes=minutes)).isoformat()

    return Campaign.model_validate({
        "id": campaign_id, "name": "ticker", "life_account": "2021004100000001",
        "mini_programs": ["2021004100000002"],
        "phases": {
            "preheat": {"start": at(0), "end": at(10), "actions": [{
                "id": "topic", "type": "topic_push", "at": at(3),
                "message": {"template_id": "TM1", "keywords": ["k"]}, "link": {"page": "pages/topic/index"},
            }]},
            "burst": {"start": at(10), "end": at(20)},
            "settle": {"start": at(20), "end": at(30)},
        },
    })


class Recorder:
    def __init__(self, fail_first: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail_first = fail_first

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("boom")
        return {"ok": True}


def _names(scheduler: Any, group: str) -> set[str]:
    return {s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]}


def test_due_schedules_fire_once_in_time_order_and_are_deleted(scheduler: Any) -> None:
    campaign_id = f"c-{uuid.uuid4().hex[:8]}"
    clock = FakeClock(T0 - timedelta(minutes=1))
    CampaignSchedules(scheduler, TARGET, ROLE).create_for(_campaign(campaign_id), now=clock())
    group = f"lifelink-{campaign_id}"
    recorder = Recorder()
    ticker = SchedulerTicker(scheduler, {TARGET: recorder}, clock=clock)

    assert [f for f in ticker.tick() if f.group == group] == []  # nothing due yet
    clock.advance(minutes=12)  # preheat_start, action:topic and burst_start are due, in that order
    fired = ticker.tick()
    mine = [e for e in recorder.events if e["campaign_id"] == campaign_id]
    assert [e["boundary"] for e in mine] == ["preheat_start", "action:topic", "burst_start"]
    assert [f.name for f in fired if f.group == group] == ["preheat_start", "action-topic", "burst_start"]
    assert all(f.ok for f in fired)
    assert mine[1] == {"kind": "boundary", "campaign_id": campaign_id, "boundary": "action:topic",
                       "scheduled_at": "2030-11-01T10:03:00+08:00"}
    assert _names(scheduler, group) == {"settle_start", "settle_end"}  # fired at() schedules are deleted

    assert [f for f in ticker.tick() if f.group == group] == []  # nothing fires twice
    clock.advance(minutes=30)
    ticker.tick()
    assert [e["boundary"] for e in recorder.events if e["campaign_id"] == campaign_id][3:] == [
        "settle_start", "settle_end"]
    assert _names(scheduler, group) == set()


def test_schedules_of_several_campaigns_interleave_by_time(scheduler: Any) -> None:
    first, second = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    clock = FakeClock(T0 - timedelta(hours=1))
    schedules = CampaignSchedules(scheduler, TARGET, ROLE)
    schedules.create_for(_campaign(first), now=clock())
    schedules.create_for(_campaign(second), now=clock())
    recorder = Recorder()
    ticker = SchedulerTicker(scheduler, {TARGET: recorder}, clock=clock)
    clock.advance(hours=2)
    ticker.tick()
    times = [datetime.fromisoformat(e["scheduled_at"]) for e in recorder.events
             if e["campaign_id"] in (first, second)]
    assert len(times) == 10
    assert times == sorted(times)


def test_a_failed_delivery_is_retried_then_given_up(scheduler: Any) -> None:
    campaign_id = f"r-{uuid.uuid4().hex[:8]}"
    clock = FakeClock(T0 - timedelta(minutes=1))
    CampaignSchedules(scheduler, TARGET, ROLE).create_for(_campaign(campaign_id), now=clock())
    failing = Recorder(fail_first=2)
    ticker = SchedulerTicker(scheduler, {TARGET: failing}, clock=clock, max_attempts=3)
    clock.advance(minutes=1)  # preheat_start only
    assert [f.ok for f in ticker.tick() if f.group.endswith(campaign_id)] == [False]
    assert "preheat_start" in _names(scheduler, f"lifelink-{campaign_id}")  # kept for the retry
    assert [f.ok for f in ticker.tick() if f.group.endswith(campaign_id)] == [False]
    assert [f.ok for f in ticker.tick() if f.group.endswith(campaign_id)] == [True]
    assert [f for f in ticker.tick() if f.group.endswith(campaign_id)] == []
    assert "preheat_start" not in _names(scheduler, f"lifelink-{campaign_id}")


def test_rate_schedules_repeat_every_period(scheduler: Any) -> None:
    clock = FakeClock(T0)
    calls = Recorder()
    rate = RateSchedule("Reconcile", "arn:local:reconciler", "rate(5 minutes)", json.dumps({"kind": "reconcile"}))
    ticker = SchedulerTicker(scheduler, {"arn:local:reconciler": calls}, rates=[rate], clock=clock)
    ticker.tick()
    clock.advance(minutes=4)
    ticker.tick()
    assert calls.events == []
    clock.advance(minutes=1)
    ticker.tick()
    ticker.tick()  # same instant: not again
    assert calls.events == [{"kind": "reconcile"}]
    clock.advance(minutes=5)
    ticker.tick()
    clock.advance(minutes=5)
    ticker.tick()
    assert calls.events == [{"kind": "reconcile"}] * 3


def test_the_template_reconciler_is_a_rate_schedule_of_the_campaign_scheduler() -> None:
    (event,) = [e for e in load_template().schedule_events() if e.function_id == "CampaignSchedulerFunction"]
    assert parse_rate(event.expression) == timedelta(minutes=5)
    assert json.loads(event.input or "") == {"kind": "reconcile"}
    assert event.handler_file.name == "app.py" and event.handler_file.parent.name == "campaign_scheduler"


def test_expressions_and_clock() -> None:
    assert parse_at("at(2030-11-01T10:03:00)", "Asia/Shanghai") == datetime(2030, 11, 1, 2, 3, tzinfo=UTC)
    assert parse_at("rate(1 minute)", None) is None
    assert parse_rate("rate(1 hour)") == timedelta(hours=1)
    base = FakeClock(T0)
    fast = ScaledClock(speed=60, base=base)
    base.advance(seconds=2)
    assert fast() == T0 + timedelta(minutes=2)
