"""A SendMessageBatch call that times out (botocore's HTTP errors carry ``response=None``) reports its entries as
refused by the queue; it used to raise AttributeError, so ``POST /events`` answered 500 on a slow queue."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ReadTimeoutError

from lifelink.api.events_ingest import _Entry, publish


class TimingOutSqs:
    def __init__(self) -> None:
        self.calls = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        raise ReadTimeoutError(endpoint_url="http://127.0.0.1:5000/")


def test_a_timed_out_call_reports_every_entry_as_refused_after_one_retry() -> None:
    sqs = TimingOutSqs()
    failed = publish(sqs, "url", [_Entry(i, f'{{"n": {i}}}') for i in range(3)])
    assert failed == {0: "ReadTimeoutError", 1: "ReadTimeoutError", 2: "ReadTimeoutError"}
    assert sqs.calls == 2  # the call, then the one retry
