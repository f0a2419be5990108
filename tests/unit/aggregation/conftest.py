"""The real metrics consumer (functions/metrics/app.py) and the internal API on in-process moto."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from lifelink.api import ApiDeps, InternalApi
from lifelink.domain.attribution import Attribution, issue
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink_local.handlers import LambdaContext
from lifelink_local.provision import Provisioned
from tests.conftest import load_function
from tests.unit.aggregation.helpers import LIFE_APP, MINI_APP, sqs_batch


@dataclass
class World:
    stack: Provisioned
    consume: Callable[[list[dict[str, Any]]], list[str]]  # events -> failed message ids
    api: InternalApi
    attribution_key: bytes
    module: Any

    def token(self, campaign: str, when: Any, app: str = LIFE_APP) -> str:
        return issue(Attribution(app, campaign, "push", "msg12345", when), self.attribution_key)

    def items(self, table_id: str) -> list[dict[str, Any]]:
        ddb = boto3.client("dynamodb")
        out, kwargs = [], {"TableName": self.stack.tables[table_id]}
        while True:
            page = ddb.scan(**kwargs)
            out += page["Items"]
            if "LastEvaluatedKey" not in page:
                return sorted(out, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def register_apps(stack: Provisioned, life_policy: dict[str, Any] | None = None) -> None:
    registry = AppRegistry(boto3.client("dynamodb"), stack.tables["StateTable"], boto3.client("secretsmanager"))
    keys = {"app_private_key": "unused", "alipay_public_key": "unused"}
    registry.register(AppRecord(app_id=LIFE_APP, kind="life", secret_name=f"lifelink/apps/{LIFE_APP}",
                                policy=life_policy), keys)
    registry.register(AppRecord(app_id=MINI_APP, kind="mini", life_account=LIFE_APP,
                                secret_name=f"lifelink/apps/{MINI_APP}"), keys)


def make_world(stack: Provisioned, monkeypatch: pytest.MonkeyPatch) -> World:
    for function_id in ("InternalApiFunction", "MetricsFunction"):
        for k, v in stack.function_environment(function_id).items():
            monkeypatch.setenv(k, v)
    register_apps(stack)
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=stack.secrets["AttributionSecret"])
    module = load_function("metrics")

    def consume(events: list[dict[str, Any]]) -> list[str]:
        answer = module.handler(sqs_batch(events), LambdaContext(function_name="metrics"))
        return [f["itemIdentifier"] for f in answer["batchItemFailures"]]

    return World(stack, consume, InternalApi(ApiDeps.from_env()), secret["SecretString"].encode(), module)


@pytest.fixture
def world(aws: Provisioned, monkeypatch: pytest.MonkeyPatch) -> World:
    return make_world(aws, monkeypatch)
