"""moto's server on loopback: the local stand-in for DynamoDB, SQS and Secrets Manager.

:func:`atomic_backends` makes each DynamoDB and SQS request atomic, as on AWS. moto's in-memory backends do not
lock, so two threads could both pass one conditional write (two coupons from the last unit of stock) or both
receive one message; a lock around every public backend operation removes that artefact of the stand-in. The
local server applies it while it runs; tests that drive moto from threads in-process (``mock_aws``) use it too.
It also applies :mod:`lifelink_local.moto_speed`, which makes moto's DynamoDB cheaper to run without changing its
answers.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.server import ThreadedMotoServer

from lifelink_local import moto_speed

DEFAULT_PORT = 5000
PORT_ENV = "LIFELINK_MOTO_PORT"
BACKEND_LOCK = threading.RLock()  # held around every moto DynamoDB / SQS backend operation
LONG_POLL_STEP_S = 0.05  # how often a long-polling ReceiveMessage looks again


_patched: list[tuple[type, str, Any]] = []
_users = 0


def _patch_backends() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.sqs.models import SQSBackend

    def patch(cls: type, name: str, value: Any) -> None:
        _patched.append((cls, name, cls.__dict__[name]))
        setattr(cls, name, value)

    def locked(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with BACKEND_LOCK:
                return fn(*args, **kwargs)

        return run

    def retained(self: SQSBackend, queue_name: str, message: Any) -> bool:
        """moto's own retention check without rebuilding every attribute of the queue (a count over all its
        messages) for each message received: same rule, read from the queue."""
        period = int(self.queues[queue_name].message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > time.time())

    receive_once = SQSBackend.__dict__["receive_message"]

    def receive(
        self: SQSBackend,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        """Long polling that does not hold the lock while it waits: look (locked), sleep (unlocked), look again."""
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            with BACKEND_LOCK:
                got = receive_once(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
            if got or time.monotonic() >= deadline:
                return got
            time.sleep(LONG_POLL_STEP_S)

    # moto_speed first: its TransactWriteItems (item-level rollback) must itself run under the lock below
    _patched.extend(moto_speed.apply())
    patch(SQSBackend, "is_message_valid_based_on_retention_period", retained)
    for cls in (DynamoDBBackend, SQSBackend):
        for name, value in list(vars(cls).items()):
            if not name.startswith("_") and callable(value) and not isinstance(value, staticmethod | classmethod):
                patch(cls, name, locked(value))
    patch(SQSBackend, "receive_message", receive)


@contextmanager
def atomic_backends() -> Iterator[None]:
    """One lock around every public DynamoDB and SQS backend operation of moto, in this process, for as long as
    any user (a running local server, a test) needs it."""
    global _users
    with BACKEND_LOCK:
        if _users == 0:
            _patch_backends()
        _users += 1
    try:
        yield
    finally:
        with BACKEND_LOCK:
            _users -= 1
            if _users == 0:
                while _patched:
                    cls, name, value = _patched.pop()
                    setattr(cls, name, value)


class MotoServer:
    """moto's threaded server bound to 127.0.0.1, each request atomic (:func:`atomic_backends`).

    ``port=None`` reads ``LIFELINK_MOTO_PORT`` (default 5000); ``port=0`` picks a free port (tests).
    ``process=True`` runs it in a child process of its own (``python -m lifelink_local.motoserver``): moto's CPU
    then runs on another core than the functions' (one Python process uses one core at a time). The child exits
    when :meth:`stop` is called or when this process goes away (its stdin closes).
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", *, process: bool = False) -> None:
        if port is None:
            port = int(os.environ.get(PORT_ENV, DEFAULT_PORT))
        self._host = host
        self._requested_port = port
        self._process = process
        self._child: subprocess.Popen[str] | None = None
        self._server: ThreadedMotoServer | None = None
        self._endpoint: str | None = None
        self._atomic: Any = None

    def _start_child(self) -> str:
        child = subprocess.Popen(
            [sys.executable, "-m", "lifelink_local.motoserver", "--host", self._host, "--port",
             str(self._requested_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if not line.startswith("http://"):
            child.kill()
            raise RuntimeError(f"moto's server process did not start (said {line!r})")
        self._child = child
        return line

    def start(self) -> str:
        """Start the server (idempotent) and return its endpoint URL, e.g. ``http://127.0.0.1:5000``."""
        if self._process:
            if self._child is None:
                self._endpoint = self._start_child()
            assert self._endpoint is not None
            return self._endpoint
        if self._server is None:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            self._atomic = atomic_backends()
            self._atomic.__enter__()
            server = ThreadedMotoServer(ip_address=self._host, port=self._requested_port, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            self._server = server
            self._endpoint = f"http://{host}:{port}"
        assert self._endpoint is not None
        return self._endpoint

    def wrap_app(self, middleware: Callable[[Any], Any]) -> None:
        """Put a WSGI middleware in front of the running server (local/moto_faults.py: injected throttling)."""
        if self._process:
            raise RuntimeError("wrap_app needs moto's server in this process (process=False)")
        inner = getattr(self._server, "_server", None)
        if inner is None:
            raise RuntimeError("moto server not started")
        inner.app = middleware(inner.app)

    @property
    def endpoint_url(self) -> str:
        if self._endpoint is None:
            raise RuntimeError("moto server not started")
        return self._endpoint

    def stop(self) -> None:
        if self._child is not None:
            child, self._child, self._endpoint = self._child, None, None
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._endpoint = None
        if self._atomic is not None:
            self._atomic.__exit__(None, None, None)
            self._atomic = None

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_moto(port: int | None = None) -> MotoServer:
    """Start moto on loopback and return the running server (``.endpoint_url``, ``.stop()``)."""
    server = MotoServer(port)
    server.start()
    return server


def main(argv: list[str] | None = None) -> int:
    """``python -m lifelink_local.motoserver [--port N] [--host H]``: serve until stdin closes; the endpoint URL is
    the first line printed."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lifelink_local.motoserver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    server = MotoServer(args.port, args.host)
    print(server.start(), flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin (stop()) or goes away
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
