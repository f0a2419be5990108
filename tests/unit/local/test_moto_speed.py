"""moto with lifelink_local.moto_speed applied answers as moto does: same results, same errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lifelink_local.motoserver import atomic_backends
from tests.conftest import AWS_ENV

TABLE = "speed"


@pytest.fixture
def patched_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process moto with the backend lock and moto_speed applied, as the local stack runs it."""
    from moto import mock_aws

    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(), atomic_backends():
        yield


@pytest.fixture
def ddb(patched_moto: None) -> Any:
    client = boto3.client("dynamodb")
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


def update(ddb: Any, pk: str, expression: str, values: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return ddb.update_item(
        TableName=TABLE, Key={"pk": {"S": pk}}, UpdateExpression=expression, ExpressionAttributeValues=values,
        ReturnValues="ALL_NEW", **kw,
    )["Attributes"]


def error_of(fn: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        fn()
    err = caught.value.response["Error"]
    return err["Code"], err["Message"]


def test_one_cached_expression_applied_to_different_items_gives_each_its_own_result(ddb: Any) -> None:
    expression = "SET n = if_not_exists(n, :zero) + :d, tags = list_append(if_not_exists(tags, :none), :t) ADD c :one"
    for pk, d in (("a", 1), ("b", 5), ("a", 2)):
        update(ddb, pk, expression, {":zero": {"N": "0"}, ":d": {"N": str(d)}, ":none": {"L": []},
                                     ":t": {"L": [{"S": f"{pk}{d}"}]}, ":one": {"N": "1"}})
    a = ddb.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})["Item"]
    b = ddb.get_item(TableName=TABLE, Key={"pk": {"S": "b"}})["Item"]
    assert (a["n"], a["c"], a["tags"]) == ({"N": "3"}, {"N": "2"}, {"L": [{"S": "a1"}, {"S": "a2"}]})
    assert (b["n"], b["c"], b["tags"]) == ({"N": "5"}, {"N": "1"}, {"L": [{"S": "b5"}]})


def test_two_set_clauses_are_still_refused(ddb: Any) -> None:
    for _ in range(2):  # the second time from the cache
        code, message = error_of(lambda: update(ddb, "x", "SET a = :v SET b = :v", {":v": {"S": "1"}}))
        assert code == "ValidationException" and "SET" in message
    assert "Item" not in ddb.get_item(TableName=TABLE, Key={"pk": {"S": "x"}})


def test_a_path_updated_twice_is_still_refused(ddb: Any) -> None:
    for _ in range(2):
        code, message = error_of(lambda: update(ddb, "x", "SET a = :v, b = :v, a = :w", {":v": {"S": "1"},
                                                                                           ":w": {"S": "2"}}))
        assert code == "ValidationException" and "Two document paths overlap" in message


def test_a_malformed_expression_is_still_refused_every_time(ddb: Any) -> None:
    for _ in range(2):
        code, message = error_of(lambda: update(ddb, "x", "SET a = = :v", {":v": {"S": "1"}}))
        assert code == "ValidationException" and "syntax error" in message.lower()


def test_the_key_cannot_be_updated_and_a_failed_condition_changes_nothing(ddb: Any) -> None:
    code, _ = error_of(lambda: update(ddb, "x", "SET pk = :v", {":v": {"S": "y"}}))
    assert code == "ValidationException"
    update(ddb, "x", "SET a = :v", {":v": {"S": "1"}})
    code, _ = error_of(lambda: update(ddb, "x", "SET a = :v", {":v": {"S": "2"}, ":old": {"S": "0"}},
                                      ConditionExpression="a = :old"))
    assert code == "ConditionalCheckFailedException"
    assert ddb.get_item(TableName=TABLE, Key={"pk": {"S": "x"}})["Item"]["a"] == {"S": "1"}


def test_every_attribute_type_comes_back_as_written(ddb: Any) -> None:
    item = {
        "pk": {"S": "all"}, "s": {"S": "文字"}, "empty": {"S": ""}, "n": {"N": "-1.50"}, "b": {"B": b"\x00\xffraw"},
        "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]}, "bs": {"BS": [b"\x01", b"\x02"]},
        "t": {"BOOL": True}, "f": {"BOOL": False}, "null": {"NULL": True},
        "m": {"M": {"inner": {"S": "x"}, "bin": {"B": b"\x03"}, "deep": {"M": {"l": {"L": [{"N": "7"}]}}}}},
        "l": {"L": [{"S": "x"}, {"B": b"\x04"}, {"M": {}}, {"L": []}, {"NULL": True}]},
        "plain_m": {"M": {"a": {"S": "b"}, "c": {"L": [{"BOOL": False}]}}},
    }
    ddb.put_item(TableName=TABLE, Item=item)

    def same(got: dict[str, Any]) -> None:
        for name, value in item.items():
            got_value = got[name]
            if "SS" in value or "NS" in value or "BS" in value:  # sets come back in any order
                ((kind, members),) = value.items()
                assert sorted(got_value[kind]) == sorted(members), name
            else:
                assert got_value == value, name

    same(ddb.get_item(TableName=TABLE, Key={"pk": {"S": "all"}})["Item"])
    same(ddb.batch_get_item(RequestItems={TABLE: {"Keys": [{"pk": {"S": "all"}}]}})["Responses"][TABLE][0])
    updated = update(ddb, "all", "SET s = :s", {":s": {"S": "文字"}})
    same(updated)


def _put(pk: str, **attrs: Any) -> dict[str, Any]:
    return {"Put": {"TableName": TABLE, "Item": {"pk": {"S": pk}, **attrs}}}


def _items(ddb: Any) -> dict[str, dict[str, Any]]:
    return {i["pk"]["S"]: i for i in ddb.scan(TableName=TABLE)["Items"]}


def test_a_transaction_commits_every_action(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "old"}, "n": {"N": "1"}})
    ddb.transact_write_items(TransactItems=[
        _put("new", n={"N": "7"}),
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "old"}}, "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}},
    ])
    assert {k: v["n"]["N"] for k, v in _items(ddb).items()} == {"old": "2", "new": "7"}


def test_a_cancelled_transaction_leaves_every_item_as_it_was(ddb: Any) -> None:
    """A failed condition on the last action undoes the put, the update and the delete before it."""
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "kept"}, "n": {"N": "1"}, "m": {"M": {"a": {"L": [{"S": "x"}]}}}})
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "doomed"}, "n": {"N": "5"}})
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "guard"}, "n": {"N": "0"}})
    before = _items(ddb)
    with pytest.raises(ClientError) as caught:
        ddb.transact_write_items(TransactItems=[
            _put("fresh", n={"N": "9"}),
            {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "kept"}},
                        "UpdateExpression": "SET n = :two, m.a = list_append(m.a, :more)",
                        "ExpressionAttributeValues": {":two": {"N": "2"}, ":more": {"L": [{"S": "y"}]}}}},
            {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "doomed"}}}},
            {"ConditionCheck": {"TableName": TABLE, "Key": {"pk": {"S": "guard"}}, "ConditionExpression": "n > :z",
                                "ExpressionAttributeValues": {":z": {"N": "0"}}}},
        ])
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in caught.value.response["CancellationReasons"]] == [
        "None", "None", "None", "ConditionalCheckFailed"
    ]
    assert _items(ddb) == before
    # the table is still the one every later request sees, and still writable
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "after"}})
    assert set(_items(ddb)) == {"kept", "doomed", "guard", "after"}


def test_a_transaction_naming_one_item_twice_is_refused_and_changes_nothing(ddb: Any) -> None:
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    before = _items(ddb)
    code, _ = error_of(lambda: ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :v",
                    "ExpressionAttributeValues": {":v": {"N": "3"}}}},
        _put("a", n={"N": "4"}),
    ]))
    assert code == "ValidationException"
    assert _items(ddb) == before


def test_a_cancelled_transaction_on_a_table_with_a_sort_key_restores_its_items(ddb: Any) -> None:
    ddb.create_table(
        TableName="ranged",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName="ranged", Item={"pk": {"S": "u"}, "sk": {"S": "1"}, "v": {"S": "old"}})
    with pytest.raises(ClientError):
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "ranged", "Item": {"pk": {"S": "u"}, "sk": {"S": "1"}, "v": {"S": "new"}}}},
            {"Put": {"TableName": "ranged", "Item": {"pk": {"S": "w"}, "sk": {"S": "1"}}}},
            {"Put": {"TableName": "ranged", "Item": {"pk": {"S": "u"}, "sk": {"S": "2"}},
                     "ConditionExpression": "attribute_exists(pk)"}},
        ])
    items = ddb.scan(TableName="ranged")["Items"]
    assert items == [{"pk": {"S": "u"}, "sk": {"S": "1"}, "v": {"S": "old"}}]


def test_the_item_level_rollback_runs_under_the_backend_lock(ddb: Any) -> None:
    """Snapshot, transaction and restore are one atomic step: nothing else can write between them."""
    from moto.dynamodb.models import DynamoDBBackend

    import lifelink_local.moto_speed as moto_speed

    outer = DynamoDBBackend.transact_write_items
    assert outer.__code__.co_filename != moto_speed.__file__  # the lock's wrapper ...
    assert outer.__wrapped__.__code__.co_filename == moto_speed.__file__  # ... around the item-level rollback


@pytest.fixture
def sqs(patched_moto: None) -> Any:
    return boto3.client("sqs")


def _receive(sqs: Any, url: str, n: int = 10) -> list[dict[str, Any]]:
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=n, VisibilityTimeout=0).get("Messages", [])


def test_deletes_by_receipt_handle_behave_as_sqs_does(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    other = sqs.create_queue(QueueName="other")["QueueUrl"]
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    first = {m["Body"]: m["ReceiptHandle"] for m in _receive(sqs, url)}
    again = {m["Body"]: m["ReceiptHandle"] for m in _receive(sqs, url)}  # visible at once: received twice
    assert set(first) == set(again) == {f"m{i}" for i in range(5)}

    sqs.delete_message(QueueUrl=url, ReceiptHandle=again["m0"])  # the latest handle
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["m1"])  # an older handle of the same message
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["m0"])  # already deleted: accepted, nothing happens
    answer = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "ReceiptHandle": again["m2"]}, {"Id": "b", "ReceiptHandle": "not-a-handle"},
    ])
    assert [s["Id"] for s in answer["Successful"]] == ["a"]
    assert [f["Id"] for f in answer["Failed"]] == ["b"]
    code, _ = error_of(lambda: sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle"))
    assert code == "ReceiptHandleIsInvalid"
    code, _ = error_of(lambda: sqs.delete_message(QueueUrl=other, ReceiptHandle=again["m3"]))  # another queue's
    assert code == "ReceiptHandleIsInvalid"
    assert sorted(m["Body"] for m in _receive(sqs, url)) == ["m3", "m4"]
