"""Frequency counters in the state table: per-user daily sends per channel and weekly group-send markers.

Items (``ttl`` = epoch seconds, so DynamoDB expires them):
- ``pk = CAP#<app_id>#<user>``, ``sk = DAY#<yyyy-mm-dd>#<channel>``: ``n`` sends on that channel and day;
- ``pk = CAP#<app_id>#group``, ``sk = WEEK#<yyyy-Www>#all``: group sends (total + label calls) that week;
  ``…#total``: total.send calls; ``…#label#<label_id>``: sends to that label.
Days and weeks are the policy's (Asia/Shanghai by default).

:meth:`Counters.take` increments every slot of a plan in one atomic, conditional write (a transaction when
there are several), so concurrent containers never exceed a limit; :meth:`Counters.give_back` returns the
slots of a send that did not happen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from lifelink.domain.messages import Channel, OutboundJob
from lifelink.domain.policy import (
    ALIPAY_CUSTOM_PER_DAY,
    ALIPAY_GROUP_PER_WEEK,
    ALIPAY_LABEL_CALLS_PER_WEEK,
    MessagePolicy,
    SendFacts,
    UserState,
)

DAY_TTL_S = 3 * 86400
WEEK_TTL_S = 15 * 86400


@dataclass(frozen=True)
class Slot:
    """One counter; ``limit`` None counts without limiting; ``check_only`` asserts ``n < limit`` only."""

    pk: str
    sk: str
    limit: int | None
    ttl: int
    check_only: bool = False


@dataclass(frozen=True)
class CapPlan:
    """The counters a job's send takes, by role (None: the role does not apply to this channel)."""

    day: Slot | None = None
    group: Slot | None = None
    total: Slot | None = None
    label: Slot | None = None

    @property
    def slots(self) -> list[Slot]:
        return [s for s in (self.day, self.group, self.total, self.label) if s is not None]

    @property
    def taken(self) -> list[Slot]:
        return [s for s in self.slots if not s.check_only]


def plan_for(job: OutboundJob, policy: MessagePolicy, now: datetime) -> CapPlan:
    epoch = int(now.timestamp())
    if job.channel in (Channel.life_broadcast, Channel.life_label):
        week = policy.week(now)
        pk = f"CAP#{job.app_id}#group"
        ttl = epoch + WEEK_TTL_S
        if job.channel is Channel.life_broadcast:
            return CapPlan(
                group=Slot(pk, f"WEEK#{week}#all", ALIPAY_GROUP_PER_WEEK, ttl),
                total=Slot(pk, f"WEEK#{week}#total", None, ttl),
            )
        return CapPlan(
            group=Slot(pk, f"WEEK#{week}#all", ALIPAY_LABEL_CALLS_PER_WEEK, ttl),
            total=Slot(pk, f"WEEK#{week}#total", 1, ttl, check_only=True),
            label=Slot(pk, f"WEEK#{week}#label#{job.recipient.label_id}", ALIPAY_GROUP_PER_WEEK, ttl),
        )
    cap = policy.caps.get(job.channel)
    limit = None if cap is None or job.transactional else cap.per_day
    if job.channel is Channel.life_custom:
        limit = ALIPAY_CUSTOM_PER_DAY if limit is None else min(limit, ALIPAY_CUSTOM_PER_DAY)
    day = policy.day(now).isoformat()
    return CapPlan(
        day=Slot(f"CAP#{job.app_id}#{job.user_key}", f"DAY#{day}#{job.channel.value}", limit, epoch + DAY_TTL_S)
    )


def _key(slot: Slot) -> dict[str, Any]:
    return {"pk": {"S": slot.pk}, "sk": {"S": slot.sk}}


def _cancelled_by_condition(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        # Conflicts with a concurrent transaction on the same counter are "try again later" too.
        return not reasons or all(
            r.get("Code") in ("None", "ConditionalCheckFailed", "TransactionConflict", None) for r in reasons
        )
    return False


class Counters:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    def read(self, slots: Sequence[Slot]) -> list[int]:
        if not slots:
            return []
        keys = [_key(s) for s in slots]
        unique = list({(k["pk"]["S"], k["sk"]["S"]): k for k in keys}.values())
        got: dict[tuple[str, str], int] = {}
        request: dict[str, Any] = {self._table: {"Keys": unique, "ConsistentRead": True}}
        while request:
            page = self._ddb.batch_get_item(RequestItems=request)
            for item in page.get("Responses", {}).get(self._table, []):
                got[(item["pk"]["S"], item["sk"]["S"])] = int(item.get("n", {}).get("N", "0"))
            request = page.get("UnprocessedKeys") or {}
        return [got.get((s.pk, s.sk), 0) for s in slots]

    def facts(self, plan: CapPlan, user: UserState, grants: int = 0) -> SendFacts:
        """SendFacts for ``decide`` with the counts this plan's counters hold now."""
        values = dict(zip(("day", "group", "total", "label"), self.read_plan(plan), strict=True))
        return SendFacts(
            user=user,
            grants=grants,
            sent_today=values["day"],
            group_this_week=values["group"],
            total_this_week=values["total"],
            label_this_week=values["label"],
        )

    def read_plan(self, plan: CapPlan) -> list[int]:
        roles = (plan.day, plan.group, plan.total, plan.label)
        present = [s for s in roles if s is not None]
        values = iter(self.read(present))
        return [next(values) if s is not None else 0 for s in roles]

    @staticmethod
    def _update(slot: Slot, delta: int) -> dict[str, Any]:
        op: dict[str, Any] = {
            "Key": _key(slot),
            "UpdateExpression": "ADD n :d SET #ttl = if_not_exists(#ttl, :ttl)",
            "ExpressionAttributeNames": {"#ttl": "ttl"},
            "ExpressionAttributeValues": {":d": {"N": str(delta)}, ":ttl": {"N": str(slot.ttl)}},
        }
        if slot.limit is not None:
            op["ConditionExpression"] = "attribute_not_exists(n) OR n < :limit"
            op["ExpressionAttributeValues"][":limit"] = {"N": str(slot.limit)}
        return op

    def take(self, plan: CapPlan | Sequence[Slot]) -> bool:
        """Increment every slot if each is under its limit; False (nothing changed) otherwise."""
        slots = plan.slots if isinstance(plan, CapPlan) else list(plan)
        if not slots:
            return True
        try:
            if len(slots) == 1 and not slots[0].check_only:
                self._ddb.update_item(TableName=self._table, **self._update(slots[0], 1))
                return True
            items: list[dict[str, Any]] = []
            for slot in slots:
                if slot.check_only:
                    items.append(
                        {
                            "ConditionCheck": {
                                "TableName": self._table,
                                "Key": _key(slot),
                                "ConditionExpression": "attribute_not_exists(n) OR n < :limit",
                                "ExpressionAttributeValues": {":limit": {"N": str(slot.limit or 0)}},
                            }
                        }
                    )
                else:
                    items.append({"Update": {"TableName": self._table, **self._update(slot, 1)}})
            self._ddb.transact_write_items(TransactItems=items)
            return True
        except ClientError as exc:
            if _cancelled_by_condition(exc):
                return False
            raise

    def give_back(self, plan: CapPlan | Sequence[Slot]) -> None:
        """Return the slots of a send that did not happen (never below zero)."""
        slots = plan.taken if isinstance(plan, CapPlan) else [s for s in plan if not s.check_only]
        for slot in slots:
            try:
                self._ddb.update_item(
                    TableName=self._table,
                    Key=_key(slot),
                    UpdateExpression="ADD n :minus",
                    ConditionExpression="n > :zero",
                    ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
