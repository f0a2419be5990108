"""SQS pollers against moto's server over HTTP: batches, partial failures, retries and the DLQ."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from lifelink_local.motoserver import MotoServer
from lifelink_local.pollers import SqsPoller

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sqs() -> Iterator[Any]:
    server = MotoServer(port=0)
    url = server.start()
    client = boto3.client(
        "sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    yield client
    server.stop()


def make_queue(sqs: Any, max_receive_count: int = 5, visibility: int = 1) -> tuple[str, str]:
    name = uuid.uuid4().hex[:10]
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    return queue, dlq


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def count(sqs: Any, queue: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


class Batches:
    def __init__(self, decide: Callable[[dict[str, Any], int], Any]) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.decide = decide
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> Any:
        with self.lock:
            self.batches.append(event["Records"])
            n = len(self.batches)
        return self.decide(event, n)

    def bodies(self, i: int) -> list[str]:
        return sorted(r["body"] for r in self.batches[i])


def test_event_shape_and_partial_batch_failure(sqs: Any) -> None:
    queue, _ = make_queue(sqs)
    for body in ("a", "b", "c"):
        sqs.send_message(
            QueueUrl=queue, MessageBody=body, MessageAttributes={"kind": {"DataType": "String", "StringValue": body}}
        )

    def fail_b(event: dict[str, Any], n: int) -> Any:
        return {
            "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "b"][:1]
        }

    handler = Batches(lambda e, n: fail_b(e, n) if n == 1 else {"batchItemFailures": []})
    poller = SqsPoller(sqs, queue, handler, batch_size=10, max_batching_window_s=1, report_batch_item_failures=True)
    poller.start()
    try:
        wait_for(lambda: len(handler.batches) >= 2 and count(sqs, queue) == 0)
    finally:
        poller.stop()
    assert handler.bodies(0) == ["a", "b", "c"]
    assert handler.bodies(1) == ["b"]  # only the failed record came back
    assert len(handler.batches) == 2
    record = handler.batches[0][0]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["kind"]["stringValue"] == record["body"]
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    assert record["md5OfBody"] and record["receiptHandle"] and record["messageId"]
    assert handler.batches[1][0]["attributes"]["ApproximateReceiveCount"] == "2"


def test_poison_message_lands_in_the_dlq_after_five_receives(sqs: Any) -> None:
    queue, dlq = make_queue(sqs, max_receive_count=5, visibility=1)
    sqs.send_message(QueueUrl=queue, MessageBody="poison")

    def always_fail(event: dict[str, Any], n: int) -> Any:
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    handler = Batches(always_fail)
    poller = SqsPoller(sqs, queue, handler, batch_size=10, report_batch_item_failures=True)
    poller.start()
    try:
        wait_for(lambda: count(sqs, dlq) == 1, timeout=60)
    finally:
        poller.stop()
    counts = [b[0]["attributes"]["ApproximateReceiveCount"] for b in handler.batches]
    assert counts == ["1", "2", "3", "4", "5"]
    moved = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in moved] == ["poison"]
    assert count(sqs, queue) == 0


def test_handler_exception_retries_the_whole_batch(sqs: Any) -> None:
    queue, _ = make_queue(sqs)
    for body in ("x", "y"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)

    def raise_first(event: dict[str, Any], n: int) -> Any:
        if n == 1:
            raise RuntimeError("consumer bug")
        return None

    handler = Batches(raise_first)
    poller = SqsPoller(sqs, queue, handler, batch_size=10, max_batching_window_s=1, report_batch_item_failures=True)
    poller.start()
    try:
        wait_for(lambda: len(handler.batches) >= 2 and count(sqs, queue) == 0)
    finally:
        poller.stop()
    assert handler.bodies(0) == ["x", "y"]
    assert handler.bodies(1) == ["x", "y"]
    assert poller.errors == 1


def test_without_partial_responses_a_returned_failure_list_is_ignored(sqs: Any) -> None:
    queue, _ = make_queue(sqs)
    sqs.send_message(QueueUrl=queue, MessageBody="m")
    handler = Batches(lambda e, n: {"batchItemFailures": [{"itemIdentifier": e["Records"][0]["messageId"]}]})
    poller = SqsPoller(sqs, queue, handler, report_batch_item_failures=False)
    poller.start()
    try:
        wait_for(lambda: len(handler.batches) >= 1 and count(sqs, queue) == 0)
    finally:
        poller.stop()
    assert len(handler.batches) == 1
