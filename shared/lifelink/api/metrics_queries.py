"""``GET /metrics`` and ``GET /profiles/{app}/{user}``: the aggregated metrics and user profiles."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from lifelink.api.resolver import ApiDeps


def register(app: APIGatewayHttpResolver, deps: Callable[[], ApiDeps]) -> None:
    """Adds the metrics and profile routes to ``app`` (being written: issue 5)."""
