"""A loopback HTTP server running in a background thread: the shared lifecycle of the front and the
simulator."""

from __future__ import annotations

import threading
from socketserver import BaseServer
from typing import Self


class BackgroundServer:
    """Subclasses set ``self._server`` (bound, not yet serving) and ``thread_name``."""

    thread_name = "http"
    _server: BaseServer
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])  # type: ignore[index]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True)
            self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
