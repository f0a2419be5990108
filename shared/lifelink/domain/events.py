"""Versioned domain events: what the webhook (and later the ingest API) puts on the `events` queue.

Every event is a frozen pydantic model with ``schema_version``; consumers dispatch on ``type`` through
:data:`DomainEvent` (a discriminated union). Raw user ids stay in events because downstream needs them;
they never go to logs (see :mod:`lifelink.privacy`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from lifelink.domain.behaviour import (
    ArticleOpenFields,
    ArticleProgressFields,
    BehaviourRules,
    EventId,
    InteractionFields,
    OrderPlacedFields,
    PageViewFields,
    ProductViewFields,
    SessionStartFields,
)

SCHEMA_VERSION = 1

Source = Literal["life_gateway", "trade_notify", "message_service", "ingest", "message_gateway"]


class UserRef(BaseModel):
    """A user as Alipay named them: the 2088… ``user_id`` (older apps) and/or the per-app ``open_id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    user_id: str | None = None
    open_id: str | None = None

    @property
    def key(self) -> str | None:
        return self.open_id or self.user_id


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    app_id: str
    source: Source
    occurred_at: datetime
    received_at: datetime
    user: UserRef | None = None


class FollowEvent(_Event):
    type: Literal["follow"] = "follow"
    scene_id: str | None = None
    action_param: str | None = None


class UnfollowEvent(_Event):
    type: Literal["unfollow"] = "unfollow"


class EnterEvent(_Event):
    type: Literal["enter"] = "enter"
    scene_id: str | None = None
    action_param: str | None = None


class MenuClickEvent(_Event):
    type: Literal["menu_click"] = "menu_click"
    menu_key: str | None = None


class UserMessageEvent(_Event):
    type: Literal["user_message"] = "user_message"
    msg_type: str
    msg_id: str | None = None
    text: str | None = None
    media_id: str | None = None


class GatewayCheckEvent(_Event):
    type: Literal["gateway_check"] = "gateway_check"


class _TradeEvent(_Event):
    out_trade_no: str
    trade_no: str | None = None
    trade_status: str
    total_amount: Decimal
    refund_fee: Decimal | None = None
    seller_id: str | None = None
    notify_id: str
    passback_params: str | None = None


class OrderPaidEvent(_TradeEvent):
    """TRADE_SUCCESS or TRADE_FINISHED. A partial refund arrives as another notification with refund_fee."""

    type: Literal["order_paid"] = "order_paid"


class OrderClosedEvent(_TradeEvent):
    """TRADE_CLOSED: unpaid and timed out, or fully refunded."""

    type: Literal["order_closed"] = "order_closed"


class OrderPendingEvent(_TradeEvent):
    """WAIT_BUYER_PAY: created, not paid."""

    type: Literal["order_pending"] = "order_pending"


class MessagePushEvent(_Event):
    """A message-service push (vouchers, cards, funds): ``msg_method`` and its decoded ``biz_content``."""

    type: Literal["message_push"] = "message_push"
    msg_method: str
    notify_id: str | None = None
    biz: dict[str, Any] = Field(default_factory=dict)


class UnknownEvent(_Event):
    """Verified, acknowledged, recorded, otherwise ignored."""

    type: Literal["unknown"] = "unknown"
    family: str
    kind: str
    fields: dict[str, str] = Field(default_factory=dict)


OutcomeStatus = Literal["sent", "held", "capped", "skipped", "failed"]


class MessageOutcomeEvent(_Event):
    """What the message gateway did with one job (source ``message_gateway``): every send, hold, cap, skip
    and failure, with a stable ``reason``. ``event_id`` is derived from the ledger key, status and attempt, so
    a re-published outcome has the same id."""

    type: Literal["message_outcome"] = "message_outcome"
    ledger_key: str
    channel: str
    status: OutcomeStatus
    reason: str | None = None
    sub_code: str | None = None
    sub_msg: str | None = None  # Alipay's sub_msg, redacted and cut (lifelink.alipay.errors.redact_sub_msg)
    retryable: bool | None = None  # failed only: True when the job goes back to the queue
    attempts: int = 0
    hold_until: datetime | None = None  # held only
    campaign: str = "-"
    phase: str = "-"
    rule: str | None = None
    message_ref: str


# ---- behaviour events (POST /events; fields, bounds and identity in lifelink.domain.behaviour) -------------


class _BehaviourEvent(BehaviourRules, _Event):
    """From the mini program's backend (source ``ingest``): a user is required, datetimes carry a zone, and
    ``event_id`` is derived from the event's content when the caller sends none."""

    event_id: EventId = ""  # filled during validation (lifelink.domain.behaviour.derive_event_id)
    source: Source = "ingest"
    occurred_at: AwareDatetime
    received_at: AwareDatetime
    user: UserRef


class SessionStartEvent(_BehaviourEvent, SessionStartFields):
    type: Literal["session_start"] = "session_start"


class PageViewEvent(_BehaviourEvent, PageViewFields):
    type: Literal["page_view"] = "page_view"


class ArticleOpenEvent(_BehaviourEvent, ArticleOpenFields):
    type: Literal["article_open"] = "article_open"


class ArticleProgressEvent(_BehaviourEvent, ArticleProgressFields):
    type: Literal["article_progress"] = "article_progress"


class LikeEvent(_BehaviourEvent, InteractionFields):
    type: Literal["like"] = "like"


class CommentEvent(_BehaviourEvent, InteractionFields):
    type: Literal["comment"] = "comment"


class ShareEvent(_BehaviourEvent, InteractionFields):
    type: Literal["share"] = "share"


class FavouriteEvent(_BehaviourEvent, InteractionFields):
    type: Literal["favourite"] = "favourite"


class ProductViewEvent(_BehaviourEvent, ProductViewFields):
    type: Literal["product_view"] = "product_view"


class OrderPlacedEvent(_BehaviourEvent, OrderPlacedFields):
    type: Literal["order_placed"] = "order_placed"


_BEHAVIOUR_CLASSES = (
    SessionStartEvent
    | PageViewEvent
    | ArticleOpenEvent
    | ArticleProgressEvent
    | LikeEvent
    | CommentEvent
    | ShareEvent
    | FavouriteEvent
    | ProductViewEvent
    | OrderPlacedEvent
)
BehaviourEvent = Annotated[_BEHAVIOUR_CLASSES, Field(discriminator="type")]
"""What ``POST /events`` accepts (a subset of :data:`DomainEvent`)."""


DomainEvent = Annotated[
    FollowEvent
    | UnfollowEvent
    | EnterEvent
    | MenuClickEvent
    | UserMessageEvent
    | GatewayCheckEvent
    | OrderPaidEvent
    | OrderClosedEvent
    | OrderPendingEvent
    | MessagePushEvent
    | MessageOutcomeEvent
    | UnknownEvent
    | SessionStartEvent
    | PageViewEvent
    | ArticleOpenEvent
    | ArticleProgressEvent
    | LikeEvent
    | CommentEvent
    | ShareEvent
    | FavouriteEvent
    | ProductViewEvent
    | OrderPlacedEvent,
    Field(discriminator="type"),
]


@cache
def _adapter() -> TypeAdapter[DomainEvent]:
    """Built on first use: producers (the webhook) never parse events, so they skip this at cold start."""
    return TypeAdapter(DomainEvent)


def parse_event(data: str | bytes | dict[str, Any]) -> DomainEvent:
    """Parse a queue message body (JSON text or dict) into its event model."""
    if isinstance(data, dict):
        return _adapter().validate_python(data)
    return _adapter().validate_json(data)
