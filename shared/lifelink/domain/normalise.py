"""Verified Alipay callbacks → domain events. Only ever called after the signature holds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from lifelink.domain.events import (
    DomainEvent,
    EnterEvent,
    FollowEvent,
    GatewayCheckEvent,
    MenuClickEvent,
    MessagePushEvent,
    OrderClosedEvent,
    OrderPaidEvent,
    OrderPendingEvent,
    UnfollowEvent,
    UnknownEvent,
    UserMessageEvent,
    UserRef,
)

if TYPE_CHECKING:
    from lifelink.alipay.lifegateway import GatewayMessage

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})


class NormaliseError(ValueError):
    """A verified callback that lacks what its kind requires (answered as a refusal, nothing written)."""


def event_id_for(app_id: str, dedupe_key: str) -> str:
    """Deterministic: the same delivery always yields the same event id, so consumers can dedupe too."""
    return hashlib.sha256(f"{app_id}\x1f{dedupe_key}".encode()).hexdigest()[:32]


def beijing_time(text: str | None) -> datetime | None:
    """Alipay's ``yyyy-MM-dd HH:mm:ss`` (Beijing time) → an aware datetime."""
    if not text:
        return None
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        return None


def epoch_ms(value: int | str | None) -> datetime | None:
    try:
        ms = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not 0 < ms < 4_102_444_800_000:  # before 2100
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)


def _user(user_id: str | None, open_id: str | None) -> UserRef | None:
    user_id, open_id = user_id or None, open_id or None
    return UserRef(user_id=user_id, open_id=open_id) if (user_id or open_id) else None


def from_gateway(
    app_id: str, msg: GatewayMessage, *, event_id: str, received_at: datetime
) -> DomainEvent:
    """A life-account gateway message. ``FromAlipayUserId`` is the 2088… id; ``FromUserId`` the legacy one."""
    base: dict[str, Any] = {
        "event_id": event_id,
        "app_id": app_id,
        "source": "life_gateway",
        "occurred_at": epoch_ms(msg.create_time_ms) or received_at,
        "received_at": received_at,
    }
    user = _user(msg.from_alipay_user_id or msg.from_user_id, None)
    kind = msg.kind
    if kind == "gateway_check":
        return GatewayCheckEvent(**base)
    if kind == "follow":
        return FollowEvent(**base, user=user, scene_id=msg.scene_id, action_param=msg.action_param)
    if kind == "unfollow":
        return UnfollowEvent(**base, user=user)
    if kind == "enter":
        return EnterEvent(**base, user=user, scene_id=msg.scene_id, action_param=msg.action_param)
    if kind == "menu_click":
        return MenuClickEvent(**base, user=user, menu_key=msg.action_param)
    if kind in ("text", "image"):
        return UserMessageEvent(
            **base, user=user, msg_type=kind, msg_id=msg.msg_id, text=msg.text, media_id=msg.media_id
        )
    return UnknownEvent(
        **base,
        user=user,
        family="gateway",
        kind=f"{msg.msg_type or '-'}/{msg.event_type or '-'}",
        fields={k: v for k, v in msg.fields.items() if k in ("MsgType", "EventType", "MsgId", "CreateTime")},
    )


def _amount(params: Mapping[str, str], name: str, *, required: bool) -> Decimal | None:
    text = params.get(name)
    if not text:
        if required:
            raise NormaliseError(f"{name} is missing")
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise NormaliseError(f"{name} is not an amount: {text!r}") from None
    if not value.is_finite() or value < 0 or value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise NormaliseError(f"{name} is not an amount in yuan with at most two decimals: {text!r}")
    return value


def from_trade(
    app_id: str, params: Mapping[str, str], *, event_id: str, received_at: datetime
) -> DomainEvent:
    """An async trade notification (``notify_type=trade_status_sync``)."""
    status = params.get("trade_status", "")
    out_trade_no = params.get("out_trade_no", "")
    notify_id = params.get("notify_id", "")
    if not out_trade_no:
        raise NormaliseError("out_trade_no is missing")
    if not notify_id:
        raise NormaliseError("notify_id is missing")
    fields: dict[str, Any] = {
        "event_id": event_id,
        "app_id": app_id,
        "source": "trade_notify",
        "received_at": received_at,
        "user": _user(params.get("buyer_id"), params.get("buyer_open_id")),
        "out_trade_no": out_trade_no,
        "trade_no": params.get("trade_no") or None,
        "trade_status": status,
        "total_amount": _amount(params, "total_amount", required=True),
        "refund_fee": _amount(params, "refund_fee", required=False),
        "seller_id": params.get("seller_id") or None,
        "notify_id": notify_id,
        "passback_params": params.get("passback_params") or None,
    }
    if status in PAID_STATUSES:
        occurred = beijing_time(params.get("gmt_refund")) if fields["refund_fee"] else None
        occurred = occurred or beijing_time(params.get("gmt_payment"))
        return OrderPaidEvent(occurred_at=occurred or beijing_time(params.get("notify_time")) or received_at,
                              **fields)
    if status == "TRADE_CLOSED":
        occurred = beijing_time(params.get("gmt_close")) or beijing_time(params.get("notify_time"))
        return OrderClosedEvent(occurred_at=occurred or received_at, **fields)
    if status == "WAIT_BUYER_PAY":
        occurred = beijing_time(params.get("gmt_create")) or beijing_time(params.get("notify_time"))
        return OrderPendingEvent(occurred_at=occurred or received_at, **fields)
    raise NormaliseError(f"unknown trade_status {status!r}")


def from_notify(
    app_id: str, params: Mapping[str, str], *, event_id: str, received_at: datetime, family: str = "trade"
) -> DomainEvent:
    """Any notify_url callback: trades become order events, other notify types are recorded as unknown."""
    if params.get("notify_type") == "trade_status_sync" or "trade_status" in params:
        return from_trade(app_id, params, event_id=event_id, received_at=received_at)
    occurred = beijing_time(params.get("notify_time")) or received_at
    return UnknownEvent(
        event_id=event_id,
        app_id=app_id,
        source="trade_notify",
        occurred_at=occurred,
        received_at=received_at,
        family=family,
        kind=params.get("notify_type") or params.get("method") or "-",
        fields={k: params[k] for k in ("notify_type", "notify_id", "method") if k in params},
    )


def from_message(
    app_id: str, params: Mapping[str, str], *, event_id: str, received_at: datetime
) -> DomainEvent:
    """A message-service push: ``msg_method`` names it; ``biz_content`` is JSON."""
    text = params.get("biz_content") or "{}"
    try:
        biz = json.loads(text)
    except json.JSONDecodeError:
        raise NormaliseError("biz_content is not JSON") from None
    if not isinstance(biz, dict):
        raise NormaliseError("biz_content is not a JSON object")
    occurred = epoch_ms(params.get("utc_timestamp")) or received_at
    user = _user(
        str(biz.get("user_id") or "") or None, str(biz.get("open_id") or biz.get("user_open_id") or "") or None
    )
    return MessagePushEvent(
        event_id=event_id,
        app_id=app_id,
        source="message_service",
        occurred_at=occurred,
        received_at=received_at,
        user=user,
        msg_method=params.get("msg_method", ""),
        notify_id=params.get("notify_id") or None,
        biz=biz,
    )
