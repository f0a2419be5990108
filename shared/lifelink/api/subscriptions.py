"""``POST /subscriptions``: the mini program's backend reports the templates a user accepted in
``my.requestSubscribeMessage``; each becomes ``count`` one-time grants the message gateway may consume."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body

from lifelink.api.errors import ApiError, field_error
from lifelink.api.models import ErrorBody, Granted, SubscriptionReport
from lifelink.privacy import hash_id

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from lifelink.api.resolver import ApiDeps


def register(app: APIGatewayHttpResolver, deps: Callable[[], ApiDeps]) -> None:
    @app.post(
        "/subscriptions",
        summary="Record subscription-message grants",
        description=(
            "Call after `my.requestSubscribeMessage` with the accepted template ids (at most 3 per call, as "
            "Alipay asks for at most 3). Identify the user with the same id (open_id or user_id) the app's "
            "outbound jobs will use: grants are kept per (app, that id, template)."
        ),
        responses={
            200: {"description": "Grants recorded", "content": {"application/json": {"model": Granted}}},
            422: {"description": "Invalid report", "content": {"application/json": {"model": ErrorBody}}},
        },
        tags=["subscriptions"],
    )
    def post_subscriptions(report: Annotated[SubscriptionReport, Body()]) -> Granted:
        d = deps()
        record = d.registry.get(report.app_id)
        if record is None:
            raise ApiError(
                422, [field_error(("body", "app_id"), f"app {report.app_id} is not registered", "unknown_app")]
            )
        if record.kind != "mini":
            raise ApiError(
                422,
                [field_error(("body", "app_id"), f"app {report.app_id} is not a mini program", "not_a_mini_program")],
            )
        user = report.user.key
        remaining = {}
        for template_id in report.template_ids:
            d.audience.grant(report.app_id, user, template_id, report.count)
            remaining[template_id] = d.audience.grants(report.app_id, user, template_id)
        d.logger.info(
            "subscription grants recorded",
            extra={"app_id": report.app_id, "user": hash_id(user), "templates": report.template_ids},
        )
        return Granted(app_id=report.app_id, remaining=remaining)
