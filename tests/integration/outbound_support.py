"""Harness for driving the message gateway at volume: atomic moto backends, Lambda-like pollers, queue drains.

- :func:`atomic_moto_backends` (:func:`lifelink_local.motoserver.atomic_backends`): DynamoDB and SQS answer each
  request atomically, as AWS does.
- :class:`Fleet`: several "containers" (each its own import of ``functions/message_gateway/app.py``, so each
  has its own event loop, pooled httpx client and gateway, as separate Lambda containers do), each with a
  poller thread doing what Lambda's SQS event source mapping does: receive up to 10, invoke the handler,
  delete what the partial batch response did not name. It stops when the queue is empty.
- :func:`drain`: every message of a queue (received and deleted).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lifelink_local.handlers import LambdaContext
from lifelink_local.motoserver import BACKEND_LOCK, atomic_backends
from lifelink_local.pollers import build_sqs_event, failed_ids
from tests.conftest import load_function

atomic_moto_backends = atomic_backends  # the name these tests know it by


def moto_queue(url: str) -> Any:
    """moto's in-process queue object behind ``url`` (``mock_aws``): counting its messages costs no API call,
    whereas moto's GetQueueAttributes walks every message under the backend lock."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    return sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues[url.rsplit("/", 1)[1]]


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message now on the queue (with attributes), deleted as it is read."""
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=300, WaitTimeSeconds=0
        ).get("Messages", [])
        if not got:
            return out
        out.extend(got)
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        )


def send_all(sqs: Any, url: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        answer = sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
        )
        assert not answer.get("Failed"), answer.get("Failed")


@dataclass
class FleetStats:
    invocations: int = 0
    records: int = 0
    retried: int = 0  # batch item failures reported by the handler
    seconds: float = 0.0
    errors: list[BaseException] = field(default_factory=list)


class Fleet:
    """``containers`` gateway containers polling one queue like Lambda's SQS event source mapping."""

    def __init__(
        self,
        make_sqs: Callable[[], Any],
        queue_url: str,
        queue_arn: str,
        containers: int = 4,
        prepare: Callable[[Any], None] | None = None,
    ) -> None:
        self._url = queue_url
        self._arn = queue_arn
        self._clients = [make_sqs() for _ in range(containers)]
        self._watch = make_sqs()
        self.modules = [load_function("message_gateway") for _ in range(containers)]
        for module in self.modules:
            if prepare is not None:
                prepare(module)
        self.stats = FleetStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def _poll(self, module: Any, sqs: Any) -> None:
        try:
            while not self._stop.is_set():
                got = sqs.receive_message(
                    QueueUrl=self._url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
                ).get("Messages", [])
                if not got:
                    self._stop.wait(0.05)
                    continue
                result = module.handler(
                    build_sqs_event(got, self._arn, "us-east-1"), LambdaContext(function_name="message_gateway")
                )
                keep = failed_ids(result, {m["MessageId"] for m in got})
                done = [m for m in got if m["MessageId"] not in keep]
                if done:
                    sqs.delete_message_batch(
                        QueueUrl=self._url,
                        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                    )
                with self._lock:
                    self.stats.invocations += 1
                    self.stats.records += len(got)
                    self.stats.retried += len(keep)
        except BaseException as exc:  # surfaced by run()
            with self._lock:
                self.stats.errors.append(exc)
            self._stop.set()

    def run(self, deadline_s: float, feed: Sequence[str] = (), visible_backlog: int = 200) -> FleetStats:
        """Send ``feed`` to the queue in order, topping it up whenever fewer than ``visible_backlog`` messages are
        waiting (moto's ReceiveMessage walks every message of the queue, so a queue holding all 20,000 at once
        would make each receive slow); poll until everything is sent and the queue has been empty for two looks
        in a row (or a poller fails, or the deadline passes)."""
        started = time.monotonic()
        queue = moto_queue(self._url)
        threads = [
            threading.Thread(target=self._poll, args=(m, c), name=f"gw-container-{i}", daemon=True)
            for i, (m, c) in enumerate(zip(self.modules, self._clients, strict=True))
        ]
        for t in threads:
            t.start()
        fed, empty_looks, last_report = 0, 0, started
        try:
            while not self._stop.is_set() and time.monotonic() - started < deadline_s:
                with BACKEND_LOCK:
                    waiting = sum(1 for m in queue._messages if m.visible)
                    total = len(queue._messages)
                if fed < len(feed) and waiting < visible_backlog:
                    chunk = list(feed[fed : fed + visible_backlog])
                    send_all(self._watch, self._url, chunk)
                    fed += len(chunk)
                    continue
                empty_looks = empty_looks + 1 if fed == len(feed) and total == 0 else 0
                if empty_looks >= 2:
                    break
                if os.environ.get("FLEET_DEBUG") and time.monotonic() - last_report > 5:
                    last_report = time.monotonic()
                    print(f"{last_report - started:6.1f}s fed={fed} queued={total} visible={waiting} {self.stats}")
                time.sleep(0.05 if fed < len(feed) else 0.25)
        finally:
            self._stop.set()
            for t in threads:
                t.join(timeout=30)
        self.stats.seconds = time.monotonic() - started
        if self.stats.errors:
            raise self.stats.errors[0]
        if empty_looks < 2:
            raise AssertionError(f"the outbound queue did not empty within {deadline_s} s")
        return self.stats

    def close(self) -> None:
        """End each container: its pooled httpx client and its event loop."""
        for module in self.modules:
            state = getattr(module, "_state", None)
            if state is None:
                continue
            loop, gateway = state
            http = getattr(gateway, "_http", None)
            if http is not None:
                loop.run_until_complete(http.aclose())
            loop.close()
            module._state = None
