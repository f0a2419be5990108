"""The message gateway: a batch of ``outbound`` queue records -> policy decisions -> concurrent Alipay sends ->
ledger -> outcome events.

For each record (records of the same ledger key run one after another, the rest concurrently, at most
``concurrency`` at a time):

1. parse the job; an invalid body is a poison message: ``failed(invalid_job)`` event, acknowledged;
2. look up the app, its policy and its Alipay client (one pooled ``httpx.AsyncClient`` for all apps);
3. read the ledger: a finished entry is acknowledged and its outcome event published again (events are
   at-least-once with an id derived from the outcome, so consumers keep one; a crash between the ledger write
   and the event therefore loses nothing, and no write per message records that the event went out); a live
   lease elsewhere puts the record back until the lease ends; an expired lease without an idempotency key is
   settled as ``failed(outcome_unknown)`` (see :mod:`lifelink.store.ledger`);
4. read the facts (follow state, last interaction, grants, counters) and :func:`~lifelink.domain.policy.decide`;
   skip/cap/expire end the entry, a hold changes the record's visibility (≤ 12 h; longer holds hold again);
5. claim the entry (lease), take the counters atomically, consume a subscription grant, wait for the app's
   shared rate limit, call Alipay, and record the answer at once;
6. publish the outcome event; retryable failures go back to the queue with exponential backoff and jitter
   (SQS moves a record to the DLQ after 5 receives), fatal ones are acknowledged.

The caller (the Lambda handler) turns the :class:`BatchReport` into ``batchItemFailures``: every record that
must come back later is a failure, and its visibility has already been set here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import httpx

from lifelink.alipay.errors import (
    AlipayApiError,
    AlipayTransportError,
    KeyFormatError,
    KeyMismatchError,
    ResponseFormatError,
    SignatureError,
    redact_sub_msg,
)
from lifelink.alipay.openapi import AsyncAlipayClient, OpenApiConfig
from lifelink.alipay.transport import AsyncPost
from lifelink.domain.attribution import message_ref
from lifelink.domain.channels import IDEMPOTENT_CHANNELS, build_call, link_tagger
from lifelink.domain.events import MessageOutcomeEvent, OutcomeStatus, UserRef
from lifelink.domain.messages import LIFE_CHANNELS, Channel, InvalidJob, MiniSubscriptionContent, OutboundJob, parse_job
from lifelink.domain.policy import Capped, Expired, Hold, MessagePolicy, Skip, decide
from lifelink.privacy import hash_id
from lifelink.store.apps import AppRecord
from lifelink.store.counters import CapPlan, Counters, plan_for
from lifelink.store.ledger import Claim, Ledger, LedgerEntry, Status
from lifelink.store.rate_limit import RateLimiter
from lifelink.store.send_state import ComposedStateReader, StateReader

MAX_VISIBILITY_S = 12 * 3600 - 60  # SQS allows 12 h from the receive; keep a minute in hand
REQUEUE_AT_RECEIVE = 4  # a hold or a rate wait seen on this receive re-enqueues a fresh copy (keeps it off the DLQ)

R_INVALID_JOB = "invalid_job"
R_UNKNOWN_APP = "unknown_app"
R_CHANNEL_NOT_FOR_APP = "channel_not_for_app"
R_APP_CONFIG = "app_config"
R_TIMEOUT = "timeout"
R_TRANSPORT = "transport"
R_BAD_RESPONSE = "bad_response"
R_INTERNAL = "internal_error"
R_RATE_WAIT = "rate_limited"


# ---- collaborators ---------------------------------------------------------------------------------------


class Registry(Protocol):
    def get(self, app_id: str) -> AppRecord | None: ...


class Publisher(Protocol):
    def publish(self, event: Any) -> str: ...


class Visibility(Protocol):
    def change_visibility(self, receipt_handle: str, seconds: int) -> None: ...
    def requeue(self, body: str) -> None: ...


class SqsJobQueue:
    """The outbound queue as the gateway uses it: visibility changes and fresh copies for long holds."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self._sqs.change_message_visibility(
            QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=int(seconds)
        )

    def requeue(self, body: str) -> None:
        self._sqs.send_message(QueueUrl=self._url, MessageBody=body)


@dataclass(frozen=True)
class Backoff:
    base_s: float = 10.0
    max_s: float = 900.0

    @classmethod
    def from_env(cls) -> Backoff:
        """``OUTBOUND_BACKOFF_BASE_S`` / ``OUTBOUND_BACKOFF_MAX_S`` override the defaults (tests, local runs)."""
        return cls(
            base_s=float(os.environ.get("OUTBOUND_BACKOFF_BASE_S") or cls.base_s),
            max_s=float(os.environ.get("OUTBOUND_BACKOFF_MAX_S") or cls.max_s),
        )

    def delay(self, receive_count: int) -> int:
        """Exponential in the receive count, with jitter over the upper half (so retries spread)."""
        ceiling = min(self.max_s, self.base_s * 2 ** max(0, receive_count - 1))
        return max(1, round(random.uniform(ceiling / 2, ceiling)))  # noqa: S311 - jitter, not security


# ---- records and results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRecord:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1

    @classmethod
    def from_lambda(cls, record: Mapping[str, Any]) -> QueueRecord:
        attributes = record.get("attributes") or {}
        return cls(
            message_id=str(record["messageId"]),
            receipt_handle=str(record.get("receiptHandle", "")),
            body=str(record.get("body", "")),
            receive_count=int(attributes.get("ApproximateReceiveCount", 1) or 1),
        )


Disposition = Literal["ack", "retry"]


@dataclass(frozen=True)
class RecordOutcome:
    message_id: str
    disposition: Disposition  # retry: report as a batch item failure (visibility already set)
    status: str  # sent | held | capped | skipped | failed | duplicate | busy
    reason: str | None = None
    visibility_s: int | None = None
    ledger_key: str | None = None


@dataclass(frozen=True)
class BatchReport:
    outcomes: list[RecordOutcome]

    def batch_item_failures(self) -> list[dict[str, str]]:
        return [{"itemIdentifier": o.message_id} for o in self.outcomes if o.disposition == "retry"]

    def response(self) -> dict[str, Any]:
        return {"batchItemFailures": self.batch_item_failures()}

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def outcome_event_id(ledger_key: str, marker: str) -> str:
    return hashlib.sha256(f"outcome|{ledger_key}|{marker}".encode()).hexdigest()[:32]


@dataclass
class _App:
    record: AppRecord
    policy: MessagePolicy
    client: AsyncAlipayClient | None = None
    client_error: Exception | None = None
    attribution_key: bytes | None = None
    key_error: Exception | None = None


@dataclass(frozen=True)
class _State:
    """What a decision is made on, read in one go."""

    entry: LedgerEntry | None
    plan: CapPlan
    facts: Any
    template_id: str | None
    user_key: str | None
    now: datetime


def _settles(entry: LedgerEntry | None, job: OutboundJob, now: datetime) -> bool:
    """Whether the ledger entry alone decides the record (see :meth:`OutboundGateway._settled`)."""
    if entry is None:
        return False
    if entry.terminal:
        return True
    if entry.status is Status.sending:
        return entry.lease_live(now) or job.channel not in IDEMPOTENT_CHANNELS
    return False


@dataclass(frozen=True)
class _Booking:
    result: Literal["claimed", "not_claimed", "race", "rate_wait"]
    entry: LedgerEntry | None = None
    attempts: int = 0
    granted: bool = False
    wait: float = 0.0


@dataclass(frozen=True)
class _Planned:
    """One worker-thread trip's result: what was read, what was decided (None: the entry settles the record),
    and the booking when the decision was to send."""

    state: _State
    decision: Any
    booked: _Booking | None


# ---- the gateway -----------------------------------------------------------------------------------------


class OutboundGateway:
    def __init__(
        self,
        *,
        registry: Registry,
        secrets: Callable[[str], Mapping[str, Any]],
        audience: Any,
        ledger: Ledger,
        counters: Counters,
        rate_limiter: RateLimiter,
        publisher: Publisher,
        queue: Visibility,
        http: AsyncPost,
        attribution_key: Callable[[], bytes],
        default_gateway_url: str,
        concurrency: int = 10,
        lease: timedelta = timedelta(seconds=90),
        rate_max_wait_s: float = 20.0,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        logger: logging.Logger | logging.LoggerAdapter | None = None,  # type: ignore[type-arg]
        state_reader: StateReader | None = None,
    ) -> None:
        self._registry = registry
        self._secrets = secrets
        self._audience = audience
        self._ledger = ledger
        self._counters = counters
        self._rate = rate_limiter
        self._publisher = publisher
        self._queue = queue
        self._http = http
        self._attribution_key = attribution_key
        self._default_gateway_url = default_gateway_url
        self._concurrency = max(1, concurrency)
        self._lease = lease
        self._rate_max_wait = rate_max_wait_s
        self._backoff = backoff or Backoff.from_env()
        self._clock = clock
        self._log = logger or logging.getLogger("lifelink.outbound")
        self._clients: dict[str, tuple[str, AsyncAlipayClient]] = {}
        # One BatchGetItem in production (store.send_state.SendStateReader); the stores' own reads otherwise.
        self._reader: StateReader = state_reader or ComposedStateReader(ledger, audience, counters)

    # ---- entry -------------------------------------------------------------------------------------------
    async def process(self, records: Sequence[QueueRecord]) -> BatchReport:
        """Every record of a batch; records with the same ledger key one after another."""
        groups: dict[str, list[tuple[int, QueueRecord, OutboundJob | InvalidJob]]] = {}
        for i, record in enumerate(records):
            try:
                parsed: OutboundJob | InvalidJob = parse_job(record.body)
                key = parsed.ledger_key
            except InvalidJob as exc:
                parsed, key = exc, f"invalid:{record.message_id}"
            groups.setdefault(key, []).append((i, record, parsed))
        semaphore = asyncio.Semaphore(self._concurrency)
        apps: dict[str, asyncio.Future[_App | None]] = {}
        results: dict[int, RecordOutcome] = {}

        async def run(group: list[tuple[int, QueueRecord, OutboundJob | InvalidJob]]) -> None:
            for i, record, parsed in group:
                async with semaphore:
                    results[i] = await self._guarded(record, parsed, apps)

        await asyncio.gather(*(run(g) for g in groups.values()))
        return BatchReport([results[i] for i in range(len(records))])

    async def _guarded(
        self, record: QueueRecord, parsed: OutboundJob | InvalidJob, apps: dict[str, asyncio.Future[_App | None]]
    ) -> RecordOutcome:
        try:
            if isinstance(parsed, InvalidJob):
                return await self._poison(record, parsed)
            return await self._handle(record, parsed, apps)
        except Exception:  # AWS trouble and the like: let SQS bring it back with backoff
            self._log.exception("outbound record failed unexpectedly", extra={"message_id": record.message_id})
            return await self._retry(record, "busy", R_INTERNAL, None)

    # ---- steps -------------------------------------------------------------------------------------------
    async def _poison(self, record: QueueRecord, exc: InvalidJob) -> RecordOutcome:
        try:
            raw = json.loads(record.body)
        except ValueError:
            raw = {}
        raw = raw if isinstance(raw, dict) else {}
        key = f"invalid:{record.message_id}"
        now = self._clock()
        event = MessageOutcomeEvent(
            event_id=outcome_event_id(key, "failed"),
            app_id=str(raw.get("app_id") or "unknown")[:64],
            source="message_gateway",
            occurred_at=now,
            received_at=now,
            ledger_key=key,
            channel=str(raw.get("channel") or "unknown")[:32],
            status="failed",
            reason=R_INVALID_JOB,
            retryable=False,
            message_ref=message_ref(key),
        )
        await asyncio.to_thread(self._publisher.publish, event)
        self._log.warning("invalid outbound job", extra={"message_id": record.message_id, "errors": exc.errors[:10]})
        return RecordOutcome(record.message_id, "ack", "failed", R_INVALID_JOB, ledger_key=key)

    async def _app(self, app_id: str, apps: dict[str, asyncio.Future[_App | None]]) -> _App | None:
        """The app's record, policy, Alipay client and attribution key: looked up once per batch and app, in one
        trip to a worker thread, shared by every job of the batch (concurrent jobs await the same lookup)."""
        if app_id not in apps:
            apps[app_id] = asyncio.ensure_future(asyncio.to_thread(self._load_app, app_id))
        return await apps[app_id]

    def _load_app(self, app_id: str) -> _App | None:
        record = self._registry.get(app_id)
        if record is None:
            return None
        app = _App(record, MessagePolicy.parse(record.policy))
        try:
            app.client = self._client(record)
        except (KeyFormatError, KeyMismatchError, KeyError, ValueError) as exc:
            app.client_error = exc
        try:
            app.attribution_key = self._attribution_key()
        except Exception as exc:  # the secret is missing or unreadable: every send of the batch retries later
            app.key_error = exc
        return app

    def _client(self, app: AppRecord) -> AsyncAlipayClient:
        secret = self._secrets(app.secret_name)
        gateway_url = app.gateway_url or self._default_gateway_url
        fingerprint = hashlib.sha256(
            f"{gateway_url}\x1f{app.mode}\x1f{app.third_party}\x1f{json.dumps(dict(secret), sort_keys=True)}".encode()
        ).hexdigest()
        cached = self._clients.get(app.app_id)
        if cached and cached[0] == fingerprint:
            return cached[1]
        # certificate mode (SNs on each request) when the secret holds certificates; third-party: app_auth_token
        config = OpenApiConfig.from_secret(app.app_id, secret, gateway_url, mode=app.mode, third_party=app.third_party)
        client = AsyncAlipayClient(config, http=self._http)
        self._clients[app.app_id] = (fingerprint, client)
        return client

    async def _handle(
        self, record: QueueRecord, job: OutboundJob, apps: dict[str, asyncio.Future[_App | None]]
    ) -> RecordOutcome:
        now = self._clock()
        app = await self._app(job.app_id, apps)
        if app is None:
            return await self._close(record, job, Status.failed, R_UNKNOWN_APP, now)
        if not _channel_fits(job.channel, app.record):
            return await self._close(record, job, Status.failed, R_CHANNEL_NOT_FOR_APP, now)

        if app.client is None:
            state = await asyncio.to_thread(self._read_state, job, app.policy, now)
            settled = await self._settled(record, job, state.entry, now)
            if settled is not None:
                return settled
            self._log.error("app keys unusable", extra={"app_id": job.app_id, "error": str(app.client_error)})
            attempts = state.entry.attempts if state.entry else 0
            await self._publish(job, "failed", R_APP_CONFIG, now, retryable=True, attempts=attempts)
            return await self._retry(record, "failed", R_APP_CONFIG, job)
        if app.attribution_key is None:
            raise RuntimeError(f"attribution key unavailable: {app.key_error}")

        # One trip to a worker thread reads everything the decision needs (ledger entry, user facts, grants,
        # counters: one request), decides, and when the answer is "send" books the send (claim, counters, grant,
        # rate slot). The entry alone may already settle the record, which costs a few wasted reads on a duplicate.
        for _ in range(2):  # a second round when another container took the last counter slot meanwhile
            owner = uuid.uuid4().hex
            planned = await asyncio.to_thread(self._read_decide_book, job, app.policy, self._clock(), owner)
            settled = await self._settled(record, job, planned.state.entry, planned.state.now)
            if settled is not None:
                return settled
            outcome = await self._act(record, job, app, planned, owner)
            if outcome is not None:
                return outcome
            now = self._clock()
        return await self._retry(record, "busy", "counter_contention", job)

    def _read_decide_book(self, job: OutboundJob, policy: MessagePolicy, now: datetime, owner: str) -> _Planned:
        """In a worker thread: read, decide, and book when the decision is to send."""
        state = self._read_state(job, policy, now)
        if _settles(state.entry, job, now):
            return _Planned(state, None, None)
        decision = decide(job, policy, state.facts, now)
        if isinstance(decision, Expired | Skip | Capped | Hold):
            return _Planned(state, decision, None)
        return _Planned(state, decision, self._book(job, policy, state, owner, now))

    def _read_state(self, job: OutboundJob, policy: MessagePolicy, now: datetime) -> _State:
        user_key = job.recipient.key
        template_id = job.content.user_template_id if isinstance(job.content, MiniSubscriptionContent) else None
        plan = plan_for(job, policy, now)
        wants_facts = job.channel in (Channel.life_template, Channel.life_custom)
        got = self._reader.read(job.app_id, job.ledger_key, plan, user_key, facts=wants_facts, template_id=template_id)
        return _State(got.entry, plan, got.facts, template_id, user_key, now)

    async def _settled(
        self, record: QueueRecord, job: OutboundJob, entry: LedgerEntry | None, now: datetime
    ) -> RecordOutcome | None:
        """An outcome when the ledger already decides this record (finished, busy elsewhere, crashed)."""
        if entry is None:
            return None
        if entry.terminal:
            await self._republish(job, entry)
            return RecordOutcome(record.message_id, "ack", "duplicate", entry.status.value, ledger_key=job.ledger_key)
        if entry.status is Status.sending:
            if entry.lease_live(now):
                wait = int((entry.lease_until - now).total_seconds()) + 1 if entry.lease_until else 30
                return await self._park(record, "busy", "in_flight", job, wait)
            if job.channel not in IDEMPOTENT_CHANNELS:
                return await self._unknown(record, job, now)
        return None

    async def _act(
        self, record: QueueRecord, job: OutboundJob, app: _App, planned: _Planned, owner: str
    ) -> RecordOutcome | None:
        state, decision, booked = planned.state, planned.decision, planned.booked
        now = state.now
        if isinstance(decision, Expired | Skip):
            return await self._close(record, job, Status.skipped, decision.reason, now)
        if isinstance(decision, Capped):
            return await self._close(record, job, Status.capped, decision.reason, now)
        if isinstance(decision, Hold):
            return await self._hold(record, job, decision, state.entry, now)

        # ---- send ----
        # The booking happened in the worker thread, last thing before coming back: between the rate slot and the
        # request there is only CPU work on this loop (build, sign, send), so requests leave in the order and
        # spacing reserved.
        assert booked is not None
        if booked.result == "not_claimed":
            settled = await self._settled(record, job, booked.entry, now)
            return settled or await self._park(record, "busy", "in_flight", job, 30)
        if booked.result == "race":
            return None  # decide again with fresh counts
        if booked.result == "rate_wait":
            if record.receive_count >= REQUEUE_AT_RECEIVE:
                # Waiting for our own rate limit is not a failure: a fresh copy keeps a long backlog off the DLQ.
                await asyncio.to_thread(self._queue.requeue, record.body)
                return RecordOutcome(record.message_id, "ack", "busy", R_RATE_WAIT, ledger_key=job.ledger_key)
            return await self._retry(record, "busy", R_RATE_WAIT, job)
        await self._rate.wait(booked.wait)
        assert app.client is not None and app.attribution_key is not None
        return await self._call(record, job, app.client, owner, booked.attempts, state, booked.granted,
                                app.attribution_key)

    def _book(self, job: OutboundJob, policy: MessagePolicy, state: _State, owner: str, now: datetime) -> _Booking:
        claim: Claim = self._ledger.claim(
            job, owner, now, lease=self._lease, idempotent=job.channel in IDEMPOTENT_CHANNELS, new=state.entry is None
        )
        if claim.result != "claimed":
            return _Booking("not_claimed", entry=claim.entry)
        assert claim.entry is not None
        taken = granted = False
        try:
            if not self._counters.take(state.plan):
                self._ledger.release(job.ledger_key, owner, self._clock(), "counter_race")
                return _Booking("race")
            taken = True
            if state.template_id and state.user_key:
                granted = self._audience.consume_grant(job.app_id, state.user_key, state.template_id)
                if not granted:
                    self._counters.give_back(state.plan)
                    self._ledger.release(job.ledger_key, owner, self._clock(), "grant_race")
                    return _Booking("race")
            wait = self._rate.reserve(job.app_id, policy.paced_rate, self._rate_max_wait)
        except Exception:
            # A write between the claim and the call failed (e.g. throttled past the SDK's retries). Alipay was
            # not called: give the claim back (best effort), or its lease would expire into
            # failed(outcome_unknown) and a job never sent would never be sent.
            if taken:
                with contextlib.suppress(Exception):
                    self._give_back(job, state, granted)
            with contextlib.suppress(Exception):
                self._ledger.release(job.ledger_key, owner, self._clock(), R_INTERNAL)
            raise
        if wait is None:
            self._give_back(job, state, granted)
            self._ledger.release(job.ledger_key, owner, self._clock(), R_RATE_WAIT)
            return _Booking("rate_wait")
        return _Booking("claimed", attempts=claim.entry.attempts, granted=granted, wait=wait)

    async def _call(
        self,
        record: QueueRecord,
        job: OutboundJob,
        client: AsyncAlipayClient,
        owner: str,
        attempts: int,
        state: _State,
        granted: bool,
        key: bytes,
    ) -> RecordOutcome:
        send_at = self._clock()
        call = build_call(job, link_tagger(job, key, send_at), send_at)
        status, reason, sub_code, retryable, ref, sub_msg = Status.sent, None, None, None, None, None
        try:
            answer = await client.execute(call.method, call.biz_content)
            ref = _alipay_ref(answer)
        except AlipayApiError as exc:
            status, reason, sub_code, retryable = Status.failed, exc.code or "unknown_code", exc.sub_code, exc.retryable
            sub_msg = redact_sub_msg(exc.sub_msg)
        except AlipayTransportError as exc:
            timed_out = isinstance(exc.__cause__, httpx.TimeoutException)
            status, retryable = Status.failed, exc.retryable
            reason = R_TIMEOUT if timed_out else (f"http_{exc.status_code}" if exc.status_code else R_TRANSPORT)
        except (SignatureError, ResponseFormatError):
            status, reason, retryable = Status.failed, R_BAD_RESPONSE, False  # outcome unknown: at most once
        except Exception:
            self._log.exception("send failed unexpectedly", extra={"ledger_key_hash": hash_id(job.ledger_key)})
            status, reason, retryable = Status.failed, R_INTERNAL, False
        # The crash window ends in _settle_send's ledger write.
        entry = await asyncio.to_thread(
            self._settle_send, job, owner, status, reason, (sub_code, sub_msg), retryable, ref, attempts, state, granted
        )
        if entry is None:  # our lease was taken over (it expired): whoever holds it now reports
            self._log.warning("lease lost before finish", extra={"ledger_key_hash": hash_id(job.ledger_key)})
            return RecordOutcome(record.message_id, "ack", "duplicate", "lease_lost", ledger_key=job.ledger_key)
        # Sends at DEBUG (the ledger and the outcome event record each one); anything else at INFO.
        self._log.log(
            logging.DEBUG if status is Status.sent else logging.INFO,
            "message %s",
            status.value,
            extra={
                "channel": job.channel.value,
                "reason": reason,
                "sub_code": sub_code,
                "sub_msg": sub_msg,
                "attempts": attempts,
                "user": hash_id(job.recipient.key),
                "app_id": job.app_id,
            },
        )
        if status is Status.failed and retryable:
            return await self._retry(record, "failed", reason, job)
        return RecordOutcome(record.message_id, "ack", status.value, reason, ledger_key=job.ledger_key)

    def _settle_send(
        self,
        job: OutboundJob,
        owner: str,
        status: Status,
        reason: str | None,
        sub: tuple[str | None, str | None],
        retryable: bool | None,
        ref: str | None,
        attempts: int,
        state: _State,
        granted: bool,
    ) -> LedgerEntry | None:
        """After the call, in one worker-thread trip: on failure the counters and the grant go back first, then the
        ledger records the answer, then the outcome event. Giving back before the ledger write matters: once the
        entry says failed(retryable) a redelivery may read the grant and the counters at once (one BatchGetItem),
        and must not find the grant still taken and skip the job as ``no_grant``."""
        if status is not Status.sent:
            self._give_back(job, state, granted)
        entry = self._ledger.finish(
            job.ledger_key,
            owner,
            status,
            self._clock(),
            reason=reason,
            sub_code=sub[0],
            sub_msg=sub[1],
            retryable=retryable,
            alipay_ref=ref,
            attempt=attempts,
        )
        if entry is not None:
            self._publish_entry_now(job, entry)
        return entry

    def _give_back(self, job: OutboundJob, state: _State, granted: bool) -> None:
        self._counters.give_back(state.plan)
        if granted and state.template_id and state.user_key:
            self._audience.restore_grant(job.app_id, state.user_key, state.template_id)

    # ---- endings -----------------------------------------------------------------------------------------
    async def _close(
        self, record: QueueRecord, job: OutboundJob, status: Status, reason: str, now: datetime
    ) -> RecordOutcome:
        entry = await asyncio.to_thread(self._ledger.close, job, status, reason, now)
        if entry is None:  # the entry moved on meanwhile (another delivery): let the ledger say what happened
            current = await asyncio.to_thread(self._ledger.get, job.ledger_key)
            settled = await self._settled(record, job, current, now)
            return settled or await self._park(record, "busy", "in_flight", job, 30)
        await self._publish_entry(job, entry)
        return RecordOutcome(record.message_id, "ack", status.value, reason, ledger_key=job.ledger_key)

    async def _hold(
        self, record: QueueRecord, job: OutboundJob, decision: Hold, before: LedgerEntry | None, now: datetime
    ) -> RecordOutcome:
        entry = await asyncio.to_thread(self._ledger.hold, job, decision.until, decision.reason, now)
        if entry is None:
            current = await asyncio.to_thread(self._ledger.get, job.ledger_key)
            settled = await self._settled(record, job, current, now)
            return settled or await self._park(record, "busy", "in_flight", job, 30)
        repeated = before is not None and before.status is Status.held and before.hold_until == entry.hold_until
        if not repeated:
            await self._publish_entry(job, entry)
        wait = max(1, int((decision.until - now).total_seconds()) + 1)
        if record.receive_count >= REQUEUE_AT_RECEIVE and wait > 0:
            # Holds count as receives: a fresh copy keeps a long hold away from the DLQ.
            await asyncio.to_thread(self._queue.requeue, record.body)
            return RecordOutcome(record.message_id, "ack", "held", decision.reason, ledger_key=job.ledger_key)
        return await self._park(record, "held", decision.reason, job, wait)

    async def _unknown(self, record: QueueRecord, job: OutboundJob, now: datetime) -> RecordOutcome:
        entry = await asyncio.to_thread(self._ledger.settle_unknown, job.ledger_key, now)
        if entry is None:
            current = await asyncio.to_thread(self._ledger.get, job.ledger_key)
            if current is not None and current.terminal:
                await self._republish(job, current)
                return RecordOutcome(record.message_id, "ack", "duplicate", current.status.value)
            return await self._park(record, "busy", "in_flight", job, 30)
        await self._publish_entry(job, entry)
        return RecordOutcome(record.message_id, "ack", "failed", entry.reason, ledger_key=job.ledger_key)

    async def _park(
        self, record: QueueRecord, status: str, reason: str | None, job: OutboundJob | None, seconds: int
    ) -> RecordOutcome:
        seconds = max(0, min(MAX_VISIBILITY_S, seconds))
        try:
            await asyncio.to_thread(self._queue.change_visibility, record.receipt_handle, seconds)
        except Exception:  # an expired receipt handle: the record comes back after its visibility timeout
            self._log.warning("cannot change visibility", extra={"message_id": record.message_id}, exc_info=True)
        return RecordOutcome(
            record.message_id, "retry", status, reason, seconds, ledger_key=job.ledger_key if job else None
        )

    async def _retry(
        self, record: QueueRecord, status: str, reason: str | None, job: OutboundJob | None
    ) -> RecordOutcome:
        return await self._park(record, status, reason, job, self._backoff.delay(record.receive_count))

    # ---- events ------------------------------------------------------------------------------------------
    async def _publish(self, job: OutboundJob, status: OutcomeStatus, reason: str | None, now: datetime,
                       **details: Any) -> None:
        await asyncio.to_thread(self._publish_now, job, status, reason, now, **details)

    def _publish_now(
        self,
        job: OutboundJob,
        status: OutcomeStatus,
        reason: str | None,
        now: datetime,
        *,
        sub_code: str | None = None,
        sub_msg: str | None = None,
        retryable: bool | None = None,
        attempts: int = 0,
        hold_until: datetime | None = None,
        marker: str | None = None,
    ) -> None:
        r = job.recipient
        user = UserRef(user_id=r.user_id, open_id=r.open_id) if (r.user_id or r.open_id) else None
        event = MessageOutcomeEvent(
            event_id=outcome_event_id(job.ledger_key, marker or f"{status}#{attempts}#{reason or ''}"),
            app_id=job.app_id,
            source="message_gateway",
            occurred_at=now,
            received_at=now,
            user=user,
            ledger_key=job.ledger_key,
            channel=job.channel.value,
            status=status,
            reason=reason,
            sub_code=sub_code,
            sub_msg=sub_msg,
            retryable=retryable,
            attempts=attempts,
            hold_until=hold_until,
            campaign=job.campaign,
            phase=job.phase,
            rule=job.rule,
            message_ref=message_ref(job.ledger_key),
        )
        self._publisher.publish(event)

    async def _publish_entry(self, job: OutboundJob, entry: LedgerEntry) -> None:
        await asyncio.to_thread(self._publish_entry_now, job, entry)

    def _publish_entry_now(self, job: OutboundJob, entry: LedgerEntry) -> None:
        status: OutcomeStatus = "skipped" if entry.status is Status.planned else entry.status.value  # type: ignore[assignment]
        # the ledger's time of the transition: a re-published copy is the same event, to the microsecond
        when = datetime.fromisoformat(entry.updated_at) if entry.updated_at else self._clock()
        self._publish_now(
            job,
            status,
            entry.reason,
            when,
            sub_code=entry.sub_code,
            sub_msg=entry.sub_msg,
            retryable=entry.retryable if entry.status is Status.failed else None,
            attempts=entry.attempts,
            hold_until=entry.hold_until if entry.status is Status.held else None,
            marker=entry.marker,
        )

    async def _republish(self, job: OutboundJob, entry: LedgerEntry) -> None:
        """A redelivered job found finished: its outcome event may never have gone out (a crash after the ledger
        write), so it goes out again, with the same event id as any earlier copy."""
        await self._publish_entry(job, entry)


def _channel_fits(channel: Channel, app: AppRecord) -> bool:
    """Life-account channels need a life account, subscription messages a mini program; the rest either."""
    if channel in LIFE_CHANNELS:
        return app.kind == "life"
    if channel is Channel.mini_subscription:
        return app.kind == "mini"
    return True


def _alipay_ref(answer: Mapping[str, Any]) -> str | None:
    for name in ("msg_id", "voucher_id", "biz_card_no", "code_message_id"):
        value = answer.get(name)
        if value:
            return str(value)[:128]
    return None
