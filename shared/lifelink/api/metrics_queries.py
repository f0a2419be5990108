"""``GET /metrics`` and ``GET /profiles/{app}/{user}``: the aggregated metrics and user profiles.

Tables come from ``PROFILES_TABLE`` and ``METRICS_TABLE`` (template.yaml sets them on InternalApiFunction); the
DynamoDB client and the app registry are the API's own (``ApiDeps``). User ids in paths are raw; they are never
logged (lifelink.privacy.hash_id).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query

from lifelink.api.errors import ApiError, field_error
from lifelink.api.models import ErrorBody
from lifelink.privacy import hash_id

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from lifelink.aggregation.groups import GroupDirectory
    from lifelink.api.resolver import ApiDeps

DEFAULT_RANGE_DAYS = 30


def _answers(ok: str, not_found: str, invalid: bool = True) -> dict[int, Any]:
    """The documented answers: a JSON object, or the ``ErrorBody`` of a refusal (422: invalid parameters)."""
    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"model": ErrorBody}}}

    answers = {
        200: {"description": ok, "content": {"application/json": {"schema": {"type": "object"}}}},
        404: error(not_found),
        503: error("The metrics tables are not configured"),
    }
    if invalid:
        answers[422] = error("Invalid parameters")
    return answers


def _tables() -> tuple[str, str]:
    profiles, metrics = os.environ.get("PROFILES_TABLE"), os.environ.get("METRICS_TABLE")
    if not profiles or not metrics:
        raise ApiError(503, [field_error(("config",), "PROFILES_TABLE / METRICS_TABLE are not set", "unavailable")])
    return profiles, metrics


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, [field_error(("query", name), "an ISO date (YYYY-MM-DD)", "date_parsing")]) from None


def register(app: APIGatewayHttpResolver, deps: Callable[[], ApiDeps],
             clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Adds the metrics and profile routes to ``app``."""
    directories: dict[int, GroupDirectory] = {}

    def directory(d: ApiDeps) -> GroupDirectory:
        from lifelink.aggregation.groups import GroupDirectory

        found = directories.get(id(d.registry))
        if found is None:
            found = directories[id(d.registry)] = GroupDirectory(d.registry)
        return found

    def known_app(d: ApiDeps, app_id: str, loc: tuple[str, ...]) -> None:
        if d.registry.get(app_id) is None:
            raise ApiError(404, [field_error(loc, "no such app", "not_found")])

    @app.get(
        "/metrics",
        summary="A metric of BRIEF §4 over a range of days",
        description=(
            "Counters kept by the events consumer, as rates with numerator, denominator, value and `complete` "
            "(false while the metric's maturity window is open). Days are the app's calendar days "
            "(Asia/Shanghai unless configured). `by=day` gives a point per day (and page, article or campaign); "
            "`by=total` sums them over the range."
        ),
        responses=_answers("The metric's points", "No such app, or (uplift) no such campaign for it"),
        tags=["metrics"],
    )
    def get_metrics(
        app_id: Annotated[str, Query(alias="app", min_length=1, max_length=64)],
        metric: Annotated[str, Query(min_length=1, max_length=64)],
        from_: Annotated[str | None, Query(alias="from", description="First day (default: 30 days ago).")] = None,
        to: Annotated[str | None, Query(description="Last day, inclusive (default: today).")] = None,
        by: Annotated[str, Query(description="day or total")] = "day",
        page: Annotated[str | None, Query(max_length=256)] = None,
        article: Annotated[str | None, Query(max_length=64)] = None,
        campaign: Annotated[str | None, Query(max_length=64)] = None,
        n: Annotated[int, Query(ge=0, le=30, description="day_n_retention: the day N")] = 1,
    ) -> dict[str, Any]:
        from lifelink.aggregation.queries import MetricQuery, MetricsReader, QueryError
        from lifelink.store.metrics_store import MetricsStore

        d = deps()
        known_app(d, app_id, ("query", "app"))
        _, metrics_table = _tables()
        dirs = directory(d)
        today = clock().astimezone(dirs(app_id).policy.tz).date()
        last = _day(to, "to") or today
        first = _day(from_, "from") or (last - timedelta(days=DEFAULT_RANGE_DAYS - 1))
        if metric == "uplift":
            return _uplift(d, dirs, app_id, campaign)
        reader = MetricsReader(MetricsStore(d.dynamodb, metrics_table), dirs, clock)
        try:
            return reader.answer(app_id, MetricQuery(metric, first, last, by, page, article, campaign, n))
        except QueryError as exc:
            raise ApiError(422, [field_error(("query", exc.field), str(exc), "value_error")]) from None

    def _uplift(d: ApiDeps, dirs: GroupDirectory, app_id: str, campaign_id: str | None) -> dict[str, Any]:
        from lifelink.aggregation.queries import campaign_uplift
        from lifelink.store.campaigns import CampaignStore, campaign_audience
        from lifelink.store.profiles import ProfileStore

        if not campaign_id:
            raise ApiError(422, [field_error(("query", "campaign"), "uplift needs a campaign", "missing")])
        stored = CampaignStore(d.dynamodb, d.state_table).get(campaign_id)
        info = dirs(app_id)
        if stored is None or stored.campaign.life_account != info.group:
            raise ApiError(404, [field_error(("query", "campaign"), "no such campaign for this app", "not_found")])
        c = stored.campaign
        users = list(campaign_audience(d.audience, c))
        profiles_table, _ = _tables()
        answer = campaign_uplift(ProfileStore(d.dynamodb, profiles_table), users, info.group, c.id, c.life_account,
                                 c.holdout_share, clock())
        return {"app": app_id, "group": info.group, "metric": "uplift", "timezone": str(info.policy.tz),
                "points": [answer]}

    @app.get(
        "/profiles/<app>/<user>",
        summary="One user's profile",
        description=(
            "Follow state, member tier, active days, paid orders and amounts in rolling 7/30/90-day windows, "
            "campaign jumps and sends, and tags with their evidence and expiry. `user` is the open_id or user_id "
            "as the app knows it; a mini program's users are looked up in its life account's group."
        ),
        responses=_answers("The profile", "No such app, or no profile for this user", invalid=False),
        tags=["metrics"],
    )
    def get_profile(app: str, user: str) -> dict[str, Any]:
        app_id = app
        from lifelink.aggregation.queries import read_profile
        from lifelink.store.profiles import ProfileStore

        d = deps()
        known_app(d, app_id, ("path", "app"))
        profiles_table, _ = _tables()
        found = read_profile(ProfileStore(d.dynamodb, profiles_table), directory(d)(app_id), user, clock())
        if found is None:
            d.logger.info("profile not found", extra={"app_id": app_id, "user": hash_id(user)})
            raise ApiError(404, [field_error(("path", "user"), "no profile for this user", "not_found")])
        return found
