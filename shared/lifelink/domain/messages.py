"""Outbound message jobs: what goes on the ``outbound`` queue, validated before anything is sent.

A job names its app, channel, recipient and per-channel content, plus the campaign and phase it belongs to.
Its **ledger key** ``app|campaign|phase|user|channel`` (user = open_id or user_id, ``*`` for a broadcast,
``label:<id>`` for a label send) identifies the send in the ledger, so a redelivered job is recognised;
``out_biz_no`` (Alipay's idempotency key for coupons) is derived from it.

Content limits enforced here are Alipay's documented ones (mini-program subscription data values ≤ 50
characters) plus required fields per channel, so a bad job fails at enqueue time (422) or, at the latest,
as a poison message in the gateway — never as an Alipay 40002.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

JOB_VERSION = 1
MINI_DATA_VALUE_MAX = 50

Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^|\s]+$")]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")]
Link = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class Channel(StrEnum):
    life_template = "life_template"
    life_custom = "life_custom"
    life_broadcast = "life_broadcast"
    life_label = "life_label"
    mini_subscription = "mini_subscription"
    coupon = "coupon"
    member_card = "member_card"


LIFE_CHANNELS = frozenset({Channel.life_template, Channel.life_custom, Channel.life_broadcast, Channel.life_label})
GROUP_CHANNELS = frozenset({Channel.life_broadcast, Channel.life_label})


class InvalidJob(ValueError):
    """A queue body that is not a valid job: a poison message (never retried)."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Recipient(_Model):
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    open_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    label_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    @property
    def key(self) -> str | None:
        return self.open_id or self.user_id


# ---- per-channel content -------------------------------------------------------------------------------


class TemplateField(_Model):
    value: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    color: Color | None = None


class LifeTemplateContent(_Model):
    """``alipay.open.public.message.single.send``: a template message to one follower."""

    type: Literal["life_template"] = "life_template"
    template_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    head_color: Color = "#000000"
    url: Link | None = None
    action_name: Annotated[str, StringConstraints(min_length=1, max_length=20)] | None = None
    first: TemplateField | None = None
    keywords: list[TemplateField] = Field(min_length=1, max_length=10)
    remark: TemplateField | None = None

    @model_validator(mode="after")
    def _action_needs_url(self) -> LifeTemplateContent:
        if self.action_name and not self.url:
            raise ValueError("action_name needs a url")
        return self


class TextBody(_Model):
    title: Annotated[str, StringConstraints(max_length=64)] | None = None
    content: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class Article(_Model):
    title: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    desc: Annotated[str, StringConstraints(max_length=512)] | None = None
    image_url: Link | None = None
    url: Link
    action_name: Annotated[str, StringConstraints(min_length=1, max_length=20)] | None = None


class _Material(_Model):
    msg_type: Literal["text", "image-text"]
    text: TextBody | None = None
    articles: list[Article] | None = Field(default=None, min_length=1, max_length=8)

    @model_validator(mode="after")
    def _body_matches_type(self) -> _Material:
        if self.msg_type == "text" and (self.text is None or self.articles):
            raise ValueError("msg_type text needs text and no articles")
        if self.msg_type == "image-text" and (not self.articles or self.text is not None):
            raise ValueError("msg_type image-text needs articles and no text")
        return self


class LifeCustomContent(_Material):
    """``alipay.open.public.message.custom.send``: a reply within 48 h of the user's last interaction."""

    type: Literal["life_custom"] = "life_custom"
    event_type: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None


class LifeGroupContent(_Material):
    """``total.send`` (every follower) and ``label.send`` (a label's members)."""

    type: Literal["life_broadcast", "life_label"] = "life_broadcast"


class MiniSubscriptionContent(_Model):
    """``alipay.open.app.mini.templatemessage.send``: only to users who granted ``user_template_id``."""

    type: Literal["mini_subscription"] = "mini_subscription"
    user_template_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    page: Link | None = None
    data: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,32}$")], str] = Field(min_length=1)

    @field_validator("data")
    @classmethod
    def _values_fit(cls, data: dict[str, str]) -> dict[str, str]:
        for key, value in data.items():
            if not value:
                raise ValueError(f"data[{key!r}] is empty")
            if len(value) > MINI_DATA_VALUE_MAX:
                raise ValueError(f"data[{key!r}] is {len(value)} characters; Alipay allows {MINI_DATA_VALUE_MAX}")
        return data


class CouponContent(_Model):
    """``alipay.marketing.activity.voucher.send``: idempotent through ``out_biz_no``."""

    type: Literal["coupon"] = "coupon"
    activity_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class MemberCardContent(_Model):
    """``alipay.marketing.card.update``: e.g. raise the member's level after a follow."""

    type: Literal["member_card"] = "member_card"
    target_card_no: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    target_card_no_type: Literal["BIZ_CARD", "D_ALIPAY_UID", "D_OPEN_ID"] = "BIZ_CARD"
    level: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    point: Annotated[str, StringConstraints(pattern=r"^\d{1,12}$")] | None = None
    balance: Annotated[str, StringConstraints(pattern=r"^\d{1,12}(\.\d{1,2})?$")] | None = None

    @model_validator(mode="after")
    def _something_changes(self) -> MemberCardContent:
        if self.level is None and self.point is None and self.balance is None:
            raise ValueError("a card update needs level, point or balance")
        return self


Content = Annotated[
    LifeTemplateContent
    | LifeCustomContent
    | LifeGroupContent
    | MiniSubscriptionContent
    | CouponContent
    | MemberCardContent,
    Field(discriminator="type"),
]

CONTENT_MODELS: dict[Channel, type[BaseModel]] = {
    Channel.life_template: LifeTemplateContent,
    Channel.life_custom: LifeCustomContent,
    Channel.life_broadcast: LifeGroupContent,
    Channel.life_label: LifeGroupContent,
    Channel.mini_subscription: MiniSubscriptionContent,
    Channel.coupon: CouponContent,
    Channel.member_card: MemberCardContent,
}

# ---- the job ---------------------------------------------------------------------------------------------


def out_biz_no_for(ledger_key: str) -> str:
    """Alipay's idempotency key for a ledger entry: 34 alphanumeric characters (limit 64)."""
    return "ll" + hashlib.sha256(ledger_key.encode()).hexdigest()[:32]


class OutboundJob(_Model):
    job_version: Literal[1] = JOB_VERSION
    app_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    channel: Channel
    recipient: Recipient = Field(default_factory=Recipient)
    content: Content
    campaign: Name = "-"
    phase: Name = "-"
    rule: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    kind: Literal["transactional", "marketing"] = "marketing"
    priority: int = Field(default=0, ge=0, le=9)
    not_after: datetime
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="before")
    @classmethod
    def _content_for_channel(cls, data: Any) -> Any:
        """Tag ``content`` with the channel so it validates against that channel's model (with field errors)."""
        if not isinstance(data, dict):
            return data
        channel, content = data.get("channel"), data.get("content")
        if isinstance(channel, str) and channel in Channel.__members__ and isinstance(content, dict):
            tag = content.get("type")
            if tag is not None and tag != channel:
                raise ValueError(f"content.type {tag!r} does not match channel {channel!r}")
            data = {**data, "content": {**content, "type": channel}}
        return data

    @field_validator("not_after", "created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a timezone (e.g. 2025-01-01T08:00:00+08:00)")
        return value

    @model_validator(mode="after")
    def _recipient_fits_channel(self) -> OutboundJob:
        if self.content.type != self.channel.value:
            raise ValueError(f"content.type {self.content.type!r} does not match channel {self.channel.value!r}")
        r = self.recipient
        if self.channel is Channel.life_broadcast:
            if r.user_id or r.open_id or r.label_id:
                raise ValueError("a broadcast (total.send) names no recipient")
        elif self.channel is Channel.life_label:
            if not r.label_id or r.user_id or r.open_id:
                raise ValueError("a label send names recipient.label_id only")
        else:
            if r.label_id:
                raise ValueError(f"{self.channel} sends to one user: recipient.label_id is not allowed")
            if not (r.user_id or r.open_id):
                raise ValueError(f"{self.channel} needs recipient.user_id or recipient.open_id")
        return self

    @property
    def user_key(self) -> str:
        if self.channel is Channel.life_broadcast:
            return "*"
        if self.channel is Channel.life_label:
            return f"label:{self.recipient.label_id}"
        return self.recipient.key or ""

    @property
    def ledger_key(self) -> str:
        return "|".join((self.app_id, self.campaign, self.phase, self.user_key, self.channel.value))

    @property
    def out_biz_no(self) -> str:
        return out_biz_no_for(self.ledger_key)

    @property
    def transactional(self) -> bool:
        return self.kind == "transactional"

    def to_body(self) -> str:
        return self.model_dump_json(exclude_none=True)


def parse_job(body: str | bytes | dict[str, Any]) -> OutboundJob:
    """A queue body as a job; :class:`InvalidJob` (with pydantic's field errors) otherwise."""
    try:
        if isinstance(body, dict):
            return OutboundJob.model_validate(body)
        return OutboundJob.model_validate_json(body)
    except ValidationError as exc:
        errors = json.loads(exc.json(include_url=False, include_input=False))
        raise InvalidJob(f"invalid outbound job: {exc.error_count()} error(s)", errors) from None
