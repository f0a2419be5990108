"""The gateway's pooled httpx transport, against a real HTTP server on loopback: connections are reused, never
more than the limit are open, a connection the server closed is replaced, errors are httpx's."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from lifelink.alipay.transport import PooledTransport, pooled_async_client


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.note_request(self.client_address)
        if self.path == "/slow":
            time.sleep(0.2)
        payload = b'{"echo":' + str(len(body)).encode() + b"}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)
        self.server.done_request()

    def log_message(self, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.peers: set[tuple[str, int]] = set()
        self.active = 0
        self.most_active = 0
        self.requests = 0

    def note_request(self, peer: tuple[str, int]) -> None:
        with self.lock:
            self.peers.add(peer)
            self.requests += 1
            self.active += 1
            self.most_active = max(self.most_active, self.active)

    def done_request(self) -> None:
        with self.lock:
            self.active -= 1


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(server: _Server, path: str = "/echo") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_sequential_requests_reuse_one_connection(server: _Server) -> None:
    async def run() -> list[Any]:
        async with pooled_async_client(4, httpx.Timeout(5.0)) as client:
            return [(await client.post(_url(server), content=b"x" * i)).json() for i in range(20)]

    answers = asyncio.run(run())
    assert answers == [{"echo": i} for i in range(20)]
    assert server.requests == 20
    assert len(server.peers) == 1  # one client port: one keep-alive connection


def test_concurrent_requests_never_exceed_the_connection_limit(server: _Server) -> None:
    async def run() -> tuple[list[int], int]:
        transport = PooledTransport(max_connections=3)
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(10.0)) as client:
            answers = await asyncio.gather(*(client.post(_url(server, "/slow"), content=b"ab") for _ in range(12)))
            return [a.status_code for a in answers], transport.idle_connections

    statuses, idle = asyncio.run(run())
    assert statuses == [200] * 12
    assert server.most_active == 3
    assert len(server.peers) == 3  # the three connections served all twelve
    assert idle == 3


def test_a_connection_the_server_closed_is_replaced(server: _Server) -> None:
    async def run() -> list[int]:
        async with pooled_async_client(2, httpx.Timeout(5.0)) as client:
            first = await client.post(_url(server, "/close"), content=b"1")
            await asyncio.sleep(0.05)  # the server has closed its end by now
            second = await client.post(_url(server), content=b"22")
            return [first.json()["echo"], second.json()["echo"]]

    assert asyncio.run(run()) == [1, 2]
    assert len(server.peers) == 2


def test_waiting_longer_than_the_pool_timeout_is_httpx_pool_timeout(server: _Server) -> None:
    async def run() -> type[BaseException] | None:
        timeout = httpx.Timeout(5.0, pool=0.05)
        async with pooled_async_client(1, timeout) as client:
            slow = asyncio.ensure_future(client.post(_url(server, "/slow")))
            await asyncio.sleep(0.02)
            try:
                await client.post(_url(server))
            except httpx.HTTPError as exc:
                await slow
                return type(exc)
            await slow
            return None

    assert asyncio.run(run()) is httpx.PoolTimeout


def test_a_refused_connection_is_httpx_connect_error_and_frees_its_slot() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def run() -> tuple[list[type[BaseException]], int]:
        transport = PooledTransport(max_connections=1)
        errors: list[type[BaseException]] = []
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(2.0, pool=0.5)) as client:
            for _ in range(3):  # with the slot leaked, the second try would be a PoolTimeout
                try:
                    await client.post(f"http://127.0.0.1:{port}/")
                except httpx.HTTPError as exc:
                    errors.append(type(exc))
            return errors, transport.in_use

    errors, in_use = asyncio.run(run())
    assert errors == [httpx.ConnectError] * 3
    assert in_use == 0


def test_a_read_timeout_is_httpx_read_timeout(server: _Server) -> None:
    async def run() -> type[BaseException] | None:
        async with pooled_async_client(2, httpx.Timeout(5.0, read=0.05)) as client:
            try:
                await client.post(_url(server, "/slow"))
            except httpx.HTTPError as exc:
                return type(exc)
        return None

    assert asyncio.run(run()) is httpx.ReadTimeout


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_with_a_verified_certificate_reuses_the_tls_connection(server: _Server, tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert_path, key_path)
    server.socket = server_side.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]

    async def run(verify: ssl.SSLContext | bool) -> list[Any]:
        transport = PooledTransport(max_connections=2, verify=verify)
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0)) as client:
            return [(await client.post(f"https://localhost:{port}/echo", content=b"abc")).json() for _ in range(3)]

    trusting = ssl.create_default_context(cafile=str(cert_path))
    assert asyncio.run(run(trusting)) == [{"echo": 3}] * 3
    assert len(server.peers) == 1
    with pytest.raises(httpx.ConnectError):  # the system trust store does not know this certificate
        asyncio.run(run(True))
