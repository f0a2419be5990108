"""A campaign's EventBridge Scheduler schedules: one ``at()`` schedule per boundary, in a group per campaign.

Group ``lifelink-<campaign id>``; a schedule per :meth:`Campaign.boundaries` entry, named after the boundary
with ``:`` replaced by ``-`` (``preheat_start``, ``action-topic``), at the boundary's wall-clock time in the
campaign's time zone, with flexible window OFF and ``ActionAfterCompletion`` DELETE. Each delivers the raw
input ``{"kind": "boundary", "campaign_id", "boundary", "scheduled_at"}`` to the campaign scheduler function.

:meth:`CampaignSchedules.create_for` is idempotent: a schedule that already says the same thing is kept, one
that differs is updated, one the definition no longer has is deleted; boundaries already past are skipped (the
``rate(5 minutes)`` reconciler catches up on them). :meth:`remove` deletes the whole group on close/cancel.
IAM: the functions need Create/Update/Delete/GetSchedule on ``schedule/lifelink-*/*``, Create/Delete/
GetScheduleGroup and TagResource on ``schedule-group/lifelink-*``, and iam:PassRole on the invoke role.
The same code creates the schedules on AWS and in moto's server locally (where the local ticker fires them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from lifelink.domain.campaigns import Campaign

GROUP_PREFIX = "lifelink-"
AT_FORMAT = "%Y-%m-%dT%H:%M:%S"


def group_name(campaign_id: str) -> str:
    return f"{GROUP_PREFIX}{campaign_id}"


def schedule_name(boundary: str) -> str:
    """``action:topic`` → ``action-topic`` (Scheduler names allow ``[0-9a-zA-Z-_.]``)."""
    return boundary.replace(":", "-")


def boundary_input(campaign_id: str, boundary: str, scheduled_at: datetime) -> dict[str, str]:
    """The raw input a boundary schedule delivers to the campaign scheduler function."""
    return {
        "kind": "boundary",
        "campaign_id": campaign_id,
        "boundary": boundary,
        "scheduled_at": scheduled_at.isoformat(),
    }


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class PlannedSchedule:
    """One ``at()`` schedule as the campaign wants it."""

    name: str
    boundary: str
    at: datetime  # aware, in the campaign's zone, whole seconds (rounded up)
    expression: str
    timezone: str
    input: dict[str, str]


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as Scheduler holds it (what :meth:`CampaignSchedules.list` returns)."""

    name: str
    group: str
    expression: str
    timezone: str
    state: str
    input: dict[str, Any]
    target_arn: str
    role_arn: str
    action_after_completion: str | None


def plan(campaign: Campaign) -> list[PlannedSchedule]:
    """Every boundary of ``campaign`` as an ``at()`` schedule, in time order."""
    zone = campaign.zone
    out = []
    for boundary, when in campaign.boundaries():
        local = when.astimezone(zone)
        if local.microsecond:  # at() takes whole seconds: never fire before the boundary itself
            local = local.replace(microsecond=0) + timedelta(seconds=1)
        out.append(
            PlannedSchedule(
                name=schedule_name(boundary),
                boundary=boundary,
                at=local,
                expression=f"at({local.strftime(AT_FORMAT)})",
                timezone=campaign.timezone,
                input=boundary_input(campaign.id, boundary, local),
            )
        )
    return out


@dataclass(frozen=True)
class ApplyResult:
    """What :meth:`CampaignSchedules.create_for` did, by schedule name."""

    group: str
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    skipped_past: tuple[str, ...] = ()


class CampaignSchedules:
    """Creates, lists and removes a campaign's boundary schedules through an EventBridge Scheduler client.

    ``target_arn`` is the campaign scheduler function's ARN, ``role_arn`` the role Scheduler assumes to invoke
    it (SCHEDULER_TARGET_ARN / SCHEDULER_ROLE_ARN in the functions' environment).
    """

    def __init__(self, scheduler_client: Any, target_arn: str, role_arn: str) -> None:
        self.scheduler = scheduler_client
        self.target_arn = target_arn
        self.role_arn = role_arn

    # ---- apply ------------------------------------------------------------------------------------------

    def create_for(self, campaign: Campaign, now: datetime | None = None, *,
                   previous: Campaign | None = None) -> ApplyResult:
        """Bring the campaign's group in line with its boundaries (idempotent).

        ``previous`` (the definition being replaced, if any) names schedules the new definition may no longer
        have: those are deleted. Only GetSchedule is used to compare, never ListSchedules (which IAM cannot
        narrow to the campaign's group).
        """
        if not self.target_arn or not self.role_arn:
            raise ValueError("CampaignSchedules needs the target ARN and the role ARN (SCHEDULER_TARGET_ARN/_ROLE_ARN)")
        now = now or datetime.now(UTC)
        group = group_name(campaign.id)
        self._ensure_group(group, campaign.id)
        created: list[str] = []
        updated: list[str] = []
        kept: list[str] = []
        skipped: list[str] = []
        wanted: set[str] = set()
        for planned in plan(campaign):
            wanted.add(planned.name)
            if planned.at <= now:
                skipped.append(planned.name)
                continue
            current = self.get(campaign.id, planned.name)
            if current is None:
                self._create(group, planned)
                created.append(planned.name)
            elif self._same(current, planned):
                kept.append(planned.name)
            else:
                self.scheduler.update_schedule(**self._request(group, planned))
                updated.append(planned.name)
        deleted = []
        obsolete = {p.name for p in plan(previous)} - wanted if previous is not None else set()
        for name in sorted(obsolete):
            if self._delete_schedule(group, name):
                deleted.append(name)
        return ApplyResult(group, tuple(created), tuple(updated), tuple(kept), tuple(deleted), tuple(skipped))

    def get(self, campaign_id: str, name: str) -> ScheduleInfo | None:
        """One schedule of the campaign (None when it does not exist, e.g. fired and deleted)."""
        group = group_name(campaign_id)
        try:
            return _info(self.scheduler.get_schedule(Name=name, GroupName=group), group)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise

    def _ensure_group(self, group: str, campaign_id: str) -> None:
        try:
            self.scheduler.get_schedule_group(Name=group)
            return
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
        try:
            self.scheduler.create_schedule_group(Name=group, Tags=[{"Key": "lifelink:campaign", "Value": campaign_id}])
        except ClientError as exc:  # created concurrently: fine
            if _code(exc) != "ConflictException":
                raise

    def _request(self, group: str, planned: PlannedSchedule) -> dict[str, Any]:
        return {
            "Name": planned.name,
            "GroupName": group,
            "ScheduleExpression": planned.expression,
            "ScheduleExpressionTimezone": planned.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": self.target_arn,
                "RoleArn": self.role_arn,
                "Input": json.dumps(planned.input, sort_keys=True),
            },
            "ActionAfterCompletion": "DELETE",
            "State": "ENABLED",
            "Description": f"lifelink campaign {planned.input['campaign_id']}: {planned.boundary}",
        }

    def _create(self, group: str, planned: PlannedSchedule) -> None:
        try:
            self.scheduler.create_schedule(**self._request(group, planned))
        except ClientError as exc:  # created concurrently: make sure it says what we want
            if _code(exc) != "ConflictException":
                raise
            self.scheduler.update_schedule(**self._request(group, planned))

    def _same(self, current: ScheduleInfo, planned: PlannedSchedule) -> bool:
        return (
            current.expression == planned.expression
            and current.timezone == planned.timezone
            and current.input == planned.input
            and current.state == "ENABLED"
            and current.target_arn == self.target_arn
            and current.role_arn == self.role_arn
            and current.action_after_completion == "DELETE"
        )

    # ---- read -------------------------------------------------------------------------------------------

    def list(self, campaign_id: str) -> list[ScheduleInfo]:
        """The campaign's schedules as Scheduler holds them, by time (empty when the group is gone).

        Uses ListSchedules, which IAM grants only on every resource: for operators and the local stack; the
        functions' roles do not have it."""
        group = group_name(campaign_id)
        names: list[str] = []
        kwargs: dict[str, Any] = {"GroupName": group}
        try:
            while True:
                page = self.scheduler.list_schedules(**kwargs)
                names += [s["Name"] for s in page.get("Schedules", []) if s.get("GroupName", group) == group]
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return []
            raise
        found = [self.get(campaign_id, name) for name in names]
        out = [info for info in found if info is not None]  # one may have fired and gone meanwhile
        return sorted(out, key=lambda info: (info.input.get("scheduled_at", ""), info.name))

    # ---- remove -----------------------------------------------------------------------------------------

    def remove(self, campaign_id: str) -> bool:
        """Delete the campaign's group and its schedules. False when there was none (not an error)."""
        group = group_name(campaign_id)
        try:
            self.scheduler.get_schedule_group(Name=group)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return False
            raise
        try:
            self.scheduler.delete_schedule_group(Name=group)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return False
            raise
        return True

    def _delete_schedule(self, group: str, name: str) -> bool:
        try:
            self.scheduler.delete_schedule(Name=name, GroupName=group)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            return False
        return True


def _info(got: dict[str, Any], group: str) -> ScheduleInfo:
    target = got.get("Target") or {}
    try:
        payload = json.loads(target.get("Input") or "{}")
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    return ScheduleInfo(
        name=str(got["Name"]),
        group=str(got.get("GroupName") or group),
        expression=str(got.get("ScheduleExpression", "")),
        timezone=str(got.get("ScheduleExpressionTimezone") or "UTC"),
        state=str(got.get("State") or "ENABLED"),
        input=payload,
        target_arn=str(target.get("Arn", "")),
        role_arn=str(target.get("RoleArn", "")),
        action_after_completion=got.get("ActionAfterCompletion"),
    )
