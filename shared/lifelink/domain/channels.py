"""Each channel's Alipay method and ``biz_content``, exactly as ALIPAY.md "Outbound methods" lists them.

Every link into the mini program (template ``url``, article ``url``s, the subscription ``page``) carries an
attribution token (app, campaign, phase, ``message_ref(ledger_key)``; see :mod:`lifelink.domain.attribution`)
so opens and conversions trace back to the ledger entry. Builders are pure: the token is issued once per
send by :func:`link_tagger` and passed in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from lifelink.domain.attribution import Attribution, issue, message_ref, tag_link
from lifelink.domain.messages import (
    Article,
    Channel,
    CouponContent,
    LifeCustomContent,
    LifeGroupContent,
    LifeTemplateContent,
    MemberCardContent,
    MiniSubscriptionContent,
    OutboundJob,
    TemplateField,
)

Tagger = Callable[[str], str]
_BEIJING = timezone(timedelta(hours=8))

METHODS: dict[Channel, str] = {
    Channel.life_template: "alipay.open.public.message.single.send",
    Channel.life_custom: "alipay.open.public.message.custom.send",
    Channel.life_broadcast: "alipay.open.public.message.total.send",
    Channel.life_label: "alipay.open.public.message.label.send",
    Channel.mini_subscription: "alipay.open.app.mini.templatemessage.send",
    Channel.coupon: "alipay.marketing.activity.voucher.send",
    Channel.member_card: "alipay.marketing.card.update",
}

# Channels whose Alipay method deduplicates by a key we send (out_biz_no): safe to resend after a crash.
IDEMPOTENT_CHANNELS = frozenset({Channel.coupon})


@dataclass(frozen=True)
class AlipayCall:
    method: str
    biz_content: dict[str, Any]


def link_tagger(job: OutboundJob, key: bytes, now: datetime) -> Tagger:
    """A function that adds this job's attribution token to a link (one token per send)."""
    token = issue(Attribution(job.app_id, job.campaign, job.phase, message_ref(job.ledger_key), now), key)
    return lambda link: tag_link(link, token)


def _to_user(job: OutboundJob, user_field: str = "to_user_id", open_field: str = "to_open_id") -> dict[str, str]:
    r = job.recipient
    return {open_field: r.open_id} if r.open_id else {user_field: r.user_id or ""}


def _colored(f: TemplateField) -> dict[str, str]:
    out = {"value": f.value}
    if f.color:
        out["color"] = f.color
    return out


def _article(a: Article, tag: Tagger) -> dict[str, Any]:
    out: dict[str, Any] = {"title": a.title, "url": tag(a.url)}
    if a.desc is not None:
        out["desc"] = a.desc
    if a.image_url is not None:
        out["image_url"] = a.image_url
    if a.action_name is not None:
        out["action_name"] = a.action_name
    return out


def _material(c: LifeCustomContent | LifeGroupContent, tag: Tagger) -> dict[str, Any]:
    out: dict[str, Any] = {"msg_type": c.msg_type}
    if c.text is not None:
        out["text"] = c.text.model_dump(exclude_none=True)
    if c.articles:
        out["articles"] = [_article(a, tag) for a in c.articles]
    return out


def _life_template(job: OutboundJob, c: LifeTemplateContent, tag: Tagger) -> dict[str, Any]:
    context: dict[str, Any] = {"head_color": c.head_color}
    if c.url:
        context["url"] = tag(c.url)
    if c.action_name:
        context["action_name"] = c.action_name
    if c.first:
        context["first"] = _colored(c.first)
    for i, keyword in enumerate(c.keywords, start=1):
        context[f"keyword{i}"] = _colored(keyword)
    if c.remark:
        context["remark"] = _colored(c.remark)
    return {**_to_user(job), "template": {"template_id": c.template_id, "context": context}}


def _life_custom(job: OutboundJob, c: LifeCustomContent, tag: Tagger) -> dict[str, Any]:
    biz: dict[str, Any] = {**_to_user(job, "to_user_id", "open_id"), **_material(c, tag)}
    if c.event_type:
        biz["event_type"] = c.event_type
    return biz


def _life_label(job: OutboundJob, c: LifeGroupContent, tag: Tagger) -> dict[str, Any]:
    # Merchant labels are the column "label_id_list"; the filter template names one condition, ${a}.
    condition = {"column_name": "label_id_list", "op": "=", "values": [job.recipient.label_id]}
    return {"filter": {"template": "${a}", "context": {"a": condition}}, "material": _material(c, tag)}


def _mini_subscription(job: OutboundJob, c: MiniSubscriptionContent, tag: Tagger) -> dict[str, Any]:
    biz: dict[str, Any] = {**_to_user(job), "user_template_id": c.user_template_id}
    if c.page:
        biz["page"] = tag(c.page)
    data = {k: {"value": v} for k, v in c.data.items()}
    biz["data"] = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return biz


def _coupon(job: OutboundJob, c: CouponContent) -> dict[str, Any]:
    return {"activity_id": c.activity_id, **_to_user(job, "user_id", "open_id"), "out_biz_no": job.out_biz_no}


def _member_card(c: MemberCardContent, now: datetime) -> dict[str, Any]:
    card_info = c.model_dump(include={"level", "point", "balance"}, exclude_none=True)
    return {
        "target_card_no": c.target_card_no,
        "target_card_no_type": c.target_card_no_type,
        "occur_time": now.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        "card_info": card_info,
    }


def build_call(job: OutboundJob, tag: Tagger, now: datetime | None = None) -> AlipayCall:
    """The method and biz_content that deliver ``job``; ``tag`` adds the attribution token to links."""
    now = now or datetime.now(UTC)
    c = job.content
    method = METHODS[job.channel]
    match job.channel:
        case Channel.life_template:
            assert isinstance(c, LifeTemplateContent)
            biz = _life_template(job, c, tag)
        case Channel.life_custom:
            assert isinstance(c, LifeCustomContent)
            biz = _life_custom(job, c, tag)
        case Channel.life_broadcast:
            assert isinstance(c, LifeGroupContent)
            biz = _material(c, tag)
        case Channel.life_label:
            assert isinstance(c, LifeGroupContent)
            biz = _life_label(job, c, tag)
        case Channel.mini_subscription:
            assert isinstance(c, MiniSubscriptionContent)
            biz = _mini_subscription(job, c, tag)
        case Channel.coupon:
            assert isinstance(c, CouponContent)
            biz = _coupon(job, c)
        case Channel.member_card:
            assert isinstance(c, MemberCardContent)
            biz = _member_card(c, now)
    return AlipayCall(method, biz)
