"""The simulator's HTTP/1.1 request handling: keep-alive, one write per answer, nothing it does not use.

``http.server.BaseHTTPRequestHandler`` parses each request's headers with the ``email`` package, formats a log
line per answer and writes the head and the body in two system calls. In ``bench/outbound_speed.py`` that was
0.3-0.5 ms of CPU per OpenAPI call, a fifth of the simulator's, measured with thread CPU time around each
request; and the simulator's CPU comes out of the same cores as the gateway it is measuring. This handler reads
the request line and headers with the buffered reader's ``readline``, keeps headers in a dict by lower-case
name, and answers with one ``sendall``.

What it honours: HTTP/1.1 keep-alive (``Connection: close`` ends it; HTTP/1.0 keeps the connection only with
``Connection: keep-alive``), ``Expect: 100-continue``, and the limits http.server has (65,536-byte lines, 100
headers). A malformed request line or header is answered 400, a request line or header past the limits 414 or
431, a body without ``Content-Length`` sent chunked 411, an unknown method 501; each closes the connection.
"""

from __future__ import annotations

import logging
import time
from email.utils import formatdate
from http import HTTPStatus
from socketserver import StreamRequestHandler

log = logging.getLogger(__name__)

MAX_LINE = 65536
MAX_HEADERS = 100
_REASONS = {status.value: status.phrase for status in HTTPStatus}


class _Date:
    """The Date header's value, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._text, self._second = formatdate(second, usegmt=True), second
        return self._text


_DATE = _Date()


class LeanRequestHandler(StreamRequestHandler):
    """Subclasses define ``do_GET`` / ``do_POST`` and answer each request with :meth:`respond` exactly once; they
    read the request from ``command``, ``path``, ``headers`` (lower-case names) and ``rfile``."""

    server_version = "lean"
    disable_nagle_algorithm = True

    command = ""
    path = ""
    headers: dict[str, str]
    close_connection = True

    def handle(self) -> None:
        self.close_connection = False
        while not self.close_connection:
            if not self._read_request():
                return
            action = getattr(self, f"do_{self.command}", None)
            if action is None:
                self.close_connection = True
                self.respond(501, b'{"error":"method not implemented"}', "application/json")
                return
            action()
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s %s", self.command, self.path, self.client_address[0])

    def respond(self, status: int, body: bytes, content_type: str) -> None:
        """The whole answer in one write; a client that already hung up (its own timeout) ends the connection."""
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nServer: {self.server_version}\r\n"
            f"Date: {_DATE.now()}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        try:
            self.wfile.write(head.encode("latin-1") + b"\r\n" + body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ---- reading a request ------------------------------------------------------------------------------

    def _read_request(self) -> bool:
        """Request line and headers into ``command``, ``path``, ``headers``; False at EOF or after a refusal."""
        try:
            line = self.rfile.readline(MAX_LINE + 1)
        except (TimeoutError, ConnectionResetError):
            return False
        if not line:
            return False
        if len(line) > MAX_LINE:
            return self._refuse(414, "request line too long")
        parts = line.rstrip(b"\r\n").split(b" ")
        if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[0].isalpha():
            return self._refuse(400, "malformed request line")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            field = self.rfile.readline(MAX_LINE + 1)
            if len(field) > MAX_LINE:
                return self._refuse(431, "header line too long")
            if field in (b"\r\n", b"\n"):
                break
            if not field:
                return False  # the client went away mid-request
            name, colon, value = field.partition(b":")
            if not colon or not name or name != name.strip():
                return self._refuse(400, "malformed header line")
            headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
        else:
            return self._refuse(431, "too many headers")
        self.command, self.path, self.headers = parts[0].decode("ascii"), parts[1].decode("latin-1"), headers
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" if parts[2] == b"HTTP/1.1" else connection != "keep-alive"
        if "transfer-encoding" in headers:
            return self._refuse(411, "send the body with Content-Length")
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _refuse(self, status: int, why: str) -> bool:
        self.close_connection = True
        self.respond(status, f'{{"error":"{why}"}}'.encode(), "application/json")
        return False
