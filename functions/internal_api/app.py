"""Internal API (IAM auth) over HTTP API: POST /messages, GET /messages/{ledger_key}, POST /subscriptions.

Thin: the routes and their rules live in lifelink.api; clients are created once per container.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import Logger

from lifelink.api import ApiDeps, InternalApi

logger = Logger(service="internal_api")
_api: InternalApi | None = None


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _api
    if _api is None:
        _api = InternalApi(ApiDeps.from_env(logger))
    return _api.handle(event, context)
