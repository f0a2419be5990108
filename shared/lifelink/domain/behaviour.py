"""Behaviour events from the mini program's backend (``POST /events``): their fields, bounds and identity.

The event classes themselves (``SessionStartEvent`` … ``OrderPlacedEvent``) are declared in
:mod:`lifelink.domain.events` on the common event base, from the field sets here, and belong to its
``DomainEvent`` union: the metrics consumer reads them with ``parse_event`` like every other event. This
module imports nothing from ``events`` (``events`` imports it), so either can be imported first.

Identity: a caller may send ``event_id``; when it does not, :func:`derive_event_id` makes one from the app, the
user key, the type, the event time (as an instant, in UTC) and the type's own fields, so a retried POST yields
the same ids and the consumer's exactly-once counting drops the repeat.

Attribution: ``session_start`` carries the raw attribution token of its launch query (``ll``) in
``attribution_token``. It is *not* verified here: verifying needs the HMAC key (a secret the ingest route has no
access to); the aggregator verifies it (:func:`lifelink.domain.attribution.verify_token`) and ignores a token that
does not verify.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from lifelink.domain.attribution import token_from_query

BEHAVIOUR_TYPES = (
    "session_start",
    "page_view",
    "article_open",
    "article_progress",
    "like",
    "comment",
    "share",
    "favourite",
    "product_view",
    "order_placed",
)
INTERACTION_TYPES = ("like", "comment", "share", "favourite")

MAX_SECONDS = 24 * 3600.0  # foreground and dwell times: one day at most
MAX_AMOUNT_CENTS = 10_000_000_000  # 100,000,000.00 yuan: Alipay's largest single trade
MAX_QUERY_KEYS = 32
MAX_TOKEN_LENGTH = 512  # what lifelink.domain.attribution.verify_token accepts
MAX_USER_ID_LENGTH = 64
MAX_OPEN_ID_LENGTH = 128
READ_COMPLETE_DEPTH = 0.95  # a read is complete at depth >= 0.95 and dwell >= 10 s (BRIEF §4)
READ_COMPLETE_DWELL_S = 10.0

# Arrival rules (applied by the ingest route, not by the models: replays and tests may build older events).
MAX_CLOCK_SKEW = timedelta(minutes=10)  # occurred_at may be at most this far after arrival
MAX_LATENESS = timedelta(days=7)  # ... and at most this far before it

# Fields every event has; the rest of an event's fields are "its type's fields" (they go into derived ids).
COMMON_FIELDS = frozenset(
    {"schema_version", "event_id", "type", "app_id", "source", "occurred_at", "received_at", "user"}
)

_PRINTABLE = r"^[^\s\x00-\x1f\x7f]+$"  # no whitespace, no control characters
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
ItemRef = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_PRINTABLE)]
Category = Annotated[
    str, StringConstraints(min_length=1, max_length=32, strip_whitespace=True, pattern=r"^[^\x00-\x1f\x7f]+$")
]
PagePath = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_./-]+$")]
Scene = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
QueryKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
QueryValue = Annotated[str, StringConstraints(max_length=1024)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_LENGTH, pattern=_PRINTABLE)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
Cents = Annotated[int, Field(ge=0, le=MAX_AMOUNT_CENTS, strict=True)]
OutTradeNo = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def derive_event_id(app_id: str, user_key: str, type_: str, occurred_at: datetime, fields: dict[str, Any]) -> str:
    """32 hex characters of SHA-256 over the app, user key, type, event instant (UTC) and the type's fields."""
    material = [app_id, user_key, type_, occurred_at.astimezone(UTC).isoformat(), fields]
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def timing_error(occurred_at: datetime, received_at: datetime) -> str | None:
    """Why an event that occurred at ``occurred_at`` cannot be accepted at ``received_at`` (None: it can)."""
    if occurred_at > received_at + MAX_CLOCK_SKEW:
        return f"occurred_at is in the future (more than {int(MAX_CLOCK_SKEW.total_seconds() // 60)} min ahead)"
    if occurred_at < received_at - MAX_LATENESS:
        return f"occurred_at is more than {MAX_LATENESS.days} days old"
    return None


def is_read_complete(depth: float, dwell_s: float) -> bool:
    return depth >= READ_COMPLETE_DEPTH and dwell_s >= READ_COMPLETE_DWELL_S


class _Deferred(BaseModel):
    """Schemas are built on first use: the webhook imports the events module but never builds these events."""

    model_config = ConfigDict(defer_build=True)


class BehaviourRules(_Deferred):
    """Rules every behaviour event follows (mixed into the event base in :mod:`lifelink.domain.events`):
    aware datetimes, a user with a bounded id, and a derived ``event_id`` when none was given."""

    @field_validator("occurred_at", "received_at", check_fields=False)
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a timezone (e.g. 2025-01-01T08:00:00+08:00)")
        if value.year < 2000:
            raise ValueError("is before the year 2000")
        return value

    @field_validator("user", check_fields=False)
    @classmethod
    def _bounded_user(cls, value: Any) -> Any:
        user_id, open_id = getattr(value, "user_id", None), getattr(value, "open_id", None)
        if not user_id and not open_id:
            raise ValueError("give user.open_id or user.user_id")
        for name, found, limit in (("user_id", user_id, MAX_USER_ID_LENGTH), ("open_id", open_id, MAX_OPEN_ID_LENGTH)):
            if found is not None and (not found or len(found) > limit or any(c.isspace() for c in found)):
                raise ValueError(f"user.{name} must be 1 to {limit} characters without spaces")
        return value

    @model_validator(mode="after")
    def _identity(self) -> BehaviourRules:
        if not getattr(self, "event_id", ""):
            fields = self.model_dump(mode="json", exclude=set(COMMON_FIELDS))
            derived = derive_event_id(
                self.app_id,  # type: ignore[attr-defined]
                self.user.key,  # type: ignore[attr-defined]
                self.type,  # type: ignore[attr-defined]
                self.occurred_at,  # type: ignore[attr-defined]
                fields,
            )
            object.__setattr__(self, "event_id", derived)  # frozen model: set once, during validation
        return self


# ---- the type's own fields ------------------------------------------------------------------------------------


class SessionStartFields(_Deferred):
    """The mini program was launched (``my.getLaunchOptionsSync()``): scene, entry page and launch query.
    ``attribution_token`` defaults to the query's ``ll`` (raw, unverified; see the module's notes)."""

    scene: Scene
    page: PagePath | None = None
    query: dict[QueryKey, QueryValue] = Field(default_factory=dict, max_length=MAX_QUERY_KEYS)
    attribution_token: Token | None = None

    @model_validator(mode="before")
    @classmethod
    def _token_from_query(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("attribution_token") is None and isinstance(data.get("query"), dict):
            token = token_from_query(data["query"])
            if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_LENGTH and not any(c.isspace() for c in token):
                data = {**data, "attribution_token": token}
        return data

    @field_validator("page", mode="before")
    @classmethod
    def _relative_page(cls, value: Any) -> Any:
        return value.lstrip("/") if isinstance(value, str) else value


class PageViewFields(_Deferred):
    """A page was shown for ``foreground_s`` seconds (summed over its foreground spells)."""

    page: PagePath
    foreground_s: Seconds

    @field_validator("page", mode="before")
    @classmethod
    def _relative_page(cls, value: Any) -> Any:
        return value.lstrip("/") if isinstance(value, str) else value


class ArticleOpenFields(_Deferred):
    article_id: ItemRef
    category: Category | None = None


class ArticleProgressFields(_Deferred):
    """How far the reader got (``depth`` 0..1 of the article) after ``dwell_s`` seconds on it. A read is complete
    at depth >= 0.95 with dwell >= 10 s (:func:`is_read_complete`)."""

    article_id: ItemRef
    depth: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    dwell_s: Seconds
    category: Category | None = None


class InteractionFields(_Deferred):
    """like, comment, share, favourite: of an article or a product (at least one of the two)."""

    article_id: ItemRef | None = None
    product_id: ItemRef | None = None
    category: Category | None = None

    @model_validator(mode="after")
    def _has_target(self) -> InteractionFields:
        if self.article_id is None and self.product_id is None:
            raise ValueError("give article_id or product_id (what was liked, commented, shared or favourited)")
        return self


class ProductViewFields(_Deferred):
    product_id: ItemRef
    price_cents: Cents | None = None


class OrderPlacedFields(_Deferred):
    """An order was placed (not yet paid: payment arrives from Alipay's trade notification as order_paid)."""

    out_trade_no: OutTradeNo
    amount_cents: Cents
    coupon_used: bool = False
