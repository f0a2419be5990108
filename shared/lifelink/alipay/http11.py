"""One HTTP/1.1 client connection on asyncio streams: request out, whole response in, keep-alive.

This is the wire layer under :class:`lifelink.alipay.transport.PooledTransport` (an httpx transport). It does
what an Alipay call needs and nothing more: one request at a time per connection, a body given as bytes, the
response read whole (``Content-Length``, ``chunked`` or until close), interim ``1xx`` answers skipped,
``Connection: close`` honoured. Why not httpcore's ``AsyncHTTPConnection``: per request it runs h11's state
machine, an anyio lock, tracing hooks and three layers of async iterators, and on the message gateway's hot
path that was about a fifth of a container's CPU (``bench/outbound_speed.py``). Requests and responses stay
httpx's; so do the exceptions, which carry no request here (the transport attaches it).

Strict where leniency could hide a broken peer: a malformed status line or header line, conflicting
``Content-Length`` values, a bad chunk size or a body past :data:`MAX_BODY` is ``httpx.RemoteProtocolError``
and the connection is closed; a header name or value with CR, LF or NUL on our side is
``httpx.LocalProtocolError`` before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

HEAD_LIMIT = 64 * 1024  # status line and headers of one response
MAX_BODY = 64 * 1024 * 1024  # Alipay answers are a few KiB; anything near this is not an Alipay answer
READ_LIMIT = 2**20  # asyncio's stream buffer
CLOSE_WAIT_S = 1.0
_NO_BODY_STATUS = frozenset({204, 304})
_FORBIDDEN = (b"\r", b"\n", b"\0")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    reason: bytes
    http_version: bytes
    headers: Headers
    body: bytes
    keep_alive: bool  # the connection may carry another request


class Http11Connection:
    """A keep-alive connection to one origin. Not safe for two requests at once: the pool hands it to one."""

    __slots__ = ("_idle_until", "_keepalive_expiry", "_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keepalive_expiry: float) -> None:
        self._reader = reader
        self._writer = writer
        self._keepalive_expiry = keepalive_expiry
        self._idle_until: float | None = None  # set while idle in the pool; None in use or once closed

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        timeout: float | None,
        keepalive_expiry: float,
    ) -> Http11Connection:
        """TCP (and the TLS handshake, verified against ``tls`` for ``host``) within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls is not None else None, limit=READ_LIMIT
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:  # refused, unreachable, or a TLS failure (ssl.SSLError is an OSError)
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return cls(reader, writer, keepalive_expiry)

    # ---- the pool's questions -----------------------------------------------------------------------------

    def reusable(self, now: float) -> bool:
        """Idle, inside its keep-alive time, and not closed by the server (asyncio has seen no EOF)."""
        return (
            self._idle_until is not None
            and now < self._idle_until
            and not self._reader.at_eof()
            and not self._writer.is_closing()
        )

    # ---- one exchange -------------------------------------------------------------------------------------

    async def exchange(
        self,
        method: bytes,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, float | None],
    ) -> RawResponse:
        """Send one request and read its whole response. Any exception leaves the connection closed."""
        self._idle_until = None
        try:
            wire = _request_bytes(method, target, headers, body)
            await self._send(wire, timeouts.get("write"))
            response = await self._receive(method, timeouts.get("read"))
        except BaseException:
            self.close()
            raise
        if response.keep_alive and not any(n.lower() == b"connection" and b"close" in v.lower() for n, v in headers):
            self._idle_until = asyncio.get_running_loop().time() + self._keepalive_expiry
        else:
            self.close()
        return response

    async def _send(self, wire: bytes, timeout: float | None) -> None:
        try:
            self._writer.write(wire)
            if self._writer.transport.get_write_buffer_size():  # only a large body waits for the socket
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("writing the request timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    async def _receive(self, method: bytes, timeout: float | None) -> RawResponse:
        reader = self._reader
        try:
            async with asyncio.timeout(timeout):
                while True:
                    head = await _read_head(reader)
                    version, status, reason, fields = _parse_head(head)
                    if 100 <= status < 200 and status != 101:
                        continue  # an interim answer (100 Continue, 103 Early Hints): the real one follows
                    break
                keep_alive = version == b"HTTP/1.1" and not _has_token(fields, b"connection", b"close")
                if method == b"HEAD" or status in _NO_BODY_STATUS or status < 200:
                    body = b""
                elif _header(fields, b"transfer-encoding") is not None:
                    if not _has_token(fields, b"transfer-encoding", b"chunked"):
                        body, keep_alive = await _read_to_close(reader), False
                    else:
                        body = await _read_chunked(reader)
                else:
                    length = _content_length(fields)
                    if length is None:
                        body, keep_alive = await _read_to_close(reader), False
                    else:
                        if length > MAX_BODY:
                            raise httpx.RemoteProtocolError(f"response body of {length} bytes is over {MAX_BODY}")
                        body = await reader.readexactly(length)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("reading the response timed out") from exc
        except asyncio.IncompleteReadError as exc:
            if not exc.partial and reader.at_eof():
                raise httpx.RemoteProtocolError("Server disconnected without sending a complete response.") from exc
            raise httpx.RemoteProtocolError("Server disconnected in the middle of a response.") from exc
        except asyncio.LimitOverrunError as exc:  # a head or chunk-size line past the stream's buffer
            raise httpx.RemoteProtocolError("response line too long") from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        return RawResponse(status, reason, version, fields, body, keep_alive)

    # ---- closing ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close without waiting for the peer (an idle, expired or broken connection)."""
        self._idle_until = None
        self._writer.close()

    async def aclose(self) -> None:
        self.close()
        # a peer that already reset the connection, or a TLS peer that never answers close_notify (the timeout
        # and ssl.SSLError are OSErrors too)
        with contextlib.suppress(OSError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._writer.wait_closed()


# ---- the request -----------------------------------------------------------------------------------------


def _request_bytes(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> bytes:
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        if not name or any(c in name or c in value for c in _FORBIDDEN) or b":" in name or b" " in name:
            raise httpx.LocalProtocolError(f"invalid request header {name!r}")
        parts += (name, b": ", value, b"\r\n")
    if any(c in target for c in (b"\r", b"\n", b"\0", b" ")):
        raise httpx.LocalProtocolError("invalid request target")
    parts += (b"\r\n", body)
    return b"".join(parts)


# ---- the response ----------------------------------------------------------------------------------------


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > HEAD_LIMIT:
        raise httpx.RemoteProtocolError(f"response head over {HEAD_LIMIT} bytes")
    return head


def _parse_head(head: bytes) -> tuple[bytes, int, bytes, Headers]:
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}")
    fields: Headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip(b" \t") or b" " in name or b"\t" in name:
            # obs-fold continuation lines (RFC 9112 §5.2 lets a client reject them) and garbage alike
            raise httpx.RemoteProtocolError(f"malformed response header line {line[:80]!r}")
        fields.append((name, value.strip(b" \t")))
    return version, int(code), reason, fields


def _header(fields: Headers, name: bytes) -> bytes | None:
    for key, value in fields:
        if key.lower() == name:
            return value
    return None


def _has_token(fields: Headers, name: bytes, token: bytes) -> bool:
    return any(
        key.lower() == name and token in (part.strip().lower() for part in value.split(b","))
        for key, value in fields
    )


def _content_length(fields: Headers) -> int | None:
    values = {part.strip() for key, value in fields if key.lower() == b"content-length" for part in value.split(b",")}
    if not values:
        return None
    if len(values) > 1 or not all(v.isdigit() for v in values):
        raise httpx.RemoteProtocolError(f"invalid Content-Length {sorted(values)!r}")
    return int(values.pop())


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise httpx.RemoteProtocolError(f"invalid chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields, ignored
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise httpx.RemoteProtocolError(f"chunked response body over {MAX_BODY} bytes")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise httpx.RemoteProtocolError("chunk not followed by CRLF")


async def _read_to_close(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > MAX_BODY:
            raise httpx.RemoteProtocolError(f"response body over {MAX_BODY} bytes")
        parts.append(chunk)
    return b"".join(parts)
