from __future__ import annotations

import base64

import pytest

from lifelink_local.front import build_event, is_text_content_type, make_routes, result_to_http


def noop(event: dict) -> dict:
    return {}


@pytest.mark.parametrize(
    ("ctype", "text"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("text/plain", True),
        ("application/xml", True),
        ("application/x-www-form-urlencoded; charset=GBK", False),
        ("application/octet-stream", False),
        (None, False),
    ],
)
def test_which_bodies_are_text(ctype: str | None, text: bool) -> None:
    assert is_text_content_type(ctype) is text


def test_static_routes_win_over_parameters() -> None:
    routes = make_routes([("GET", "/items/{id}", noop, None), ("GET", "/items/special", noop, None)])
    assert routes[0].path == "/items/special"
    assert routes[1].match("/items/42") == {"id": "42"}
    assert routes[1].match("/items/4/2") is None
    greedy = make_routes([("ANY", "/files/{proxy+}", noop, None)])[0]
    assert greedy.match("/files/a/b") == {"proxy": "a/b"}


def test_duplicate_headers_and_query_values_are_comma_joined() -> None:
    route = make_routes([("POST", "/p", noop, None)])[0]
    event = build_event(
        method="POST",
        raw_path="/p",
        raw_query="a=1&a=2",
        header_items=[("X-A", "1"), ("x-a", "2")],
        body=b"\xb9\xfe",
        source_ip="127.0.0.1",
        protocol="HTTP/1.1",
        route=route,
        path_parameters={},
    )
    assert event["headers"]["x-a"] == "1,2"
    assert event["queryStringParameters"] == {"a": "1,2"}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xb9\xfe"


def test_non_utf8_json_body_falls_back_to_base64() -> None:
    route = make_routes([("POST", "/p", noop, None)])[0]
    event = build_event(
        method="POST",
        raw_path="/p",
        raw_query="",
        header_items=[("Content-Type", "application/json")],
        body="中".encode("gbk"),
        source_ip="127.0.0.1",
        protocol="HTTP/1.1",
        route=route,
        path_parameters={},
    )
    assert event["isBase64Encoded"] is True


def test_results_without_status_code_become_json_200() -> None:
    r = result_to_http({"a": 1})
    assert (r.status, r.body) == (200, b'{"a": 1}')
    r = result_to_http({"statusCode": 204})
    assert (r.status, r.body) == (204, b"")
