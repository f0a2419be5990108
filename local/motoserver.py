"""moto's server on loopback: the local stand-in for DynamoDB, SQS and Secrets Manager."""

from __future__ import annotations

import logging
import os

from moto.server import ThreadedMotoServer

DEFAULT_PORT = 5000
PORT_ENV = "LIFELINK_MOTO_PORT"


class MotoServer:
    """moto's threaded server bound to 127.0.0.1.

    ``port=None`` reads ``LIFELINK_MOTO_PORT`` (default 5000); ``port=0`` picks a free port (tests).
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        if port is None:
            port = int(os.environ.get(PORT_ENV, DEFAULT_PORT))
        self._host = host
        self._requested_port = port
        self._server: ThreadedMotoServer | None = None
        self._endpoint: str | None = None

    def start(self) -> str:
        """Start the server (idempotent) and return its endpoint URL, e.g. ``http://127.0.0.1:5000``."""
        if self._server is None:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            server = ThreadedMotoServer(ip_address=self._host, port=self._requested_port, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            self._server = server
            self._endpoint = f"http://{host}:{port}"
        assert self._endpoint is not None
        return self._endpoint

    @property
    def endpoint_url(self) -> str:
        if self._endpoint is None:
            raise RuntimeError("moto server not started")
        return self._endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._endpoint = None

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
