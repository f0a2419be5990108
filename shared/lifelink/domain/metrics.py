"""Metric definitions (BRIEF §4): pure functions over compact per-user facts, no I/O.

The aggregator keeps the facts (one item per user, or per user and article / order / coupon grant) and calls
these functions to answer ``GET /metrics``. Every fact type merges with :meth:`merge` (and, from one event,
``observe``) so that folding the same observations in any order, any number of times, gives the same facts:
sets, minima, maxima and "or". The few plain counters (likes, comments, shares, favourites) are the exception:
the aggregator must count each event once (its idempotency by ``event_id``).

Calendar days are dates in the app's zone (Asia/Shanghai unless configured): :func:`local_day`. Events count
on their event time (``occurred_at``), never their arrival time.

Results are :class:`Rate` (numerator, denominator, value — ``None`` when the denominator is 0 — and ``complete``:
False while a maturity window is still open), :class:`FollowerGrowth`, :class:`ReadCompletion`,
:class:`Interaction` and :class:`Uplift`. See docs/metrics.md for every definition in the user's terms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

DEFAULT_TZ = "Asia/Shanghai"
LIFE_ACCOUNT_SCENE = "1020"  # mini-program entry from a life-account link
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
CLOSED_STATUS = "TRADE_CLOSED"
READ_END_DEPTH = 0.95
READ_END_DWELL_S = 10.0
PAGE_STAY_CAP_S = 30 * 60.0
ATTRIBUTION_WINDOW = timedelta(days=7)
CONVERSION_WINDOW = timedelta(days=7)
RETURN_WINDOW_DAYS = 7
PURCHASE_WINDOW_DAYS = 30
EXIT_BANDS = 5  # 0–20 %, 20–40 %, 40–60 %, 60–80 %, 80–100 %
# Event types that make a user active on a day (retention): things the user did, in the mini program or the
# life account. Not unfollow, and nothing we sent them (pushes, message outcomes).
ACTIVITY_EVENT_TYPES = frozenset({
    "session_start", "page_view", "article_open", "article_progress", "like", "comment", "share", "favourite",
    "product_view", "order_placed", "order_paid", "follow", "enter", "menu_click", "user_message",
})

Zone = str | ZoneInfo


# --- time -------------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone_of(tz: Zone) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else _zone(tz)


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("event times must be timezone-aware")
    return at


def local_day(at: datetime, tz: Zone = DEFAULT_TZ) -> date:
    """The calendar day ``at`` falls on in the app's zone (naive datetimes are refused)."""
    return _aware(at).astimezone(zone_of(tz)).date()


def day_end(day: date, tz: Zone = DEFAULT_TZ) -> datetime:
    """The instant ``day`` ends in the zone (midnight starting the next day), in UTC."""
    nxt = day + timedelta(days=1)
    return datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone_of(tz)).astimezone(UTC)


# --- results ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rate:
    """numerator ÷ denominator; ``value`` is None when nobody is in the denominator. ``complete`` is False
    while the definition's maturity window is still open (the figure can still grow)."""

    numerator: float
    denominator: int
    value: float | None
    complete: bool = True

    @classmethod
    def of(cls, numerator: float, denominator: int, complete: bool = True) -> Rate:
        return cls(numerator, denominator, (numerator / denominator) if denominator else None, complete)


@dataclass(frozen=True, slots=True)
class FollowerGrowth:
    gained: int  # not-following → following transitions on the day
    lost: int  # following → not-following transitions on the day
    net: int


@dataclass(frozen=True, slots=True)
class ReadCompletion:
    rate: Rate  # completers ÷ openers
    exit_bands: tuple[int, ...]  # openers by the deepest point they reached: 0–20 %, …, 80–100 %

    @property
    def exit_shares(self) -> tuple[float | None, ...]:
        total = sum(self.exit_bands)
        return tuple((n / total) if total else None for n in self.exit_bands)


@dataclass(frozen=True, slots=True)
class Interaction:
    rate: Rate  # readers with ≥1 like, comment or share ÷ readers
    likes: int
    comments: int
    shares: int


@dataclass(frozen=True, slots=True)
class Uplift:
    treated: Rate
    holdout: Rate
    value: float | None  # treated.value − holdout.value, None when either group is empty
    complete: bool = True


# --- activity: return_rate_7d and day-N "on" retention ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivityFacts:
    """A user's active days: ``first_active_day`` and a bitmap ``days`` where bit k means active on
    first_active_day + k (bit 0 is always set). Store it as a DynamoDB number set of day numbers
    (:meth:`day_numbers`, ``ADD`` is idempotent and order-insensitive) and rebuild with
    :meth:`from_day_numbers`; merging is a set union, so late and repeated events change nothing wrongly."""

    first_active_day: date | None = None
    days: int = 0

    @classmethod
    def from_days(cls, days: Iterable[date]) -> ActivityFacts:
        ds = set(days)
        if not ds:
            return cls()
        first = min(ds)
        bits = 0
        for d in ds:
            bits |= 1 << (d - first).days
        return cls(first, bits)

    @classmethod
    def from_day_numbers(cls, numbers: Iterable[int]) -> ActivityFacts:
        return cls.from_days(date.fromordinal(int(n)) for n in numbers)

    def day_numbers(self) -> set[int]:
        """Proleptic ordinals (``date.toordinal()``) of the active days: what the store keeps."""
        return {d.toordinal() for d in self.active_days}

    @property
    def active_days(self) -> frozenset[date]:
        if self.first_active_day is None:
            return frozenset()
        first, bits, out, k = self.first_active_day, self.days, set(), 0
        while bits:
            if bits & 1:
                out.add(first + timedelta(days=k))
            bits >>= 1
            k += 1
        return frozenset(out)

    def is_active(self, day: date) -> bool:
        if self.first_active_day is None:
            return False
        k = (day - self.first_active_day).days
        return k >= 0 and bool(self.days >> k & 1)

    def observe_day(self, day: date) -> ActivityFacts:
        first = self.first_active_day
        if first is None:
            return ActivityFacts(day, 1)
        if day < first:
            return ActivityFacts(day, (self.days << (first - day).days) | 1)
        return ActivityFacts(first, self.days | (1 << (day - first).days))

    def observe(self, at: datetime, tz: Zone = DEFAULT_TZ) -> ActivityFacts:
        """The facts after an activity event at ``at`` (its event time, in the app's calendar)."""
        return self.observe_day(local_day(at, tz))

    def merge(self, other: ActivityFacts) -> ActivityFacts:
        if other.first_active_day is None:
            return self
        if self.first_active_day is None:
            return other
        a, b = (self, other) if self.first_active_day <= other.first_active_day else (other, self)
        assert a.first_active_day is not None and b.first_active_day is not None
        return ActivityFacts(a.first_active_day, a.days | (b.days << (b.first_active_day - a.first_active_day).days))


_RETURN_MASK = ((1 << RETURN_WINDOW_DAYS) - 1) << 1  # bits 1..7: D+1 … D+7


def return_rate_7d(cohort_day: date, users: Iterable[ActivityFacts], today: date) -> Rate:
    """Users first active on ``cohort_day`` (D) who are active again on any of D+1…D+7 ÷ the cohort.
    Same-day activity never counts. ``complete`` once D+7 has ended, i.e. ``today`` (the app's local date
    now) is after D+7."""
    size = back = 0
    for u in users:
        if u.first_active_day == cohort_day:
            size += 1
            if u.days & _RETURN_MASK:
                back += 1
    return Rate.of(back, size, complete=today > cohort_day + timedelta(days=RETURN_WINDOW_DAYS))


def return_rates_7d(users: Iterable[ActivityFacts], today: date,
                    cohort_days: Iterable[date] | None = None) -> dict[date, Rate]:
    """:func:`return_rate_7d` for every cohort day in one pass (all cohorts seen, or just ``cohort_days``)."""
    sizes: dict[date, int] = {}
    backs: dict[date, int] = {}
    for u in users:
        d = u.first_active_day
        if d is None:
            continue
        sizes[d] = sizes.get(d, 0) + 1
        if u.days & _RETURN_MASK:
            backs[d] = backs.get(d, 0) + 1
    days = sorted(sizes) if cohort_days is None else sorted(set(cohort_days))
    horizon = timedelta(days=RETURN_WINDOW_DAYS)
    return {d: Rate.of(backs.get(d, 0), sizes.get(d, 0), complete=today > d + horizon) for d in days}


def day_n_retention(cohort_day: date, n: int, users: Iterable[ActivityFacts], today: date) -> Rate:
    """Day-N "on" retention: users first active on D who are active on exactly D+N ÷ the cohort
    (``complete`` once D+N has ended). Day 0 is the cohort itself (1.0)."""
    if n < 0:
        raise ValueError("n must be ≥ 0")
    size = on = 0
    for u in users:
        if u.first_active_day == cohort_day:
            size += 1
            if u.days >> n & 1:
                on += 1
    return Rate.of(on, size, complete=today > cohort_day + timedelta(days=n))


# --- follows ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FollowFacts:
    """Every follow / unfollow observation of one user: (event time, followed?). A set, so redelivery and
    order do not matter. State changes are read off the time-ordered observations: the first observation is
    always a change (an unfollow implies the user followed before; a follow, that they did not), then only
    observations that differ from the previous state. At the same instant an unfollow sorts after a follow."""

    observations: frozenset[tuple[datetime, bool]] = frozenset()

    def observe(self, at: datetime, followed: bool) -> FollowFacts:
        return FollowFacts(self.observations | {(_aware(at).astimezone(UTC), followed)})

    def merge(self, other: FollowFacts) -> FollowFacts:
        return FollowFacts(self.observations | other.observations)

    def transitions(self) -> list[tuple[datetime, bool]]:
        """The state changes in time order: (when, now following?)."""
        out: list[tuple[datetime, bool]] = []
        state: bool | None = None
        for at, followed in sorted(self.observations, key=lambda o: (o[0], not o[1])):
            if followed != state:
                out.append((at, followed))
                state = followed
        return out

    def following(self, at: datetime | None = None) -> bool | None:
        """Following at ``at`` (default: the latest state); None when nothing was observed by then."""
        state: bool | None = None
        for when, followed in self.transitions():
            if at is not None and when > at:
                break
            state = followed
        return state

    def compact(self, before: datetime) -> FollowFacts:
        """Drop observations before ``before`` that are not state changes. Safe once no event older than
        ``before`` can still arrive (Alipay retries a callback for about 25 h)."""
        changes = set(self.transitions())
        return FollowFacts(frozenset(o for o in self.observations if o[0] >= before or o in changes))


def net_follower_growth(day: date, users: Iterable[FollowFacts], tz: Zone = DEFAULT_TZ) -> FollowerGrowth:
    """Follows − unfollows on ``day`` counted as state changes: a repeated follow by a follower changes
    nothing; a follow and an unfollow on the same day net 0."""
    gained = lost = 0
    for u in users:
        for at, followed in u.transitions():
            if local_day(at, tz) == day:
                if followed:
                    gained += 1
                else:
                    lost += 1
    return FollowerGrowth(gained, lost, gained - lost)


# --- articles ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArticleFacts:
    """One user × one article. ``opened`` / ``completed`` are "or", ``max_depth`` a maximum, the times the
    latest seen (maxima): all order-insensitive. ``likes`` … ``favourites`` are counters: count each event once.
    A progress event implies the article was opened (the open event may be late or lost)."""

    article_id: str
    category: str | None = None
    opened: bool = False
    max_depth: float = 0.0
    completed: bool = False
    last_read_at: datetime | None = None  # latest open or progress
    completed_at: datetime | None = None  # latest completed read
    likes: int = 0
    comments: int = 0
    shares: int = 0
    favourites: int = 0
    favourited_at: datetime | None = None  # latest favourite

    def observe_open(self, at: datetime, category: str | None = None) -> ArticleFacts:
        return _replace_article(self, opened=True, category=self.category or category,
                                last_read_at=_later(self.last_read_at, at))

    def observe_progress(self, at: datetime, depth: float, dwell_s: float) -> ArticleFacts:
        if not 0.0 <= depth <= 1.0 or dwell_s < 0:
            raise ValueError("depth must be in [0, 1] and dwell_s ≥ 0")
        done = is_read_complete(depth, dwell_s)
        return _replace_article(
            self, opened=True, max_depth=max(self.max_depth, depth), completed=self.completed or done,
            last_read_at=_later(self.last_read_at, at),
            completed_at=_later(self.completed_at, at) if done else self.completed_at)

    def observe_reaction(self, kind: str, at: datetime) -> ArticleFacts:
        """One like, comment, share or favourite event (count each event once)."""
        if kind not in ("like", "comment", "share", "favourite"):
            raise ValueError(f"unknown reaction {kind!r}")
        if kind == "favourite":
            return _replace_article(self, favourites=self.favourites + 1,
                                    favourited_at=_later(self.favourited_at, at))
        attr = {"like": "likes", "comment": "comments", "share": "shares"}[kind]
        return _replace_article(self, **{attr: getattr(self, attr) + 1})

    def merge(self, other: ArticleFacts) -> ArticleFacts:
        if other.article_id != self.article_id:
            raise ValueError("facts of different articles")
        return ArticleFacts(
            self.article_id, self.category or other.category, self.opened or other.opened,
            max(self.max_depth, other.max_depth), self.completed or other.completed,
            _later(self.last_read_at, other.last_read_at), _later(self.completed_at, other.completed_at),
            self.likes + other.likes, self.comments + other.comments, self.shares + other.shares,
            self.favourites + other.favourites, _later(self.favourited_at, other.favourited_at))

    @property
    def interacted(self) -> bool:
        return bool(self.likes or self.comments or self.shares)


def _replace_article(a: ArticleFacts, **changes: object) -> ArticleFacts:
    values = {f: getattr(a, f) for f in ArticleFacts.__dataclass_fields__}
    values.update(changes)
    return ArticleFacts(**values)  # type: ignore[arg-type]


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(_aware(a), _aware(b))


def is_read_complete(depth: float, dwell_s: float) -> bool:
    """Reached the end: ≥ 95 % depth and ≥ 10 s dwell, in one progress report."""
    return depth >= READ_END_DEPTH and dwell_s >= READ_END_DWELL_S


def exit_band(depth: float) -> int:
    """0 for [0, 20 %), 1 for [20 %, 40 %), … 4 for [80 %, 100 %]."""
    return min(EXIT_BANDS - 1, max(0, int(depth * EXIT_BANDS + 1e-9)))


def read_completion_rate(article_id: str, facts: Iterable[ArticleFacts]) -> ReadCompletion:
    """Distinct users who reached the end ÷ distinct users who opened it (one ArticleFacts per user), and the
    openers by the deepest point they reached in five 20 % bands."""
    bands = [0] * EXIT_BANDS
    openers = completers = 0
    for f in facts:
        if f.article_id != article_id or not f.opened:
            continue
        openers += 1
        completers += f.completed
        bands[exit_band(f.max_depth)] += 1
    return ReadCompletion(Rate.of(completers, openers), tuple(bands))


def interaction_rate(article_id: str, facts: Iterable[ArticleFacts]) -> Interaction:
    """Distinct readers with ≥ 1 like, comment or share ÷ distinct readers (openers); raw counts of likes,
    comments and shares from everyone (readers or not)."""
    readers = interacting = likes = comments = shares = 0
    for f in facts:
        if f.article_id != article_id:
            continue
        likes += f.likes
        comments += f.comments
        shares += f.shares
        if f.opened:
            readers += 1
            interacting += f.interacted
    return Interaction(Rate.of(interacting, readers), likes, comments, shares)


# --- sessions and pages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    started_at: datetime
    scene: str | None = None
    token_valid: bool = False  # an attribution token that verified with the app's keys

    @property
    def from_life_account(self) -> bool:
        return self.token_valid or self.scene == LIFE_ACCOUNT_SCENE


def life_traffic_share(day: date, sessions: Iterable[Session], tz: Zone = DEFAULT_TZ) -> Rate:
    """Mini-program sessions started on ``day`` that entered through a life-account link (a valid token, or
    scene 1020) ÷ all sessions started that day."""
    total = life = 0
    for s in sessions:
        if local_day(s.started_at, tz) == day:
            total += 1
            life += s.from_life_account
    return Rate.of(life, total)


@dataclass(frozen=True, slots=True)
class PageView:
    page: str
    at: datetime
    foreground_s: float


def capped_stay(foreground_s: float) -> float:
    if foreground_s < 0:
        raise ValueError("foreground_s must be ≥ 0")
    return min(foreground_s, PAGE_STAY_CAP_S)


def avg_page_stay_seconds(page: str, day: date, views: Iterable[PageView], tz: Zone = DEFAULT_TZ) -> Rate:
    """Mean foreground seconds per view of ``page`` on ``day``, each view capped at 30 minutes
    (numerator: total capped seconds; denominator: views)."""
    total = 0.0
    n = 0
    for v in views:
        if v.page == page and local_day(v.at, tz) == day:
            total += capped_stay(v.foreground_s)
            n += 1
    return Rate.of(total, n)


# --- orders -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """One order (key: ``out_trade_no``), folded from every notification and order_placed event for it.
    ``paid_at`` is the earliest paid notification's time (a partial-refund notification carries the refund
    time, which is later, so the minimum converges on the payment), ``refunded_cents`` the largest refund_fee
    seen (Alipay reports the cumulative refund), ``closed`` whether TRADE_CLOSED was seen (a paid order only
    closes by a full refund). All merge order-insensitively; a notification delivered twice changes nothing."""

    out_trade_no: str
    amount_cents: int = 0
    paid_at: datetime | None = None
    refunded_cents: int = 0
    closed: bool = False
    coupon_used: bool = False

    def observe_trade(self, status: str, at: datetime, amount_cents: int,
                      refund_cents: int | None = None) -> OrderFacts:
        """A trade notification (``trade_status``, event time, total_amount and refund_fee in cents)."""
        paid_at = self.paid_at
        if status in PAID_STATUSES:
            paid_at = _earlier(paid_at, _aware(at))
        return OrderFacts(self.out_trade_no, max(self.amount_cents, amount_cents), paid_at,
                          max(self.refunded_cents, refund_cents or 0), self.closed or status == CLOSED_STATUS,
                          self.coupon_used)

    def observe_placed(self, amount_cents: int, coupon_used: bool) -> OrderFacts:
        """The mini program's order_placed event (amount and whether a coupon was used)."""
        return OrderFacts(self.out_trade_no, max(self.amount_cents, amount_cents), self.paid_at,
                          self.refunded_cents, self.closed, self.coupon_used or coupon_used)

    def merge(self, other: OrderFacts) -> OrderFacts:
        if other.out_trade_no != self.out_trade_no:
            raise ValueError("facts of different orders")
        return OrderFacts(self.out_trade_no, max(self.amount_cents, other.amount_cents),
                          _earlier(self.paid_at, other.paid_at), max(self.refunded_cents, other.refunded_cents),
                          self.closed or other.closed, self.coupon_used or other.coupon_used)

    @property
    def fully_refunded(self) -> bool:
        return self.paid_at is not None and (
            self.closed or (self.amount_cents > 0 and self.refunded_cents >= self.amount_cents))

    @property
    def paid(self) -> bool:
        """Paid (TRADE_SUCCESS or TRADE_FINISHED seen) and not fully refunded; a partial refund keeps it."""
        return self.paid_at is not None and not self.fully_refunded


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


Orders = Mapping[str, OrderFacts]  # one user's orders keyed by out_trade_no


def observe_trade(orders: Orders, out_trade_no: str, status: str, at: datetime, amount_cents: int,
                  refund_cents: int | None = None) -> dict[str, OrderFacts]:
    """``orders`` with one trade notification folded in (the dedupe by out_trade_no is the key)."""
    out = dict(orders)
    out[out_trade_no] = out.get(out_trade_no, OrderFacts(out_trade_no)).observe_trade(
        status, at, amount_cents, refund_cents)
    return out


def to_cents(amount: Decimal | str | int) -> int:
    """A yuan amount as Alipay sends it (``total_amount``, ``refund_fee``: "12.30") in integer cents."""
    value = Decimal(str(amount)) * 100
    if value != value.to_integral_value():
        raise ValueError(f"not a whole number of cents: {amount!r}")
    return int(value)


def window_days(as_of: date, days: int) -> tuple[date, date]:
    """The ``days`` calendar days ending with ``as_of`` (inclusive)."""
    return as_of - timedelta(days=days - 1), as_of


def paid_in_window(orders: Iterable[OrderFacts], first: date, last: date, tz: Zone = DEFAULT_TZ) -> list[OrderFacts]:
    """Paid orders (see :attr:`OrderFacts.paid`) whose payment falls on a day in [first, last]."""
    zone = zone_of(tz)
    out = []
    for o in orders:
        if o.paid and o.paid_at is not None and first <= o.paid_at.astimezone(zone).date() <= last:
            out.append(o)
    return out


def _buyer_counts(users: Iterable[Orders], as_of: date, today: date | None,
                  tz: Zone) -> tuple[int, int, int, bool]:
    first, last = window_days(as_of, PURCHASE_WINDOW_DAYS)
    orders = buyers = repeaters = 0
    for user in users:
        n = len(paid_in_window(user.values(), first, last, tz))
        if n:
            orders += n
            buyers += 1
            repeaters += n >= 2
    return orders, buyers, repeaters, today is None or today > as_of


def purchase_frequency_30d(users: Iterable[Orders], as_of: date, today: date | None = None,
                           tz: Zone = DEFAULT_TZ) -> Rate:
    """Paid orders in the 30 days ending with ``as_of`` ÷ distinct buyers in them (``complete`` once ``as_of``
    has ended, when ``today`` is given)."""
    orders, buyers, _, complete = _buyer_counts(users, as_of, today, tz)
    return Rate.of(orders, buyers, complete)


def repeat_buyer_rate_30d(users: Iterable[Orders], as_of: date, today: date | None = None,
                          tz: Zone = DEFAULT_TZ) -> Rate:
    """Buyers with ≥ 2 paid orders in the 30 days ending with ``as_of`` ÷ buyers with ≥ 1."""
    _, buyers, repeaters, complete = _buyer_counts(users, as_of, today, tz)
    return Rate.of(repeaters, buyers, complete)


# --- attribution and campaigns ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Jump:
    """A session entered through a verified attribution token of ``campaign``."""

    at: datetime
    campaign: str


def attribute_order(jumps: Iterable[Jump], order_at: datetime,
                    window: timedelta = ATTRIBUTION_WINDOW) -> str | None:
    """The campaign an order at ``order_at`` is attributed to: the user's last jump at or before the order and
    no more than ``window`` before it (last click-through wins). None when no jump qualifies. At the same
    instant the campaign that sorts last wins (deterministic). An order goes to at most one campaign."""
    best: Jump | None = None
    for j in jumps:
        if j.at <= order_at and order_at - j.at <= window and (best is None or j > best):
            best = j
    return None if best is None else best.campaign


@dataclass(frozen=True, slots=True)
class CampaignUser:
    """What the conversion rate needs of one user: their jumps (all campaigns) and their orders."""

    jumps: frozenset[Jump]
    orders: Orders = field(default_factory=dict)


def post_jump_conversion_rate(campaign: str, users: Iterable[CampaignUser], now: datetime) -> Rate:
    """Distinct users with ≥ 1 paid order attributed to ``campaign`` within 7 days of their first jump for it
    ÷ distinct users who jumped for it. ``complete`` once every jumper's 7 days have passed at ``now``."""
    jumped = converted = 0
    complete = True
    for u in users:
        mine = [j.at for j in u.jumps if j.campaign == campaign]
        if not mine:
            continue
        jumped += 1
        first = min(mine)
        deadline = first + CONVERSION_WINDOW
        if deadline > now:
            complete = False
        for o in u.orders.values():
            if (o.paid and o.paid_at is not None and first <= o.paid_at <= deadline
                    and attribute_order(u.jumps, o.paid_at) == campaign):
                converted += 1
                break
    return Rate.of(converted, jumped, complete)


@dataclass(frozen=True, slots=True)
class CouponGrant:
    """One issued coupon (key: ``grant_id``, e.g. the out_biz_no). Redeemed implies issued."""

    grant_id: str
    issued: bool = True
    redeemed: bool = False

    def merge(self, other: CouponGrant) -> CouponGrant:
        return CouponGrant(self.grant_id, self.issued or other.issued, self.redeemed or other.redeemed)


def coupon_redemption_rate(grants: Iterable[CouponGrant]) -> Rate:
    """Redeemed ÷ issued, each grant counted once by ``grant_id`` (duplicates are merged)."""
    merged: dict[str, CouponGrant] = {}
    for g in grants:
        merged[g.grant_id] = merged[g.grant_id].merge(g) if g.grant_id in merged else g
    issued = sum(1 for g in merged.values() if g.issued or g.redeemed)
    redeemed = sum(1 for g in merged.values() if g.redeemed)
    return Rate.of(redeemed, issued)


def conversion(converted: Sequence[bool] | Iterable[bool], complete: bool = True) -> Rate:
    """Share of a group that converted (one bool per user)."""
    n = c = 0
    for x in converted:
        n += 1
        c += bool(x)
    return Rate.of(c, n, complete)


def uplift(treated: Rate, holdout: Rate) -> Uplift:
    """conversion(treated) − conversion(holdout) (absolute, in rate points). The holdout is chosen by a stable
    hash (``lifelink.domain.campaigns.in_holdout``); both groups must be measured over the same window."""
    value = None if treated.value is None or holdout.value is None else treated.value - holdout.value
    return Uplift(treated, holdout, value, treated.complete and holdout.complete)


# --- counter contributions: keep the figures as counters, updated by deltas ---------------------------------
#
# Scanning every profile to answer a query is too slow; the aggregator keeps counters instead. For a fact type,
# ``*_counters(facts)`` says what one user (or user × article) contributes to which counter; when the facts
# change, add ``counter_delta(before, after)`` to the counters. Since the facts are order-insensitive, so are
# the counters: a late event that moves a user to an earlier cohort takes them out of the old one. Summing the
# contributions of every user gives exactly what the metric functions above compute (tests check this).

CounterKey = tuple[str, ...]


def counter_delta(before: Mapping[CounterKey, int], after: Mapping[CounterKey, int]) -> dict[CounterKey, int]:
    """The non-zero changes that turn counters holding ``before`` into counters holding ``after``."""
    out: dict[CounterKey, int] = {}
    for key in before.keys() | after.keys():
        change = after.get(key, 0) - before.get(key, 0)
        if change:
            out[key] = change
    return out


def activity_counters(f: ActivityFacts, max_n: int = 30) -> dict[CounterKey, int]:
    """("cohort", D), ("returned_7d", D) and ("on", D, n) for each n in 1…max_n the user was active on D+n,
    with D their first active day (ISO dates). return_rate_7d(D) = returned_7d / cohort; day-N on = on / cohort."""
    if f.first_active_day is None:
        return {}
    d = f.first_active_day.isoformat()
    out: dict[CounterKey, int] = {("cohort", d): 1}
    if f.days & _RETURN_MASK:
        out[("returned_7d", d)] = 1
    bits = f.days >> 1
    n = 1
    while bits and n <= max_n:
        if bits & 1:
            out[("on", d, str(n))] = 1
        bits >>= 1
        n += 1
    return out


def follow_counters(f: FollowFacts, tz: Zone = DEFAULT_TZ) -> dict[CounterKey, int]:
    """("gained", day) and ("lost", day): the user's state changes per calendar day."""
    out: dict[CounterKey, int] = {}
    for at, followed in f.transitions():
        key = ("gained" if followed else "lost", local_day(at, tz).isoformat())
        out[key] = out.get(key, 0) + 1
    return out


def article_counters(f: ArticleFacts) -> dict[CounterKey, int]:
    """("openers", a), ("completers", a), ("exit_band", a, i), ("interacting", a) for one user × article.
    (Likes, comments and shares are plain counters: add one per event.)"""
    if not f.opened:
        return {}
    a = f.article_id
    out: dict[CounterKey, int] = {("openers", a): 1, ("exit_band", a, str(exit_band(f.max_depth))): 1}
    if f.completed:
        out[("completers", a)] = 1
    if f.interacted:
        out[("interacting", a)] = 1
    return out


def session_counters(s: Session, tz: Zone = DEFAULT_TZ) -> dict[CounterKey, int]:
    """("sessions", day) and ("life_sessions", day) for one session (count each session event once)."""
    day = local_day(s.started_at, tz).isoformat()
    out: dict[CounterKey, int] = {("sessions", day): 1}
    if s.from_life_account:
        out[("life_sessions", day)] = 1
    return out


def page_view_counters(v: PageView, tz: Zone = DEFAULT_TZ) -> dict[CounterKey, float]:
    """("page_views", page, day) += 1 and ("page_seconds", page, day) += the capped stay, for one view."""
    day = local_day(v.at, tz).isoformat()
    return {("page_views", v.page, day): 1, ("page_seconds", v.page, day): capped_stay(v.foreground_s)}


def purchase_counters(orders: Orders, tz: Zone = DEFAULT_TZ) -> dict[CounterKey, int]:
    """For every as-of day whose 30-day window holds a paid order of the user: ("orders_30d", day) += the number
    of them, ("buyers_30d", day) = 1 and ("repeat_buyers_30d", day) = 1 when ≥ 2. A paid order touches 30
    as-of days (about 90 keys): pre-aggregate within a batch."""
    zone = zone_of(tz)
    days = sorted(o.paid_at.astimezone(zone).date() for o in orders.values() if o.paid and o.paid_at is not None)
    if not days:
        return {}
    per_day: dict[date, int] = {}
    for d in days:
        for k in range(PURCHASE_WINDOW_DAYS):
            as_of = d + timedelta(days=k)
            per_day[as_of] = per_day.get(as_of, 0) + 1
    out: dict[CounterKey, int] = {}
    for as_of, n in per_day.items():
        key = as_of.isoformat()
        out[("orders_30d", key)] = n
        out[("buyers_30d", key)] = 1
        if n >= 2:
            out[("repeat_buyers_30d", key)] = 1
    return out
