"""template.yaml's tables and queues created in moto's server (over real HTTP on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from lifelink_local.provision import DEFAULT_TEMPLATE, SamTemplate, provision

pytestmark = pytest.mark.integration


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    try:
        yield url
    finally:
        server.stop()


def _template_props(logical_id: str) -> dict:
    return SamTemplate.from_file(DEFAULT_TEMPLATE).properties(logical_id)


def test_tables_match_the_template(endpoint: str) -> None:
    result = provision(prefix="t1")
    ddb = boto3.client("dynamodb")

    assert result.tables == {"StateTable": "t1-StateTable", "IdempotencyTable": "t1-IdempotencyTable"}
    for logical_id, name in result.tables.items():
        props = _template_props(logical_id)
        table = ddb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == props["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl["TimeToLiveStatus"] == "ENABLED"
        assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]

    state = ddb.describe_table(TableName="t1-StateTable")["Table"]["KeySchema"]
    assert state == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    ttl = ddb.describe_time_to_live(TableName="t1-IdempotencyTable")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expiration"


def test_events_queue_redrives_to_its_dlq(endpoint: str) -> None:
    result = provision(prefix="t2")
    sqs = boto3.client("sqs")

    assert set(result.queues) == {"EventsQueue", "EventsDLQ"}
    attrs = sqs.get_queue_attributes(QueueUrl=result.queues["EventsQueue"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == result.queue_arns["EventsDLQ"]
    assert int(redrive["maxReceiveCount"]) == 5
    assert int(attrs["VisibilityTimeout"]) == _template_props("EventsQueue")["VisibilityTimeout"]
    dlq = sqs.get_queue_attributes(QueueUrl=result.queues["EventsDLQ"], AttributeNames=["All"])["Attributes"]
    assert int(dlq["MessageRetentionPeriod"]) == 14 * 24 * 3600
    assert result.queue_arns["EventsDLQ"].endswith(":t2-EventsDLQ")

    settings = result.queue_settings("EventsQueue")
    assert (settings.dead_letter_queue_id, settings.max_receive_count) == ("EventsDLQ", 5)
    assert settings.visibility_timeout_s == int(attrs["VisibilityTimeout"])


def test_poison_message_lands_in_the_dlq_after_max_receives(endpoint: str) -> None:
    result = provision(prefix="t3")
    sqs = boto3.client("sqs")
    queue, dlq = result.queues["EventsQueue"], result.queues["EventsDLQ"]
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "0"})  # no waiting between tries
    sqs.send_message(QueueUrl=queue, MessageBody="poison")

    receives = 0
    while sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1).get("Messages"):
        receives += 1
        assert receives <= 10, "the message never left the queue"
    moved = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=1)["Messages"]
    assert receives == 5
    assert moved[0]["Body"] == "poison"


def test_provisioning_twice_reuses_everything(endpoint: str) -> None:
    first = provision(prefix="t4")
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=first.queues["EventsQueue"], MessageBody="kept")
    boto3.client("dynamodb").put_item(
        TableName=first.tables["StateTable"], Item={"pk": {"S": "APP#1"}, "sk": {"S": "APP"}}
    )
    # Someone changed a queue setting by hand: provisioning restores the template's.
    sqs.set_queue_attributes(QueueUrl=first.queues["EventsQueue"], Attributes={"VisibilityTimeout": "7"})

    second = provision(prefix="t4")

    assert (second.tables, second.queues, second.queue_arns) == (first.tables, first.queues, first.queue_arns)
    names = boto3.client("dynamodb").list_tables()["TableNames"]
    assert sorted(n for n in names if n.startswith("t4-")) == ["t4-IdempotencyTable", "t4-StateTable"]
    assert len(sqs.list_queues(QueueNamePrefix="t4-")["QueueUrls"]) == 2
    item = boto3.client("dynamodb").get_item(TableName="t4-StateTable", Key={"pk": {"S": "APP#1"}, "sk": {"S": "APP"}})
    assert "Item" in item
    attrs = sqs.get_queue_attributes(QueueUrl=second.queues["EventsQueue"], AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == str(_template_props("EventsQueue")["VisibilityTimeout"])
    assert attrs["ApproximateNumberOfMessages"] == "1"


def test_webhook_environment_resolves_to_the_local_resources(endpoint: str) -> None:
    result = provision(prefix="t5")
    env = result.function_environment("WebhookFunction")

    assert env["STATE_TABLE"] == "t5-StateTable"
    assert env["IDEMPOTENCY_TABLE"] == "t5-IdempotencyTable"
    assert env["EVENTS_QUEUE_URL"] == result.queues["EventsQueue"]
    assert env["EVENTS_QUEUE_URL"].startswith(endpoint)
    assert env["APP_SECRET_PREFIX"] == "lifelink/apps/"
    assert env["POWERTOOLS_SERVICE_NAME"] == "lifelink"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert all(isinstance(v, str) for v in env.values())
    # The URL in the environment is one boto3 can use.
    boto3.client("sqs").send_message(QueueUrl=env["EVENTS_QUEUE_URL"], MessageBody="{}")


def test_parameter_overrides_reach_the_environment(endpoint: str) -> None:
    env = provision(prefix="t6", parameters={"LogLevel": "DEBUG"}).function_environment("WebhookFunction")
    assert env["POWERTOOLS_LOG_LEVEL"] == "DEBUG"


def test_refuses_to_run_without_a_local_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(RuntimeError, match="AWS_ENDPOINT_URL"):
        provision(prefix="never")
