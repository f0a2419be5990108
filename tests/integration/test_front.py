"""The local HTTP front over real HTTP on loopback: v2 events as API Gateway builds them."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest

from lifelink_local.front import MAX_PAYLOAD_BYTES, Front

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self, response: Any = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.response = response if response is not None else {"statusCode": 200, "body": "success"}
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> Any:
        with self.lock:
            self.events.append(event)
        return self.response


@pytest.fixture
def gateway() -> Recorder:
    return Recorder({"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "success"})


@pytest.fixture
def front(gateway: Recorder) -> Iterator[Front]:
    def boom(event: dict[str, Any]) -> Any:
        raise RuntimeError("handler bug")

    binary = Recorder(
        {
            "statusCode": 201,
            "headers": {"content-type": "application/octet-stream", "x-extra": "1"},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": base64.b64encode(b"\x00\xff\xfe").decode(),
            "isBase64Encoded": True,
        }
    )
    items = Recorder({"id": "from-dict"})
    routes = [
        ("POST", "/alipay/gateway", gateway, None),
        ("POST", "/binary", binary, None),
        ("GET", "/items/{id}", items, None),
        ("GET", "/internal/stats", Recorder({"statusCode": 200, "body": "{}"}), "AWS_IAM"),
        ("POST", "/boom", boom, None),
    ]
    server = Front(routes, port=0)
    server.start()
    server.recorders = {"binary": binary, "items": items}  # type: ignore[attr-defined]
    yield server
    server.stop()


def test_gbk_form_post_becomes_a_v2_event_with_the_exact_bytes(front: Front, gateway: Recorder) -> None:
    content = "<XML><Text><![CDATA[你好，世界 100%+&=]]></Text></XML>"
    body = (
        "charset=GBK&service=alipay.mobile.public.message.notify&biz_content=" + quote_plus(content, encoding="gbk")
    ).encode("ascii")
    r = httpx.post(
        f"{front.url}/alipay/gateway?x=1&y=a%20b",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=GBK",
            "User-Agent": "Mozilla/4.0",
            "X-Custom": "V",
        },
    )
    assert r.status_code == 200
    assert r.text == "success"
    assert len(gateway.events) == 1
    event = gateway.events[0]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /alipay/gateway"
    assert event["rawPath"] == "/alipay/gateway"
    assert event["rawQueryString"] == "x=1&y=a%20b"
    assert event["queryStringParameters"] == {"x": "1", "y": "a b"}
    assert event["headers"]["content-type"] == "application/x-www-form-urlencoded; charset=GBK"
    assert event["headers"]["x-custom"] == "V"
    assert all(k == k.lower() for k in event["headers"])
    ctx = event["requestContext"]
    assert ctx["http"] == {
        "method": "POST",
        "path": "/alipay/gateway",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "Mozilla/4.0",
    }
    assert ctx["stage"] == "$default"
    assert ctx["routeKey"] == "POST /alipay/gateway"
    assert ctx["requestId"] and isinstance(ctx["timeEpoch"], int)
    assert "authorizer" not in ctx
    # Form bodies are base64-encoded by HTTP APIs; the bytes survive exactly.
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body
    assert base64.b64decode(event["body"]).decode("ascii").endswith(quote_plus(content, encoding="gbk"))


def test_json_body_is_passed_as_text(front: Front, gateway: Recorder) -> None:
    httpx.post(f"{front.url}/alipay/gateway", json={"a": "中"})
    event = gateway.events[-1]
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == {"a": "中"}
    assert "queryStringParameters" not in event


def test_response_headers_cookies_and_base64_body(front: Front) -> None:
    r = httpx.post(f"{front.url}/binary", content=b"x", headers={"Cookie": "s=1; t=2"})
    assert r.status_code == 201
    assert r.content == b"\x00\xff\xfe"
    assert r.headers["x-extra"] == "1"
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2"]
    event = front.recorders["binary"].events[0]  # type: ignore[attr-defined]
    assert event["cookies"] == ["s=1", "t=2"]
    assert "cookie" not in event["headers"]


def test_path_parameters_and_dict_result(front: Front) -> None:
    r = httpx.get(f"{front.url}/items/ab%20c")
    assert r.status_code == 200
    assert r.json() == {"id": "from-dict"}
    assert front.recorders["items"].events[0]["pathParameters"] == {"id": "ab c"}  # type: ignore[attr-defined]
    assert front.recorders["items"].events[0]["routeKey"] == "GET /items/{id}"  # type: ignore[attr-defined]


def test_unknown_path_and_wrong_method_are_404(front: Front, gateway: Recorder) -> None:
    for r in (
        httpx.post(f"{front.url}/nope"),
        httpx.get(f"{front.url}/alipay/gateway"),
        httpx.get(f"{front.url}/items/a/b"),
    ):
        assert r.status_code == 404
        assert r.json() == {"message": "Not Found"}
    assert gateway.events == []


def test_iam_route_needs_a_sigv4_authorization_header(front: Front) -> None:
    assert httpx.get(f"{front.url}/internal/stats").status_code == 403
    bad = httpx.get(f"{front.url}/internal/stats", headers={"Authorization": "Bearer x"})
    assert bad.status_code == 403
    assert bad.json() == {"message": "Forbidden"}
    auth = (
        "AWS4-HMAC-SHA256 Credential=AKIDLOCAL/20260101/us-east-1/execute-api/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32
    )
    ok = httpx.get(f"{front.url}/internal/stats", headers={"Authorization": auth})
    assert ok.status_code == 200


def test_handler_exception_is_500(front: Front) -> None:
    r = httpx.post(f"{front.url}/boom", content=b"{}")
    assert r.status_code == 500
    assert r.json() == {"message": "Internal Server Error"}


def test_payload_over_10_mb_is_refused_before_the_handler(front: Front, gateway: Recorder) -> None:
    r = httpx.post(f"{front.url}/alipay/gateway", content=b"a" * (MAX_PAYLOAD_BYTES + 1))
    assert r.status_code == 413
    assert gateway.events == []
    # exactly at the limit is accepted
    r = httpx.post(f"{front.url}/alipay/gateway", content=b"a" * MAX_PAYLOAD_BYTES)
    assert r.status_code == 200
    assert len(base64.b64decode(gateway.events[0]["body"])) == MAX_PAYLOAD_BYTES
