"""`lifelink apps configure --template ID …`: the template ids campaigns may name, stored on the app record."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from lifelink.store.apps import AppRecord, AppRegistry
from lifelink_local.cli import main

LIFE_APP = "2021000000000001"


@pytest.fixture
def registry(aws: Any) -> AppRegistry:
    reg = AppRegistry(boto3.client("dynamodb"), aws.tables["StateTable"], boto3.client("secretsmanager"))
    reg.register(AppRecord(app_id=LIFE_APP, kind="life", secret_name=f"lifelink/apps/{LIFE_APP}"), {"k": "v"})
    return reg


def configure(aws: Any, *args: str) -> int:
    return main(["--state-table", aws.tables["StateTable"], "apps", "configure", "--app-id", LIFE_APP, *args])


def test_templates_are_set_replaced_and_cleared(aws: Any, registry: AppRegistry, capsys: Any) -> None:
    assert configure(aws, "--template", "TPL_TOPIC", "--template", "TPL_WIN", "--template", "TPL_TOPIC") == 0
    assert registry.get(LIFE_APP).templates == ["TPL_TOPIC", "TPL_WIN"]
    assert '"TPL_WIN"' in capsys.readouterr().out

    assert configure(aws, "--template", "TPL_SURVEY") == 0
    assert registry.get(LIFE_APP).templates == ["TPL_SURVEY"]

    assert configure(aws, "--template", "none") == 0
    assert registry.get(LIFE_APP).templates is None


def test_a_malformed_template_id_changes_nothing(aws: Any, registry: AppRegistry, capsys: Any) -> None:
    assert configure(aws, "--template", "TPL_OK") == 0
    assert configure(aws, "--template", "TPL_OK", "--template", "not an id") == 2
    assert "not a template id: not an id" in capsys.readouterr().err
    assert registry.get(LIFE_APP).templates == ["TPL_OK"]


def test_other_settings_keep_the_templates(aws: Any, registry: AppRegistry) -> None:
    assert configure(aws, "--template", "TPL_OK") == 0
    assert configure(aws, "--gateway-url", "http://127.0.0.1:9/gateway.do") == 0
    record = registry.get(LIFE_APP)
    assert (record.templates, record.gateway_url) == (["TPL_OK"], "http://127.0.0.1:9/gateway.do")
