"""CampaignSchedules against moto's EventBridge Scheduler (in-process mock_aws)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from moto import mock_aws

from lifelink.domain.campaigns import Campaign
from lifelink.scheduling import CampaignSchedules, group_name, plan

TARGET = "arn:aws:lambda:us-east-1:123456789012:function:lifelink-campaign-scheduler"
ROLE = "arn:aws:iam::123456789012:role/lifelink-SchedulerInvokeRole"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _campaign(campaign_id: str = "double-11", *, start: datetime | None = None, topic_at: str | None = None,
              timezone: str = "Asia/Shanghai") -> Campaign:
    start = start or datetime(2030, 11, 1, 10, 0)
    step = timedelta(days=2)
    topic: dict[str, Any] = {
        "id": "topic", "type": "topic_push",
        "message": {"template_id": "TM1", "keywords": ["双11"]},
        "link": {"page": "pages/topic/index"},
    }
    if topic_at:
        topic["at"] = topic_at
    return Campaign.model_validate({
        "id": campaign_id, "name": "Double 11", "life_account": "2021004100000001",
        "mini_programs": ["2021004100000002"], "timezone": timezone,
        "phases": {
            "preheat": {"start": start.isoformat(), "end": (start + step).isoformat(), "actions": [topic]},
            "burst": {"start": (start + step).isoformat(), "end": (start + 2 * step).isoformat()},
            "settle": {"start": (start + 2 * step).isoformat(), "end": (start + 3 * step).isoformat()},
        },
    })


@pytest.fixture
def scheduler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("scheduler", region_name="us-east-1")


NOW = datetime(2030, 10, 1, tzinfo=UTC)


def _all(scheduler: Any, group: str) -> dict[str, dict[str, Any]]:
    names = [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]]
    return {name: scheduler.get_schedule(Name=name, GroupName=group) for name in names}


def test_one_at_schedule_per_boundary_in_the_campaign_group(scheduler: Any) -> None:
    campaign = _campaign(topic_at="2030-11-01T20:30:00")
    result = CampaignSchedules(scheduler, TARGET, ROLE).create_for(campaign, now=NOW)

    assert result.group == "lifelink-double-11"
    groups = {g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]}
    assert "lifelink-double-11" in groups
    got = _all(scheduler, "lifelink-double-11")
    assert set(got) == {"preheat_start", "action-topic", "burst_start", "settle_start", "settle_end"}
    assert sorted(result.created) == sorted(got)
    assert got["preheat_start"]["ScheduleExpression"] == "at(2030-11-01T10:00:00)"
    assert got["action-topic"]["ScheduleExpression"] == "at(2030-11-01T20:30:00)"
    assert got["settle_end"]["ScheduleExpression"] == "at(2030-11-07T10:00:00)"
    for schedule in got.values():
        assert schedule["ScheduleExpressionTimezone"] == "Asia/Shanghai"
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        assert schedule["ActionAfterCompletion"] == "DELETE"
        assert schedule["Target"]["Arn"] == TARGET
        assert schedule["Target"]["RoleArn"] == ROLE


def test_inputs_name_the_boundary_and_its_time_with_offset(scheduler: Any) -> None:
    campaign = _campaign(topic_at="2030-11-01T20:30:00")
    CampaignSchedules(scheduler, TARGET, ROLE).create_for(campaign, now=NOW)
    got = _all(scheduler, "lifelink-double-11")
    inputs = {name: json.loads(s["Target"]["Input"]) for name, s in got.items()}
    assert inputs["action-topic"] == {
        "kind": "boundary", "campaign_id": "double-11", "boundary": "action:topic",
        "scheduled_at": "2030-11-01T20:30:00+08:00",
    }
    assert inputs["burst_start"]["boundary"] == "burst_start"
    for payload in inputs.values():
        assert datetime.fromisoformat(payload["scheduled_at"]).utcoffset() == timedelta(hours=8)


def test_wall_clock_follows_the_campaign_time_zone(scheduler: Any) -> None:
    # An aware time given in UTC is scheduled as the campaign zone's wall-clock time.
    campaign = _campaign(start=datetime(2030, 11, 1, 2, 0, tzinfo=UTC), timezone="Europe/Berlin")
    CampaignSchedules(scheduler, TARGET, ROLE).create_for(campaign, now=NOW)
    got = _all(scheduler, "lifelink-double-11")
    assert got["preheat_start"]["ScheduleExpression"] == "at(2030-11-01T03:00:00)"
    assert got["preheat_start"]["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert json.loads(got["preheat_start"]["Target"]["Input"])["scheduled_at"] == "2030-11-01T03:00:00+01:00"


def test_re_apply_keeps_what_matches_and_updates_what_changed(scheduler: Any) -> None:
    schedules = CampaignSchedules(scheduler, TARGET, ROLE)
    first = schedules.create_for(_campaign(topic_at="2030-11-01T20:30:00"), now=NOW)
    again = schedules.create_for(_campaign(topic_at="2030-11-01T20:30:00"), now=NOW)
    assert again.created == again.updated == again.deleted == ()
    assert sorted(again.kept) == sorted(first.created)

    moved = schedules.create_for(_campaign(topic_at="2030-11-02T09:15:00"), now=NOW)
    assert moved.updated == ("action-topic",)
    assert _all(scheduler, "lifelink-double-11")["action-topic"]["ScheduleExpression"] == "at(2030-11-02T09:15:00)"

    dropped = schedules.create_for(_campaign(), now=NOW, previous=_campaign(topic_at="2030-11-02T09:15:00"))
    assert dropped.deleted == ("action-topic",)  # the action no longer has its own time
    assert "action-topic" not in _all(scheduler, "lifelink-double-11")


def test_re_apply_keeps_schedules_in_an_existing_group(scheduler: Any) -> None:
    schedules = CampaignSchedules(scheduler, TARGET, ROLE)
    schedules.create_for(_campaign(), now=NOW)
    schedules.create_for(_campaign(), now=NOW)
    assert len(_all(scheduler, "lifelink-double-11")) == 4


def test_boundaries_already_past_are_skipped(scheduler: Any) -> None:
    campaign = _campaign()
    now = datetime(2030, 11, 3, 12, 0, tzinfo=SHANGHAI)  # after preheat and burst started
    result = CampaignSchedules(scheduler, TARGET, ROLE).create_for(campaign, now=now)
    assert sorted(result.skipped_past) == ["burst_start", "preheat_start"]
    assert set(_all(scheduler, "lifelink-double-11")) == {"settle_start", "settle_end"}


def test_list_returns_the_schedules_in_time_order(scheduler: Any) -> None:
    schedules = CampaignSchedules(scheduler, TARGET, ROLE)
    schedules.create_for(_campaign(topic_at="2030-11-01T20:30:00"), now=NOW)
    listed = schedules.list("double-11")
    assert [s.name for s in listed] == ["preheat_start", "action-topic", "burst_start", "settle_start", "settle_end"]
    assert [s.name for s in listed] == [p.name for p in plan(_campaign(topic_at="2030-11-01T20:30:00"))]
    assert schedules.list("no-such-campaign") == []


def test_remove_deletes_the_group_and_tolerates_a_missing_one(scheduler: Any) -> None:
    schedules = CampaignSchedules(scheduler, TARGET, ROLE)
    schedules.create_for(_campaign(), now=NOW)
    schedules.create_for(_campaign("other"), now=NOW)
    assert schedules.remove("double-11") is True
    groups = {g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]}
    assert group_name("double-11") not in groups and group_name("other") in groups
    assert schedules.list("double-11") == []
    assert schedules.remove("double-11") is False
    assert len(schedules.list("other")) == 4


def test_needs_the_target_and_role(scheduler: Any) -> None:
    with pytest.raises(ValueError, match="SCHEDULER_TARGET_ARN"):
        CampaignSchedules(scheduler, "", ROLE).create_for(_campaign(), now=NOW)


class _NoListing:
    """A Scheduler client as the functions' IAM role allows it: no ListSchedules / ListScheduleGroups."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("list_"):
            raise AssertionError(f"{name} is not granted to the functions")
        return getattr(self._client, name)


def test_apply_and_remove_need_no_listing_permission(scheduler: Any) -> None:
    schedules = CampaignSchedules(_NoListing(scheduler), TARGET, ROLE)
    schedules.create_for(_campaign(topic_at="2030-11-01T20:30:00"), now=NOW)
    again = schedules.create_for(_campaign(), now=NOW, previous=_campaign(topic_at="2030-11-01T20:30:00"))
    assert again.deleted == ("action-topic",) and len(again.kept) == 4
    assert schedules.remove("double-11") is True


def test_a_boundary_with_fractional_seconds_is_scheduled_on_the_next_whole_second() -> None:
    start = datetime(2030, 11, 1, 10, 0, 0, 250_000)
    (first, *_) = plan(_campaign(start=start))
    assert first.expression == "at(2030-11-01T10:00:01)"
    assert datetime.fromisoformat(first.input["scheduled_at"]) >= start.replace(tzinfo=SHANGHAI)
