"""The HTTP/1.1 wire layer under the gateway's pooled transport, against a scripted server on loopback: each way
a server may frame an answer, each way it may get one wrong, and what that does to the connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from lifelink.alipay import http11
from lifelink.alipay.transport import PooledTransport, pooled_async_client

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


@dataclass
class Script:
    """Answers written in order, one per request; ``None`` closes the connection without answering, and the
    connection is closed after an answer in ``close_after`` (by index). Records the requests (head, body) and which
    connection (by accept order) each came on."""

    answers: list[bytes | None]
    close_after: set[int] = field(default_factory=set)
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connection_of: list[int] = field(default_factory=list)
    connections: int = 0


async def _serve(script: Script, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    script.connections += 1
    me = script.connections
    try:
        while script.answers:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            script.requests.append((head, body))
            script.connection_of.append(me)
            index = len(script.requests) - 1
            answer = script.answers.pop(0)
            if answer is None:
                return
            writer.write(answer)
            await writer.drain()
            if index in script.close_after:
                return
    finally:
        writer.close()


def _run[T](script: Script, body: Callable[[str], Awaitable[T]]) -> T:
    async def main() -> T:
        server = await asyncio.start_server(lambda r, w: _serve(script, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await body(f"http://127.0.0.1:{port}")
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


async def _posts(base: str, n: int, *, keepalive_expiry: float = 60.0, pause: float = 0.0) -> list[httpx.Response]:
    transport = PooledTransport(max_connections=2, keepalive_expiry=keepalive_expiry)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(2.0)) as client:
        answers = []
        for i in range(n):
            if i and pause:
                await asyncio.sleep(pause)
            answers.append(await client.post(f"{base}/gateway.do?x={i}", content=b"biz_content=%7B%7D"))
        return answers


def _error(script: Script, n: int = 1) -> tuple[type[BaseException], str, httpx.Request | None]:
    async def body(base: str) -> tuple[type[BaseException], str, httpx.Request | None]:
        try:
            await _posts(base, n)
        except httpx.HTTPError as exc:
            return type(exc), str(exc), exc.request
        raise AssertionError("no error")

    return _run(script, body)


# ---- answers framed every way a server may frame them ---------------------------------------------------


def test_content_length_answers_reuse_one_connection_and_the_request_goes_out_as_sent() -> None:
    script = Script([OK, OK, OK])
    answers = _run(script, lambda base: _posts(base, 3))
    assert [a.json() for a in answers] == [{"ok": True}] * 3
    assert script.connection_of == [1, 1, 1]
    head, body = script.requests[1]
    assert head.startswith(b"POST /gateway.do?x=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in head and b"\r\nContent-Length: 18\r\n" in head
    assert body == b"biz_content=%7B%7D"


def test_a_chunked_answer_with_extensions_and_trailers_is_joined_and_the_connection_kept() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;name=value\r\n{\"ok\r\n7\r\n\":true}\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    script = Script([chunked, OK])
    answers = _run(script, lambda base: _posts(base, 2))
    assert [a.json() for a in answers] == [{"ok": True}] * 2
    assert script.connection_of == [1, 1]


def test_an_answer_delimited_by_close_is_read_to_the_end_and_its_connection_not_reused() -> None:
    script = Script([b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", OK], close_after={0})
    answers = _run(script, lambda base: _posts(base, 2))
    assert answers[0].text == "until the end"
    assert script.connection_of == [1, 2]


def test_connection_close_and_http_1_0_answers_are_not_reused() -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nho"
    script = Script([close, old, OK], close_after={0, 1})
    answers = _run(script, lambda base: _posts(base, 3))
    assert [a.text for a in answers] == ["hi", "ho", '{"ok":true}']
    assert [a.http_version for a in answers] == ["HTTP/1.1", "HTTP/1.0", "HTTP/1.1"]
    assert script.connection_of == [1, 2, 3]


def test_an_interim_100_continue_is_skipped_for_the_real_answer() -> None:
    script = Script([b"HTTP/1.1 100 Continue\r\n\r\n" + OK])
    (answer,) = _run(script, lambda base: _posts(base, 1))
    assert answer.status_code == 200 and answer.json() == {"ok": True}


def test_204_has_no_body_and_keeps_the_connection() -> None:
    script = Script([b"HTTP/1.1 204 No Content\r\n\r\n", OK])
    answers = _run(script, lambda base: _posts(base, 2))
    assert [a.status_code for a in answers] == [204, 200]
    assert answers[0].content == b""
    assert script.connection_of == [1, 1]


def test_an_idle_connection_past_its_keepalive_is_replaced() -> None:
    script = Script([OK, OK])
    _run(script, lambda base: _posts(base, 2, keepalive_expiry=0.05, pause=0.15))
    assert script.connection_of == [1, 2]


# ---- answers a server gets wrong ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", "malformed response header"),
        (b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n", "malformed response header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x4\r\nabcd\r\n0\r\n\r\n", "invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n", "chunk not followed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "in the middle of a response"),
        (None, "without sending a complete response"),
    ],
)
def test_a_broken_answer_is_remote_protocol_error_naming_the_fault(answer: bytes | None, message: str) -> None:
    kind, text, request = _error(Script([answer], close_after={0}))
    assert kind is httpx.RemoteProtocolError
    assert message in text
    assert request is not None and request.url.path == "/gateway.do"  # the error names the request, as httpx's do


def test_a_body_past_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http11, "MAX_BODY", 8)
    for answer in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n123456789",
    ):
        kind, text, _ = _error(Script([answer], close_after={0}))
        assert (kind, "over 8" in text) == (httpx.RemoteProtocolError, True)


def test_after_a_broken_answer_the_pool_opens_a_fresh_connection_and_frees_the_slot() -> None:
    script = Script([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", OK], close_after={0})

    async def body(base: str) -> tuple[str, int, int]:
        transport = PooledTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(2.0, pool=0.5)) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(f"{base}/gateway.do", content=b"a")
            answer = await client.post(f"{base}/gateway.do", content=b"b")
            return answer.text, transport.in_use, transport.idle_connections

    assert _run(script, body) == ('{"ok":true}', 0, 1)
    assert script.connection_of == [1, 2]


def test_a_header_that_would_split_the_request_is_refused_before_anything_is_sent() -> None:
    script = Script([OK])

    async def body(base: str) -> type[BaseException]:
        async with pooled_async_client(1, httpx.Timeout(2.0)) as client:
            try:
                await client.post(f"{base}/gateway.do", content=b"a", headers={"X-Bad": "1\r\nX-Injected: 2"})
            except httpx.HTTPError as exc:
                return type(exc)
        raise AssertionError("sent")

    assert _run(script, body) is httpx.LocalProtocolError
    assert script.requests == []


def test_wire_helpers_agree_with_what_a_server_would_write() -> None:
    assert http11._request_bytes(b"POST", b"/x?a=1", [(b"Host", b"h")], b"body") == (
        b"POST /x?a=1 HTTP/1.1\r\nHost: h\r\n\r\nbody"
    )
    version, status, reason, fields = http11._parse_head(
        b"HTTP/1.1 404 Not Found\r\nContent-Length:  3 \r\nX-Empty:\r\n\r\n"
    )
    assert (version, status, reason) == (b"HTTP/1.1", 404, b"Not Found")
    assert fields == [(b"Content-Length", b"3"), (b"X-Empty", b"")]
    assert http11._content_length(fields) == 3

