"""Campaigns in the state table: definition and state, which actions fired, draws; plus the world checks read.

Items (``pk = CAMPAIGN#<id>``):
- ``sk = META``: ``definition`` (JSON), ``state``, ``version`` (N, +1 on every change), ``definition_hash``,
  ``created_at``, ``updated_at``, ``paused_from`` (while paused). State changes are conditional on the state they
  leave, so two runners (a boundary schedule and the reconciler, or a schedule delivered twice) never both apply
  one transition.
- ``sk = FIRED#<phase>#<action>``: ``status`` ``claimed`` (with ``lease_until``) then ``done`` (with ``result``:
  counts, and ``fired_at``); ``cursor``: the last user a fan-out queued for (a re-fire continues after it).
- ``sk = DRAW#<action>``: ``seed``, ``eligible_hash`` (SHA-256 of the newline-joined sorted eligible users),
  ``eligible_count``, ``winners`` (JSON list), ``drawn_at``. Written once.
Plus ``pk = CAMPAIGNS``, ``sk = <id>``: ``state``: the list of campaigns (one Query, no Scan of the table).

Exactly once, and its gap: an action is claimed (conditional put) before it fires and marked done after. A
runner that crashes in between leaves the claim; when its lease runs out the next reconcile fires the action
again from its cursor. Re-queued jobs are harmless: every job has a deterministic ledger key
(``app|campaign|phase.action|user|channel``) and the message gateway sends a ledger key once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from botocore.exceptions import ClientError

from lifelink.domain.audience_expr import parse
from lifelink.domain.campaigns import Campaign, CampaignState
from lifelink.domain.phases import can_transition, fired_key
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.audience import Audience

INDEX_PK = "CAMPAIGNS"
CLAIM_LEASE = timedelta(minutes=10)


class CampaignLocked(ValueError):
    """The definition changed after the campaign started (only draft and scheduled campaigns can change)."""


@dataclass(frozen=True)
class StoredCampaign:
    campaign: Campaign
    state: CampaignState
    version: int
    paused_from: CampaignState | None = None
    definition_hash: str = ""
    created_at: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class FiredRecord:
    phase: str
    action_id: str
    status: str  # "claimed" | "done"
    lease_until: datetime | None = None
    cursor: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    fired_at: str | None = None


@dataclass(frozen=True)
class Draw:
    seed: str
    eligible_hash: str
    eligible_count: int
    winners: list[str]
    drawn_at: str = ""


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def _conditional_failed(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        return any(r.get("Code") in ("ConditionalCheckFailed", "TransactionConflict") for r in reasons)
    return False


def _key(campaign_id: str, sk: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"CAMPAIGN#{campaign_id}"}, "sk": {"S": sk}}


def _index_key(campaign_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": INDEX_PK}, "sk": {"S": campaign_id}}


def _stored(item: dict[str, Any]) -> StoredCampaign:
    paused = item.get("paused_from", {}).get("S")
    return StoredCampaign(
        campaign=Campaign.model_validate_json(item["definition"]["S"]),
        state=CampaignState(item["state"]["S"]),
        version=int(item["version"]["N"]),
        paused_from=CampaignState(paused) if paused else None,
        definition_hash=item.get("definition_hash", {}).get("S", ""),
        created_at=item.get("created_at", {}).get("S", ""),
        updated_at=item.get("updated_at", {}).get("S", ""),
    )


def _fired(item: dict[str, Any]) -> FiredRecord:
    _, phase, action_id = item["sk"]["S"].split("#", 2)
    lease = item.get("lease_until", {}).get("S")
    return FiredRecord(
        phase=phase,
        action_id=action_id,
        status=item["status"]["S"],
        lease_until=datetime.fromisoformat(lease) if lease else None,
        cursor=item.get("cursor", {}).get("S"),
        result=json.loads(item["result"]["S"]) if "result" in item else {},
        fired_at=item.get("fired_at", {}).get("S"),
    )


class CampaignStore:
    def __init__(self, dynamodb: Any, table: str, clock: Any = None) -> None:
        self._ddb = dynamodb
        self._table = table
        self._clock = clock or (lambda: datetime.now(UTC))

    # ---- definition and state ---------------------------------------------------------------------------

    def put(self, campaign: Campaign) -> StoredCampaign:
        """Store a (checked) definition as a draft; the same definition again changes nothing; a changed one
        replaces the stored one only while the campaign is draft or scheduled (:class:`CampaignLocked` after)."""
        now = _iso(self._clock())
        digest = campaign.definition_hash()
        definition = campaign.model_dump_json(exclude_none=True)
        existing = self.get(campaign.id)
        if existing is None:
            item = {
                **_key(campaign.id, "META"),
                "campaign_id": {"S": campaign.id},
                "definition": {"S": definition},
                "state": {"S": CampaignState.draft.value},
                "version": {"N": "1"},
                "definition_hash": {"S": digest},
                "created_at": {"S": now},
                "updated_at": {"S": now},
            }
            try:
                self._ddb.transact_write_items(TransactItems=[
                    {"Put": {"TableName": self._table, "Item": item,
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                    {"Put": {"TableName": self._table,
                             "Item": {**_index_key(campaign.id), "state": {"S": CampaignState.draft.value}}}},
                ])
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
                return self.put(campaign)  # created concurrently: compare with that one
            stored = self.get(campaign.id)
            assert stored is not None
            return stored
        if existing.definition_hash == digest:
            return existing
        if existing.state not in (CampaignState.draft, CampaignState.scheduled):
            raise CampaignLocked(
                f"campaign {campaign.id} is {existing.state.value}: its definition can change only while it is "
                "draft or scheduled (cancel it and apply a new id instead)"
            )
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=_key(campaign.id, "META"),
                UpdateExpression="SET #d = :d, definition_hash = :h, updated_at = :now ADD version :one",
                ConditionExpression="definition_hash = :old AND #s IN (:draft, :scheduled)",
                ExpressionAttributeNames={"#s": "state", "#d": "definition"},
                ExpressionAttributeValues={
                    ":d": {"S": definition}, ":h": {"S": digest}, ":now": {"S": now}, ":one": {"N": "1"},
                    ":old": {"S": existing.definition_hash}, ":draft": {"S": "draft"}, ":scheduled": {"S": "scheduled"},
                },
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            return self.put(campaign)  # changed under us: decide again against the new state
        stored = self.get(campaign.id)
        assert stored is not None
        return stored

    def get(self, campaign_id: str) -> StoredCampaign | None:
        item = self._ddb.get_item(TableName=self._table, Key=_key(campaign_id, "META"), ConsistentRead=True).get("Item")
        return _stored(item) if item else None

    def list(self) -> list[tuple[str, CampaignState]]:
        """(campaign id, state) of every campaign, by id (from the index items: eventually in step with META)."""
        out: list[tuple[str, CampaignState]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": INDEX_PK}},
        }
        while True:
            page = self._ddb.query(**kwargs)
            out += [(i["sk"]["S"], CampaignState(i["state"]["S"])) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def transition(self, campaign_id: str, from_state: CampaignState | str, to_state: CampaignState | str) -> bool:
        """Move the campaign from ``from_state`` to ``to_state`` if it is still in ``from_state`` (False if not,
        or if the machine does not allow it). Pausing remembers the state; resuming (paused → X) forgets it."""
        a, b = CampaignState(from_state), CampaignState(to_state)
        if not can_transition(a, b):
            return False
        update = "SET #s = :to, updated_at = :now ADD version :one"
        values: dict[str, Any] = {
            ":from": {"S": a.value}, ":to": {"S": b.value}, ":now": {"S": _iso(self._clock())}, ":one": {"N": "1"},
        }
        condition = "#s = :from"
        if b is CampaignState.paused:
            update = "SET #s = :to, updated_at = :now, paused_from = :from ADD version :one"
        elif a is CampaignState.paused:
            update += " REMOVE paused_from"
            if b is not CampaignState.cancelled:
                condition += " AND paused_from = :to"
        try:
            self._ddb.transact_write_items(TransactItems=[
                {"Update": {"TableName": self._table, "Key": _key(campaign_id, "META"), "UpdateExpression": update,
                            "ConditionExpression": condition, "ExpressionAttributeNames": {"#s": "state"},
                            "ExpressionAttributeValues": values}},
                {"Put": {"TableName": self._table, "Item": {**_index_key(campaign_id), "state": {"S": b.value}}}},
            ])
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    # ---- actions: claim, cursor, done ----------------------------------------------------------------------

    def claim(self, campaign_id: str, phase: str, action_id: str, now: datetime) -> bool:
        """Take the right to fire an action: True when it is not done and nobody holds an unexpired claim."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=_key(campaign_id, f"FIRED#{phase}#{action_id}"),
                UpdateExpression="SET #st = :claimed, lease_until = :lease, claimed_at = :now",
                ConditionExpression="attribute_not_exists(#st) OR (#st = :claimed AND lease_until < :now)",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={
                    ":claimed": {"S": "claimed"}, ":lease": {"S": _iso(now + CLAIM_LEASE)}, ":now": {"S": _iso(now)},
                },
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def save_cursor(self, campaign_id: str, phase: str, action_id: str, cursor: str, now: datetime,
                    counts: dict[str, Any] | None = None) -> None:
        """Record fan-out progress (the last user queued, the counts so far) and extend the claim's lease."""
        self._ddb.update_item(
            TableName=self._table,
            Key=_key(campaign_id, f"FIRED#{phase}#{action_id}"),
            UpdateExpression="SET #c = :c, lease_until = :lease, #r = :r",
            ConditionExpression="#st = :claimed",
            ExpressionAttributeNames={"#c": "cursor", "#st": "status", "#r": "result"},
            ExpressionAttributeValues={
                ":c": {"S": cursor}, ":lease": {"S": _iso(now + CLAIM_LEASE)}, ":claimed": {"S": "claimed"},
                ":r": {"S": json.dumps(counts or {}, separators=(",", ":"), default=str)},
            },
        )

    def release_claim(self, campaign_id: str, phase: str, action_id: str) -> None:
        """Give a claim up before its lease ends (a fan-out stopped by pause or cancel): the next run may continue
        from the cursor at once."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=_key(campaign_id, f"FIRED#{phase}#{action_id}"),
                UpdateExpression="SET lease_until = :gone",
                ConditionExpression="#st = :claimed",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={":gone": {"S": _iso(datetime(1970, 1, 1, tzinfo=UTC))},
                                           ":claimed": {"S": "claimed"}},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    def mark_fired(self, campaign_id: str, phase: str, action_id: str, result: dict[str, Any],
                   now: datetime | None = None) -> bool:
        """Mark an action done with its result (counts); True only the first time."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=_key(campaign_id, f"FIRED#{phase}#{action_id}"),
                UpdateExpression="SET #st = :done, #r = :r, fired_at = :now REMOVE lease_until",
                ConditionExpression="attribute_not_exists(#st) OR #st <> :done",
                ExpressionAttributeNames={"#st": "status", "#r": "result"},
                ExpressionAttributeValues={
                    ":done": {"S": "done"},
                    ":r": {"S": json.dumps(result, separators=(",", ":"), default=str)},
                    ":now": {"S": _iso(now or self._clock())},
                },
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def fired_records(self, campaign_id: str) -> dict[str, FiredRecord]:
        """``phase.action`` → its record (claimed or done)."""
        out: dict[str, FiredRecord] = {}
        for item in self._query(campaign_id, "FIRED#"):
            record = _fired(item)
            out[fired_key(record.phase, record.action_id)] = record
        return out

    def fired(self, campaign_id: str) -> set[str]:
        """``phase.action`` of every action marked done."""
        return {k for k, r in self.fired_records(campaign_id).items() if r.status == "done"}

    def counts(self, campaign_id: str) -> dict[str, dict[str, Any]]:
        """``phase.action`` → status and result counts of each action that started firing."""
        return {k: {"status": r.status, **r.result} for k, r in self.fired_records(campaign_id).items()}

    # ---- draws --------------------------------------------------------------------------------------------

    def put_draw(self, campaign_id: str, action_id: str, draw: Draw) -> Draw:
        """Store a draw once; returns the stored one (an earlier draw wins over this one)."""
        item = {
            **_key(campaign_id, f"DRAW#{action_id}"),
            "seed": {"S": draw.seed},
            "eligible_hash": {"S": draw.eligible_hash},
            "eligible_count": {"N": str(draw.eligible_count)},
            "winners": {"S": json.dumps(draw.winners, separators=(",", ":"))},
            "drawn_at": {"S": draw.drawn_at or _iso(self._clock())},
        }
        try:
            self._ddb.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        stored = self.get_draw(campaign_id, action_id)
        assert stored is not None
        return stored

    def get_draw(self, campaign_id: str, action_id: str) -> Draw | None:
        item = self._ddb.get_item(
            TableName=self._table, Key=_key(campaign_id, f"DRAW#{action_id}"), ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        return Draw(item["seed"]["S"], item["eligible_hash"]["S"], int(item["eligible_count"]["N"]),
                    json.loads(item["winners"]["S"]), item.get("drawn_at", {}).get("S", ""))

    def _query(self, campaign_id: str, prefix: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":pk": {"S": f"CAMPAIGN#{campaign_id}"}, ":p": {"S": prefix}},
            "ConsistentRead": True,
        }
        while True:
            page = self._ddb.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# ---- the audience of a campaign, and the world the checks read -----------------------------------------------


def campaign_audience(audience: Audience, campaign: Campaign, after: str | None = None,
                      page: int = 100) -> Iterator[str]:
    """Followers of the campaign's life account that its audience expression selects (holdout included), in the
    followers index's stable order, after ``after`` when given."""
    expr = parse(campaign.audience.expression) if campaign.audience.expression else None
    followers = audience.followers(campaign.life_account, after=after)
    if expr is None:
        yield from followers
        return
    batch: list[str] = []
    for user in followers:
        batch.append(user)
        if len(batch) >= page:
            yield from _matching(audience, campaign.life_account, batch, expr)
            batch = []
    yield from _matching(audience, campaign.life_account, batch, expr)


def _matching(audience: Audience, app_id: str, users: list[str], expr: Any) -> Iterator[str]:
    if not users:
        return
    profiles = audience.profiles(app_id, users)
    for user in users:
        tier, tags = profiles[user]
        if expr.matches(tier, tags):
            yield user


class RegistryWorld:
    """What :func:`lifelink.domain.campaign_checks.check_campaign` reads: the app registry and the audience.

    ``audience_size`` counts at most ``count_limit`` members (None: all): the check only asks whether anybody
    matches, and an apply must not walk a million followers. Previews count everybody."""

    def __init__(self, registry: AppRegistry, audience: Audience, count_limit: int | None = 10_000) -> None:
        self._registry = registry
        self._audience = audience
        self._limit = count_limit

    def app(self, app_id: str) -> AppRecord | None:
        return self._registry.get(app_id)

    def audience_size(self, campaign: Campaign) -> int:
        members = campaign_audience(self._audience, campaign)
        return sum(1 for _ in (members if self._limit is None else islice(members, self._limit)))
