"""The internal API's handler in one process against moto (template.yaml provisioned by the `aws` fixture)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lifelink.store.apps import AppRecord, AppRegistry
from lifelink_local.handlers import LambdaContext
from tests.conftest import KeyPair, load_function

LIFE_APP = "2021000000000001"
MINI_APP = "2021000000000002"
OPEN_ID = "074a1Z0hq0IxGtN0Yb0cUvlCpSkQHoKf0pX3Ur1w3N"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


Call = Callable[..., Answer]


def iam_event(
    method: str, path: str, body: str | bytes | None = None, *, base64_body: bool = False, route: str | None = None
) -> dict[str, Any]:
    """An HTTP API payload-2.0 event as API Gateway builds it for an IAM-authorised route."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route or path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "api.example.test"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "authorizer": {
                "iam": {
                    "accessKey": "AKIAEXAMPLE",
                    "accountId": "123456789012",
                    "callerId": "AIDAEXAMPLE",
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": "arn:aws:iam::123456789012:user/scheduler",
                    "userId": "AIDAEXAMPLE",
                }
            },
            "domainName": "api.example.test",
            "domainPrefix": "api",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "10.0.0.1",
                "userAgent": "test",
            },
            "requestId": "req-1",
            "routeKey": f"{method} {route or path}",
            "stage": "$default",
            "time": "01/Jan/2025:00:00:00 +0000",
            "timeEpoch": 1735689600000,
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        raw = body.encode() if isinstance(body, str) else body
        if base64_body:
            event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
        else:
            event["body"] = raw.decode()
    return event


@pytest.fixture
def stack(aws: Any, app_keys: KeyPair, alipay_keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> Any:
    for k, v in aws.function_environment("InternalApiFunction").items():
        monkeypatch.setenv(k, v)
    registry = AppRegistry(boto3.client("dynamodb"), aws.tables["StateTable"], boto3.client("secretsmanager"))
    secret = {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_keys.public_pem}
    registry.register(AppRecord(app_id=LIFE_APP, kind="life", secret_name=f"lifelink/apps/{LIFE_APP}"), secret)
    registry.register(
        AppRecord(app_id=MINI_APP, kind="mini", secret_name=f"lifelink/apps/{MINI_APP}", life_account=LIFE_APP),
        secret,
    )
    return aws


@pytest.fixture
def call(stack: Any) -> Call:
    module = load_function("internal_api")

    def invoke(method: str, path: str, body: Any = None, **kwargs: Any) -> Answer:
        if body is not None and not isinstance(body, str | bytes):
            body = json.dumps(body)
        result = module.handler(iam_event(method, path, body, **kwargs), LambdaContext(function_name="internal_api"))
        raw = result.get("body") or ""
        if result.get("isBase64Encoded"):
            raw = base64.b64decode(raw).decode()
        headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        return Answer(result["statusCode"], json.loads(raw) if raw else None, headers)

    return invoke


def outbound_bodies(stack: Any) -> list[str]:
    sqs = boto3.client("sqs")
    url, out = stack.queues["OutboundQueue"], []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
        if not msgs:
            return out
        out.extend(m["Body"] for m in msgs)


def template_job(**overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "app_id": LIFE_APP,
        "channel": "life_template",
        "recipient": {"open_id": OPEN_ID},
        "content": {
            "template_id": "TPL_WELCOME",
            "url": "https://m.example.test/welcome",
            "action_name": "View",
            "keywords": [{"value": "Welcome aboard"}],
        },
        "campaign": "spring",
        "phase": "warmup",
        "kind": "transactional",
        "not_after": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }
    job.update(overrides)
    return job
