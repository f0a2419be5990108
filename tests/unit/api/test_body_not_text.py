"""A body that is not UTF-8 text is an invalid body (422, the ErrorBody shape), never a 500: schemathesis found
Powertools' UnicodeDecodeError escaping as a server error on every route with a JSON body."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.api.conftest import Call, outbound_bodies

NOT_UTF8 = b"\xa3\x83{\"app_id\": \"x\"}"


@pytest.mark.parametrize("path", ["/messages", "/subscriptions", "/events", "/campaigns", "/campaigns/x/votes"])
def test_bytes_that_are_not_utf8_are_a_422(call: Call, stack: Any, path: str) -> None:
    answer = call("POST", path, NOT_UTF8, base64_body=True)

    assert answer.status == 422
    assert answer.body == {"errors": [{"loc": ["body"], "msg": "the body is not UTF-8 text", "type": "json_invalid"}]}
    assert outbound_bodies(stack) == []


def test_a_route_without_a_body_ignores_one(call: Call) -> None:
    assert call("GET", "/campaigns", NOT_UTF8, base64_body=True).status == 200
