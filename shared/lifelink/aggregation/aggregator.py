"""The batch aggregator: a whole SQS batch of domain events folded into profiles and counters, each key written
at most once per batch, exactly once under redelivery.

Per batch:
1. events are grouped by user (app group, user key); the group's profile and the article items its events
   touch are read with BatchGetItem (consistent reads; reads do not count against the write budget);
2. each group is folded (:mod:`lifelink.aggregation.fold`); its counter deltas are
   ``counter_delta(before, after)`` of its contributions plus the once-per-event counts;
3. changed items are written in TransactWriteItems of at most 100 items: the profile ``Put`` on the condition
   that its version is the one read (the guard for every item of the user), the user's article items and
   state-table PROFILE item (tier and tags for campaign audiences), and the *summed* ``ADD`` of every counter
   the chunk's groups touch, on one shard chosen per transaction;
4. a transaction cancelled by a version conflict or a concurrent transaction is retried after re-reading its
   groups (their events fold again: what the other writer already applied changes nothing); groups that still
   fail are reported, so SQS redelivers their events.
A redelivered batch folds to unchanged facts, writes nothing and adds nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import ClientError

from lifelink.aggregation.fold import (
    FoldContext,
    GroupPolicy,
    article_contribution,
    article_ids_of,
    fold,
    user_counters,
)
from lifelink.domain import metrics as m
from lifelink.domain.events import DomainEvent
from lifelink.domain.tags import OrderValueThresholds
from lifelink.privacy import hash_id
from lifelink.store.metrics_store import add_ops
from lifelink.store.profiles import ArticleState, Profile, ProfileStore, article_item, profile_item, profile_to_json

_log = logging.getLogger("lifelink.aggregation")
MAX_TRANSACTION_ITEMS = 100
MAX_ATTEMPTS = 4
MAX_JOURNAL_ROUNDS = 8

UserKey = tuple[str, str]  # (app group, user key)


@dataclass(frozen=True)
class GroupInfo:
    """An app's group (its life account, or itself) and the group's policy."""

    group: str
    apps: frozenset[str]
    policy: GroupPolicy


class GroupResolver(Protocol):
    def __call__(self, app_id: str) -> GroupInfo: ...


@dataclass
class BatchStats:
    events: int = 0
    folded: int = 0
    groups: int = 0
    write_requests: int = 0
    items_written: int = 0
    counter_updates: int = 0
    conflicts: int = 0
    too_late: int = 0
    over_cap: int = 0  # sessions / page views of one user and day beyond the cap (a flood: not counted)
    skipped: int = 0  # events without a user
    per_type: dict[str, int] = field(default_factory=dict)


@dataclass
class BatchResult:
    failed: set[str]  # message ids to report as batchItemFailures
    stats: BatchStats


@dataclass
class _Group:
    key: UserKey
    info: GroupInfo
    events: list[DomainEvent]
    message_ids: set[str]
    items: list[dict[str, Any]] = field(default_factory=list)  # TransactItems (profile first)
    deltas: dict[m.CounterKey, float] = field(default_factory=dict)
    journal: bool = False  # wrote leftover deltas into the profile: needs another round
    error: bool = False  # folding raised: report the group's messages


class Aggregator:
    def __init__(
        self,
        dynamodb: Any,
        profiles_table: str,
        metrics_table: str,
        resolve: GroupResolver,
        *,
        state_table: str | None = None,
        attribution_keys: Callable[[], Sequence[bytes]] = lambda: (),
        thresholds: Callable[[str], OrderValueThresholds] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shards: int = 8,
        rng: random.Random | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._ddb = dynamodb
        self.profiles = ProfileStore(dynamodb, profiles_table)
        self._metrics_table = metrics_table
        self._state_table = state_table
        self._resolve = resolve
        self._keys = attribution_keys
        self._thresholds = thresholds or (lambda group: OrderValueThresholds(None, None, 0))
        self._clock = clock
        self._shards = shards
        self._rng = rng or random.Random()  # noqa: S311 - shard choice, not security
        self._max_attempts = max_attempts
        self.before_write: Callable[[], None] | None = None  # a test hook: runs before each transaction

    # ---- the batch ------------------------------------------------------------------------------------------

    def fold_batch(self, records: Sequence[tuple[str, DomainEvent]]) -> BatchResult:
        """Fold ``records`` ((SQS message id, event)); returns the message ids to redeliver and the figures."""
        stats = BatchStats(events=len(records))
        groups: dict[UserKey, _Group] = {}
        for message_id, event in records:
            user = event.user.key if event.user else None
            if not user:
                stats.skipped += 1
                continue
            info = self._resolve(event.app_id)
            key = (info.group, user)
            g = groups.get(key)
            if g is None:
                g = groups[key] = _Group(key, info, [], set())
            g.events.append(event)
            g.message_ids.add(message_id)
        stats.groups = len(groups)
        failed: set[str] = set()
        pending = list(groups.values())
        for _ in range(MAX_JOURNAL_ROUNDS):
            journal = self._write_groups(pending, stats, failed)
            if not journal:
                break
            pending = [_Group(g.key, g.info, [], g.message_ids) for g in journal]
        else:
            for g in pending:
                failed |= g.message_ids
        return BatchResult(failed, stats)

    def _write_groups(self, groups: list[_Group], stats: BatchStats, failed: set[str]) -> list[_Group]:
        todo = groups
        journal: list[_Group] = []
        for attempt in range(self._max_attempts):
            if not todo:
                break
            self._plan(todo, stats, count=attempt == 0)
            retry: list[_Group] = []
            for g in todo:
                if g.error:
                    failed |= g.message_ids
            for chunk in _chunks([g for g in todo if g.items and not g.error]):
                outcome = self._send(chunk, stats)
                if outcome == "ok":
                    journal += [g for g in chunk if g.journal]
                elif outcome == "retry":
                    retry += chunk
                else:
                    for g in chunk:
                        failed |= g.message_ids
            todo = retry
            if todo and attempt + 1 < self._max_attempts:
                time.sleep(self._rng.uniform(0, 0.05 * 2**attempt))
        for g in todo:
            failed |= g.message_ids
        return journal

    # ---- planning (pure CPU: what the bench times) -------------------------------------------------------------

    def _plan(self, groups: list[_Group], stats: BatchStats, count: bool) -> None:
        """Read every group's items afresh, fold, and fill ``items`` / ``deltas``."""
        read = self.profiles.read_many(
            [g.key for g in groups],
            [(g.key[0], g.key[1], a) for g in groups for a in article_ids_of(g.events)],
        )
        now = self._clock()
        keys = tuple(self._keys())
        for g in groups:
            profile = read.profiles[g.key]
            for a in article_ids_of(g.events):
                state = read.articles.get((g.key[0], g.key[1], a))
                profile.articles[a] = state if state is not None else ArticleState(m.ArticleFacts(a))
            ctx = FoldContext(g.info.policy, now, self._thresholds(g.key[0]), keys, g.info.apps)
            try:
                g.error = False
                self.plan_group(g, profile, ctx, stats if count else None)
            except Exception:  # an event that cannot fold (a bug or bad data): its user's events are redelivered
                _log.exception("fold failed", extra={"user": hash_id(g.key[1]), "group": g.key[0]})
                g.error, g.items = True, []

    def plan_group(self, g: _Group, p: Profile, ctx: FoldContext, stats: BatchStats | None) -> None:
        tz = ctx.policy.tz
        before = user_counters(p, tz)
        arts_before = {a: article_contribution(s.facts) for a, s in p.articles.items()}
        tier_tags_before = (p.tier, frozenset(p.tags))
        outcome = fold(p, g.events, ctx)
        deltas: dict[m.CounterKey, float] = dict(p.pending)
        p.pending = {}
        _merge(deltas, m.counter_delta(before, user_counters(p, tz)))
        for a, s in p.articles.items():
            _merge(deltas, m.counter_delta(arts_before.get(a, {}), article_contribution(s.facts)))
        _merge(deltas, outcome.plain)
        deltas = {k: v for k, v in deltas.items() if v}
        if stats is not None:
            stats.folded += len(g.events)
            stats.too_late += outcome.too_late
            stats.over_cap += outcome.over_cap
            for t, n in outcome.counted.items():
                stats.per_type[t] = stats.per_type.get(t, 0) + n
        others: list[dict[str, Any]] = []
        for s in p.articles.values():
            item = article_item(p.group, p.user, s)
            if item["f"]["S"] != s.raw:
                others.append({"Put": {"TableName": self.profiles.table, "Item": item}})
        if self._state_table and (p.tier, frozenset(p.tags)) != tier_tags_before:
            others.append({"Put": {"TableName": self._state_table, "Item": _audience_profile(p)}})
        room = MAX_TRANSACTION_ITEMS - 1 - len(others)
        if len(deltas) > room:  # too many for one transaction: the rest waits in the profile (the journal)
            keys = list(deltas)
            p.pending = {k: deltas[k] for k in keys[room:]}
            deltas = {k: deltas[k] for k in keys[:room]}
        g.journal = bool(p.pending)
        g.deltas = deltas
        g.items = []
        if not deltas and not others and profile_to_json(p) == p.raw:
            return  # nothing changed (a redelivery): no write at all
        g.items = [_profile_put(self.profiles.table, p), *others]

    # ---- writing --------------------------------------------------------------------------------------------

    def _send(self, chunk: list[_Group], stats: BatchStats) -> str:
        """"ok", "retry" (a conflict or throttling: re-read and try again) or "fail" (refused: report)."""
        summed: dict[m.CounterKey, float] = {}
        items: list[dict[str, Any]] = []
        for g in chunk:
            items += g.items
            _merge(summed, g.deltas)
        by_group: dict[str, dict[m.CounterKey, float]] = {}
        for g in chunk:
            target = by_group.setdefault(g.key[0], {})
            _merge(target, g.deltas)
        shard = self._rng.randrange(self._shards)
        counter_ops = [op for group, d in by_group.items() for op in add_ops(self._metrics_table, group, d, shard)]
        request = items + counter_ops
        if self.before_write is not None:
            self.before_write()
        stats.write_requests += 1
        try:
            if len(request) == 1 and "Put" in request[0]:
                put = request[0]["Put"]
                self._ddb.put_item(**put)
            else:
                self._ddb.transact_write_items(TransactItems=request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("TransactionCanceledException", "ConditionalCheckFailedException",
                        "TransactionConflictException", "ProvisionedThroughputExceededException",
                        "ThrottlingException", "RequestLimitExceeded"):
                stats.conflicts += 1
                return "retry"
            _log.error("write refused", extra={"code": code, "items": len(request), "users": len(chunk)})
            return "fail"
        stats.items_written += len(items)
        stats.counter_updates += len(counter_ops)
        return "ok"


def _profile_put(table: str, p: Profile) -> dict[str, Any]:
    put: dict[str, Any] = {"TableName": table, "Item": profile_item(p, p.version + 1)}
    if p.version:
        put["ConditionExpression"] = "v = :v"
        put["ExpressionAttributeValues"] = {":v": {"N": str(p.version)}}
    else:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    return {"Put": put}


def _audience_profile(p: Profile) -> dict[str, Any]:
    """The state table's PROFILE item campaign audiences select on (lifelink.store.audience)."""
    item: dict[str, Any] = {"pk": {"S": f"USER#{p.group}#{p.user}"}, "sk": {"S": "PROFILE"}}
    if p.tier:
        item["tier"] = {"S": p.tier}
    if p.tags:
        item["tags"] = {"SS": sorted(p.tags)}
    return item


def _merge(into: dict[m.CounterKey, float], more: dict[m.CounterKey, float] | dict[m.CounterKey, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def _chunks(groups: list[_Group]) -> list[list[_Group]]:
    """Groups packed into transactions of at most 100 items (own items + the union of their counter keys)."""
    out: list[list[_Group]] = []
    chunk: list[_Group] = []
    n_items = 0
    keys: set[tuple[str, m.CounterKey]] = set()
    for g in groups:
        new_keys = {(g.key[0], k) for k in g.deltas} - keys
        if chunk and n_items + len(g.items) + len(keys) + len(new_keys) > MAX_TRANSACTION_ITEMS:
            out.append(chunk)
            chunk, n_items, keys = [], 0, set()
            new_keys = {(g.key[0], k) for k in g.deltas}
        chunk.append(g)
        n_items += len(g.items)
        keys |= new_keys
    if chunk:
        out.append(chunk)
    return out
