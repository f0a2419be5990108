"""Folding one user's events into their profile (pure: no I/O), and what a profile contributes to counters.

Facts merge order-insensitively and idempotently (lifelink.domain.metrics), so folding an event a second time
changes nothing and its counter delta is 0. The few plain counts (sessions, page views; likes, comments,
shares and favourites on an article) are made exactly-once by the event ids kept next to the facts: in the
profile (sessions, page views: :data:`COUNTED_KEEP_DAYS` days of ids) and in the user × article item (reactions).

Counters are the contributions of :mod:`lifelink.domain.metrics` (activity, follows, articles, purchases) plus
the ones kept here (order values for the app's percentiles, attribution and campaign conversion, treated users
for uplift): :func:`user_counters` and :func:`article_contribution`. The aggregator adds
``counter_delta(before, after)``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from lifelink.domain import metrics as m
from lifelink.domain.attribution import Attribution, InvalidToken, verify_token
from lifelink.domain.events import DomainEvent
from lifelink.domain.tags import OrderValueThresholds, TagPolicy, user_tags
from lifelink.store.profiles import ArticleState, CouponState, InterestRead, Profile

COUNTED_KEEP_DAYS = 10  # event ids of sessions and page views kept this long (ingest refuses events > 7 days old)
# Sessions + page views counted per user and day at most (a bot's flood would outgrow DynamoDB's 400 KB item).
MAX_COUNTED_PER_DAY = 2000
FOLLOW_COMPACT_AFTER = timedelta(days=2)  # Alipay retries a callback for about 25 hours
ARTICLE_TYPES = frozenset({"article_open", "article_progress", "like", "comment", "share", "favourite"})
REACTIONS = frozenset({"like", "comment", "share", "favourite"})
TRADE_TYPES = frozenset({"order_paid", "order_closed"})

Counters = dict[m.CounterKey, float]


@dataclass(frozen=True)
class GroupPolicy:
    """Per app group: its zone, what follows do to the member tier, tag thresholds."""

    tz: ZoneInfo = field(default_factory=lambda: m.zone_of(m.DEFAULT_TZ))
    tier_on_follow: str | None = "silver"
    tier_on_unfollow: str | None = None  # None: keep the tier; "" or "none": remove it
    tags: TagPolicy = field(default_factory=TagPolicy)


@dataclass(frozen=True)
class FoldContext:
    policy: GroupPolicy
    now: datetime
    thresholds: OrderValueThresholds
    attribution_keys: tuple[bytes, ...] = ()
    apps: frozenset[str] = frozenset()  # app ids of the group (tokens naming another app are ignored)

    def verify(self, token: str | None) -> Attribution | None:
        if not token or not self.attribution_keys:
            return None
        try:
            att = verify_token(token, self.attribution_keys)
        except InvalidToken:
            return None
        return att if not self.apps or att.app_id in self.apps else None


@dataclass
class FoldOutcome:
    plain: Counters = field(default_factory=dict)  # once-per-event counters (sessions, page views)
    counted: dict[str, int] = field(default_factory=dict)  # per event type: events that changed something
    too_late: int = 0  # plain-counted events older than the kept ids (not counted, to stay exactly-once)
    over_cap: int = 0  # sessions / page views beyond MAX_COUNTED_PER_DAY for one user and day (not counted)


def short_id(event_id: str) -> str:
    """12 characters standing for an event id in the kept-id lists (72 bits of SHA-256: collisions are negligible
    among one user's events), so the lists stay small whatever the caller's ids look like."""
    return base64.b64encode(hashlib.sha256(event_id.encode()).digest()[:9]).decode()


def article_ids_of(events: Iterable[DomainEvent]) -> set[str]:
    return {aid for e in events if e.type in ARTICLE_TYPES and (aid := getattr(e, "article_id", None))}


def _min(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _max(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _article(p: Profile, article_id: str) -> ArticleState:
    state = p.articles.get(article_id)
    if state is None:
        state = p.articles[article_id] = ArticleState(m.ArticleFacts(article_id))
    return state


def _add(into: Counters, more: dict[m.CounterKey, float] | dict[m.CounterKey, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def fold(p: Profile, events: Iterable[DomainEvent], ctx: FoldContext) -> FoldOutcome:
    """Fold ``events`` (all of this user) into ``p`` in place; returns the once-per-event counters."""
    out = FoldOutcome()
    tz = ctx.policy.tz
    horizon = (ctx.now.astimezone(tz).date() - timedelta(days=COUNTED_KEEP_DAYS)).toordinal()
    transitions_before = p.follows.transitions()
    per_day: Counter[int] | None = None
    for e in events:
        if e.user is not None:
            p.user_id = p.user_id or e.user.user_id
            p.open_id = p.open_id or e.user.open_id
        at = e.occurred_at
        t = e.type
        if t in m.ACTIVITY_EVENT_TYPES:
            p.activity = p.activity.observe(at, tz)
            p.known_since = _min(p.known_since, at)
        if t in ("follow", "unfollow"):
            p.follows = p.follows.observe(at, t == "follow")
        elif t in ("session_start", "page_view"):
            day = m.local_day(at, tz).toordinal()
            short = short_id(e.event_id)
            if short in p.counted:
                continue
            if day < horizon:
                out.too_late += 1
                continue
            if per_day is None:
                per_day = Counter(p.counted.values())
            if per_day[day] >= MAX_COUNTED_PER_DAY:
                out.over_cap += 1
                continue
            per_day[day] += 1
            p.counted[short] = day
            if t == "session_start":
                p.last_open_at = _max(p.last_open_at, at)
                att = ctx.verify(getattr(e, "attribution_token", None))
                if att is not None:
                    p.jumps.add(m.Jump(at.astimezone(m.UTC), att.campaign))
                _add(out.plain, m.session_counters(m.Session(at, getattr(e, "scene", None), att is not None), tz))
            else:
                view = m.PageView(getattr(e, "page", ""), at, float(getattr(e, "foreground_s", 0.0)))
                _add(out.plain, m.page_view_counters(view, tz))
        elif t in ARTICLE_TYPES:
            _fold_article(p, e, out)
        elif t == "product_view":
            p.last_product_view_at = _max(p.last_product_view_at, at)
            p.viewed_days.add(_day(at, tz))
        elif t == "order_placed":
            no = e.out_trade_no
            o = p.orders.get(no) or m.OrderFacts(no)
            p.orders[no] = o.observe_placed(int(e.amount_cents), bool(e.coupon_used))
        elif t in TRADE_TYPES:
            no = e.out_trade_no
            refund = getattr(e, "refund_fee", None)
            o = p.orders.get(no) or m.OrderFacts(no)
            p.orders[no] = o.observe_trade(e.trade_status, at, m.to_cents(e.total_amount),
                                           m.to_cents(refund) if refund is not None else None)
        elif t == "message_push":
            _fold_coupon(p, e)
        elif t == "message_outcome":
            campaign = getattr(e, "campaign", "-")
            if getattr(e, "status", "") == "sent" and campaign and campaign != "-":
                p.sent[campaign] = _min(p.sent.get(campaign), at)
        out.counted[t] = out.counted.get(t, 0) + 1
    _settle(p, ctx, transitions_before)
    return out


COUPON_PUSH_PREFIX = "alipay.marketing.activity.message."


def _fold_coupon(p: Profile, e: DomainEvent) -> None:
    """A voucher push: ``…message.used`` is a redemption, any other ``…message.*`` an issue (received)."""
    method = str(getattr(e, "msg_method", ""))
    if not method.startswith(COUPON_PUSH_PREFIX):
        return
    biz = getattr(e, "biz", {}) or {}
    grant = str(biz.get("voucher_id") or biz.get("out_biz_no") or "")
    if not grant:
        return
    old = p.coupons.get(grant)
    redeemed = method.endswith(".used")
    activity = str(biz.get("activity_id") or (old.activity if old else "-"))
    p.coupons[grant] = CouponState(activity, _min(old.issued_at if old else None, e.occurred_at),
                                   redeemed or (old is not None and old.redeemed))


def _fold_article(p: Profile, e: DomainEvent, out: FoldOutcome) -> None:
    aid = getattr(e, "article_id", None)
    if not aid:
        return  # a reaction to a product: activity only
    state = _article(p, aid)
    f = state.facts
    at = e.occurred_at
    category = getattr(e, "category", None)
    if e.type == "article_open":
        f = f.observe_open(at, category)
    elif e.type == "article_progress":
        f = f.observe_progress(at, float(e.depth), float(e.dwell_s))
    elif (short := short_id(e.event_id)) not in state.counted:  # a reaction: count each event once
        state.counted.add(short)
        f = f.observe_reaction(e.type, at)
    if category and not f.category:
        f = dataclasses.replace(f, category=category)
    state.facts = f
    if f.category and (f.completed or f.favourites):
        p.reads[aid] = InterestRead(f.category, f.completed_at, f.favourited_at, f.favourites)


def follow_tier(follows: m.FollowFacts, policy: GroupPolicy) -> str | None:
    """The member tier the follow history grants, replayed in event time (so order of arrival does not matter):
    a follow grants ``tier_on_follow`` to a user without a tier; an unfollow applies ``tier_on_unfollow`` when the
    app configures one (keep the tier otherwise)."""
    tier: str | None = None
    for _, followed in follows.transitions():
        if followed:
            tier = tier or policy.tier_on_follow
        elif policy.tier_on_unfollow is not None:
            tier = None if policy.tier_on_unfollow in ("", "none") else policy.tier_on_unfollow
    return tier


def _settle(p: Profile, ctx: FoldContext, transitions_before: list[tuple[datetime, bool]]) -> None:
    """After a fold: tier from a follow-state change, compaction, bounded id lists, tags."""
    if p.follows.transitions() != transitions_before:
        p.tier = follow_tier(p.follows, ctx.policy)
    p.follows = p.follows.compact(ctx.now - FOLLOW_COMPACT_AFTER)
    horizon = (ctx.now.astimezone(ctx.policy.tz).date() - timedelta(days=COUNTED_KEEP_DAYS)).toordinal()
    if any(d < horizon for d in p.counted.values()):
        p.counted = {k: d for k, d in p.counted.items() if d >= horizon}
    since = ctx.now - ctx.policy.tags.interest_window
    p.reads = {a: r for a, r in p.reads.items()
               if (r.completed_at and r.completed_at > since) or (r.favourited_at and r.favourited_at > since)}
    refresh_tags(p, ctx)


def refresh_tags(p: Profile, ctx: FoldContext) -> None:
    if p.known_since is None:
        return
    articles = [m.ArticleFacts(a, r.category, True, 1.0 if r.completed_at else 0.0, r.completed_at is not None,
                               r.completed_at, r.completed_at, favourites=r.favourites, favourited_at=r.favourited_at)
                for a, r in p.reads.items()]
    tags = user_tags(articles, p.orders.values(), last_open_at=p.last_open_at, known_since=p.known_since,
                     now=ctx.now, thresholds=ctx.thresholds, policy=ctx.policy.tags)
    fresh = {t.name: t for t in tags}
    for name, old in p.tags.items():  # unchanged evidence keeps its first assignment time
        new = fresh.get(name)
        if new is not None and new.evidence == old.evidence and new.expires_at == old.expires_at:
            fresh[name] = old
    p.tags = fresh


# ---- counter contributions ------------------------------------------------------------------------------------


def _day(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).date().isoformat()


def user_counters(p: Profile, tz: ZoneInfo) -> Counters:
    """What one profile contributes to the group's counters (articles apart: :func:`article_contribution`)."""
    out: Counters = dict(m.activity_counters(p.activity))
    _add(out, m.follow_counters(p.follows, tz))
    if p.orders:
        _add(out, m.purchase_counters(p.orders, tz))
        for o in p.orders.values():
            if o.paid and o.paid_at is not None:
                day = _day(o.paid_at, tz)
                _add(out, {("paid_orders", day): 1, ("paid_cents", day): o.amount_cents,
                           ("order_value", day, str(o.amount_cents)): 1})
                if p.jumps:
                    c = m.attribute_order(p.jumps, o.paid_at)
                    if c is not None:
                        _add(out, {("attributed_orders", day, c): 1, ("attributed_cents", day, c): o.amount_cents})
    if p.jumps:
        _add(out, _conversion_counters(p, tz))
    for day in p.viewed_days:  # distinct viewers per day: a set, so a redelivered view adds nothing
        out[("product_viewers", day)] = 1
    for c in p.coupons.values():
        key = (_day(c.issued_at, tz), c.activity)
        out[("coupons_issued", *key)] = out.get(("coupons_issued", *key), 0) + 1
        if c.redeemed:
            out[("coupons_redeemed", *key)] = out.get(("coupons_redeemed", *key), 0) + 1
    for c, first in p.sent.items():
        day = _day(first, tz)
        out[("treated", day, c)] = 1
        if _paid_within(p, first, m.CONVERSION_WINDOW):
            out[("treated_converted", day, c)] = 1
    return out


def _paid_within(p: Profile, start: datetime, window: timedelta) -> bool:
    return any(o.paid and o.paid_at is not None and start <= o.paid_at <= start + window for o in p.orders.values())


def _conversion_counters(p: Profile, tz: ZoneInfo) -> Counters:
    first: dict[str, datetime] = {}
    for j in p.jumps:
        first[j.campaign] = _min(first.get(j.campaign), j.at)
    out: Counters = {}
    user = m.CampaignUser(frozenset(p.jumps), p.orders)
    for c, at in first.items():
        day = _day(at, tz)
        out[("jumpers", day, c)] = 1
        if m.post_jump_conversion_rate(c, [user], at).numerator:
            out[("converted", day, c)] = 1
    return out


def article_contribution(f: m.ArticleFacts) -> Counters:
    """Openers, completers, exit band, interacting (distinct users) and raw reaction counts of one user × article."""
    out: Counters = dict(m.article_counters(f))
    for name, n in (("likes", f.likes), ("comments", f.comments), ("shares", f.shares),
                    ("favourites", f.favourites)):
        if n:
            out[(name, f.article_id)] = n
    return out


def cohort_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


ThresholdsFor = Callable[[str], OrderValueThresholds]
