"""The send ledger: one item per ledger key (``pk = LEDGER#<ledger_key>``, ``sk = LEDGER``) in the state table.

States::

    planned ─┬─> held ──> (decided again when the job comes back)
             ├─> capped(reason) | skipped(reason)                      terminal, no Alipay call
             └─> sending (lease) ─┬─> sent                             terminal
                                  ├─> failed(retryable=True, reason)   the job goes back to the queue
                                  └─> failed(retryable=False, reason, sub_code)   terminal

``expired`` is recorded as skipped("expired"). Every transition appends to ``history`` (status, time,
reason, sub_code, attempt, hold_until) and is a conditional update, so two deliveries of the same job cannot
both get past :meth:`Ledger.claim`: the claim moves the entry to ``sending`` with a lease (``lease_owner``,
``lease_until``) and counts the attempt; only the holder of the lease can :meth:`Ledger.finish` it.

**The crash window.** Between Alipay's answer and :meth:`finish` there is nothing but parsing the answer
(no I/O): the gateway calls ``finish`` right after the HTTP call returns. If the process dies inside that
window (or while the call is in flight) the entry stays ``sending`` until its lease expires, and a
redelivery finds it there. We do not know whether Alipay delivered. Then:

- coupons (``alipay.marketing.activity.voucher.send``) carry ``out_biz_no`` derived from the ledger key,
  which Alipay deduplicates: the expired lease is claimed again and the call repeated with the same
  ``out_biz_no`` — at-least-once calls, exactly-once coupons;
- everything else has no idempotency key, so we choose **at most once**: :meth:`settle_unknown` ends the
  entry as ``failed(retryable=False, reason="outcome_unknown")`` and the message is never resent. (If the
  original process was only slow, not dead, its late ``finish`` still records the real outcome: ``finish``
  accepts ``failed(outcome_unknown)`` entries that still carry its lease.)

Timeouts, HTTP 5xx and code 20000 are *reported* outcomes, not crashes: they are retried with backoff as the
issue requires, which for non-idempotent methods can deliver twice if Alipay had in fact accepted the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from lifelink.domain.attribution import message_ref
from lifelink.domain.messages import OutboundJob

OUTCOME_UNKNOWN = "outcome_unknown"
_ser = TypeSerializer()
_de = TypeDeserializer()


class Status(StrEnum):
    planned = "planned"
    held = "held"
    sending = "sending"
    sent = "sent"
    capped = "capped"
    skipped = "skipped"
    failed = "failed"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def ledger_item_key(ledger_key: str) -> dict[str, Any]:
    """The state-table key of a ledger entry."""
    return {"pk": {"S": f"LEDGER#{ledger_key}"}, "sk": {"S": "LEDGER"}}


_key = ledger_item_key


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class LedgerEntry:
    ledger_key: str
    status: Status
    reason: str | None = None
    sub_code: str | None = None
    sub_msg: str | None = None  # Alipay's sub_msg beside sub_code, redacted and cut (lifelink.alipay.errors)
    retryable: bool | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    hold_until: datetime | None = None
    alipay_ref: str | None = None
    app_id: str | None = None
    channel: str | None = None
    campaign: str | None = None
    phase: str | None = None
    rule: str | None = None
    message_ref: str | None = None
    out_biz_no: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        if self.status in (Status.sent, Status.capped, Status.skipped):
            return True
        return self.status is Status.failed and not self.retryable

    @property
    def marker(self) -> str:
        """Names this outcome (status, attempt, reason): the outcome event's id is derived from it, so every copy of
        the event for one outcome has the same id."""
        return f"{self.status.value}#{self.attempts}#{self.reason or ''}"

    def lease_live(self, now: datetime) -> bool:
        return self.status is Status.sending and self.lease_until is not None and self.lease_until > now

    def to_public(self) -> dict[str, Any]:
        """State and history for the internal API (no lease internals)."""
        return {
            "ledger_key": self.ledger_key,
            "status": self.status.value,
            "reason": self.reason,
            "sub_code": self.sub_code,
            "sub_msg": self.sub_msg,
            "retryable": self.retryable,
            "attempts": self.attempts,
            "hold_until": _iso(self.hold_until) if self.hold_until else None,
            "app_id": self.app_id,
            "channel": self.channel,
            "campaign": self.campaign,
            "phase": self.phase,
            "rule": self.rule,
            "message_ref": self.message_ref,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "history": self.history,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LedgerEntry:
        v = {k: _de.deserialize(x) for k, x in item.items()}

        def when_ms(name: str) -> datetime | None:
            return datetime.fromtimestamp(int(v[name]) / 1000, UTC) if v.get(name) is not None else None

        return cls(
            ledger_key=str(v.get("ledger_key") or str(v["pk"]).removeprefix("LEDGER#")),
            status=Status(v.get("status", "planned")),
            reason=v.get("reason"),
            sub_code=v.get("sub_code"),
            sub_msg=v.get("sub_msg"),
            retryable=v.get("retryable"),
            attempts=int(v.get("attempts", 0)),
            lease_owner=v.get("lease_owner"),
            lease_until=when_ms("lease_until"),
            hold_until=when_ms("hold_until"),
            alipay_ref=v.get("alipay_ref"),
            app_id=v.get("app_id"),
            channel=v.get("channel"),
            campaign=v.get("campaign"),
            phase=v.get("phase"),
            rule=v.get("rule"),
            message_ref=v.get("message_ref"),
            out_biz_no=v.get("out_biz_no"),
            created_at=v.get("created_at"),
            updated_at=v.get("updated_at"),
            history=[{k: (int(x) if k == "attempt" else x) for k, x in h.items()} for h in v.get("history", [])],
        )


ClaimResult = str  # "claimed" | "done" | "busy" | "unknown"


@dataclass(frozen=True)
class Claim:
    result: ClaimResult  # claimed: go ahead; done: terminal already; busy: a live lease; unknown: see settle_unknown
    entry: LedgerEntry | None


_OPEN = "(attribute_not_exists(#st) OR #st IN (:planned, :held) OR (#st = :failed AND retryable = :true))"


class Ledger:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    # ---- reads -------------------------------------------------------------------------------------------
    def get(self, ledger_key: str) -> LedgerEntry | None:
        item = self._ddb.get_item(TableName=self._table, Key=_key(ledger_key), ConsistentRead=True).get("Item")
        return LedgerEntry.from_item(item) if item else None

    # ---- writes ------------------------------------------------------------------------------------------
    def _update(
        self,
        ledger_key: str,
        sets: dict[str, Any],
        condition: str,
        values: dict[str, Any],
        history: dict[str, Any],
        *,
        job: OutboundJob | None = None,
        removes: tuple[str, ...] = (),
        add_attempt: bool = False,
        new: bool = True,
    ) -> LedgerEntry | None:
        names = {"#st": "status", "#h": "history"}
        vals: dict[str, Any] = {f":{k}": _ser.serialize(v) for k, v in values.items()}
        parts: list[str] = []
        for i, (name, value) in enumerate(sets.items()):
            names[f"#s{i}"] = name
            vals[f":s{i}"] = _ser.serialize(value)
            parts.append(f"#s{i} = :s{i}")
        if job is not None and new:  # the job's fields, written once (an entry read before holds them already)
            static = {
                "ledger_key": job.ledger_key,
                "app_id": job.app_id,
                "channel": job.channel.value,
                "campaign": job.campaign,
                "phase": job.phase,
                "kind": job.kind,
                "message_ref": message_ref(job.ledger_key),
                "out_biz_no": job.out_biz_no,
                "not_after": _iso(job.not_after),
                "created_at": _iso(job.created_at),
            }
            if job.rule:
                static["rule"] = job.rule
            for i, (name, value) in enumerate(static.items()):
                names[f"#f{i}"] = name
                vals[f":f{i}"] = _ser.serialize(value)
                parts.append(f"#f{i} = if_not_exists(#f{i}, :f{i})")
        vals[":hist"] = _ser.serialize([{k: v for k, v in history.items() if v is not None}])
        vals[":nohist"] = {"L": []}
        parts.append("#h = list_append(if_not_exists(#h, :nohist), :hist)")
        expression = "SET " + ", ".join(parts)
        if add_attempt:
            expression += " ADD attempts :one"
            vals[":one"] = {"N": "1"}
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        try:
            got = self._ddb.update_item(
                TableName=self._table,
                Key=_key(ledger_key),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=vals,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return LedgerEntry.from_item(got["Attributes"])

    @staticmethod
    def _open_values() -> dict[str, Any]:
        return {"planned": "planned", "held": "held", "failed": "failed", "true": True}

    def hold(self, job: OutboundJob, until: datetime, reason: str, now: datetime) -> LedgerEntry | None:
        """planned | held | failed(retryable) -> held until ``until``; None when the entry is elsewhere."""
        return self._update(
            job.ledger_key,
            {"status": "held", "reason": reason, "hold_until": _ms(until), "updated_at": _iso(now)},
            _OPEN,
            self._open_values(),
            {"status": "held", "at": _iso(now), "reason": reason, "hold_until": _iso(until)},
            job=job,
            removes=("sub_code", "sub_msg", "retryable"),
        )

    def close(
        self, job: OutboundJob, status: Status, reason: str, now: datetime, *, sub_code: str | None = None
    ) -> LedgerEntry | None:
        """planned | held | failed(retryable) -> capped, skipped or failed(fatal) without an Alipay call."""
        if status not in (Status.capped, Status.skipped, Status.failed):
            raise ValueError("close() records capped, skipped or failed(fatal); use finish() after a send")
        sets: dict[str, Any] = {"status": status.value, "reason": reason, "updated_at": _iso(now)}
        removes = ["hold_until"]
        if status is Status.failed:
            sets["retryable"] = False
        else:
            removes.append("retryable")
        if sub_code:
            sets["sub_code"] = sub_code
        else:
            removes.append("sub_code")
        removes.append("sub_msg")
        return self._update(
            job.ledger_key,
            sets,
            _OPEN,
            self._open_values(),
            {"status": status.value, "at": _iso(now), "reason": reason, "sub_code": sub_code},
            job=job,
            removes=tuple(removes),
        )

    def claim(
        self, job: OutboundJob, owner: str, now: datetime, *, lease: timedelta, idempotent: bool, new: bool = True
    ) -> Claim:
        """Take the right to call Alipay for this job (``sending`` with a lease), counting the attempt.

        An expired ``sending`` lease is claimed again only for ``idempotent`` channels (coupons). ``new=False``
        (the caller read the entry a moment ago) leaves out the job's fields, which the entry holds already: a
        smaller request. Entries are never deleted, so a stale ``new=False`` cannot leave an entry without them."""
        values = {**self._open_values(), "sending": "sending", "now": _ms(now), "idem": True}
        condition = _OPEN[:-1] + " OR (#st = :sending AND lease_until < :now AND idempotent = :idem))"
        entry = self._update(
            job.ledger_key,
            {
                "status": "sending",
                "lease_owner": owner,
                "lease_until": _ms(now + lease),
                "idempotent": idempotent,
                "updated_at": _iso(now),
            },
            condition,
            values,
            {"status": "sending", "at": _iso(now), "owner": owner},
            job=job,
            removes=("reason", "sub_code", "sub_msg", "retryable", "hold_until"),
            add_attempt=True,
            new=new,
        )
        if entry is not None:
            return Claim("claimed", entry)
        current = self.get(job.ledger_key)
        if current is None:  # deleted under us: treat as busy and look again later
            return Claim("busy", None)
        if current.terminal:
            return Claim("done", current)
        if current.lease_live(now):
            return Claim("busy", current)
        if current.status is Status.sending:
            return Claim("unknown", current)
        return Claim("busy", current)

    def finish(
        self,
        ledger_key: str,
        owner: str,
        status: Status,
        now: datetime,
        *,
        reason: str | None = None,
        sub_code: str | None = None,
        sub_msg: str | None = None,
        retryable: bool | None = None,
        alipay_ref: str | None = None,
        attempt: int | None = None,
    ) -> LedgerEntry | None:
        """sending (our lease) -> sent | failed. None when the lease is no longer ours.

        ``sub_msg`` is kept as given: pass it through ``lifelink.alipay.errors.redact_sub_msg`` first."""
        if status not in (Status.sent, Status.failed):
            raise ValueError("finish() records sent or failed")
        sets: dict[str, Any] = {"status": status.value, "updated_at": _iso(now), "lease_until": 0}
        removes: list[str] = []
        named = (("reason", reason), ("sub_code", sub_code), ("sub_msg", sub_msg), ("alipay_ref", alipay_ref))
        for name, value in named:
            if value is None:
                removes.append(name)
            else:
                sets[name] = value
        if status is Status.failed:
            sets["retryable"] = bool(retryable)
        else:
            removes.append("retryable")
        return self._update(
            ledger_key,
            sets,
            "lease_owner = :owner AND (#st = :sending OR (#st = :failed AND reason = :unknown))",
            {"owner": owner, "sending": "sending", "failed": "failed", "unknown": OUTCOME_UNKNOWN},
            {
                "status": status.value,
                "at": _iso(now),
                "reason": reason,
                "sub_code": sub_code,
                "sub_msg": sub_msg,
                "retryable": retryable if status is Status.failed else None,
                "attempt": attempt,
            },
            removes=tuple(removes),
        )

    def release(self, ledger_key: str, owner: str, now: datetime, reason: str) -> LedgerEntry | None:
        """Give up a claim before calling Alipay (rate limit wait ran out, a cap was taken meanwhile)."""
        return self._update(
            ledger_key,
            {"status": "planned", "reason": reason, "updated_at": _iso(now), "lease_until": 0},
            "#st = :sending AND lease_owner = :owner",
            {"sending": "sending", "owner": owner},
            {"status": "planned", "at": _iso(now), "reason": reason},
        )

    def settle_unknown(self, ledger_key: str, now: datetime) -> LedgerEntry | None:
        """sending with an expired lease (a crash mid-send, no idempotency key) -> failed(fatal, outcome_unknown)."""
        return self._update(
            ledger_key,
            {"status": "failed", "reason": OUTCOME_UNKNOWN, "retryable": False, "updated_at": _iso(now)},
            "#st = :sending AND lease_until < :now",
            {"sending": "sending", "now": _ms(now)},
            {"status": "failed", "at": _iso(now), "reason": OUTCOME_UNKNOWN, "retryable": False},
        )
