"""A consumer that dies mid-batch: ``python -m lifelink_local.proof.crash_worker '<json spec>'``.

The spec names a function (``handler_file``, ``handler_name``, ``function_name``, ``env``), its queue
(``queue_url``, and optionally the ``visibility`` timeout to receive with) and ``batch`` / ``kill_after``. The
worker receives up to ``batch`` messages as Lambda's event source mapping would, runs the real handler on them,
and counts the handler's writes (DynamoDB ``PutItem``,
``UpdateItem``, ``DeleteItem``, ``BatchWriteItem``, ``TransactWriteItems``; SQS ``SendMessage`` /
``SendMessageBatch``). Just before write number ``kill_after + 1`` (or just after transaction number
``kill_after_transactions`` committed: the fold written, the batch not yet acknowledged) it prints what it held
and ends the process with ``os._exit(137)``: no cleanup, no deletes, no partial batch response, as when a Lambda
container is killed.
SQS hands the messages out again after the visibility timeout. A batch that needs fewer writes completes
normally (its successful messages deleted); a handler that raises leaves the whole batch to come back, as a
Lambda function error does. The last line on stdout is JSON: ``held``, ``writes``, ``transactions``,
``killed`` (and ``error``, the exception's type, when the handler raised).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import boto3

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems",
                    "SendMessage", "SendMessageBatch"})
KILLED_EXIT = 137


def receive(sqs: Any, url: str, batch: int, visibility: int | None) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    extra = {} if visibility is None else {"VisibilityTimeout": visibility}
    while len(got) < batch:
        more = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, batch - len(got)), WaitTimeSeconds=1,
                                   AttributeNames=["All"], MessageAttributeNames=["All"], **extra).get("Messages", [])
        if not more:
            break
        got.extend(more)
    return got


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    from lifelink.store import aws
    from lifelink_local.handlers import load_function
    from lifelink_local.pollers import build_sqs_event, failed_ids

    fn = load_function(Path(spec["handler_file"]), env=spec["env"], handler_name=spec["handler_name"],
                       function_name=spec["function_name"])
    state = {"writes": 0, "held": 0, "transactions": 0}
    kill_after = spec.get("kill_after")
    kill_after_transactions = spec.get("kill_after_transactions")

    def die() -> None:
        print(json.dumps({**state, "killed": True}), flush=True)
        os._exit(KILLED_EXIT)

    def before_call(model: Any = None, **_: Any) -> None:
        if model is None or model.name not in WRITES:
            return
        if kill_after is not None and state["writes"] >= int(kill_after):
            die()
        state["writes"] += 1

    def after_call(model: Any = None, **_: Any) -> None:
        if model is not None and model.name == "TransactWriteItems":
            state["transactions"] += 1
            if kill_after_transactions is not None and state["transactions"] >= int(kill_after_transactions):
                die()  # the fold's transaction is committed; the batch is neither deleted nor reported

    for service in ("dynamodb", "sqs"):
        aws.client(service).meta.events.register(f"before-call.{service}", before_call)
        aws.client(service).meta.events.register(f"after-call.{service}", after_call)
    sqs = boto3.client("sqs")
    url = spec["queue_url"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = receive(sqs, url, int(spec["batch"]), spec.get("visibility"))
    state["held"] = len(messages)
    if messages:
        try:
            result = fn(build_sqs_event(messages, arn, sqs.meta.region_name))
        except Exception as exc:  # a function error: Lambda deletes nothing, the whole batch comes back
            print(json.dumps({**state, "killed": False, "error": type(exc).__name__}), flush=True)
            return 0
        keep = failed_ids(result, {m["MessageId"] for m in messages})
        done = [m for m in messages if m["MessageId"] not in keep]
        for start in range(0, len(done), 10):
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:start + 10])])
    print(json.dumps({**state, "killed": False}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
