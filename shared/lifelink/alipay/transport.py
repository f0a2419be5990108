"""An httpx transport with a keep-alive pool that costs O(1) per request.

httpx's default transport delegates pooling to ``httpcore.AsyncConnectionPool``, whose bookkeeping runs on
every request *and* every response close: it walks every connection, asks each whether it has expired (a
``getpeername`` and a ``poll`` system call each) and, for each idle one, builds a list of all connections
again. With the tens of connections a message gateway keeps open to one host, that is quadratic work per
request and most of the gateway's CPU (``bench/outbound_speed.py`` measured it: about 60 % of all CPU at 50
connections).

This pool keeps idle HTTP/1.1 connections per origin on a stack (most recently used first, so the warm
ones are reused and the cold ones age out), checks only the connection it is about to use, and bounds the
number of connections with a semaphore that honours httpx's pool timeout. The connections themselves are
httpcore's (``httpcore.AsyncHTTPConnection``: TLS, HTTP/1.1 framing, timeouts), so the wire behaviour is
exactly httpx's; only the pool differs. Errors are httpx's exception types, as with the default transport.

HTTP/2 is not offered: it needs the ``h2`` package, which is not a dependency.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

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
        self._backend = network_backend
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


def pooled_async_client(
    max_connections: int, timeout: httpx.Timeout, keepalive_expiry: float = 60.0
) -> httpx.AsyncClient:
    """The message gateway's client: one per container, at most ``max_connections`` to Alipay at once."""
    return httpx.AsyncClient(
        timeout=timeout,
        transport=PooledTransport(max_connections=max_connections, keepalive_expiry=keepalive_expiry),
    )
