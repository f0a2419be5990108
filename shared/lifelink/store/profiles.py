"""User profiles in the profiles table: one item per (app group, user) holding the user's FACTS (the types of
:mod:`lifelink.domain.metrics`), and one item per (user, article).

Items (``pk = U#<group>#<user key>``):
- ``sk = P``: the profile. ``v`` (N) is its version: every write of any item of the user is a transaction
  that also rewrites this item on the condition ``v = <the version read>`` (optimistic concurrency), so two
  consumers folding the same user can never both win. ``f`` (S) holds the facts as compact JSON (see
  :func:`profile_to_json`); ``tier`` (S), ``following`` (BOOL) and ``first_active`` (S, ISO day) are copied out
  for people reading the table.
- ``sk = A#<article id>``: one user × article (:class:`~lifelink.domain.metrics.ArticleFacts`) and the ids of the
  reaction events already counted on it (``f``, JSON). Written in the same transaction as the profile.

Raw user ids are stored (the profile is about them) but never logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from lifelink.domain.metrics import ActivityFacts, ArticleFacts, FollowFacts, Jump, OrderFacts
from lifelink.domain.tags import Tag

PROFILE_SK = "P"
ARTICLE_PREFIX = "A#"
BATCH_GET_MAX = 100


def user_pk(group: str, user: str) -> str:
    return f"U#{group}#{user}"


def _t(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass
class ArticleState:
    """One user × one article: the facts and the reaction event ids already counted (exactly-once counts)."""

    facts: ArticleFacts
    counted: set[str] = field(default_factory=set)
    raw: str | None = None  # the stored JSON as read (None: new); unchanged JSON is not written again


@dataclass
class CouponState:
    """One coupon grant of the user, from the message-service pushes about it (``alipay.marketing.activity.
    message.*``): the activity, the earliest push time (its issue, or the redemption when that came first) and
    whether a redemption was seen (redeemed implies issued)."""

    activity: str
    issued_at: datetime
    redeemed: bool = False


@dataclass
class InterestRead:
    """What the interest tags need of an article the user completed or favourited (kept 30 days in the profile,
    so tags see every article without reading every article item)."""

    category: str
    completed_at: datetime | None
    favourited_at: datetime | None
    favourites: int


@dataclass
class Profile:
    """Everything the aggregator knows about one user of an app group (mutable while folding one batch)."""

    group: str
    user: str
    version: int = 0
    user_id: str | None = None
    open_id: str | None = None
    activity: ActivityFacts = field(default_factory=ActivityFacts)
    follows: FollowFacts = field(default_factory=FollowFacts)
    tier: str | None = None
    orders: dict[str, OrderFacts] = field(default_factory=dict)
    jumps: set[Jump] = field(default_factory=set)
    sent: dict[str, datetime] = field(default_factory=dict)  # campaign -> first message sent to the user
    coupons: dict[str, CouponState] = field(default_factory=dict)  # grant id (voucher id / out_biz_no) -> state
    counted: dict[str, int] = field(default_factory=dict)  # event id -> day ordinal (sessions, page views)
    known_since: datetime | None = None
    last_open_at: datetime | None = None
    last_product_view_at: datetime | None = None
    viewed_days: set[str] = field(default_factory=set)  # days (group zone, ISO) with a product view: the funnel
    reads: dict[str, InterestRead] = field(default_factory=dict)
    tags: dict[str, Tag] = field(default_factory=dict)
    articles: dict[str, ArticleState] = field(default_factory=dict)  # only the articles loaded for this batch
    # Counter deltas not yet applied: a user whose one write would exceed a transaction's 100 items writes the
    # rest here, in the same transaction as the facts, and the next write of the user applies them (a journal).
    pending: dict[tuple[str, ...], float] = field(default_factory=dict)
    raw: str | None = None  # the stored JSON as read (None: a new profile)

    @property
    def following(self) -> bool | None:
        return self.follows.following()


# ---- JSON -------------------------------------------------------------------------------------------------


def _order_json(o: OrderFacts) -> list[Any]:
    return [o.amount_cents, _t(o.paid_at), o.refunded_cents, int(o.closed), int(o.coupon_used)]


def _order_of(no: str, v: list[Any]) -> OrderFacts:
    return OrderFacts(no, int(v[0]), _dt(v[1]), int(v[2]), bool(v[3]), bool(v[4]))


def _tag_json(t: Tag) -> list[Any]:
    return [t.evidence, _t(t.assigned_at), _t(t.expires_at)]


def profile_to_json(p: Profile) -> str:
    doc: dict[str, Any] = {
        "act": sorted(p.activity.day_numbers()),
        "fol": sorted([_t(at), int(f)] for at, f in p.follows.observations),
        "ord": {no: _order_json(o) for no, o in p.orders.items()},
        "jmp": sorted([_t(j.at), j.campaign] for j in p.jumps),
        "sent": {c: _t(at) for c, at in p.sent.items()},
        "cpn": {g: [c.activity, _t(c.issued_at), int(c.redeemed)] for g, c in p.coupons.items()},
        "cnt": p.counted,
        "ks": _t(p.known_since),
        "lo": _t(p.last_open_at),
        "lpv": _t(p.last_product_view_at),
        "pvd": sorted(p.viewed_days),
        "reads": {a: [r.category, _t(r.completed_at), _t(r.favourited_at), r.favourites] for a, r in p.reads.items()},
        "tags": {name: _tag_json(t) for name, t in p.tags.items()},
    }
    if p.pending:
        doc["pend"] = [[list(k), v] for k, v in p.pending.items()]
    if p.user_id:
        doc["uid"] = p.user_id
    if p.open_id:
        doc["oid"] = p.open_id
    if p.tier:
        doc["tier"] = p.tier
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str)


def profile_from_json(group: str, user: str, version: int, text: str) -> Profile:
    d = json.loads(text)
    return Profile(
        group=group,
        user=user,
        version=version,
        user_id=d.get("uid"),
        open_id=d.get("oid"),
        activity=ActivityFacts.from_day_numbers(d.get("act", ())),
        follows=FollowFacts(frozenset((datetime.fromisoformat(at), bool(f)) for at, f in d.get("fol", ()))),
        tier=d.get("tier"),
        orders={no: _order_of(no, v) for no, v in d.get("ord", {}).items()},
        jumps={Jump(datetime.fromisoformat(at), c) for at, c in d.get("jmp", ())},
        sent={c: datetime.fromisoformat(at) for c, at in d.get("sent", {}).items()},
        coupons={g: CouponState(v[0], datetime.fromisoformat(v[1]), bool(v[2])) for g, v in d.get("cpn", {}).items()},
        counted=dict(d.get("cnt", {})),
        known_since=_dt(d.get("ks")),
        last_open_at=_dt(d.get("lo")),
        last_product_view_at=_dt(d.get("lpv")),
        viewed_days=set(d.get("pvd", ())),
        reads={a: InterestRead(v[0], _dt(v[1]), _dt(v[2]), int(v[3])) for a, v in d.get("reads", {}).items()},
        tags={n: Tag(n, v[0], datetime.fromisoformat(v[1]), datetime.fromisoformat(v[2]))
              for n, v in d.get("tags", {}).items()},
        pending={tuple(k): v for k, v in d.get("pend", ())},
        raw=text,
    )


def article_to_json(a: ArticleState) -> str:
    f = a.facts
    doc = [f.category, int(f.opened), f.max_depth, int(f.completed), _t(f.last_read_at), _t(f.completed_at),
           f.likes, f.comments, f.shares, f.favourites, _t(f.favourited_at), sorted(a.counted)]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def article_from_json(article_id: str, text: str) -> ArticleState:
    v = json.loads(text)
    facts = ArticleFacts(article_id, v[0], bool(v[1]), float(v[2]), bool(v[3]), _dt(v[4]), _dt(v[5]),
                         int(v[6]), int(v[7]), int(v[8]), int(v[9]), _dt(v[10]))
    return ArticleState(facts, set(v[11]), raw=text)


# ---- items ------------------------------------------------------------------------------------------------


def profile_item(p: Profile, new_version: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": user_pk(p.group, p.user)},
        "sk": {"S": PROFILE_SK},
        "v": {"N": str(new_version)},
        "f": {"S": profile_to_json(p)},
    }
    if p.tier:
        item["tier"] = {"S": p.tier}
    following = p.following
    if following is not None:
        item["following"] = {"BOOL": following}
    if p.activity.first_active_day is not None:
        item["first_active"] = {"S": p.activity.first_active_day.isoformat()}
    return item


def article_item(group: str, user: str, a: ArticleState) -> dict[str, Any]:
    return {
        "pk": {"S": user_pk(group, user)},
        "sk": {"S": ARTICLE_PREFIX + a.facts.article_id},
        "f": {"S": article_to_json(a)},
    }


def _split_pk(pk: str) -> tuple[str, str]:
    _, group, user = pk.split("#", 2)
    return group, user


@dataclass(frozen=True)
class ProfileRead:
    """What one read of many users returned: profiles (new ones at version 0) and article states."""

    profiles: dict[tuple[str, str], Profile]
    articles: dict[tuple[str, str, str], ArticleState]


class ProfileStore:
    """Reads profiles (BatchGetItem, consistent) and describes their writes; the aggregator sends the writes."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self.table = table

    def read_many(self, users: Iterable[tuple[str, str]],
                  articles: Iterable[tuple[str, str, str]] = ()) -> ProfileRead:
        """Profiles of ``users`` ((group, user)) and the article items ((group, user, article)) asked for."""
        users = list(dict.fromkeys(users))
        arts = list(dict.fromkeys(articles))
        keys = [{"pk": {"S": user_pk(g, u)}, "sk": {"S": PROFILE_SK}} for g, u in users]
        keys += [{"pk": {"S": user_pk(g, u)}, "sk": {"S": ARTICLE_PREFIX + a}} for g, u, a in arts]
        profiles = {(g, u): Profile(g, u) for g, u in users}
        found: dict[tuple[str, str, str], ArticleState] = {}
        for item in self._batch_get(keys):
            group, user = _split_pk(item["pk"]["S"])
            sk = item["sk"]["S"]
            if sk == PROFILE_SK:
                profiles[(group, user)] = profile_from_json(group, user, int(item["v"]["N"]), item["f"]["S"])
            else:
                art = sk[len(ARTICLE_PREFIX):]
                found[(group, user, art)] = article_from_json(art, item["f"]["S"])
        return ProfileRead(profiles, found)

    def _batch_get(self, keys: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(keys), BATCH_GET_MAX):
            request: dict[str, Any] = {self.table: {"Keys": list(keys[start:start + BATCH_GET_MAX]),
                                                    "ConsistentRead": True}}
            while request:
                page = self._ddb.batch_get_item(RequestItems=request)
                yield from page.get("Responses", {}).get(self.table, [])
                request = page.get("UnprocessedKeys") or {}

    def get(self, group: str, user: str) -> tuple[Profile | None, list[ArticleState]]:
        """One user's profile and every article item (a Query on the user's partition); None when unknown."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": user_pk(group, user)}},
            "ConsistentRead": True,
        }
        profile: Profile | None = None
        articles: list[ArticleState] = []
        while True:
            page = self._ddb.query(**kwargs)
            for item in page.get("Items", []):
                sk = item["sk"]["S"]
                if sk == PROFILE_SK:
                    profile = profile_from_json(group, user, int(item["v"]["N"]), item["f"]["S"])
                elif sk.startswith(ARTICLE_PREFIX):
                    articles.append(article_from_json(sk[len(ARTICLE_PREFIX):], item["f"]["S"]))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return profile, articles

    def scan_group(self, group: str) -> Iterator[Profile]:
        """Every profile of a group (a Scan: for the daily jobs and small deployments, not per request)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "sk = :p AND begins_with(pk, :g)",
            "ExpressionAttributeValues": {":p": {"S": PROFILE_SK}, ":g": {"S": f"U#{group}#"}},
        }
        while True:
            page = self._ddb.scan(**kwargs)
            for item in page.get("Items", []):
                g, u = _split_pk(item["pk"]["S"])
                yield profile_from_json(g, u, int(item["v"]["N"]), item["f"]["S"])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def day_ordinal(day: date) -> int:
    return day.toordinal()
