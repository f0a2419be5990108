"""What the report shows, read through the internal API only: ``GET /metrics`` (one call per metric) and
``GET /campaigns`` for the campaign table. Never DynamoDB, never ``GET /profiles`` (no user ids are read).

A metric the API refuses (422: unknown to this deployment; 5xx) becomes an empty section that says why; a
refusal that means the whole report is wrong (no such app, unsigned or forbidden) raises :class:`ReportError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

RETENTION_DAYS = 7  # the day-N curve: N = 0 … 7
FATAL_STATUSES = (401, 403)  # and 404 on the first call: no such app


class ReportError(Exception):
    """The report cannot be made (no such app, forbidden, bad range): one message for people."""


class Answer(Protocol):
    status: int
    body: Any

    @property
    def ok(self) -> bool: ...

    def errors(self) -> list[dict[str, Any]]: ...


class Client(Protocol):
    """What the report needs of :class:`lifelink_local.api_client.ApiClient`."""

    def request(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Answer: ...


@dataclass(frozen=True)
class Section:
    """One metric's points, or why there are none (``problem``: the API's refusal, for the empty state)."""

    points: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None


@dataclass(frozen=True)
class ReportData:
    app: str
    group: str
    timezone: str
    first: date
    last: date
    today: date
    generated_at: datetime
    followers: Section  # net_follower_growth per day
    traffic: Section  # life_traffic_share, one total point
    product_views: Section  # product_viewers: distinct viewers per day, summed over the range (viewer-days)
    attributed: Section  # attributed_orders per day and campaign
    retention: Section  # return_rate_7d per cohort day
    day_n: Section  # day-N retention summed over the cohorts, one point per N
    frequency: Section  # purchase_frequency_30d per day
    repeat: Section  # repeat_buyer_rate_30d per day
    conversion: Section  # post_jump_conversion_rate per campaign
    treated: Section  # treated_conversion per campaign
    campaigns: Section  # GET /campaigns rows of this group
    uplift: dict[str, Section]  # campaign id -> the uplift answer
    completion: Section  # read_completion_rate per article
    interaction: Section  # interaction_rate per article


def _problem(answer: Answer) -> str:
    messages = "; ".join(str(e.get("msg", "")) for e in answer.errors() if e.get("msg")) or "no details"
    return f"the API answered HTTP {answer.status}: {messages}"


class _Reader:
    def __init__(self, client: Client, app: str) -> None:
        self.client = client
        self.app = app
        self.meta: dict[str, Any] = {}

    def get(self, path: str, params: dict[str, str] | None = None) -> Answer:
        answer = self.client.request("GET", path, params=params)
        if answer.status in FATAL_STATUSES or (answer.status == 404 and not self.meta):
            raise ReportError(f"GET {path} for app {self.app}: {_problem(answer)}")
        return answer

    def metric(self, metric: str, first: str | None, last: str | None, **params: str) -> Section:
        query = {"app": self.app, "metric": metric, **params}
        if first:
            query["from"] = first
        if last:
            query["to"] = last
        answer = self.get("/metrics", query)
        if not answer.ok:
            if answer.status == 422 and any(list(e.get("loc") or [])[-1:] == ["to"] for e in answer.errors()):
                raise ReportError(f"the range is refused: {_problem(answer)}")
            return Section(problem=_problem(answer))
        body = answer.body if isinstance(answer.body, dict) else {}
        if not self.meta and "from" in body:
            self.meta = body
        points = body.get("points")
        return Section([p for p in points if isinstance(p, dict)] if isinstance(points, list) else [])


def collect(client: Client, app: str, first: date | None = None, last: date | None = None,
            now: datetime | None = None) -> ReportData:
    """Every figure the report shows, for ``app``'s group over ``first`` … ``last`` (the API's defaults: the 30
    days ending today in the app's zone)."""
    r = _Reader(client, app)
    f = first.isoformat() if first else None
    t = last.isoformat() if last else None
    followers = r.metric("net_follower_growth", f, t)
    meta = r.meta
    if not meta:  # the first answer names the range, zone and group; ask a metric every deployment has
        r.metric("return_rate_7d", f, t)
        meta = r.meta
    today = date.fromisoformat(meta["today"]) if meta.get("today") else datetime.now(UTC).date()
    last_day = date.fromisoformat(meta["to"]) if meta.get("to") else (last or today)
    first_day = date.fromisoformat(meta["from"]) if meta.get("from") else (first or last_day - timedelta(days=29))
    f, t = first_day.isoformat(), last_day.isoformat()
    group = str(meta.get("group") or app)
    day_n = []
    for n in range(RETENTION_DAYS + 1):
        section = r.metric("day_n_retention", f, t, by="total", n=str(n))
        if section.problem:
            day_n = []
            break
        day_n += [{**p, "n": n} for p in section.points if p.get("denominator")]
    campaigns = _campaigns(r, group)
    conversion = r.metric("post_jump_conversion_rate", f, t)
    treated = r.metric("treated_conversion", f, t)
    uplift = {str(c["id"]): r.metric("uplift", f, t, campaign=str(c["id"])) for c in campaigns.points}
    return ReportData(
        app=app,
        group=group,
        timezone=str(meta.get("timezone") or "Asia/Shanghai"),
        first=first_day,
        last=last_day,
        today=today,
        generated_at=now or datetime.now(UTC),
        followers=followers,
        traffic=r.metric("life_traffic_share", f, t, by="total"),
        product_views=r.metric("product_viewers", f, t, by="total"),
        attributed=r.metric("attributed_orders", f, t),
        retention=r.metric("return_rate_7d", f, t),
        day_n=Section(day_n),
        frequency=r.metric("purchase_frequency_30d", f, t),
        repeat=r.metric("repeat_buyer_rate_30d", f, t),
        conversion=conversion,
        treated=treated,
        campaigns=campaigns,
        uplift=uplift,
        completion=r.metric("read_completion_rate", f, t),
        interaction=r.metric("interaction_rate", f, t),
    )


def _campaigns(r: _Reader, group: str) -> Section:
    answer = r.get("/campaigns")
    if not answer.ok:
        return Section(problem=_problem(answer))
    rows = answer.body.get("campaigns", []) if isinstance(answer.body, dict) else []
    return Section([c for c in rows if isinstance(c, dict) and c.get("id") and c.get("life_account") == group])


def default_app(client: Client) -> str | None:
    """The life account of the first campaign, when the caller names no app (None when there is none)."""
    answer = client.request("GET", "/campaigns")
    if not answer.ok or not isinstance(answer.body, dict):
        return None
    for c in answer.body.get("campaigns", []):
        if isinstance(c, dict) and c.get("life_account"):
            return str(c["life_account"])
    return None
