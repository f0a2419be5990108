"""Server-side faults for the local moto server: DynamoDB throttling on a share of writes.

:class:`DynamoThrottle` is a WSGI middleware put in front of moto's server (``MotoServer.wrap_app``). While it is
enabled, a seeded share of DynamoDB write requests (``PutItem``, ``UpdateItem``, ``DeleteItem``,
``BatchWriteItem``, ``TransactWriteItems``) is answered the way DynamoDB answers a throttled request, without
reaching moto: HTTP 400 in the AWS JSON 1.0 error format, ``ProvisionedThroughputExceededException`` for
single-item and batch writes and ``ThrottlingException`` for transactions. Nothing is written. Every client sees
it as AWS would: botocore retries it (standard mode: up to its ``max_attempts``), and what is still throttled
after that reaches the caller as a ``ClientError``.

Reads, SQS and Secrets Manager pass untouched. ``tally()`` counts the throttled answers by operation.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

TARGET_PREFIX = "DynamoDB_20120810."
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_ERROR_TYPE = "com.amazonaws.dynamodb.v20120810#"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def throttle_error(operation: str) -> tuple[str, bytes]:
    """The error code and JSON body DynamoDB answers a throttled ``operation`` with."""
    if operation == "TransactWriteItems":
        code, message = "ThrottlingException", "Rate of requests exceeds the allowed throughput."
    else:
        code = "ProvisionedThroughputExceededException"
        message = ("The level of configured provisioned throughput for the table was exceeded. "
                   "Consider increasing your provisioning level with the UpdateTable API.")
    return code, json.dumps({"__type": _ERROR_TYPE + code, "message": message}).encode()


class DynamoThrottle:
    """Throttles ``share`` (0..1) of DynamoDB writes while enabled; seeded draws, one per write request."""

    def __init__(self, share: float = 0.0, seed: int | None = None,
                 operations: Iterable[str] = WRITE_OPERATIONS) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError("share must be within [0, 1]")
        self.share = share
        self.operations = frozenset(operations)
        self.enabled = False
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._throttled: Counter[str] = Counter()
        self._seen: Counter[str] = Counter()

    def enable(self, share: float | None = None) -> None:
        with self._lock:
            if share is not None:
                self.share = share
            self.enabled = True

    def disable(self) -> None:
        with self._lock:
            self.enabled = False

    def tally(self) -> dict[str, dict[str, int]]:
        """Write requests seen while enabled and those throttled, by operation."""
        with self._lock:
            return {"seen": dict(self._seen), "throttled": dict(self._throttled)}

    def _decide(self, operation: str) -> bool:
        with self._lock:
            if not self.enabled or operation not in self.operations:
                return False
            self._seen[operation] += 1
            if self._random.random() < self.share:
                self._throttled[operation] += 1
                return True
            return False

    def __call__(self, app: WsgiApp) -> WsgiApp:
        """Wrap moto's WSGI application."""

        def throttled_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if target.startswith(TARGET_PREFIX) and self._decide(target[len(TARGET_PREFIX):]):
                _drain(environ)
                code, body = throttle_error(target[len(TARGET_PREFIX):])
                start_response("400 Bad Request", [
                    ("Content-Type", "application/x-amz-json-1.0"),
                    ("Content-Length", str(len(body))),
                    ("x-amzn-ErrorType", code),
                ])
                return [body]
            return app(environ, start_response)

        return throttled_app


def _drain(environ: dict[str, Any]) -> None:
    """Read the unused request body, so the connection can carry the next request."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    if stream is not None and length > 0:
        stream.read(length)
