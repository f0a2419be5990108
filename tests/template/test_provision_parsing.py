"""local/provision.py's reading of a template: routes, SQS event sources, queue order (no AWS)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest

from lifelink_local.provision import Provisioned, SamTemplate, TemplateError, generate_secret_string

INLINE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
Globals:
  Function:
    Timeout: 20
    Environment:
      Variables:
        STAGE: !Ref Stage
        SHARED: from-globals
  HttpApi:
    Auth: {DefaultAuthorizer: AWS_IAM, EnableIamAuthorizer: true}
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  Metrics:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/metrics/
      Handler: app.handler
      Environment:
        Variables:
          SHARED: from-function
          QUEUE_ARN: !GetAtt Jobs.Arn
          QUEUE_NAME: !GetAtt Jobs.QueueName
          TABLE_ARN: !Sub "${Table.Arn}/index/*"
          LITERAL: !Sub "${!NotResolved}-${AWS::Region}-${Stage}"
          FLAG: true
      Events:
        FromJobs:
          Type: SQS
          Properties:
            Queue: !GetAtt Jobs.Arn
            BatchSize: 50
            MaximumBatchingWindowInSeconds: 2
            FunctionResponseTypes: [ReportBatchItemFailures]
        Read:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: get
            Path: /metrics/{app_id}
        Hook:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: POST, Path: /hook, Auth: {Authorizer: NONE}}
  Sender:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sender
      Handler: pkg.main.run
      Events:
        Out:
          Type: SQS
          Properties: {Queue: !GetAtt JobsDLQ.Arn}
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 120
      RedrivePolicy: {deadLetterTargetArn: !GetAtt JobsDLQ.Arn, maxReceiveCount: 3}
  JobsDLQ:
    Type: AWS::SQS::Queue
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
"""


@pytest.fixture
def template(tmp_path: Path) -> SamTemplate:
    return SamTemplate.from_string(INLINE, tmp_path)


def test_sqs_event_sources(template: SamTemplate, tmp_path: Path) -> None:
    by_function = {m.function_id: m for m in template.event_source_mappings()}
    metrics, sender = by_function["Metrics"], by_function["Sender"]

    assert metrics.queue_id == "Jobs"
    assert (metrics.batch_size, metrics.maximum_batching_window_s) == (50, 2)
    assert metrics.report_batch_item_failures
    assert metrics.handler_file == tmp_path / "functions/metrics/app.py"
    assert metrics.handler_name == "handler"
    # Lambda's defaults where the template says nothing.
    assert (sender.queue_id, sender.batch_size, sender.maximum_batching_window_s) == ("JobsDLQ", 10, 0)
    assert not sender.report_batch_item_failures
    assert sender.handler_file == tmp_path / "functions/sender/pkg/main.py"
    assert sender.handler_name == "run"


def test_http_routes_inherit_the_default_authorizer(template: SamTemplate) -> None:
    routes = {(r.method, r.path): r for r in template.http_routes()}
    assert set(routes) == {("GET", "/metrics/{app_id}"), ("POST", "/hook")}
    assert routes["GET", "/metrics/{app_id}"].auth == "AWS_IAM"
    assert routes["POST", "/hook"].auth == "NONE"
    assert routes["POST", "/hook"].function_id == "Metrics"


def test_dead_letter_queues_come_first(template: SamTemplate) -> None:
    assert template.queues_in_creation_order() == ["JobsDLQ", "Jobs"]


def test_environment_merges_globals_and_resolves_intrinsics(template: SamTemplate) -> None:
    provisioned = Provisioned(
        template=template,
        prefix="p",
        region="eu-west-1",
        tables={"Table": "p-Table"},
        table_arns={"Table": "arn:aws:dynamodb:eu-west-1:123456789012:table/p-Table"},
        queues={"Jobs": "http://h/1/p-Jobs", "JobsDLQ": "http://h/1/p-JobsDLQ"},
        queue_arns={"Jobs": "arn:aws:sqs:eu-west-1:1:p-Jobs", "JobsDLQ": "arn:aws:sqs:eu-west-1:1:p-JobsDLQ"},
        queue_names={"Jobs": "p-Jobs", "JobsDLQ": "p-JobsDLQ"},
        parameters={"Stage": "dev"},
    )
    assert provisioned.function_environment("Metrics") == {
        "STAGE": "dev",
        "SHARED": "from-function",
        "QUEUE_ARN": "arn:aws:sqs:eu-west-1:1:p-Jobs",
        "QUEUE_NAME": "p-Jobs",
        "TABLE_ARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/p-Table/index/*",
        "LITERAL": "${NotResolved}-eu-west-1-dev",
        "FLAG": "true",
    }
    assert provisioned.function_environment("Sender") == {"STAGE": "dev", "SHARED": "from-globals"}
    with pytest.raises(TemplateError, match="Jobs"):
        provisioned.function_environment("Jobs")


def test_unresolvable_reference_is_named(tmp_path: Path) -> None:
    text = INLINE.replace("SHARED: from-function", "SHARED: !Ref Nowhere")
    provisioned = Provisioned(
        template=SamTemplate.from_string(text, tmp_path), prefix="p", region="r", parameters={"Stage": "dev"}
    )
    with pytest.raises(TemplateError, match="Nowhere"):
        provisioned.function_environment("Metrics")


def test_sqs_event_on_an_unknown_queue_is_refused(tmp_path: Path) -> None:
    text = INLINE.replace("Queue: !GetAtt JobsDLQ.Arn", "Queue: arn:aws:sqs:us-east-1:1:elsewhere")
    with pytest.raises(TemplateError, match="Sender"):
        SamTemplate.from_string(text, tmp_path).event_source_mappings()


@pytest.mark.parametrize(
    ("spec", "allowed", "length"),
    [
        ({"PasswordLength": 48, "ExcludePunctuation": True}, set(string.ascii_letters + string.digits), 48),
        ({}, set(string.ascii_letters + string.digits + string.punctuation), 32),
        (
            {"PasswordLength": 20, "ExcludeUppercase": True, "ExcludeNumbers": True, "ExcludeCharacters": "abc"},
            set(string.ascii_lowercase + string.punctuation) - set("abc"),
            20,
        ),
    ],
)
def test_generated_secret_strings_respect_the_spec(spec: dict, allowed: set[str], length: int) -> None:
    values = [generate_secret_string(spec) for _ in range(20)]
    assert all(len(v) == length and set(v) <= allowed for v in values)
    assert len(set(values)) == len(values)  # random, not a constant


def test_generated_secret_with_a_json_template() -> None:
    spec = {"SecretStringTemplate": '{"user": "app"}', "GenerateStringKey": "password", "PasswordLength": 16}
    document = json.loads(generate_secret_string(spec))
    assert document["user"] == "app"
    assert len(document["password"]) == 16


def test_a_spec_that_excludes_everything_is_refused() -> None:
    spec = {"ExcludeLowercase": True, "ExcludeUppercase": True, "ExcludeNumbers": True, "ExcludePunctuation": True}
    with pytest.raises(TemplateError):
        generate_secret_string(spec)
