"""An httpx transport with a keep-alive pool that costs O(1) per request.

httpx's default transport delegates pooling to ``httpcore.AsyncConnectionPool``, whose bookkeeping runs on
every request *and* every response close: it walks every connection, asks each whether it has expired (a
``getpeername`` and a ``poll`` system call each) and, for each idle one, builds a list of all connections
again. With the tens of connections a message gateway keeps open to one host, that is quadratic work per
request and most of the gateway's CPU (``bench/outbound_speed.py`` measured it: about 60 % of all CPU at 50
connections).

The sockets are plain asyncio streams (:class:`AsyncioBackend`) rather than httpcore's default anyio ones, whose
every read and write adds cancellation checkpoints (each an extra turn of the event loop) and, when asked whether
an idle connection was closed, a ``getpeername`` and a ``poll``.

This pool keeps idle HTTP/1.1 connections per origin on a stack (most recently used first, so the warm
ones are reused and the cold ones age out), checks only the connection it is about to use, and bounds the
number of connections with a semaphore that honours httpx's pool timeout. The connections themselves are
httpcore's (``httpcore.AsyncHTTPConnection``: TLS, HTTP/1.1 framing, timeouts), so the wire behaviour is
exactly httpx's; only the pool differs. Errors are httpx's exception types, as with the default transport.

HTTP/2 is not offered: it needs the ``h2`` package, which is not a dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

import httpcore
import httpx

_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)

Origin = tuple[bytes, bytes, int]
CLOSE_WAIT_S = 1.0
READ_LIMIT = 2**20  # asyncio's stream buffer limit; httpcore reads at most 64 KiB at a time


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as asyncio streams; httpcore's exceptions for timeouts and socket errors."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc) or "read timed out") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()
        # a peer that already reset the connection, or a TLS peer that never answers close_notify
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._writer.wait_closed()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(str(exc) or "TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> object:
        if info == "is_readable":  # asked of idle connections: has the server closed it (or said anything)?
            return self._reader.at_eof() or self._writer.is_closing()
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on plain asyncio streams (asyncio sets TCP_NODELAY on TCP connections itself)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[tuple[int, int, int | bytes]] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, limit=READ_LIMIT, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "connect timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[tuple[int, int, int | bytes]] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("unix sockets are not used for Alipay")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except httpcore.ConnectionNotAvailable as exc:  # HTTP/2 only; never raised for HTTP/1.1 connections
        raise httpx.ConnectError(str(exc), request=request) from exc
    except Exception as exc:
        for core_type, httpx_type in _ERRORS:
            if isinstance(exc, core_type):
                raise httpx_type(str(exc), request=request) from exc
        raise


class _ReleasingStream(httpx.AsyncByteStream):
    """The response body; closing it hands the connection back to the pool (or closes it) exactly once."""

    def __init__(self, stream: httpcore.Response, release: _Release, request: httpx.Request) -> None:
        self._response = stream
        self._release = release
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._response.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        try:
            with _httpx_errors(self._request):
                await self._response.aclose()
        finally:
            await self._release()


class _Release:
    def __init__(self, pool: PooledTransport, origin: Origin, connection: httpcore.AsyncHTTPConnection) -> None:
        self._pool, self._origin, self._connection = pool, origin, connection
        self._done = False

    async def __call__(self) -> None:
        if self._done:
            return
        self._done = True
        await self._pool._check_in(self._origin, self._connection)


class PooledTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=PooledTransport(max_connections=n))``: at most ``n`` connections in use or
    idle at once, idle ones kept for ``keepalive_expiry`` seconds."""

    def __init__(
        self,
        *,
        max_connections: int = 10,
        keepalive_expiry: float = 60.0,
        verify: ssl.SSLContext | bool = True,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl_context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._max = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._backend = network_backend or AsyncioBackend()
        self._idle: dict[Origin, list[httpcore.AsyncHTTPConnection]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._in_use = 0
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    # ---- what the pool holds (for tests and metrics) -----------------------------------------------------

    @property
    def idle_connections(self) -> int:
        return sum(len(stack) for stack in self._idle.values())

    @property
    def in_use(self) -> int:
        return self._in_use

    # ---- the transport -----------------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        origin: Origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.raw_scheme == b"https" else 80))
        timeouts = request.extensions.get("timeout", {})
        await self._take_slot(timeouts.get("pool"), request)
        connection: httpcore.AsyncHTTPConnection | None = None
        try:
            connection = self._check_out(origin)
            core_request = httpcore.Request(
                method=request.method,
                url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
                headers=request.headers.raw,
                content=request.stream,  # type: ignore[arg-type]
                extensions=request.extensions,
            )
            with _httpx_errors(request):
                response = await connection.handle_async_request(core_request)
        except BaseException:
            if connection is not None:
                await connection.aclose()
            self._give_slot()
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ReleasingStream(response, _Release(self, origin, connection), request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        self._closed = True
        stacks, self._idle = self._idle, {}
        for stack in stacks.values():
            for connection in stack:
                await connection.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # ---- the pool ----------------------------------------------------------------------------------------

    async def _take_slot(self, timeout: float | None, request: httpx.Request) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: no timer, no task
        else:
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout)
            except TimeoutError:
                raise httpx.PoolTimeout(f"no connection free within {timeout} s", request=request) from None
        self._in_use += 1

    def _give_slot(self) -> None:
        assert self._slots is not None
        self._in_use -= 1
        self._slots.release()

    def _check_out(self, origin: Origin) -> httpcore.AsyncHTTPConnection:
        stack = self._idle.get(origin)
        while stack:
            connection = stack.pop()
            if connection.is_available() and not connection.has_expired():
                return connection
            # Closed by the server or past its keep-alive: drop it. Its socket is already dead or idle, so a
            # plain close without awaiting the peer is enough.
            self._discard(connection)
        self._make_room()
        return httpcore.AsyncHTTPConnection(
            origin=httpcore.Origin(origin[0], origin[1], origin[2]),
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            network_backend=self._backend,
        )

    def _make_room(self) -> None:
        """A slot is ours; if the idle connections of *other* origins fill the pool, close the oldest one."""
        if self.idle_connections + self.in_use <= self._max:
            return
        oldest = max(self._idle.values(), key=len, default=None)
        if oldest:
            self._discard(oldest.pop(0))

    def _discard(self, connection: httpcore.AsyncHTTPConnection) -> None:
        task = asyncio.get_running_loop().create_task(connection.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _check_in(self, origin: Origin, connection: httpcore.AsyncHTTPConnection) -> None:
        try:
            if not self._closed and connection.is_idle():
                self._idle.setdefault(origin, []).append(connection)
            else:
                await connection.aclose()
        finally:
            self._give_slot()


class AsyncPost(Protocol):
    """What the OpenAPI client needs of an HTTP client: ``httpx.AsyncClient`` has it, and so has :class:`PooledHttp`."""

    async def post(
        self, url: httpx.URL | str, *, content: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> httpx.Response: ...

    async def aclose(self) -> None: ...


class PooledHttp:
    """``post`` straight onto a :class:`PooledTransport`, for the message gateway's hot path.

    ``httpx.AsyncClient`` does more per request than an Alipay call needs, and measurably so (a quarter of the
    gateway's event-loop CPU): it parses every response for cookies into a cookie jar (building a
    ``urllib.request.Request`` each time; Alipay sets none), merges client-level headers, cookies and params
    into a new request, and runs the redirect and auth flows (the gateway never redirects and takes no auth).
    This builds the ``httpx.Request`` itself, with the client's timeouts as httpx passes them to a transport,
    sends it and reads the body. Requests, responses, timeouts and errors are httpx's own.
    """

    def __init__(self, transport: PooledTransport, timeout: httpx.Timeout, user_agent: str = "lifelink") -> None:
        self.transport = transport
        self._extensions = {"timeout": timeout.as_dict()}
        self._user_agent = user_agent

    async def post(
        self, url: httpx.URL | str, *, content: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        request = httpx.Request(
            "POST", url, content=content, headers={"User-Agent": self._user_agent, **(headers or {})},
            extensions=self._extensions,
        )
        response = await self.transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> PooledHttp:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


def pooled_async_client(max_connections: int, timeout: httpx.Timeout, keepalive_expiry: float = 60.0) -> PooledHttp:
    """The message gateway's HTTP client: one per container, at most ``max_connections`` to Alipay at once."""
    return PooledHttp(PooledTransport(max_connections=max_connections, keepalive_expiry=keepalive_expiry), timeout)
