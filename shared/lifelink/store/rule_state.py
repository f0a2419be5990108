"""Automation-rule state in the state table: once-per-window markers, member tiers and the due-time index.

Items (every time is epoch seconds, ``N``; ``ttl`` is the table's TTL attribute):

- ``pk = RULE#<app>#<user>``, ``sk = <rule>#<window>``: a marker. ``st`` is ``pending`` (browse markers waiting
  for their due time), ``fired`` (the rule's job was made) or ``cancelled``; ``sent`` (BOOL) is set once the job
  is on the outbound queue (a marker fired but not sent is sent again by the next run: the ledger key makes the
  repeat a no-op). Written with conditions, so a rule fires at most once per user and window however many
  consumers race.
- ``pk = RULE#<app>#<user>``, ``sk = ORDERS``: ``last_paid`` (the latest paid order's time; moves forward only).
- ``pk = RULE#<app>#<user>``, ``sk = TIER``: the member tier (``tier``), follow state (``following``), the event
  time of the last follow/unfollow applied (``at``, order-insensitive: older transitions are ignored) and the time
  of the follow that granted the tier (``granted``).
- ``pk = DUE#<yyyy-mm-ddThh>#<shard>`` (UTC hour of the due time, shard 0–7 by user), ``sk = <app>#<user>#<rule
  sk>``: the due-time index, queried hour by hour (never a scan); ``due`` is the due time. Deleted once handled.
- ``pk = RULES``, ``sk = DUE_CURSOR``: the earliest hour that may still hold unhandled index items.

Raw user ids are stored (the rules address users) but never logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

DUE_SHARDS = 8
PENDING, FIRED, CANCELLED = "pending", "fired", "cancelled"
_CURSOR_KEY = {"pk": {"S": "RULES"}, "sk": {"S": "DUE_CURSOR"}}


def marker_pk(app_id: str, user: str) -> str:
    return f"RULE#{app_id}#{user}"


def hour_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H")


def hour_start(hour: str) -> datetime:
    return datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC)


def shard_of(user: str) -> int:
    return hashlib.sha256(user.encode()).digest()[0] % DUE_SHARDS


def _ts(at: datetime) -> dict[str, str]:
    return {"N": str(int(at.timestamp()))}


def _time(value: Mapping[str, str] | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value["N"]), UTC)


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class Marker:
    """A once-per-window marker as stored."""

    app_id: str
    user: str
    sk: str
    state: str
    sent: bool = False
    at: datetime | None = None  # what armed it (the view, the order, the start of the silence)
    due: datetime | None = None
    made: datetime | None = None  # when it was fired (its job made)
    data: dict[str, str] = field(default_factory=dict)  # what the job needs (recipient ids, product, window)

    @property
    def rule(self) -> str:
        return self.sk.split("#", 1)[0]

    @property
    def window(self) -> str:
        return self.sk.split("#", 1)[1]


@dataclass(frozen=True)
class TierRecord:
    tier: str | None
    following: bool | None
    at: datetime | None  # the last follow/unfollow applied (event time)
    granted: datetime | None  # the follow that granted ``tier``
    exists: bool = True


@dataclass(frozen=True)
class DueEntry:
    hour: str
    shard: int
    app_id: str
    user: str
    marker_sk: str
    due: datetime

    @property
    def key(self) -> dict[str, dict[str, str]]:
        return {"pk": {"S": f"DUE#{self.hour}#{self.shard}"},
                "sk": {"S": f"{self.app_id}#{self.user}#{self.marker_sk}"}}


def _marker_of(item: Mapping[str, Any]) -> Marker:
    _, app_id, user = item["pk"]["S"].split("#", 2)
    data = {k[2:]: v["S"] for k, v in item.items() if k.startswith("d_") and "S" in v}
    return Marker(app_id, user, item["sk"]["S"], item["st"]["S"], bool(item.get("sent", {}).get("BOOL", False)),
                  _time(item.get("at")), _time(item.get("due")), _time(item.get("made")), data)


class RuleState:
    """The rules' markers, tiers and due index in the state table (a boto3 DynamoDB client + table name)."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self.table = table

    # ---- markers -------------------------------------------------------------------------------------------

    def marker(self, app_id: str, user: str, sk: str) -> Marker | None:
        got = self._ddb.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"pk": {"S": marker_pk(app_id, user)}, "sk": {"S": sk}})
        item = got.get("Item")
        return _marker_of(item) if item else None

    def _marker_item(self, app_id: str, user: str, sk: str, state: str, at: datetime, due: datetime | None,
                     data: Mapping[str, str | None], ttl: datetime | None,
                     made: datetime | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"pk": {"S": marker_pk(app_id, user)}, "sk": {"S": sk}, "st": {"S": state},
                                "at": _ts(at), "sent": {"BOOL": False}}
        if due is not None:
            item["due"] = _ts(due)
        if made is not None:
            item["made"] = _ts(made)
        if ttl is not None:
            item["ttl"] = _ts(ttl)
        item.update({f"d_{k}": {"S": v} for k, v in data.items() if v})
        return item

    def claim(self, app_id: str, user: str, sk: str, at: datetime, data: Mapping[str, str | None],
              made: datetime, ttl: datetime | None = None) -> tuple[bool, Marker]:
        """Create a ``fired`` marker unless one exists: (True, it) for the winner, (False, the existing one)."""
        item = self._marker_item(app_id, user, sk, FIRED, at, None, data, ttl, made)
        try:
            self._ddb.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            existing = self.marker(app_id, user, sk)
            if existing is None:  # removed meanwhile (TTL): try once more
                return self.claim(app_id, user, sk, at, data, made, ttl)
            return False, existing
        return True, _marker_of(item)

    def arm(self, app_id: str, user: str, sk: str, at: datetime, due: datetime, index_hour: str,
            data: Mapping[str, str | None], ttl: datetime | None = None) -> bool:
        """A ``pending`` marker due at ``due`` plus its index entry, unless the window already has a pending or
        fired marker (a cancelled one is re-armed). True when armed."""
        item = self._marker_item(app_id, user, sk, PENDING, at, due, data, ttl)
        shard = shard_of(user)
        entry = DueEntry(index_hour, shard, app_id, user, sk, due)
        index = {**entry.key, "due": _ts(due), "ttl": _ts(max(due, hour_start(index_hour)) + timedelta(days=14))}
        try:
            self._ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table, "Item": item,
                         "ConditionExpression": "attribute_not_exists(pk) OR st = :c",
                         "ExpressionAttributeValues": {":c": {"S": CANCELLED}}}},
                {"Put": {"TableName": self.table, "Item": index}},
            ])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
                if not reasons or any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                    return False
            raise
        return True

    def fire(self, marker: Marker, now: datetime) -> bool:
        """pending → fired (conditional): True for the one caller that moved it."""
        return self._move(marker, PENDING, FIRED, made=now)

    def cancel(self, marker: Marker, reason: str) -> bool:
        return self._move(marker, PENDING, CANCELLED, reason)

    def _move(self, marker: Marker, frm: str, to: str, reason: str | None = None,
              made: datetime | None = None) -> bool:
        values: dict[str, Any] = {":from": {"S": frm}, ":to": {"S": to}}
        update = "SET st = :to"
        if reason:
            update += ", why = :why"
            values[":why"] = {"S": reason}
        if made is not None:
            update += ", made = :made"
            values[":made"] = _ts(made)
        try:
            self._ddb.update_item(TableName=self.table,
                                  Key={"pk": {"S": marker_pk(marker.app_id, marker.user)}, "sk": {"S": marker.sk}},
                                  UpdateExpression=update, ConditionExpression="st = :from",
                                  ExpressionAttributeValues=values)
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def mark_sent(self, app_id: str, user: str, sk: str) -> None:
        self._ddb.update_item(TableName=self.table, Key={"pk": {"S": marker_pk(app_id, user)}, "sk": {"S": sk}},
                              UpdateExpression="SET sent = :t", ConditionExpression="attribute_exists(pk)",
                              ExpressionAttributeValues={":t": {"BOOL": True}})

    def pending(self, app_id: str, user: str, rule: str) -> list[Marker]:
        """The user's pending markers of ``rule`` (one Query on the user's partition)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :r)",
            "FilterExpression": "st = :p",
            "ExpressionAttributeValues": {":pk": {"S": marker_pk(app_id, user)}, ":r": {"S": f"{rule}#"},
                                          ":p": {"S": PENDING}},
        }
        out: list[Marker] = []
        while True:
            page = self._ddb.query(**kwargs)
            out += [_marker_of(i) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ---- paid orders ---------------------------------------------------------------------------------------

    def record_paid(self, app_id: str, user: str, paid_at: datetime) -> None:
        """``last_paid`` moves forward only (an older order arriving late changes nothing)."""
        try:
            self._ddb.update_item(TableName=self.table, Key={"pk": {"S": marker_pk(app_id, user)},
                                                             "sk": {"S": "ORDERS"}},
                                  UpdateExpression="SET last_paid = :t",
                                  ConditionExpression="attribute_not_exists(last_paid) OR last_paid < :t",
                                  ExpressionAttributeValues={":t": _ts(paid_at)})
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    def view_facts(self, app_id: str, user: str, sk: str) -> tuple[Marker | None, datetime | None]:
        """A window's marker and the user's last paid order in one BatchGetItem (consistent): a repeated view
        costs one read and no write."""
        pk = {"S": marker_pk(app_id, user)}
        keys = [{"pk": pk, "sk": {"S": sk}}, {"pk": pk, "sk": {"S": "ORDERS"}}]
        request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        marker: Marker | None = None
        last: datetime | None = None
        while request:
            page = self._ddb.batch_get_item(RequestItems=request)
            for item in page.get("Responses", {}).get(self.table, []):
                if item["sk"]["S"] == "ORDERS":
                    last = _time(item.get("last_paid"))
                else:
                    marker = _marker_of(item)
            request = page.get("UnprocessedKeys") or {}
        return marker, last

    def last_paid(self, app_id: str, user: str) -> datetime | None:
        got = self._ddb.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"pk": {"S": marker_pk(app_id, user)}, "sk": {"S": "ORDERS"}})
        return _time((got.get("Item") or {}).get("last_paid"))

    # ---- member tiers --------------------------------------------------------------------------------------

    def tier(self, app_id: str, user: str) -> TierRecord:
        got = self._ddb.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"pk": {"S": marker_pk(app_id, user)}, "sk": {"S": "TIER"}})
        item = got.get("Item")
        if not item:
            return TierRecord(None, None, None, None, exists=False)
        return TierRecord(item.get("tier", {}).get("S"), item.get("following", {}).get("BOOL"),
                          _time(item.get("at")), _time(item.get("granted")))

    def put_tier(self, app_id: str, user: str, new: TierRecord, old: TierRecord) -> bool:
        """Write ``new`` on the condition that the item is still ``old`` (its ``at``): False when it moved."""
        item: dict[str, Any] = {"pk": {"S": marker_pk(app_id, user)}, "sk": {"S": "TIER"}}
        if new.tier:
            item["tier"] = {"S": new.tier}
        if new.following is not None:
            item["following"] = {"BOOL": new.following}
        if new.at is not None:
            item["at"] = _ts(new.at)
        if new.granted is not None:
            item["granted"] = _ts(new.granted)
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": item}
        if not old.exists:
            kwargs["ConditionExpression"] = "attribute_not_exists(pk)"
        elif old.at is None:
            kwargs["ConditionExpression"] = "attribute_not_exists(#at)"
            kwargs["ExpressionAttributeNames"] = {"#at": "at"}
        else:
            kwargs["ConditionExpression"] = "#at = :old"
            kwargs["ExpressionAttributeNames"] = {"#at": "at"}
            kwargs["ExpressionAttributeValues"] = {":old": _ts(old.at)}
        try:
            self._ddb.put_item(**kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    # ---- due index -----------------------------------------------------------------------------------------

    def due_entries(self, hour: str) -> Iterator[DueEntry]:
        """Every index entry of one UTC hour (one Query per shard)."""
        for shard in range(DUE_SHARDS):
            kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True,
                                      "KeyConditionExpression": "pk = :pk",
                                      "ExpressionAttributeValues": {":pk": {"S": f"DUE#{hour}#{shard}"}}}
            while True:
                page = self._ddb.query(**kwargs)
                for item in page.get("Items", []):
                    app_id, user, rest = item["sk"]["S"].split("#", 2)
                    due = _time(item.get("due")) or hour_start(hour)
                    yield DueEntry(hour, shard, app_id, user, rest, due)
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def remove_due(self, entry: DueEntry) -> None:
        self._ddb.delete_item(TableName=self.table, Key=entry.key)

    def cursor(self) -> str | None:
        got = self._ddb.get_item(TableName=self.table, Key=_CURSOR_KEY, ConsistentRead=True)
        item = got.get("Item")
        return item["hour"]["S"] if item else None

    def set_cursor(self, hour: str) -> None:
        self._ddb.put_item(TableName=self.table, Item={**_CURSOR_KEY, "hour": {"S": hour}})
