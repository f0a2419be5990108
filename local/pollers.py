"""SQS pollers that feed consumers the way Lambda's SQS event source mapping does.

One thread per mapping: long-poll ``ReceiveMessage`` (at most 10 per call), gather up to ``batch_size``
messages within ``max_batching_window_s``, call the handler with Lambda's SQS event, then

- handler returned and ``report_batch_item_failures`` is on: delete every message not named in
  ``{"batchItemFailures": [{"itemIdentifier": messageId}]}``; an invalid response (not a dict with a list,
  or an identifier that is not in the batch or empty) fails the whole batch, as Lambda does;
- handler returned and partial responses are off: delete the whole batch;
- handler raised: delete nothing.

Messages left undeleted reappear after the queue's visibility timeout. Moving poison messages to the DLQ
after ``maxReceiveCount`` receives is the queue's own RedrivePolicy: moto's server implements it on
``ReceiveMessage`` (verified by tests/integration/test_pollers.py), so the poller does not move anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SqsHandler = Callable[[dict[str, Any]], Any]
MAX_BATCH_SIZE = 10_000
MAX_PER_RECEIVE = 10


def _lambda_attributes(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: {
                "stringValue": attr.get("StringValue"),
                "binaryValue": attr.get("BinaryValue"),
                "stringListValues": list(attr.get("StringListValues", [])),
                "binaryListValues": list(attr.get("BinaryListValues", [])),
                "dataType": attr.get("DataType"),
            }
            for name, attr in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody"),
    }


def build_sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """Lambda's SQS event for messages as returned by ``ReceiveMessage``."""
    records = []
    for message in messages:
        record = _lambda_attributes(message)
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        record["eventSource"] = "aws:sqs"
        record["eventSourceARN"] = queue_arn
        record["awsRegion"] = region
        records.append(record)
    return {"Records": records}


def failed_ids(result: Any, batch_ids: set[str]) -> set[str]:
    """The message ids to keep, from a partial batch response; the whole batch if the response is invalid."""
    if result is None:
        return set()
    if not isinstance(result, dict):
        return set()
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return set(batch_ids)
    kept: set[str] = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, str) or ident not in batch_ids:
            return set(batch_ids)
        kept.add(ident)
    return kept


class SqsPoller:
    """Feeds ``handler`` from ``queue_url`` like an event source mapping. ``start()`` / ``stop()``."""

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        handler: SqsHandler,
        *,
        batch_size: int = 10,
        max_batching_window_s: float = 0.0,
        report_batch_item_failures: bool = False,
        wait_time_s: int = 1,
        name: str | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}")
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.max_batching_window_s = max_batching_window_s
        self.report_batch_item_failures = report_batch_item_failures
        self.wait_time_s = wait_time_s
        self.name = name or queue_url.rsplit("/", 1)[-1]
        self.region: str = sqs_client.meta.region_name
        self.queue_arn: str = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.errors = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"poller-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _receive(self, max_messages: int, wait_s: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def gather(self) -> list[dict[str, Any]]:
        """One batch: up to ``batch_size`` messages, within the batching window after the first arrives."""
        batch = self._receive(min(MAX_PER_RECEIVE, self.batch_size), self.wait_time_s)
        if not batch:
            return []
        deadline = time.monotonic() + self.max_batching_window_s
        while len(batch) < self.batch_size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(min(MAX_PER_RECEIVE, self.batch_size - len(batch)), min(int(remaining), 20))
            if not more and remaining < 1:
                break
            batch.extend(more)
        return batch

    def process(self, batch: list[dict[str, Any]]) -> set[str]:
        """Run the handler on one batch and delete what succeeded; returns the ids left on the queue."""
        ids = {m["MessageId"] for m in batch}
        event = build_sqs_event(batch, self.queue_arn, self.region)
        self.batches += 1
        try:
            result = self.handler(event)
        except Exception:
            self.errors += 1
            log.exception("poller %s: handler failed, the batch of %d will be retried", self.name, len(batch))
            return ids
        keep = failed_ids(result, ids) if self.report_batch_item_failures else set()
        to_delete = [m for m in batch if m["MessageId"] not in keep]
        for start in range(0, len(to_delete), 10):
            chunk = to_delete[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        return keep

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.gather()
                if batch:
                    self.process(batch)
            except Exception:
                log.exception("poller %s: receive/delete failed", self.name)
                self._stop.wait(1.0)


class PollerGroup:
    """Several pollers started and stopped together."""

    def __init__(self, pollers: list[SqsPoller] | None = None) -> None:
        self.pollers = list(pollers or [])

    def add(self, poller: SqsPoller) -> SqsPoller:
        self.pollers.append(poller)
        return poller

    def start(self) -> None:
        for poller in self.pollers:
            poller.start()

    def stop(self) -> None:
        for poller in self.pollers:
            poller._stop.set()
        for poller in self.pollers:
            poller.stop()
