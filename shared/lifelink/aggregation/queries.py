"""Answers of ``GET /metrics`` and ``GET /profiles``: every metric of BRIEF §4 from the sharded counters (one
Query per shard and counter name), with its numerator, denominator, value and maturity (``complete``).

How each is computed (counter names of lifelink.domain.metrics and lifelink.aggregation.fold):
- net_follower_growth(day) = gained − lost (state changes per day);
- return_rate_7d(D) = returned_7d ÷ cohort, complete once D+7 has ended; day_n_retention(D, n) = on(D, n) ÷ cohort
  (the cohort metrics are counters too: each user adds to their first-active day's cohort, and a late first
  visit moves them, by the counter delta of their facts);
- life_traffic_share(day) = life_sessions ÷ sessions; avg_page_stay_seconds(page, day) = page_seconds ÷ page_views;
- read_completion_rate(article) = completers ÷ openers (+ exit bands); interaction_rate = interacting ÷ openers
  (+ likes, comments, shares);
- purchase_frequency_30d(day) = orders_30d ÷ buyers_30d; repeat_buyer_rate_30d(day) = repeat_buyers_30d ÷ buyers_30d;
- post_jump_conversion_rate(campaign) = converted ÷ jumpers over the users whose first jump is in the range;
  attributed_orders(day, campaign); treated_conversion(campaign) = treated_converted ÷ treated (users sent the
  campaign, paid within 7 days of the first send: the treated side of uplift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lifelink.aggregation.aggregator import GroupInfo
from lifelink.domain.metrics import EXIT_BANDS, RETURN_WINDOW_DAYS, Rate
from lifelink.store.metrics_store import MetricsStore
from lifelink.store.profiles import Profile, ProfileStore

MAX_RANGE_DAYS = 400


class QueryError(ValueError):
    """A query that cannot be answered (unknown metric, bad range): the API answers 422."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _rate(numerator: float, denominator: float, complete: bool) -> dict[str, Any]:
    r = Rate.of(numerator, int(denominator), complete)
    return {"numerator": r.numerator, "denominator": r.denominator, "value": r.value, "complete": r.complete}


@dataclass(frozen=True)
class MetricQuery:
    metric: str
    first: date
    last: date
    by: str = "day"  # "day" (a point per day / dimension) or "total" (summed over the range)
    page: str | None = None
    article: str | None = None
    campaign: str | None = None
    n: int = 1


DAILY_RATES: dict[str, tuple[str, str]] = {  # metric -> (numerator counter, denominator counter), keyed by day
    "life_traffic_share": ("life_sessions", "sessions"),
    "purchase_frequency_30d": ("orders_30d", "buyers_30d"),
    "repeat_buyer_rate_30d": ("repeat_buyers_30d", "buyers_30d"),
}
METRICS = (
    "net_follower_growth", "return_rate_7d", "day_n_retention", "life_traffic_share", "avg_page_stay_seconds",
    "read_completion_rate", "interaction_rate", "purchase_frequency_30d", "repeat_buyer_rate_30d",
    "post_jump_conversion_rate", "attributed_orders", "treated_conversion", "coupon_redemption_rate", "uplift",
    "product_viewers",
)


class MetricsReader:
    def __init__(self, store: MetricsStore, directory: Callable[[str], GroupInfo],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._directory = directory
        self._clock = clock

    def answer(self, app_id: str, q: MetricQuery) -> dict[str, Any]:
        if q.metric not in METRICS:
            raise QueryError("metric", f"unknown metric; one of {', '.join(METRICS)}")
        if q.last < q.first or (q.last - q.first).days > MAX_RANGE_DAYS:
            raise QueryError("to", f"'to' must be on or after 'from', at most {MAX_RANGE_DAYS} days later")
        if q.metric == "uplift":
            raise QueryError("metric", "uplift is read from profiles: lifelink.aggregation.queries.campaign_uplift")
        if q.by not in ("day", "total"):
            raise QueryError("by", "by is 'day' or 'total'")
        if q.by == "total" and q.metric in ("purchase_frequency_30d", "repeat_buyer_rate_30d"):
            raise QueryError("by", "30-day window metrics are per day (each day is its own window)")
        info = self._directory(app_id)
        today = self._clock().astimezone(info.policy.tz).date()
        points = getattr(self, "_" + q.metric)(info.group, q, today)
        if q.by == "total":
            points = [_total(points)]
        return {"app": app_id, "group": info.group, "metric": q.metric, "from": q.first.isoformat(),
                "to": q.last.isoformat(), "timezone": str(info.policy.tz), "today": today.isoformat(),
                "by": q.by, "points": points}

    def _c(self, group: str, name: str, q: MetricQuery | None = None) -> dict[str, float | int]:
        if q is None:
            return self._store.counters(group, name)
        return self._store.counters(group, name, q.first.isoformat(), q.last.isoformat())

    # ---- day metrics --------------------------------------------------------------------------------------

    def _net_follower_growth(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        gained, lost = self._c(group, "gained", q), self._c(group, "lost", q)
        out = []
        for day in sorted(gained.keys() | lost.keys()):
            g, lo = int(gained.get(day, 0)), int(lost.get(day, 0))
            complete = date.fromisoformat(day) < today
            out.append({"day": day, "gained": g, "lost": lo, "net": g - lo, "complete": complete})
        return out

    def _return_rate_7d(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        cohort, back = self._c(group, "cohort", q), self._c(group, "returned_7d", q)
        return [{"day": d, **_rate(back.get(d, 0), n, today > date.fromisoformat(d) + timedelta(RETURN_WINDOW_DAYS))}
                for d, n in sorted(cohort.items())]

    def _day_n_retention(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        if not 0 <= q.n <= 30:
            raise QueryError("n", "n must be between 0 and 30")
        cohort, on = self._c(group, "cohort", q), self._c(group, "on", q)
        out = []
        for d, size in sorted(cohort.items()):
            active = size if q.n == 0 else on.get(f"{d}#{q.n}", 0)
            out.append({"day": d, "n": q.n, **_rate(active, size, today > date.fromisoformat(d) + timedelta(q.n))})
        return out

    def _daily_rate(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        num_name, den_name = DAILY_RATES[q.metric]
        num, den = self._c(group, num_name, q), self._c(group, den_name, q)
        return [{"day": d, **_rate(num.get(d, 0), n, date.fromisoformat(d) < today)} for d, n in sorted(den.items())]

    _life_traffic_share = _daily_rate
    _purchase_frequency_30d = _daily_rate
    _repeat_buyer_rate_30d = _daily_rate

    def _product_viewers(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        """Distinct users with a product view, per day (the funnel's step between a session and an order)."""
        viewers = self._c(group, "product_viewers", q)
        return [
            {"day": d, "viewers": int(n), "complete": date.fromisoformat(d) < today} for d, n in sorted(viewers.items())
        ]

    def _avg_page_stay_seconds(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        views, seconds = self._c(group, "page_views", q), self._c(group, "page_seconds", q)
        out = []
        for sk, n in sorted(views.items()):
            day, page = sk.split("#", 1)
            if q.page is None or page == q.page:
                out.append({"day": day, "page": page, **_rate(seconds.get(sk, 0), n, date.fromisoformat(day) < today)})
        return out

    # ---- articles (all time) ---------------------------------------------------------------------------------

    def _read_completion_rate(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        openers, completers = self._c(group, "openers"), self._c(group, "completers")
        bands = self._c(group, "exit_band")
        out = []
        for a, n in sorted(openers.items()):
            if q.article is None or a == q.article:
                exits = [int(bands.get(f"{a}#{i}", 0)) for i in range(EXIT_BANDS)]
                out.append({"article": a, **_rate(completers.get(a, 0), n, True), "exit_bands": exits})
        return out

    def _interaction_rate(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        openers, inter = self._c(group, "openers"), self._c(group, "interacting")
        raw = {name: self._c(group, name) for name in ("likes", "comments", "shares")}
        out = []
        for a in sorted(openers.keys() | raw["likes"].keys() | raw["comments"].keys() | raw["shares"].keys()):
            if q.article is None or a == q.article:
                counts = {name: int(values.get(a, 0)) for name, values in raw.items()}
                out.append({"article": a, **_rate(inter.get(a, 0), openers.get(a, 0), True), **counts})
        return out

    # ---- campaigns -------------------------------------------------------------------------------------------

    def _by_campaign(self, group: str, q: MetricQuery, today: date, num: str, den: str) -> list[dict[str, Any]]:
        numerators, denominators = self._c(group, num, q), self._c(group, den, q)
        sums: dict[str, list[float]] = {}
        for source, index in ((numerators, 0), (denominators, 1)):
            for sk, n in source.items():
                day, campaign = sk.split("#", 1)
                if q.campaign is None or campaign == q.campaign:
                    entry = sums.setdefault(campaign, [0, 0, 0])
                    entry[index] += n
                    entry[2] = max(entry[2], date.fromisoformat(day).toordinal())
        out = []
        for campaign, (n, d, last) in sorted(sums.items()):
            complete = today > date.fromordinal(int(last)) + timedelta(days=7)
            out.append({"campaign": campaign, **_rate(n, d, complete)})
        return out

    def _post_jump_conversion_rate(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        return self._by_campaign(group, q, today, "converted", "jumpers")

    def _treated_conversion(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        return self._by_campaign(group, q, today, "treated_converted", "treated")

    def _coupon_redemption_rate(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        """Redeemed ÷ issued per activity, for the coupons issued in the range. Never ``complete``: a coupon can
        be redeemed until it expires, which the pushes do not say."""
        points = self._by_campaign(group, q, today, "coupons_redeemed", "coupons_issued")
        return [{"activity": p.pop("campaign"), **p, "complete": False} for p in points]

    def _attributed_orders(self, group: str, q: MetricQuery, today: date) -> list[dict[str, Any]]:
        orders, cents = self._c(group, "attributed_orders", q), self._c(group, "attributed_cents", q)
        out = []
        for sk, n in sorted(orders.items()):
            day, campaign = sk.split("#", 1)
            if q.campaign is None or campaign == q.campaign:
                out.append({"day": day, "campaign": campaign, "orders": int(n), "amount_cents": int(cents.get(sk, 0)),
                            "complete": date.fromisoformat(day) < today})
        return out


def _total(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Points summed over the range (numerators, denominators and counts; complete only if all are)."""
    out: dict[str, Any] = {"complete": all(p.get("complete", True) for p in points)}
    for p in points:
        for k, v in p.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("value", "n"):
                out[k] = out.get(k, 0) + v
    if "denominator" in out:
        out["value"] = (out["numerator"] / out["denominator"]) if out["denominator"] else None
    return out


# ---- profiles --------------------------------------------------------------------------------------------


def profile_view(p: Profile, article_count: int, now: datetime, tz: Any) -> dict[str, Any]:
    """What ``GET /profiles/{app}/{user}`` shows of a profile (rolling windows end ``now``)."""
    days = sorted(p.activity.active_days)
    transitions = p.follows.transitions()
    windows = {}
    for n in (7, 30, 90):
        since = now - timedelta(days=n)
        paid = [o for o in p.orders.values() if o.paid and o.paid_at is not None and o.paid_at > since]
        windows[f"{n}d"] = {"orders": len(paid), "amount_cents": sum(o.amount_cents for o in paid),
                            "active_days": sum(1 for d in days if d > (now.astimezone(tz).date() - timedelta(n)))}
    return {
        "group": p.group,
        "user": p.user,
        "user_id": p.user_id,
        "open_id": p.open_id,
        "following": p.following,
        "follow_changed_at": transitions[-1][0].isoformat() if transitions else None,
        "tier": p.tier,
        "first_active_day": days[0].isoformat() if days else None,
        "last_active_day": days[-1].isoformat() if days else None,
        "active_days": len(days),
        "recent_active_days": [d.isoformat() for d in days[-30:]],
        "last_open_at": p.last_open_at.isoformat() if p.last_open_at else None,
        "orders": {"paid": sum(1 for o in p.orders.values() if o.paid), **windows},
        "campaigns": {"jumps": [{"campaign": j.campaign, "at": j.at.isoformat()} for j in sorted(p.jumps)],
                      "sent": {c: at.isoformat() for c, at in sorted(p.sent.items())}},
        "articles": article_count,
        "tags": [{"name": t.name, "evidence": t.evidence, "assigned_at": t.assigned_at.isoformat(),
                  "expires_at": t.expires_at.isoformat(), "expired": t.expires_at <= now}
                 for t in sorted(p.tags.values(), key=lambda t: t.name)],
        "version": p.version,
    }


def read_profile(store: ProfileStore, info: GroupInfo, user: str, now: datetime) -> dict[str, Any] | None:
    p, articles = store.get(info.group, user)
    if p is None:
        return None
    return profile_view(p, len(articles), now, info.policy.tz)


# ---- uplift (campaign, read at query time) -----------------------------------------------------------------


def campaign_uplift(store: ProfileStore, audience_users: list[str], group: str, campaign_id: str, life_account: str,
                    holdout_share: float, now: datetime) -> dict[str, Any]:
    """uplift = conversion(treated) − conversion(holdout) over the campaign's audience (its followers that the
    audience expression selects), split by ``in_holdout(app, campaign, user, share)``. Both groups are measured
    over the same window: a paid order in the 7 days from the campaign's first send to anyone (read from the
    treated users' profiles). Reads every audience member's profile (BatchGetItem): a report-time query."""
    from lifelink.domain.campaigns import in_holdout
    from lifelink.domain.metrics import CONVERSION_WINDOW, conversion, uplift

    read = store.read_many([(group, u) for u in audience_users])
    held = {u for u in audience_users if in_holdout(life_account, campaign_id, u, holdout_share)}
    sends = [p.sent[campaign_id] for p in read.profiles.values() if campaign_id in p.sent]
    start = min(sends) if sends else None

    def converted(user: str) -> bool:
        if start is None:
            return False
        p = read.profiles[(group, user)]
        return any(o.paid and o.paid_at is not None and start <= o.paid_at <= start + CONVERSION_WINDOW
                   for o in p.orders.values())

    complete = start is not None and now > start + CONVERSION_WINDOW
    treated = conversion([converted(u) for u in audience_users if u not in held], complete)
    holdout = conversion([converted(u) for u in held], complete)
    result = uplift(treated, holdout)

    def side(r: Rate) -> dict[str, Any]:
        return {"numerator": r.numerator, "denominator": r.denominator, "value": r.value}

    return {"campaign": campaign_id, "window_start": start.isoformat() if start else None,
            "treated": side(treated), "holdout": side(holdout), "value": result.value,
            "complete": result.complete, "holdout_share": holdout_share}
