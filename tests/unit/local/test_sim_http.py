"""The simulator's HTTP/1.1 handling, over raw sockets on loopback: keep-alive, one write per answer, and the
refusals http.server would give (bad request line, long lines, too many headers, chunked bodies, unknown
methods), each closing the connection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from socketserver import ThreadingTCPServer

import pytest

from lifelink_local.sim_http import MAX_HEADERS, MAX_LINE, LeanRequestHandler


class _Echo(LeanRequestHandler):
    server_version = "echo"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.respond(200, self.path.encode() + b" " + body, "text/plain")

    def do_GET(self) -> None:
        self.respond(200, self.headers.get("x-name", "-").encode(), "text/plain")


class _Server(ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def port() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, read until the server closes (or 2 s of silence)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            chunks.append(b"<open>")
        return b"".join(chunks)


def test_keep_alive_answers_each_request_on_one_connection_until_close(port: int) -> None:
    first = b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    second = b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    answer = _exchange(port, first + second)
    heads = answer.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(heads) == 2
    assert heads[0].endswith(b"\r\n\r\n/a?x=1 abc") and b"Content-Length: 10\r\n" in heads[0]
    assert b"Connection: close\r\n" in heads[1] and heads[1].endswith(b"\r\n\r\n/b ")
    assert b"Server: echo\r\n" in heads[0] and b"Date: " in heads[0]


def test_header_names_are_case_insensitive(port: int) -> None:
    answer = _exchange(port, b"GET / HTTP/1.1\r\nX-NAME: shouting\r\nConnection: close\r\n\r\n")
    assert answer.endswith(b"\r\n\r\nshouting")


def test_http_1_0_closes_unless_asked_to_keep_alive(port: int) -> None:
    assert _exchange(port, b"GET / HTTP/1.0\r\n\r\n").endswith(b"\r\n\r\n-")  # closed: no "<open>"
    kept = _exchange(port, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert kept.endswith(b"<open>")


def test_expect_100_continue_is_answered_before_the_body_is_read(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"POST /c HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"ok")
        assert sock.recv(1000).endswith(b"\r\n\r\n/c ok")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400 Bad Request"),
        (b"GET / HTTP/2.0\r\n\r\n", b"400 Bad Request"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"400 Bad Request"),
        (b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n\r\n", b"414 URI Too Long"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_LINE + b"\r\n\r\n", b"431 Request Header Fields Too Large"),
        (b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n", b"431 Request Header Fields Too Large"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"411 Length Required"),
        (b"DELETE / HTTP/1.1\r\n\r\n", b"501 Not Implemented"),
    ],
)
def test_a_request_it_cannot_take_is_refused_and_the_connection_closed(
    port: int, request_bytes: bytes, status: bytes
) -> None:
    answer = _exchange(port, request_bytes + b"GET / HTTP/1.1\r\n\r\n")  # a second request that must not be served
    assert answer.startswith(b"HTTP/1.1 " + status + b"\r\n")
    assert answer.count(b"HTTP/1.1 ") == 1 and not answer.endswith(b"<open>")
    assert b"Connection: close\r\n" in answer
