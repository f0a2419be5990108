"""A tap on Python logging: every record a logger handles and every line a handler formats (Powertools' JSON
lines included: its handler formats each record before writing it to stdout) is appended to a file.

Stdlib only: the local stacks the tests start load it through ``site/sitecustomize.py`` when
``LIFELINK_LOG_TAP_DIR`` is set, and write ``proc-<pid>.log`` there. Streams are left alone, so pytest's
output capture and the stacks' own output work as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

ENV_DIR = "LIFELINK_LOG_TAP_DIR"
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


def _record_text(record: logging.LogRecord) -> str:
    """The message, its extra fields and its exception, whether or not a handler prints them."""
    try:
        parts = [record.getMessage()]
    except Exception:  # a bad format string: what was passed is still what was logged
        parts = [str(record.msg), repr(record.args)]
    parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in _STANDARD]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append(repr(record.exc_info[1]))
    return " ".join(parts)


def is_product_logger(logger: logging.Logger) -> bool:
    """What is deployed: the ``lifelink`` package's loggers and every Powertools Logger (named after its service,
    e.g. ``internal_api``). Not ``lifelink_local``: the local stand-ins (the front playing API Gateway, the
    simulator playing Alipay) are scanned at the levels they log at; their DEBUG access logs show requests as
    API Gateway and Alipay see them."""
    if logger.name == "lifelink" or logger.name.startswith("lifelink."):
        return True
    return any(type(h.formatter).__name__ == "LambdaPowertoolsFormatter" for h in logger.handlers)


class LogTap:
    """``install()`` wraps ``logging.Logger.handle``, ``isEnabledFor`` and ``logging.Handler.format``;
    ``uninstall()`` undoes it.

    Product loggers' records below their level (DEBUG while the stack runs at INFO or WARNING) are recorded
    too, as their handlers would format them, but not emitted: what a deployment at ``LogLevel=DEBUG`` would
    log is scanned, and what the tests see is unchanged.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: Any = None
        self._saved: tuple[Any, Any, Any] | None = None

    def write(self, text: str) -> None:
        line = text.replace("\r", "\\r").replace("\n", "\\n")  # one record, one line (tracebacks included)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")

    def install(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)  # noqa: SIM115
        handle, fmt, enabled = logging.Logger.handle, logging.Handler.format, logging.Logger.isEnabledFor
        self._saved = (handle, fmt, enabled)
        tap = self

        def tapped_enabled(logger: logging.Logger, level: int) -> bool:
            return enabled(logger, level) or (level >= logging.DEBUG and is_product_logger(logger))

        def tapped_handle(logger: logging.Logger, record: logging.LogRecord) -> Any:
            with contextlib.suppress(Exception):  # the tap must never break logging
                tap.write(f"{record.name} {record.levelname} {_record_text(record)}")
            if enabled(logger, record.levelno):
                return handle(logger, record)
            with contextlib.suppress(Exception):  # below the level: formatted for the tap, never emitted
                for h in logger.handlers:
                    h.format(record)
            return None

        def tapped_format(handler: logging.Handler, record: logging.LogRecord) -> str:
            text = fmt(handler, record)
            with contextlib.suppress(Exception):
                tap.write(text)
            return text

        logging.Logger.handle = tapped_handle  # type: ignore[method-assign]
        logging.Logger.isEnabledFor = tapped_enabled  # type: ignore[method-assign]
        logging.Handler.format = tapped_format  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._saved is not None:
            logging.Logger.handle, logging.Handler.format, logging.Logger.isEnabledFor = self._saved  # type: ignore[method-assign]
            self._saved = None
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def install_from_env() -> LogTap | None:
    """In a subprocess: tap into ``$LIFELINK_LOG_TAP_DIR/proc-<pid>.log`` when the variable is set."""
    directory = os.environ.get(ENV_DIR)
    if not directory:
        return None
    tap = LogTap(Path(directory) / f"proc-{os.getpid()}.log")
    tap.install()
    return tap
