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
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(), atomic_backends():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


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
