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

    assert result.tables == {
        "StateTable": "t1-StateTable",
        "IdempotencyTable": "t1-IdempotencyTable",
        "ProfilesTable": "t1-ProfilesTable",
        "MetricsTable": "t1-MetricsTable",
    }
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


@pytest.mark.parametrize(("queue_id", "dlq_id"), [("EventsQueue", "EventsDLQ"), ("OutboundQueue", "OutboundDLQ")])
def test_queue_redrives_to_its_dlq(endpoint: str, queue_id: str, dlq_id: str) -> None:
    result = provision(prefix="t2")
    sqs = boto3.client("sqs")

    assert set(result.queues) == {"EventsQueue", "EventsDLQ", "OutboundQueue", "OutboundDLQ"}
    attrs = sqs.get_queue_attributes(QueueUrl=result.queues[queue_id], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == result.queue_arns[dlq_id]
    assert int(redrive["maxReceiveCount"]) == 5
    assert int(attrs["VisibilityTimeout"]) == _template_props(queue_id)["VisibilityTimeout"]
    dlq = sqs.get_queue_attributes(QueueUrl=result.queues[dlq_id], AttributeNames=["All"])["Attributes"]
    assert int(dlq["MessageRetentionPeriod"]) == 14 * 24 * 3600
    assert result.queue_arns[dlq_id].endswith(f":t2-{dlq_id}")

    settings = result.queue_settings(queue_id)
    assert (settings.dead_letter_queue_id, settings.max_receive_count) == (dlq_id, 5)
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
    assert sorted(n for n in names if n.startswith("t4-")) == [
        "t4-IdempotencyTable", "t4-MetricsTable", "t4-ProfilesTable", "t4-StateTable"
    ]
    assert len(sqs.list_queues(QueueNamePrefix="t4-")["QueueUrls"]) == len(first.queues) == 4
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


def test_generated_secret_follows_the_template(endpoint: str) -> None:
    result = provision(prefix="t7", parameters={"AttributionSecretName": "t7/attribution-key"})
    spec = _template_props("AttributionSecret")["GenerateSecretString"]
    client = boto3.client("secretsmanager")

    assert result.secrets == {"AttributionSecret": "t7/attribution-key"}
    value = client.get_secret_value(SecretId="t7/attribution-key")["SecretString"]
    assert len(value) == spec["PasswordLength"] == 48
    assert value.isalnum()  # ExcludePunctuation
    assert result.secret_arns["AttributionSecret"] == client.describe_secret(SecretId="t7/attribution-key")["ARN"]
    # !Ref of a secret is its ARN, as in CloudFormation; the functions get the name through the parameter.
    assert result.resolve({"Ref": "AttributionSecret"}) == result.secret_arns["AttributionSecret"]
    gateway_env = result.function_environment("MessageGatewayFunction")
    assert gateway_env["ATTRIBUTION_SECRET_NAME"] == "t7/attribution-key"


def test_an_existing_secret_keeps_its_value(endpoint: str) -> None:
    first = provision(prefix="t8", parameters={"AttributionSecretName": "t8/key"})
    client = boto3.client("secretsmanager")
    before = client.get_secret_value(SecretId="t8/key")["SecretString"]

    second = provision(prefix="t8", parameters={"AttributionSecretName": "t8/key"})

    assert second.secret_arns == first.secret_arns
    assert client.get_secret_value(SecretId="t8/key")["SecretString"] == before
    names = [s["Name"] for s in client.list_secrets()["SecretList"]]
    assert names.count("t8/key") == 1


def test_gateway_url_parameter_reaches_the_message_gateway(endpoint: str) -> None:
    url = "http://127.0.0.1:1/gateway.do"
    env = provision(prefix="t9", parameters={"AlipayGatewayUrl": url}).function_environment("MessageGatewayFunction")
    assert env["ALIPAY_GATEWAY_URL"] == url
    assert env["OUTBOUND_QUEUE_URL"].endswith("/t9-OutboundQueue")


def test_refuses_to_run_without_a_local_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(RuntimeError, match="AWS_ENDPOINT_URL"):
        provision(prefix="never")
