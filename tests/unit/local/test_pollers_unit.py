from __future__ import annotations

from lifelink_local.pollers import build_sqs_event, failed_ids

IDS = {"m1", "m2"}


def test_partial_batch_responses() -> None:
    assert failed_ids(None, IDS) == set()
    assert failed_ids({"batchItemFailures": []}, IDS) == set()
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "m2"}]}, IDS) == {"m2"}


def test_invalid_partial_responses_fail_the_whole_batch() -> None:
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "nope"}]}, IDS) == IDS
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, IDS) == IDS
    assert failed_ids({"batchItemFailures": [{}]}, IDS) == IDS
    assert failed_ids({"batchItemFailures": "m1"}, IDS) == IDS


def test_record_shape() -> None:
    msg = {
        "MessageId": "m1",
        "ReceiptHandle": "rh",
        "Body": "{}",
        "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "Attributes": {"ApproximateReceiveCount": "3"},
        "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}},
    }
    (record,) = build_sqs_event([msg], "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")["Records"]
    assert record["messageId"] == "m1" and record["receiptHandle"] == "rh"
    assert record["attributes"]["ApproximateReceiveCount"] == "3"
    assert record["messageAttributes"]["k"] == {
        "stringValue": "v",
        "binaryValue": None,
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":q")
