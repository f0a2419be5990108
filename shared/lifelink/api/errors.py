"""Error answers: ``{"errors": [{"loc": [...], "msg": "...", "type": "..."}]}`` for every 4xx."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types


class ApiError(Exception):
    """Raised by a route to answer ``status`` with these field errors."""

    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{status}: {errors}")
        self.status = status
        self.errors = errors


def field_error(loc: Iterable[str | int], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": type_}


def clean_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic-style errors without ``input``, ``ctx`` and ``url``: never echo what was sent (user ids)."""
    return [field_error(e.get("loc", ()), str(e.get("msg", "")), str(e.get("type", "value_error"))) for e in errors]


def error_response(status: int, errors: list[dict[str, Any]]) -> Response:
    return Response(status, content_types.APPLICATION_JSON, json.dumps({"errors": errors}, ensure_ascii=False))


def error_event_result(status: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The same answer as a payload-2.0 result dict, for refusals made before routing (e.g. 413)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps({"errors": errors}, ensure_ascii=False),
        "isBase64Encoded": False,
    }
