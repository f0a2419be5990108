"""``POST /events``: behaviour events from the mini program's backend, validated item by item, onto the events
queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from lifelink.api.resolver import ApiDeps


def register(app: APIGatewayHttpResolver, deps: Callable[[], ApiDeps]) -> None:
    """Adds ``POST /events`` to ``app`` (being written: issue 5)."""
