"""An httpx transport with a keep-alive pool that costs O(1) per request, on a lean HTTP/1.1 wire layer.

httpx's default transport delegates pooling to ``httpcore.AsyncConnectionPool``, whose bookkeeping runs on
every request *and* every response close: it walks every connection, asks each whether it has expired (a
``getpeername`` and a ``poll`` system call each) and, for each idle one, builds a list of all connections
again. With the tens of connections a message gateway keeps open to one host, that is quadratic work per
request and most of the gateway's CPU (``bench/outbound_speed.py`` measured it: about 60 % of all CPU at 50
connections).

This pool keeps idle HTTP/1.1 connections per origin on a stack (most recently used first, so the warm
ones are reused and the cold ones age out), checks only the connection it is about to use, and bounds the
number of connections with a semaphore that honours httpx's pool timeout. The connections are
:class:`lifelink.alipay.http11.Http11Connection` on plain asyncio streams (TLS verified by the context httpx
builds for ``verify``). The response body is read whole before the response is returned (Alipay's answers are
a few KiB), so the connection is back in the pool as soon as the caller has its response. Requests, responses,
timeouts (connect, read, write, pool) and errors are httpx's.

HTTP/2 is not offered: it needs the ``h2`` package, which is not a dependency.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Protocol

import httpx

from lifelink.alipay.http11 import Http11Connection

Origin = tuple[bytes, str, int]


class PooledTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=PooledTransport(max_connections=n))``: at most ``n`` connections in use or
    idle at once, idle ones kept for ``keepalive_expiry`` seconds."""

    def __init__(
        self,
        *,
        max_connections: int = 10,
        keepalive_expiry: float = 60.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl_context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._max = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[Http11Connection]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._in_use = 0
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
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        origin: Origin = (scheme, url.raw_host.decode("ascii"), url.port or (443 if scheme == b"https" else 80))
        timeouts: Mapping[str, float | None] = request.extensions.get("timeout", {})
        await self._take_slot(timeouts.get("pool"), request)
        try:
            body = await request.aread()
            connection = self._check_out(origin)
            if connection is None:
                connection = await Http11Connection.open(
                    origin[1],
                    origin[2],
                    tls=self._ssl_context if scheme == b"https" else None,
                    timeout=timeouts.get("connect"),
                    keepalive_expiry=self._keepalive_expiry,
                )
            answer = await connection.exchange(request.method.encode("ascii"), url.raw_path, request.headers.raw,
                                               body, timeouts)
            if answer.keep_alive and not self._closed:
                self._idle.setdefault(origin, []).append(connection)
            elif answer.keep_alive:  # the pool closed while this request was out
                connection.close()
        except httpx.TransportError as exc:
            exc.request = request
            raise
        finally:
            self._give_slot()
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(answer.body),
            extensions={"http_version": answer.http_version, "reason_phrase": answer.reason},
        )

    async def aclose(self) -> None:
        self._closed = True
        stacks, self._idle = self._idle, {}
        connections = [connection for stack in stacks.values() for connection in stack]
        if connections:
            await asyncio.gather(*(connection.aclose() for connection in connections))

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

    def _check_out(self, origin: Origin) -> Http11Connection | None:
        """The most recently used idle connection to ``origin`` that is still good, or None (open a new one)."""
        stack = self._idle.get(origin)
        if stack:
            now = asyncio.get_running_loop().time()
            while stack:
                connection = stack.pop()
                if connection.reusable(now):
                    return connection
                connection.close()  # closed by the server or past its keep-alive: its socket is dead or idle
        self._make_room()
        return None

    def _make_room(self) -> None:
        """A slot is ours; if the idle connections of *other* origins fill the pool, close the oldest one."""
        if self.idle_connections + self.in_use <= self._max:
            return
        oldest = max(self._idle.values(), key=len, default=None)
        if oldest:
            oldest.pop(0).close()


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
