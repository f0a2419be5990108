"""What the message gateway must know about a user before it may message them: follow state, last
interaction (Alipay's 48-hour window for custom messages), and mini-program subscription grants.

Items in the state table, per (app, user key): ``pk = USER#<app_id>#<user>``
- ``sk = FACTS``: ``following`` (BOOL), ``follow_changed_at``, ``last_interaction_at`` (ISO 8601, UTC).
  Writes are conditional on event time, so redelivered or out-of-order events never move state backwards.
- ``sk = GRANT#<template_id>``: ``remaining`` (one-time subscriptions allow one message each),
  ``granted_at``. A send consumes one with a conditional decrement.
- ``sk = PROFILE``: ``tier`` (S), ``tags`` (SS): what campaign audience expressions select on (issue 5 fills it;
  :meth:`Audience.set_profile` writes it for tests and the demo).

Followers are enumerable through the sparse GSI ``followers`` (hash ``fpk``, range ``pk``): the FACTS item of a
current follower carries ``fpk = FOLLOWERS#<app_id>#<shard>`` (16 shards by a hash of the user key, so no
single index partition takes every follow of a big account), set in the same write that records the follow
and removed in the one that records the unfollow. :meth:`Audience.followers` queries every shard in turn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

FOLLOWERS_INDEX = "followers"
FOLLOWER_SHARDS = 16


def _pk(app_id: str, user: str) -> dict[str, str]:
    return {"S": f"USER#{app_id}#{user}"}


def follower_shard(user: str) -> int:
    return hashlib.sha256(user.encode()).digest()[0] % FOLLOWER_SHARDS


def follower_key(app_id: str, user: str) -> str:
    """The ``fpk`` (followers index hash key) of a follower's FACTS item."""
    return f"FOLLOWERS#{app_id}#{follower_shard(user):02d}"


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
        values: dict[str, Any] = {":f": {"BOOL": following}, ":at": {"S": _iso(at)}}
        if following:
            update = "SET following = :f, follow_changed_at = :at, fpk = :fpk"
            values[":fpk"] = {"S": follower_key(app_id, user)}
        else:
            update = "SET following = :f, follow_changed_at = :at REMOVE fpk"
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": _pk(app_id, user), "sk": {"S": "FACTS"}},
                UpdateExpression=update,
                ConditionExpression="attribute_not_exists(follow_changed_at) OR follow_changed_at < :at",
                ExpressionAttributeValues=values,
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

    # ---- followers and profiles (campaign audiences) --------------------------------------------------------

    def followers(self, app_id: str, after: str | None = None) -> Iterator[str]:
        """Every current follower's user key, shard by shard and in key order within a shard (a stable order).

        ``after`` resumes after that user (a cursor recorded by a campaign fan-out). The index is eventually
        consistent: a follow recorded a moment ago may not be listed yet.
        """
        prefix = f"USER#{app_id}#"
        first = follower_shard(after) if after is not None else 0
        for shard in range(first, FOLLOWER_SHARDS):
            fpk = f"FOLLOWERS#{app_id}#{shard:02d}"
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": FOLLOWERS_INDEX,
                "KeyConditionExpression": "fpk = :fpk",
                "ExpressionAttributeValues": {":fpk": {"S": fpk}},
            }
            if after is not None and shard == first:
                kwargs["KeyConditionExpression"] = "fpk = :fpk AND pk > :after"
                kwargs["ExpressionAttributeValues"][":after"] = _pk(app_id, after)
            while True:
                page = self._ddb.query(**kwargs)
                for item in page.get("Items", []):
                    yield item["pk"]["S"][len(prefix):]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def profile(self, app_id: str, user: str) -> tuple[str | None, set[str]]:
        """(member tier, tags) from the user's PROFILE item; (None, set()) when there is none."""
        item = self._ddb.get_item(
            TableName=self._table, Key={"pk": _pk(app_id, user), "sk": {"S": "PROFILE"}}
        ).get("Item", {})
        return _profile_of(item)

    def profiles(self, app_id: str, users: Iterable[str]) -> dict[str, tuple[str | None, set[str]]]:
        """Profiles of many users (BatchGetItem, 100 keys a call); users without one get (None, set())."""
        wanted = list(dict.fromkeys(users))
        out: dict[str, tuple[str | None, set[str]]] = {u: (None, set()) for u in wanted}
        prefix = f"USER#{app_id}#"
        for start in range(0, len(wanted), 100):
            keys = [{"pk": _pk(app_id, u), "sk": {"S": "PROFILE"}} for u in wanted[start : start + 100]]
            request: dict[str, Any] = {self._table: {"Keys": keys}}
            while request:
                page = self._ddb.batch_get_item(RequestItems=request)
                for item in page.get("Responses", {}).get(self._table, []):
                    out[item["pk"]["S"][len(prefix):]] = _profile_of(item)
                request = page.get("UnprocessedKeys") or {}
        return out

    def set_profile(self, app_id: str, user: str, tier: str | None, tags: Iterable[str] = ()) -> None:
        """Write a user's tier and tags (issue 5's profiles own this item; used by tests and the demo)."""
        item: dict[str, Any] = {"pk": _pk(app_id, user), "sk": {"S": "PROFILE"}}
        if tier:
            item["tier"] = {"S": tier}
        tag_set = sorted(set(tags))
        if tag_set:
            item["tags"] = {"SS": tag_set}
        self._ddb.put_item(TableName=self._table, Item=item)


def _profile_of(item: dict[str, Any]) -> tuple[str | None, set[str]]:
    tier = item["tier"]["S"] if "tier" in item else None
    tags = set(item["tags"]["SS"]) if "tags" in item else set()
    return tier, tags
