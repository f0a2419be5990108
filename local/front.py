"""The HTTP front: API Gateway HTTP API (payload format 2.0) on loopback.

Each request becomes the v2 event API Gateway would build and goes to the route's callable (which takes the
event and returns the handler's result, e.g. ``lifelink_local.handlers.LocalFunction``). Behaviour copied from
HTTP APIs:

- bodies are passed as text only for ``text/*``, ``application/json``, ``application/xml`` and
  ``application/javascript``; everything else (``application/x-www-form-urlencoded`` included, and a missing
  content type) arrives base64-encoded with ``isBase64Encoded: true``;
- no route matching the path and method: 404 ``{"message":"Not Found"}`` (HTTP APIs answer 404, not 405,
  when only the method differs);
- payloads above 10 MB: 413 ``{"message":"Request Entity Too Large"}``;
- handler errors and malformed results: 500 ``{"message":"Internal Server Error"}``;
- a handler result without ``statusCode`` is sent as a 200 JSON body, as payload format 2.0 does.

``AWS_IAM`` routes need an ``Authorization: AWS4-HMAC-SHA256 Credential=…`` header, else 403
``{"message":"Forbidden"}``. Locally the SigV4 signature is NOT checked cryptographically: only its presence
and shape are; the access key from the credential scope is passed on in ``requestContext.authorizer.iam``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from lifelink_local.serving import BackgroundServer

log = logging.getLogger(__name__)

DEFAULT_PORT = 3000
PORT_ENV = "LIFELINK_API_PORT"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
ACCOUNT_ID = "123456789012"
API_ID = "local"

TEXT_TYPES = ("application/json", "application/xml", "application/javascript")

RouteCallable = Callable[[dict[str, Any]], Any]
RouteSpec = tuple[str, str, RouteCallable, str | None]

_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^/\s,]+)/[^,\s]+,\s*SignedHeaders=[^,\s]+,\s*Signature=[0-9a-f]+$"
)


@dataclass(frozen=True)
class Route:
    method: str  # "POST", or "ANY"
    path: str  # "/alipay/gateway", "/items/{id}", "/files/{proxy+}"
    target: RouteCallable
    auth: str | None = None  # None / "NONE" or "AWS_IAM"
    pattern: re.Pattern[str] | None = None

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, path: str) -> dict[str, str] | None:
        assert self.pattern is not None
        m = self.pattern.fullmatch(path)
        if m is None:
            return None
        return {k: unquote(v) for k, v in m.groupdict().items()}


def _compile(path: str) -> re.Pattern[str]:
    out = []
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name.endswith("+"):
                out.append(f"(?P<{name[:-1]}>.+)")
            else:
                out.append(f"(?P<{name}>[^/]+)")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


def make_routes(specs: Iterable[RouteSpec]) -> list[Route]:
    routes = []
    for method, path, target, auth in specs:
        routes.append(Route(method.upper(), path, target, auth, _compile(path)))
    # Most specific first: static paths before parameterised ones, greedy last (API Gateway's precedence).
    routes.sort(key=lambda r: ("+}" in r.path, r.path.count("{"), -len(r.path)))
    return routes


def is_text_content_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime in TEXT_TYPES


def _join(values: list[str]) -> str:
    return ",".join(values)


def build_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    header_items: Sequence[tuple[str, str]],
    body: bytes,
    source_ip: str,
    protocol: str,
    route: Route,
    path_parameters: dict[str, str],
    iam_access_key: str | None = None,
) -> dict[str, Any]:
    """The payload-format-2.0 event for one request."""
    headers: dict[str, list[str]] = {}
    cookies: list[str] = []
    for name, value in header_items:
        lname = name.lower()
        if lname == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers.setdefault(lname, []).append(value)
    flat_headers = {k: _join(v) for k, v in headers.items()}
    flat_headers.setdefault("x-forwarded-for", source_ip)
    flat_headers.setdefault("x-forwarded-proto", "http")
    flat_headers.setdefault("x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}")

    query: dict[str, list[str]] = {}
    for k, v in parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(k, []).append(v)

    now = datetime.now(UTC)
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": flat_headers.get("host", "127.0.0.1"),
        "domainPrefix": flat_headers.get("host", "127.0.0.1").split(".", 1)[0].split(":", 1)[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": flat_headers.get("user-agent", ""),
        },
        "requestId": base64.urlsafe_b64encode(uuid.uuid4().bytes[:12]).decode().rstrip("="),
        "routeKey": route.route_key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if iam_access_key is not None:
        request_context["authorizer"] = {
            "iam": {
                "accessKey": iam_access_key,
                "accountId": ACCOUNT_ID,
                "callerId": iam_access_key,
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": f"arn:aws:iam::{ACCOUNT_ID}:user/local",
                "userId": iam_access_key,
            }
        }

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": flat_headers,
        "requestContext": request_context,
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = {k: _join(v) for k, v in query.items()}
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        content_type = flat_headers.get("content-type")
        text: str | None = None
        if is_text_content_type(content_type):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
    return event


@dataclass
class HttpResult:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _json_result(status: int, message: str) -> HttpResult:
    body = json.dumps({"message": message}).encode()
    return HttpResult(status, [("content-type", "application/json")], body)


def result_to_http(result: Any) -> HttpResult:
    """Turn a handler's return value into the HTTP answer, as payload format 2.0 does."""
    if isinstance(result, dict) and "statusCode" in result:
        status = int(result["statusCode"])
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        for cookie in result.get("cookies") or []:
            headers.append(("set-cookie", str(cookie)))
        body = result.get("body")
        if body is None:
            raw = b""
        elif result.get("isBase64Encoded"):
            raw = base64.b64decode(body)
        elif isinstance(body, bytes):
            raw = body
        else:
            raw = str(body).encode("utf-8")
        return HttpResult(status, headers, raw)
    if isinstance(result, str):
        return HttpResult(200, [("content-type", "application/json")], result.encode("utf-8"))
    return HttpResult(200, [("content-type", "application/json")], json.dumps(result).encode("utf-8"))


class _BoundedThreadingHTTPServer(HTTPServer):
    """HTTPServer handing connections to a fixed-size pool (ThreadingHTTPServer's threads are unbounded)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], workers: int) -> None:
        super().__init__(address, handler)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="front")

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class Front(BackgroundServer):
    """The local HTTP API. ``routes``: (method, path, callable(event) -> result, auth or None)."""

    thread_name = "front"

    def __init__(
        self,
        routes: Iterable[RouteSpec],
        port: int | None = None,
        host: str = "127.0.0.1",
        max_workers: int = 16,
    ) -> None:
        if port is None:
            port = int(os.environ.get(PORT_ENV, DEFAULT_PORT))
        self.routes = make_routes(routes)
        self._server = _BoundedThreadingHTTPServer((host, port), self._request_handler_class(), max_workers)

    def find_route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            params = route.match(path)
            if params is not None:
                return route, params
        return None

    def dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> HttpResult:
        split = urlsplit(handler.path)
        raw_path = split.path or "/"
        try:
            length = int(handler.headers.get("content-length") or 0)
        except ValueError:
            return _json_result(400, "Bad Request")
        if length > MAX_PAYLOAD_BYTES:
            return _json_result(413, "Request Entity Too Large")
        body = handler.rfile.read(length) if length > 0 else b""
        found = self.find_route(method, raw_path)
        if found is None:
            return _json_result(404, "Not Found")
        route, params = found
        access_key = None
        if (route.auth or "NONE").upper() == "AWS_IAM":
            m = _SIGV4.match(handler.headers.get("authorization", "").strip())
            if m is None:
                return _json_result(403, "Forbidden")
            access_key = m.group(1)
        event = build_event(
            method=method,
            raw_path=raw_path,
            raw_query=split.query,
            header_items=list(handler.headers.items()),
            body=body,
            source_ip=handler.client_address[0],
            protocol=handler.request_version,
            route=route,
            path_parameters=params,
            iam_access_key=access_key,
        )
        try:
            result = route.target(event)
            return result_to_http(result)
        except Exception:
            log.exception("handler for %s failed", route.route_key)
            return _json_result(500, "Internal Server Error")

    def _request_handler_class(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "lifelink-front"

            def _serve(self) -> None:
                result = front.dispatch(self, self.command)
                if result.status in (400, 413):
                    self.close_connection = True
                self.send_response(result.status)
                names = {k.lower() for k, _ in result.headers}
                for k, v in result.headers:
                    self.send_header(k, v)
                if "content-length" not in names:
                    self.send_header("Content-Length", str(len(result.body)))
                self.send_header("apigw-requestid", uuid.uuid4().hex[:16])
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(result.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("front: " + format, *args)

        return Handler


def start_front(routes: Iterable[RouteSpec], port: int | None = None) -> Front:
    front = Front(routes, port)
    front.start()
    return front
