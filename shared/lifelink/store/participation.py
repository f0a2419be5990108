"""Campaign participation: reservations, flash sales, shares, UGC entries and votes, claims, survey answers.

Items in the state table, all under the campaign's partition ``pk = CAMPAIGN#<campaign id>``:

=============================================  ==================================================================
``sk``                                         attributes
=============================================  ==================================================================
``STOCK#<coupon>``                             ``left``, ``initial`` (created from ``CouponStock.stock`` on first use)
``RES#<action>#<user>``                        a reservation: ``user``, ``app_id``, ``at``, ``coupon``, ``ledger_key``,
                                               ``job``, ``lease_until`` / ``queued_at`` (see *Queueing* below)
``FLASH#<action>#<window>``                    ``left``, ``initial`` (from ``FlashWindow.stock``)
``FLASHUSER#<action>#<window>#<user>``         ``user``, ``at``, ``sku``
``SHARE#<action>#<user>``                      ``user``, ``at``, ``reward`` (``granted`` | ``sold_out``) + job fields
``ENTRANT#<action>#<user>``                    ``n`` entries submitted (``max_entries_per_user``)
``ENTRY#<action>#<entry>``                     ``entry_id``, ``user``, ``title``, ``content_url``, ``at``, ``votes``
``VOTE#<action>#<entry>#<day>#<voter>``        ``voter``, ``entry_id``, ``day`` (campaign time zone), ``at``
``CLAIM#<action>#<user>``                      ``user``, ``claimed_at`` (= ``at``), ``ledger_key`` + job fields
``ANSWER#<action>#<user>``                     ``user``, ``at``, ``answers`` (JSON)
``DRAW#<action>``                              the winner draw (read through lifelink.store.campaigns)
=============================================  ==================================================================

**Once per user, never oversold.** A grant is one ``TransactWriteItems``: a ``Put`` of the per-user item on
``attribute_not_exists`` and, where stock applies, an ``Update`` of the stock item on ``left > 0``. Either both
happen or neither, so concurrent requests can neither take a unit twice for one user nor take more units than
there are. A missing stock item is created by a conditional put (``attribute_not_exists``) with the stock of the
definition, so two first requests cannot both initialise it. Contended transactions (``TransactionConflict``)
are retried with jittered backoff.

**Queueing.** The coupon job is put on the outbound queue *after* the transaction (SQS cannot join it). The
grant item records the job (``job``, ``ledger_key``) and a short queue lease (``lease_until``) held by the
request that created it; after ``send_message`` succeeds the item gets ``queued_at``. If the put fails, the lease
is released and the request fails (:class:`QueueFailed`, 503); the caller's retry finds the grant without
``queued_at``, takes the lease and queues the same job again. A concurrent duplicate request that finds a live
lease does not queue (it answers the existing grant, ``coupon_status="queueing"``). Should the process die
between the transaction and the put, the lease expires after :data:`QUEUE_LEASE` and the next request of that
user queues it. Two puts of one job are harmless: the job's ledger key (``app|campaign|phase|user|coupon``)
makes the gateway send it once, and Alipay deduplicates the coupon through ``out_biz_no``.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from lifelink.domain.campaigns import (
    Campaign,
    CampaignState,
    EarlyBird,
    FlashSale,
    ShareTask,
    Survey,
    UgcChallenge,
    Winners,
)
from lifelink.domain.messages import Channel, OutboundJob, Recipient, parse_job
from lifelink.store.audience import Audience
from lifelink.store.campaigns import CampaignStore, StoredCampaign
from lifelink.store.ledger import Ledger

QUEUE_LEASE = timedelta(seconds=30)
MAX_TRANSACTION_ATTEMPTS = 12
TEXT_ANSWER_MAX = 500
POOLS = ("reservations", "shares", "voters", "entrants", "top_entries")

_ser = TypeSerializer()
_de = TypeDeserializer()

CouponStatus = Literal["queued", "queueing", "sold_out", "none"]


# ---- errors ----------------------------------------------------------------------------------------------


class Refused(Exception):
    """The request cannot be granted. ``kind`` names why (the API maps it to a status):

    not_found (unknown campaign, action, window or entry), wrong_action (the action is of another type),
    closed (wrong phase or outside its window), sold_out, entry_limit, already_voted, unknown_voter,
    not_drawn, not_a_winner, already_answered, invalid (``errors`` lists every field problem).
    """

    def __init__(
        self, kind: str, message: str, loc: tuple[str | int, ...] = (), errors: list[dict[str, Any]] | None = None
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.loc = loc
        self.errors = errors or [{"loc": list(loc), "msg": message, "type": kind}]


class QueueFailed(Exception):
    """The grant is recorded but its coupon job could not be put on the outbound queue: retry the request."""


class Contended(Exception):
    """A transaction kept conflicting with concurrent ones: retry the request."""


# ---- results ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """A reservation, a share or a claim: recorded once per user, possibly with a coupon job."""

    campaign_id: str
    action_id: str
    user: str
    at: str
    created: bool  # False: this user's earlier grant, answered again
    coupon: str | None
    ledger_key: str | None
    coupon_status: CouponStatus


@dataclass(frozen=True)
class FlashTake:
    campaign_id: str
    action_id: str
    window_id: str
    user: str
    sku: str
    at: str
    created: bool


@dataclass(frozen=True)
class Entry:
    entry_id: str
    action_id: str
    user: str
    title: str
    content_url: str | None
    at: str
    votes: int


@dataclass(frozen=True)
class VoteResult:
    entry_id: str
    voter: str
    day: str
    at: str
    votes: int  # the entry's count after this vote


@dataclass(frozen=True)
class ClaimsSummary:
    action_id: str
    winners: int
    claimed: int
    fulfilled: int
    claim_rate: float  # claimed / winners
    redemption_rate: float  # fulfilled (coupon sent) / winners


@dataclass(frozen=True)
class SurveySummary:
    action_id: str
    answers: int
    average_rating: dict[str, float | None]
    option_counts: dict[str, dict[str, int]]
    text_answers: dict[str, int]


@dataclass(frozen=True)
class SurveyAnswer:
    action_id: str
    user: str
    at: str
    answers: dict[str, Any]
    created: bool


# ---- helpers ---------------------------------------------------------------------------------------------


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def vote_day(campaign: Campaign, now: datetime) -> str:
    """The calendar day of a vote in the campaign's time zone (Asia/Shanghai unless the campaign says otherwise)."""
    return now.astimezone(campaign.zone).date().isoformat()


def phase_open(campaign: Campaign, state: CampaignState | str, phase: str, now: datetime) -> str | None:
    """Why the phase is not open now (None when it is): the campaign must be in that state and inside its window."""
    spec = getattr(campaign.phases, phase)
    if str(state) != phase:
        return f"campaign {campaign.id} is in state {state}, not {phase}"
    if now < spec.start:
        return f"the {phase} phase of campaign {campaign.id} opens at {spec.start.isoformat()}"
    if now >= spec.end:
        return f"the {phase} phase of campaign {campaign.id} ended at {spec.end.isoformat()}"
    return None


def validate_answers(survey: Survey, answers: dict[str, Any]) -> list[dict[str, Any]]:
    """Every problem with a survey answer (empty when it is valid); locations are ``["body", "answers", qid]``."""
    errors: list[dict[str, Any]] = []
    questions = {q.id: q for q in survey.questions}

    def bad(qid: str, msg: str, kind: str) -> None:
        errors.append({"loc": ["body", "answers", qid], "msg": msg, "type": kind})

    if not answers:
        errors.append({"loc": ["body", "answers"], "msg": "answer at least one question", "type": "missing"})
    for qid, value in answers.items():
        question = questions.get(qid)
        if question is None:
            bad(qid, f"unknown question {qid!r} (questions: {', '.join(questions)})", "unknown_question")
        elif question.kind == "rating":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
                bad(qid, "a rating is a whole number from 1 to 5", "rating")
        elif question.kind == "choice":
            if not isinstance(value, str) or value not in (question.options or []):
                bad(qid, f"choose one of {question.options}", "choice")
        elif not isinstance(value, str) or not value.strip():
            bad(qid, "a text answer is a non-empty string", "text")
        elif len(value) > TEXT_ANSWER_MAX:
            bad(qid, f"a text answer is at most {TEXT_ANSWER_MAX} characters (got {len(value)})", "text_too_long")
    return errors


def summarise_answers(survey: Survey, answered: Iterable[dict[str, Any]]) -> SurveySummary:
    ratings: dict[str, list[int]] = {q.id: [] for q in survey.questions if q.kind == "rating"}
    options = {q.id: {o: 0 for o in (q.options or [])} for q in survey.questions if q.kind == "choice"}
    texts = {q.id: 0 for q in survey.questions if q.kind == "text"}
    count = 0
    for answers in answered:
        count += 1
        for qid, value in answers.items():
            if qid in ratings:
                ratings[qid].append(int(value))
            elif qid in options and value in options[qid]:
                options[qid][value] += 1
            elif qid in texts:
                texts[qid] += 1
    average = {qid: (round(sum(v) / len(v), 2) if v else None) for qid, v in ratings.items()}
    return SurveySummary(survey.id, count, average, options, texts)


def rank_entries(entries: Iterable[Entry]) -> list[Entry]:
    """Most votes first; ties go to the earlier entry (then the entry id, so the order is total)."""
    return sorted(entries, key=lambda e: (-e.votes, e.at, e.entry_id))


# ---- the store -------------------------------------------------------------------------------------------


class Participation:
    """Participation in campaigns. ``sqs`` and ``queue_url`` are needed only by the calls that queue coupons."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        *,
        sqs: Any = None,
        queue_url: str = "",
        audience: Audience | None = None,
        ledger: Ledger | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ddb = dynamodb
        self._table = table
        self._sqs = sqs
        self._queue_url = queue_url
        self._audience = audience or Audience(dynamodb, table)
        self._ledger = ledger or Ledger(dynamodb, table)
        self._campaigns = CampaignStore(dynamodb, table)
        self._sleep = sleep

    # ---- low level ---------------------------------------------------------------------------------------
    @staticmethod
    def _pk(campaign_id: str) -> dict[str, str]:
        return {"S": f"CAMPAIGN#{campaign_id}"}

    def _key(self, campaign_id: str, sk: str) -> dict[str, Any]:
        return {"pk": self._pk(campaign_id), "sk": {"S": sk}}

    def _get(self, campaign_id: str, sk: str) -> dict[str, Any] | None:
        item = self._ddb.get_item(TableName=self._table, Key=self._key(campaign_id, sk), ConsistentRead=True).get(
            "Item"
        )
        return _plain(item) if item else None

    def _query(self, campaign_id: str, prefix: str, projection: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": self._pk(campaign_id), ":prefix": {"S": prefix}},
            "ConsistentRead": True,
        }
        if projection:
            names = {f"#p{i}": name for i, name in enumerate(projection.split(","))}
            kwargs["ProjectionExpression"] = ", ".join(names)
            kwargs["ExpressionAttributeNames"] = names
        while True:
            page = self._ddb.query(**kwargs)
            for item in page.get("Items", []):
                yield _plain(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _count(self, campaign_id: str, prefix: str) -> int:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": self._pk(campaign_id), ":prefix": {"S": prefix}},
            "ConsistentRead": True,
            "Select": "COUNT",
        }
        total = 0
        while True:
            page = self._ddb.query(**kwargs)
            total += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _transact(self, items: list[dict[str, Any]]) -> list[str]:
        """Run one transaction; [] on success, else the cancellation reason code of each item ("None" if it
        passed). Conflicts with concurrent transactions are retried with jittered backoff."""
        for attempt in range(MAX_TRANSACTION_ATTEMPTS):
            try:
                self._ddb.transact_write_items(TransactItems=items)
                return []
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise
                reasons = [str(r.get("Code") or "None") for r in exc.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in reasons or not reasons:
                    return reasons or ["ConditionalCheckFailed"] * len(items)
                self._sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # noqa: S311 - jitter, not a secret
        raise Contended("the request kept conflicting with concurrent ones; try again")

    def _put_once(self, campaign_id: str, sk: str, values: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": {**self._key(campaign_id, sk), **_item(values)},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _take_unit(self, campaign_id: str, stock_sk: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._key(campaign_id, stock_sk),
                "UpdateExpression": "SET #left = #left - :one",
                "ConditionExpression": "#left > :zero",
                "ExpressionAttributeNames": {"#left": "left"},
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":zero": {"N": "0"}},
            }
        }

    def _init_stock(self, campaign_id: str, stock_sk: str, initial: int) -> None:
        """Create the stock item from the definition unless it exists (a conditional put: one creator wins)."""
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item={**self._key(campaign_id, stock_sk), **_item({"left": initial, "initial": initial})},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise

    def _take_once(
        self, campaign_id: str, sk: str, values: dict[str, Any], stock: tuple[str, int] | None
    ) -> Literal["taken", "repeat", "sold_out"]:
        """Record ``sk`` once and, with ``stock`` (sk, initial), take one unit in the same transaction."""
        items = [self._put_once(campaign_id, sk, values)]
        if stock is not None:
            items.append(self._take_unit(campaign_id, stock[0]))
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            reasons = self._transact(items)
            if not reasons:
                return "taken"
            if reasons[0] == "ConditionalCheckFailed" or stock is None:
                return "repeat"
            # The stock refused: missing (first use), or gone. Look at it now, not at what the transaction saw.
            current = self._get(campaign_id, stock[0])
            if current is None:
                self._init_stock(campaign_id, stock[0], stock[1])
                continue
            if int(current["left"]) > 0:
                continue  # created by a concurrent first request after our transaction read it
            # Sold out, unless this user's item appeared meanwhile (then it is theirs, answered again).
            return "repeat" if self._get(campaign_id, sk) is not None else "sold_out"
        raise Contended("the request kept conflicting with concurrent ones; try again")

    # ---- coupon jobs -------------------------------------------------------------------------------------
    def _publish(self, job: OutboundJob) -> None:
        if self._sqs is None or not self._queue_url:
            raise QueueFailed("no outbound queue configured")
        try:
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=job.to_body())
        except Exception as exc:  # any failure of the put: the grant stays, the lease is released
            raise QueueFailed(f"the coupon job could not be queued ({type(exc).__name__}); retry the request") from exc

    def _set_queued(self, campaign_id: str, sk: str, now: datetime) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key=self._key(campaign_id, sk),
            UpdateExpression="SET queued_at = :at REMOVE lease_until",
            ExpressionAttributeValues={":at": {"S": _iso(now)}},
        )

    def _release(self, campaign_id: str, sk: str) -> None:
        with contextlib.suppress(ClientError):  # best effort: the lease expires anyway
            self._ddb.update_item(
                TableName=self._table, Key=self._key(campaign_id, sk), UpdateExpression="REMOVE lease_until"
            )

    def _take_lease(self, campaign_id: str, sk: str, now: datetime) -> bool:
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(campaign_id, sk),
                UpdateExpression="SET lease_until = :until",
                ConditionExpression=(
                    "attribute_exists(job) AND attribute_not_exists(queued_at) "
                    "AND (attribute_not_exists(lease_until) OR lease_until < :now)"
                ),
                ExpressionAttributeValues={":until": {"N": str(_ms(now + QUEUE_LEASE))}, ":now": {"N": str(_ms(now))}},
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _queue_job(self, campaign_id: str, sk: str, job: OutboundJob, now: datetime) -> None:
        """Queue the job of a grant whose lease we hold; on failure release the lease and raise QueueFailed."""
        try:
            self._publish(job)
        except QueueFailed:
            self._release(campaign_id, sk)
            raise
        self._set_queued(campaign_id, sk, now)

    def _grant_result(self, campaign_id: str, action_id: str, item: dict[str, Any], created: bool) -> Grant:
        if item.get("job") is None:
            status: CouponStatus = "sold_out" if item.get("reward") == "sold_out" else "none"
        else:
            status = "queued" if item.get("queued_at") else "queueing"
        return Grant(
            campaign_id=campaign_id,
            action_id=action_id,
            user=str(item["user"]),
            at=str(item["at"]),
            created=created,
            coupon=item.get("coupon"),
            ledger_key=item.get("ledger_key"),
            coupon_status=status,
        )

    def _grant(
        self,
        campaign: Campaign,
        action_id: str,
        sk: str,
        user: str,
        now: datetime,
        job: OutboundJob | None,
        stock: tuple[str, int] | None,
        extra: dict[str, Any] | None = None,
        *,
        sold_out_still_records: bool = False,
    ) -> Grant:
        """Record ``sk`` once for ``user``, take stock if given, then queue ``job`` exactly as the module docstring
        describes. A repeat re-queues only a job that never reached the queue and whose lease has expired."""
        values: dict[str, Any] = {"user": user, "at": _iso(now), **(extra or {})}
        if job is not None:
            values |= {
                "job": job.to_body(),
                "ledger_key": job.ledger_key,
                "coupon_activity": job.content.activity_id,  # type: ignore[union-attr]
                "lease_until": _ms(now + QUEUE_LEASE),
            }
        outcome = self._take_once(campaign.id, sk, values, stock)
        if outcome == "sold_out":
            if not sold_out_still_records:
                raise Refused("sold_out", _sold_out_message(campaign, stock), ("body", "action"))
            values = {"user": user, "at": _iso(now), **(extra or {}), "reward": "sold_out"}
            outcome = self._take_once(campaign.id, sk, values, None)
            if outcome == "taken":
                return self._grant_result(campaign.id, action_id, values, True)
        if outcome == "taken":
            if job is not None:
                self._queue_job(campaign.id, sk, job, now)
                values["queued_at"] = _iso(now)
            return self._grant_result(campaign.id, action_id, values, True)
        existing = self._get(campaign.id, sk)
        if existing is None:  # pragma: no cover - items are never deleted
            raise Contended("the earlier record vanished; try again")
        if existing.get("job") and not existing.get("queued_at") and self._take_lease(campaign.id, sk, now):
            self._queue_job(campaign.id, sk, parse_job(str(existing["job"])), now)
            existing["queued_at"] = _iso(now)
        return self._grant_result(campaign.id, action_id, existing, False)

    def _coupon_job(
        self, campaign: Campaign, phase: str, action_id: str, coupon: str, user: User, app_id: str, now: datetime
    ) -> OutboundJob:
        stock = campaign.coupons.get(coupon)
        if stock is None:
            raise Refused("not_found", f"campaign {campaign.id} defines no coupon {coupon!r}", ("body", "action"))
        return OutboundJob(
            app_id=app_id,
            channel=Channel.coupon,
            recipient=_recipient(user),
            content={"type": "coupon", "activity_id": stock.activity_id},  # type: ignore[arg-type]
            campaign=campaign.id,
            phase=campaign.job_phase(phase, action_id),
            kind="transactional",
            not_after=campaign.phases.settle.end,
            created_at=now,
        )

    # ---- reads shared by the routes ----------------------------------------------------------------------
    @staticmethod
    def action_of(campaign: Campaign, action_id: str, kind: type) -> tuple[str, Any]:
        """(phase, action) for ``action_id``, which must be of type ``kind``; Refused otherwise."""
        found = campaign.action(action_id)
        if found is None:
            raise Refused("not_found", f"campaign {campaign.id} has no action {action_id!r}", ("body", "action"))
        phase, action = found
        if not isinstance(action, kind):
            wanted = kind.model_fields["type"].default
            raise Refused(
                "wrong_action", f"action {action_id!r} is a {action.type}, not a {wanted}", ("body", "action")
            )
        return phase, action

    @staticmethod
    def app_for(campaign: Campaign, app_id: str | None) -> str:
        """The app the user's id belongs to (default: the campaign's first mini program)."""
        if app_id is None:
            return campaign.mini_programs[0]
        if app_id != campaign.life_account and app_id not in campaign.mini_programs:
            raise Refused("invalid", f"app {app_id} is not one of campaign {campaign.id}'s apps", ("body", "app_id"))
        return app_id

    @staticmethod
    def _require_open(campaign: Campaign, state: CampaignState | str, phase: str, now: datetime) -> None:
        why = phase_open(campaign, state, phase, now)
        if why:
            raise Refused("closed", why, ("body", "action"))

    # ---- reservations ------------------------------------------------------------------------------------
    def reserve(
        self,
        campaign: Campaign,
        action_id: str,
        user: User,
        now: datetime,
        *,
        state: CampaignState | str,
        app_id: str | None = None,
    ) -> Grant:
        """An early-bird reservation: once per user, one unit of the coupon's stock, one coupon job."""
        who, user = user, user_key(user)
        phase, action = self.action_of(campaign, action_id, EarlyBird)
        self._require_open(campaign, state, phase, now)
        app = self.app_for(campaign, app_id)
        job = self._coupon_job(campaign, phase, action_id, action.coupon, who, app, now)
        initial = campaign.coupons[action.coupon].stock
        return self._grant(
            campaign,
            action_id,
            f"RES#{action_id}#{user}",
            user,
            now,
            job,
            (f"STOCK#{action.coupon}", initial),
            {"app_id": app, "coupon": action.coupon},
        )

    def stock_left(self, campaign: Campaign, coupon: str) -> int:
        item = self._get(campaign.id, f"STOCK#{coupon}")
        if item is not None:
            return int(item["left"])
        stock = campaign.coupons.get(coupon)
        return stock.stock if stock else 0

    # ---- flash sales -------------------------------------------------------------------------------------
    def flash_take(
        self,
        campaign: Campaign,
        action_id: str,
        window_id: str,
        user: User,
        now: datetime,
        *,
        state: CampaignState | str,
    ) -> FlashTake:
        """One unit of a flash window's stock, once per user per window, only between its start and end."""
        user = user_key(user)
        phase, action = self.action_of(campaign, action_id, FlashSale)
        window = next((w for w in action.windows if w.id == window_id), None)
        if window is None:
            raise Refused("not_found", f"flash sale {action_id!r} has no window {window_id!r}", ("body", "window"))
        self._require_open(campaign, state, phase, now)
        if now < window.start:
            raise Refused("closed", f"window {window_id!r} opens at {window.start.isoformat()}", ("body", "window"))
        if now >= window.end:
            raise Refused("closed", f"window {window_id!r} closed at {window.end.isoformat()}", ("body", "window"))
        sk = f"FLASHUSER#{action_id}#{window_id}#{user}"
        values = {"user": user, "at": _iso(now), "sku": window.sku}
        outcome = self._take_once(campaign.id, sk, values, (f"FLASH#{action_id}#{window_id}", window.stock))
        if outcome == "sold_out":
            raise Refused(
                "sold_out", f"window {window_id!r} of flash sale {action_id!r} is sold out", ("body", "window")
            )
        item = values if outcome == "taken" else (self._get(campaign.id, sk) or values)
        return FlashTake(campaign.id, action_id, window_id, user, str(item["sku"]), str(item["at"]), outcome == "taken")

    def flash_left(self, campaign: Campaign, action_id: str, window_id: str, initial: int) -> int:
        item = self._get(campaign.id, f"FLASH#{action_id}#{window_id}")
        return int(item["left"]) if item is not None else initial

    # ---- shares ------------------------------------------------------------------------------------------
    def share(
        self,
        campaign: Campaign,
        action_id: str,
        user: User,
        now: datetime,
        *,
        state: CampaignState | str,
        app_id: str | None = None,
    ) -> Grant:
        """A share, once per user per task; the first one unlocks the reward coupon (from its stock) once. When
        the reward's stock is gone the share is still recorded, with ``coupon_status="sold_out"``."""
        who, user = user, user_key(user)
        phase, action = self.action_of(campaign, action_id, ShareTask)
        self._require_open(campaign, state, phase, now)
        app = self.app_for(campaign, app_id)
        job = self._coupon_job(campaign, phase, action_id, action.reward, who, app, now)
        return self._grant(
            campaign,
            action_id,
            f"SHARE#{action_id}#{user}",
            user,
            now,
            job,
            (f"STOCK#{action.reward}", campaign.coupons[action.reward].stock),
            {"app_id": app, "coupon": action.reward, "reward": "granted"},
            sold_out_still_records=True,
        )

    # ---- UGC: entries, votes, leaderboard ----------------------------------------------------------------
    def submit_entry(
        self,
        campaign: Campaign,
        action_id: str,
        user: User,
        title: str,
        content_url: str | None,
        now: datetime,
        *,
        state: CampaignState | str,
    ) -> Entry:
        user = user_key(user)
        phase, action = self.action_of(campaign, action_id, UgcChallenge)
        self._require_open(campaign, state, phase, now)
        entry_id = secrets.token_hex(6)
        count = {
            "Update": {
                "TableName": self._table,
                "Key": self._key(campaign.id, f"ENTRANT#{action_id}#{user}"),
                "UpdateExpression": "SET #n = if_not_exists(#n, :zero) + :one, #u = :user",
                "ConditionExpression": "attribute_not_exists(#n) OR #n < :max",
                "ExpressionAttributeNames": {"#n": "n", "#u": "user"},
                "ExpressionAttributeValues": {
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":max": {"N": str(action.max_entries_per_user)},
                    ":user": {"S": user},
                },
            }
        }
        values = {
            "entry_id": entry_id,
            "user": user,
            "title": title,
            "content_url": content_url,
            "at": _iso(now),
            "votes": 0,
        }
        reasons = self._transact([count, self._put_once(campaign.id, f"ENTRY#{action_id}#{entry_id}", values)])
        if reasons and reasons[0] == "ConditionalCheckFailed":
            limit = action.max_entries_per_user
            raise Refused(
                "entry_limit", f"a user may submit {limit} entr{'y' if limit == 1 else 'ies'} to {action_id!r}"
            )
        if reasons:  # pragma: no cover - a fresh random entry id collided
            raise Contended("entry id collision; try again")
        return Entry(entry_id, action_id, user, title, content_url, values["at"], 0)

    def entry(self, campaign_id: str, action_id: str, entry_id: str) -> Entry | None:
        item = self._get(campaign_id, f"ENTRY#{action_id}#{entry_id}")
        return _entry(action_id, item) if item else None

    def entries(self, campaign_id: str, action_id: str | None = None) -> list[Entry]:
        prefix = f"ENTRY#{action_id}#" if action_id else "ENTRY#"
        return [_entry(str(item["sk"]).split("#")[1], item) for item in self._query(campaign_id, prefix)]

    def known_voter(self, campaign: Campaign, user: str, first_app: str | None = None) -> bool:
        """Whether the app has seen this user: follow facts or an interaction in any of the campaign's apps."""
        apps = [a for a in (first_app, campaign.life_account, *campaign.mini_programs) if a]
        for app in dict.fromkeys(apps):
            facts = self._audience.facts(app, user)
            if facts.following is not None or facts.last_interaction_at is not None:
                return True
        return False

    def vote(
        self,
        campaign: Campaign,
        action_id: str,
        entry_id: str,
        voter: User,
        now: datetime,
        *,
        state: CampaignState | str,
        app_id: str | None = None,
    ) -> VoteResult:
        """One vote per voter per entry per calendar day (campaign time zone), only from users the app knows;
        the entry's count goes up in the same transaction as the vote is recorded."""
        voter = user_key(voter)
        phase, _ = self.action_of(campaign, action_id, UgcChallenge)
        self._require_open(campaign, state, phase, now)
        app = self.app_for(campaign, app_id) if app_id else None
        if self.entry(campaign.id, action_id, entry_id) is None:
            raise Refused("not_found", f"challenge {action_id!r} has no entry {entry_id!r}", ("body", "entry_id"))
        if not self.known_voter(campaign, voter, app):
            raise Refused(
                "unknown_voter",
                "only users who exist in the app may vote (no follow or interaction is known for this user)",
                ("body", "user"),
            )
        day = vote_day(campaign, now)
        bump = {
            "Update": {
                "TableName": self._table,
                "Key": self._key(campaign.id, f"ENTRY#{action_id}#{entry_id}"),
                "UpdateExpression": "ADD votes :one",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }
        values = {"voter": voter, "entry_id": entry_id, "day": day, "at": _iso(now)}
        reasons = self._transact(
            [self._put_once(campaign.id, f"VOTE#{action_id}#{entry_id}#{day}#{voter}", values), bump]
        )
        if reasons and reasons[0] == "ConditionalCheckFailed":
            raise Refused("already_voted", f"this user already voted for entry {entry_id!r} on {day}", ("body", "user"))
        if reasons:
            raise Refused("not_found", f"challenge {action_id!r} has no entry {entry_id!r}", ("body", "entry_id"))
        current = self.entry(campaign.id, action_id, entry_id)
        return VoteResult(entry_id, voter, day, values["at"], current.votes if current else 0)

    def leaderboard(self, campaign: Campaign, action_id: str, limit: int = 10) -> list[Entry]:
        """The challenge's entries by votes (most first), ties to the earlier entry."""
        self.action_of(campaign, action_id, UgcChallenge)
        return rank_entries(self.entries(campaign.id, action_id))[:limit]

    # ---- claims ------------------------------------------------------------------------------------------
    def winners(self, campaign_id: str, action_id: str) -> list[str] | None:
        """The drawn winners of a Winners action (None before the draw), as the campaign store keeps them."""
        draw = self._campaigns.get_draw(campaign_id, action_id)
        return None if draw is None else [str(w) for w in draw.winners]

    def load(self, campaign_id: str) -> StoredCampaign | None:
        """The campaign's definition and state (lifelink.store.campaigns)."""
        return self._campaigns.get(campaign_id)

    def claim(
        self,
        campaign: Campaign,
        action_id: str,
        user: User,
        now: datetime,
        *,
        state: CampaignState | str,
        app_id: str | None = None,
    ) -> Grant:
        """A winner claims the prize: once per user; queues the prize coupon job."""
        who, user = user, user_key(user)
        phase, action = self.action_of(campaign, action_id, Winners)
        self._require_open(campaign, state, phase, now)
        winners = self.winners(campaign.id, action_id)
        if winners is None:
            raise Refused("not_drawn", f"the winners of {action_id!r} have not been drawn yet", ("body", "action"))
        if user not in winners:
            raise Refused("not_a_winner", f"this user is not a winner of {action_id!r}", ("body", "user"))
        app = self.app_for(campaign, app_id)
        job = self._coupon_job(campaign, phase, action_id, action.prize, who, app, now)
        return self._grant(
            campaign,
            action_id,
            f"CLAIM#{action_id}#{user}",
            user,
            now,
            job,
            None,
            {"app_id": app, "coupon": action.prize, "claimed_at": _iso(now)},
        )

    def claims_summary(self, campaign: Campaign, action_id: str) -> ClaimsSummary:
        """Winners, claims, fulfilled claims (the coupon job's ledger entry reached ``sent``) and the rates."""
        self.action_of(campaign, action_id, Winners)
        winners = self.winners(campaign.id, action_id) or []
        keys = [str(c["ledger_key"]) for c in self._query(campaign.id, f"CLAIM#{action_id}#", "ledger_key")]
        fulfilled = sum(1 for status in self._ledger_statuses(keys) if status == "sent")
        total = len(winners)
        return ClaimsSummary(
            action_id,
            total,
            len(keys),
            fulfilled,
            round(len(keys) / total, 4) if total else 0.0,
            round(fulfilled / total, 4) if total else 0.0,
        )

    def _ledger_statuses(self, ledger_keys: list[str]) -> Iterator[str]:
        for start in range(0, len(ledger_keys), 100):
            chunk = ledger_keys[start : start + 100]
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{"pk": {"S": f"LEDGER#{k}"}, "sk": {"S": "LEDGER"}} for k in chunk],
                    "ProjectionExpression": "#st",
                    "ExpressionAttributeNames": {"#st": "status"},
                    "ConsistentRead": True,
                }
            }
            while request:
                got = self._ddb.batch_get_item(RequestItems=request)
                for item in got.get("Responses", {}).get(self._table, []):
                    yield str(_plain(item).get("status", ""))
                request = got.get("UnprocessedKeys") or {}

    # ---- survey ------------------------------------------------------------------------------------------
    def answer(
        self,
        campaign: Campaign,
        action_id: str,
        user: User,
        answers: dict[str, Any],
        now: datetime,
        *,
        state: CampaignState | str,
    ) -> SurveyAnswer:
        """One answer per user, validated against the questions. Sending the same answers again answers the
        stored one; different answers from the same user are refused (already_answered)."""
        user = user_key(user)
        phase, survey = self.action_of(campaign, action_id, Survey)
        errors = validate_answers(survey, answers)
        if errors:
            raise Refused("invalid", f"{len(errors)} problem(s) with the answers", errors=errors)
        self._require_open(campaign, state, phase, now)
        sk = f"ANSWER#{action_id}#{user}"
        values = {"user": user, "at": _iso(now), "answers": json.dumps(answers, ensure_ascii=False, sort_keys=True)}
        if self._take_once(campaign.id, sk, values, None) == "taken":
            return SurveyAnswer(action_id, user, values["at"], answers, True)
        existing = self._get(campaign.id, sk) or values
        stored = json.loads(str(existing["answers"]))
        if stored != answers:
            raise Refused("already_answered", f"this user already answered survey {action_id!r}", ("body", "user"))
        return SurveyAnswer(action_id, user, str(existing["at"]), stored, False)

    def survey_summary(self, campaign: Campaign, action_id: str) -> SurveySummary:
        _, survey = self.action_of(campaign, action_id, Survey)
        answered = (json.loads(str(i["answers"])) for i in self._query(campaign.id, f"ANSWER#{action_id}#", "answers"))
        return summarise_answers(survey, answered)

    # ---- pools and counts --------------------------------------------------------------------------------
    def pool_members(
        self, campaign_id: str, pool: str, action_id: str | None = None, top: int | None = None
    ) -> list[str]:
        """The distinct users of a winner pool, sorted: ``reservations``, ``shares``, ``voters``, ``entrants``
        or ``top_entries`` (the entrants of the ``top`` entries by votes; all entries when ``top`` is None).
        ``action_id`` narrows the pool to one action; None takes every action of the campaign."""
        scope = f"{action_id}#" if action_id else ""
        if pool == "reservations":
            users = (i["user"] for i in self._query(campaign_id, f"RES#{scope}", "user"))
        elif pool == "shares":
            users = (i["user"] for i in self._query(campaign_id, f"SHARE#{scope}", "user"))
        elif pool == "voters":
            users = (i["voter"] for i in self._query(campaign_id, f"VOTE#{scope}", "voter"))
        elif pool == "entrants":
            users = (i["user"] for i in self._query(campaign_id, f"ENTRY#{scope}", "user"))
        elif pool == "top_entries":
            ranked = rank_entries(self.entries(campaign_id, action_id))
            users = (e.user for e in (ranked if top is None else ranked[:top]))
        else:
            raise ValueError(f"unknown pool {pool!r} (pools: {', '.join(POOLS)})")
        return sorted({str(u) for u in users})

    def counts(self, campaign: Campaign) -> dict[str, dict[str, int]]:
        """Counts per participation action (keyed by action id), for ``campaign status``. Flash sales count per
        window: ``taken.<window>`` and ``left.<window>``."""
        out: dict[str, dict[str, int]] = {}
        for _, action in campaign.actions():
            c: dict[str, int] = {}
            a = action.id
            if isinstance(action, EarlyBird):
                c = {
                    "reservations": self._count(campaign.id, f"RES#{a}#"),
                    "stock_left": self.stock_left(campaign, action.coupon),
                }
            elif isinstance(action, FlashSale):
                for w in action.windows:
                    c[f"taken.{w.id}"] = self._count(campaign.id, f"FLASHUSER#{a}#{w.id}#")
                    c[f"left.{w.id}"] = self.flash_left(campaign, a, w.id, w.stock)
            elif isinstance(action, ShareTask):
                shares = list(self._query(campaign.id, f"SHARE#{a}#", "reward"))
                c = {
                    "shares": len(shares),
                    "rewarded": sum(1 for s in shares if s.get("reward") == "granted"),
                    "stock_left": self.stock_left(campaign, action.reward),
                }
            elif isinstance(action, UgcChallenge):
                c = {
                    "entries": self._count(campaign.id, f"ENTRY#{a}#"),
                    "votes": self._count(campaign.id, f"VOTE#{a}#"),
                }
            elif isinstance(action, Winners):
                winners = self.winners(campaign.id, a)
                c = {"winners": len(winners or []), "claims": self._count(campaign.id, f"CLAIM#{a}#")}
            elif isinstance(action, Survey):
                c = {"answers": self._count(campaign.id, f"ANSWER#{a}#")}
            else:
                continue
            out[a] = c
        return out


def _entry(action_id: str, item: dict[str, Any]) -> Entry:
    return Entry(
        entry_id=str(item["entry_id"]),
        action_id=action_id,
        user=str(item["user"]),
        title=str(item["title"]),
        content_url=item.get("content_url"),
        at=str(item["at"]),
        votes=int(item.get("votes", 0)),
    )


User = str | Recipient


def user_key(user: User) -> str:
    """The key a user is recorded under: the open_id or user_id (as in ledger keys)."""
    return user if isinstance(user, str) else (user.key or "")


def _recipient(user: User) -> Recipient:
    """The job's recipient. A bare string is a user_id when it looks like one (2088 + 12 digits), else an
    open_id; pass a Recipient to say which."""
    if isinstance(user, Recipient):
        return user
    if len(user) == 16 and user.startswith("2088") and user.isdigit():
        return Recipient(user_id=user)
    return Recipient(open_id=user)


def _sold_out_message(campaign: Campaign, stock: tuple[str, int] | None) -> str:
    coupon = stock[0].removeprefix("STOCK#") if stock else "?"
    return f"coupon {coupon!r} of campaign {campaign.id} is sold out"
