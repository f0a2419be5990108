"""The webhook's domain logic: every Alipay callback is verified before anything else, then
de-duplicated, normalised into a domain event, queued, and answered in Alipay's exact format.

Refusals never write anything: the body is bounded first, decoded once, the app looked up, the signature
checked, and only then is any field trusted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from lifelink.alipay.callbacks import (
    CallbackFamily,
    detect_family,
    parse_form,
    signed_content,
    verify_callback,
)
from lifelink.alipay.errors import CallbackFormatError, KeyFormatError, KeyMismatchError, SignatureError
from lifelink.alipay.keys import AppKeys
from lifelink.alipay.lifegateway import ack_reply, check_reply, parse_gateway_xml
from lifelink.domain.events import DomainEvent
from lifelink.domain.normalise import NormaliseError, event_id_for, from_gateway, from_message, from_notify
from lifelink.privacy import hash_id
from lifelink.store.apps import AppRecord
from lifelink.store.dedupe import DeliveryInProgress

MAX_BODY_BYTES = 64 * 1024
GATEWAY_CHECK_SERVICE = "alipay.service.check"
LIFE_ACCOUNT_SERVICE = "alipay.mobile.public.message.notify"


@dataclass(frozen=True)
class Reply:
    """What goes back over HTTP, plus a short ``outcome`` for logs and the local stack's narration."""

    status: int
    body: bytes
    content_type: str
    outcome: str
    event: DomainEvent | None = None


class Registry(Protocol):
    def get(self, app_id: str) -> AppRecord | None: ...


class Keyring(Protocol):
    def keys(self, secret_name: str) -> AppKeys: ...


class Publisher(Protocol):
    def publish(self, event: DomainEvent) -> str: ...  # type: ignore[override]


class Once(Protocol):
    def once(self, key: str, action: Callable[[], str]) -> bool: ...


def _text(status: int, text: str, outcome: str, event: DomainEvent | None = None) -> Reply:
    return Reply(status, text.encode(), "text/plain; charset=utf-8", outcome, event)


def _refuse(status: int, reason: str) -> Reply:
    """Anything but ``success`` tells Alipay the delivery failed; the reason is for humans reading logs."""
    return _text(status, f"fail: {reason}", f"refused: {reason}")


def _xml(document: bytes, charset: str, outcome: str, event: DomainEvent | None = None) -> Reply:
    return Reply(200, document, f"text/xml; charset={charset}", outcome, event)


class WebhookService:
    def __init__(
        self,
        registry: Registry,
        keyring: Keyring,
        publisher: Publisher,
        deduper: Once,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        logger: logging.Logger | logging.LoggerAdapter | None = None,  # type: ignore[type-arg]
    ) -> None:
        self._registry = registry
        self._keyring = keyring
        self._publisher = publisher
        self._deduper = deduper
        self._clock = clock
        self._log = logger or logging.getLogger("lifelink.webhook")

    # --- entry -------------------------------------------------------------------------------------
    def handle(self, body: bytes, content_type: str | None) -> Reply:
        reply = self._handle(body, content_type)
        event = reply.event
        self._log.info(
            "callback %s",
            reply.outcome,
            extra={
                "outcome": reply.outcome,
                "status": reply.status,
                "event_type": getattr(event, "type", None),
                "event_id": getattr(event, "event_id", None),
                "app_id": getattr(event, "app_id", None),
                "user": hash_id(event.user.key) if event is not None and event.user else None,
            },
        )
        return reply

    def _handle(self, body: bytes, content_type: str | None) -> Reply:
        if len(body) > MAX_BODY_BYTES:
            return _refuse(413, f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
        if not body:
            return _refuse(400, "empty body")
        try:
            params, charset = parse_form(body, content_type)
            family = detect_family(params)
        except CallbackFormatError as exc:
            return _refuse(400, str(exc))
        if family is CallbackFamily.GATEWAY and params.get("service") in (
            GATEWAY_CHECK_SERVICE,
            LIFE_ACCOUNT_SERVICE,
        ):
            return self._life_account(params, charset)
        return self._notification(family, params, charset)

    # --- helpers -----------------------------------------------------------------------------------
    def _app(self, app_id: str | None) -> tuple[AppRecord, AppKeys] | Reply:
        record = self._registry.get(app_id) if app_id else None
        if record is None:
            return _refuse(403, "unknown app_id" if app_id else "no app_id")
        try:
            keys = self._keyring.keys(record.secret_name)
        except (KeyFormatError, KeyMismatchError) as exc:
            # Our configuration is wrong, not the caller: a 500 makes Alipay retry once it is fixed.
            self._log.error("app keys unusable", extra={"app_id": record.app_id, "error": str(exc)})
            return _refuse(500, "this app's keys are misconfigured")
        return record, keys

    def _once(self, app_id: str, dedupe_key: str, event: DomainEvent) -> bool:
        return self._deduper.once(f"{app_id}#{dedupe_key}", lambda: self._publisher.publish(event))

    @staticmethod
    def _content_hash(params: Mapping[str, str], family: CallbackFamily) -> str:
        return "sha256:" + hashlib.sha256(signed_content(params, family).encode("utf-8")).hexdigest()

    # --- life-account application gateway ----------------------------------------------------------
    def _life_account(self, params: dict[str, str], charset: str) -> Reply:
        biz = params.get("biz_content")
        if not biz:
            return _refuse(400, "biz_content is missing")
        try:
            msg = parse_gateway_xml(biz)
        except CallbackFormatError as exc:
            return _refuse(400, str(exc))
        found = self._app(params.get("app_id") or msg.app_id)
        if isinstance(found, Reply):
            return found
        record, keys = found
        is_check = params.get("service") == GATEWAY_CHECK_SERVICE or msg.kind == "gateway_check"
        try:
            verify_callback(params, charset, keys.alipay_public_key)
        except SignatureError as exc:
            if is_check:
                doc = check_reply(keys.app_private_key, keys.app_public_key_one_line, False, charset=charset)
                return _xml(doc, charset, f"refused: gateway check signature ({exc})")
            return _refuse(403, f"signature does not verify ({exc})")
        if msg.app_id and msg.app_id != record.app_id:
            return _refuse(400, "AppId in biz_content does not match app_id")
        now = self._clock()
        dedupe_key = f"msg:{msg.msg_id}" if msg.msg_id else self._content_hash(params, CallbackFamily.GATEWAY)
        event = from_gateway(
            record.app_id, msg, event_id=event_id_for(record.app_id, dedupe_key), received_at=now
        )
        try:
            fresh = self._once(record.app_id, dedupe_key, event)
        except DeliveryInProgress:
            return _refuse(503, "the same message is being processed")
        outcome = "accepted" if fresh else "duplicate"
        if is_check:
            doc = check_reply(keys.app_private_key, keys.app_public_key_one_line, True, charset=charset)
            return _xml(doc, charset, f"{outcome}: gateway check passed", event)
        to_user = msg.from_alipay_user_id or msg.from_user_id or ""
        doc = ack_reply(keys.app_private_key, to_user, record.app_id, int(now.timestamp() * 1000), charset=charset)
        return _xml(doc, charset, f"{outcome}: {event.type}", event)

    # --- notify_url callbacks and message-service pushes -------------------------------------------
    def _notification(self, family: CallbackFamily, params: dict[str, str], charset: str) -> Reply:
        found = self._app(params.get("app_id") or params.get("msg_app_id"))
        if isinstance(found, Reply):
            return found
        record, keys = found
        try:
            verify_callback(params, charset, keys.alipay_public_key)
        except SignatureError as exc:
            return _refuse(403, f"signature does not verify ({exc})")
        if family is CallbackFamily.TRADE and record.seller_id and params.get("seller_id") != record.seller_id:
            self._log.error("trade notification for another seller", extra={"app_id": record.app_id})
            return _refuse(400, "seller_id does not match this app's seller")
        notify_id = params.get("notify_id")
        dedupe_key = f"notify:{notify_id}" if notify_id else self._content_hash(params, family)
        event_id = event_id_for(record.app_id, dedupe_key)
        now = self._clock()
        try:
            if family is CallbackFamily.MESSAGE:
                event = from_message(record.app_id, params, event_id=event_id, received_at=now)
            else:
                event = from_notify(
                    record.app_id, params, event_id=event_id, received_at=now, family=family.value
                )
        except NormaliseError as exc:
            return _refuse(400, str(exc))
        try:
            fresh = self._once(record.app_id, dedupe_key, event)
        except DeliveryInProgress:
            return _refuse(503, "the same notification is being processed")
        return _text(200, "success", f"{'accepted' if fresh else 'duplicate'}: {event.type}", event)
