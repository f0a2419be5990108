"""What the message gateway must know about a user before it may message them: follow state, last
interaction (Alipay's 48-hour window for custom messages), and mini-program subscription grants.

Items in the state table, per (app, user key): ``pk = USER#<app_id>#<user>``
- ``sk = FACTS``: ``following`` (BOOL), ``follow_changed_at``, ``last_interaction_at`` (ISO 8601, UTC).
  Writes are conditional on event time, so redelivered or out-of-order events never move state backwards.
- ``sk = GRANT#<template_id>``: ``remaining`` (one-time subscriptions allow one message each),
  ``granted_at``. A send consumes one with a conditional decrement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError


def _pk(app_id: str, user: str) -> dict[str, str]:
    return {"S": f"USER#{app_id}#{user}"}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class UserFacts:
    following: bool | None  # None: never seen a follow or unfollow
    follow_changed_at: datetime | None
    last_interaction_at: datetime | None


class Audience:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    def facts(self, app_id: str, user: str) -> UserFacts:
        item = self._ddb.get_item(
            TableName=self._table, Key={"pk": _pk(app_id, user), "sk": {"S": "FACTS"}}, ConsistentRead=True
        ).get("Item", {})

        def when(name: str) -> datetime | None:
            return datetime.fromisoformat(item[name]["S"]) if name in item else None

        following = item["following"]["BOOL"] if "following" in item else None
        return UserFacts(following, when("follow_changed_at"), when("last_interaction_at"))

    def set_following(self, app_id: str, user: str, following: bool, at: datetime) -> bool:
        """Record a follow or unfollow that happened at ``at``; ignored when a later change is known."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": _pk(app_id, user), "sk": {"S": "FACTS"}},
                UpdateExpression="SET following = :f, follow_changed_at = :at",
                ConditionExpression="attribute_not_exists(follow_changed_at) OR follow_changed_at < :at",
                ExpressionAttributeValues={":f": {"BOOL": following}, ":at": {"S": _iso(at)}},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def touch(self, app_id: str, user: str, at: datetime) -> bool:
        """Record an interaction (message, click, enter, follow) at ``at``, keeping the latest."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": _pk(app_id, user), "sk": {"S": "FACTS"}},
                UpdateExpression="SET last_interaction_at = :at",
                ConditionExpression="attribute_not_exists(last_interaction_at) OR last_interaction_at < :at",
                ExpressionAttributeValues={":at": {"S": _iso(at)}},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def grant(self, app_id: str, user: str, template_id: str, count: int = 1, at: datetime | None = None) -> None:
        """The user accepted ``my.requestSubscribeMessage`` for ``template_id`` (``count`` one-time grants)."""
        self._ddb.update_item(
            TableName=self._table,
            Key={"pk": _pk(app_id, user), "sk": {"S": f"GRANT#{template_id}"}},
            UpdateExpression="ADD remaining :n SET granted_at = :at",
            ExpressionAttributeValues={":n": {"N": str(count)}, ":at": {"S": _iso(at or datetime.now(UTC))}},
        )

    def grants(self, app_id: str, user: str, template_id: str) -> int:
        item = self._ddb.get_item(
            TableName=self._table,
            Key={"pk": _pk(app_id, user), "sk": {"S": f"GRANT#{template_id}"}},
            ConsistentRead=True,
        ).get("Item", {})
        return int(item["remaining"]["N"]) if "remaining" in item else 0

    def consume_grant(self, app_id: str, user: str, template_id: str) -> bool:
        """Take one grant; False when none is left."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": _pk(app_id, user), "sk": {"S": f"GRANT#{template_id}"}},
                UpdateExpression="ADD remaining :minus",
                ConditionExpression="remaining > :zero",
                ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def restore_grant(self, app_id: str, user: str, template_id: str) -> None:
        """Give a grant back when the send it was taken for did not happen."""
        self.grant(app_id, user, template_id, 1)
