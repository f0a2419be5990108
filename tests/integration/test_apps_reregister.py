"""`lifelink apps add` run again for a registered app: new keys and registration, the app's settings kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from lifelink.store.apps import AppRegistry
from lifelink_local.cli import main
from tests.conftest import KeyPair, _new_pair

LIFE = "2021004100000001"
OTHER_LIFE = "2021004100000002"
MINI = "2021004100000003"


def _cli(table: str, *argv: str) -> int:
    return main(["--state-table", table, *argv])


def _add(table: str, tmp: Path, app_id: str, kind: str, app: KeyPair, alipay: KeyPair, *extra: str) -> int:
    (tmp / f"{app_id}.key").write_text(app.private_pem)
    (tmp / "alipay.pub").write_text(alipay.public_pem)
    return _cli(table, "apps", "add", "--app-id", app_id, "--kind", kind,
                "--app-private-key", str(tmp / f"{app_id}.key"), "--alipay-public-key", str(tmp / "alipay.pub"), *extra)


@pytest.fixture
def table(aws: Any) -> str:
    return aws.tables["StateTable"]


def _secret(app_id: str) -> dict[str, Any]:
    got = boto3.client("secretsmanager").get_secret_value(SecretId=f"lifelink/apps/{app_id}")
    return json.loads(got["SecretString"])


def test_adding_again_replaces_the_keys_and_keeps_policy_rules_tiers_templates_and_welcome(
    table: str, tmp_path: Path, app_keys: KeyPair, alipay_keys: KeyPair
) -> None:
    assert _add(table, tmp_path, LIFE, "life", app_keys, alipay_keys, "--seller-id", "2088000000000001") == 0
    policy = {
        "rate_per_second": 7,
        "tier_on_follow": "silver",
        "tags": {"silent_after": "P20D"},
        "rules": {"first_order": {"enabled": True, "message": {
            "channel": "life_template", "content": {"template_id": "TPL-1", "keywords": [{"value": "hi"}]}}}},
    }
    welcome = {"template_id": "TPL-1", "keywords": [{"value": "welcome"}]}
    assert _cli(table, "apps", "configure", "--app-id", LIFE, "--policy", json.dumps(policy),
                "--welcome", json.dumps(welcome), "--template", "TPL-1", "--template", "TPL-2",
                "--gateway-url", "http://127.0.0.1:9/gateway.do") == 0
    registry = AppRegistry(boto3.client("dynamodb"), table)
    before = registry.get(LIFE)
    assert before is not None and before.policy is not None

    rotated = _new_pair()
    assert _add(table, tmp_path, LIFE, "life", rotated, alipay_keys, "--app-auth-token", "tok-new") == 0

    after = registry.get(LIFE)
    assert after is not None
    assert after.policy == before.policy
    assert (after.policy["rate_per_second"], after.policy["tier_on_follow"]) == (7, "silver")
    assert after.policy["rules"] == policy["rules"] and after.policy["tags"] == policy["tags"]
    assert after.welcome == before.welcome
    assert after.templates == ["TPL-1", "TPL-2"]
    assert after.gateway_url == "http://127.0.0.1:9/gateway.do"
    assert after.created_at == before.created_at
    assert after.seller_id == "2088000000000001"  # not given again: kept
    assert after.third_party is True  # given: the token makes it third-party
    secret = _secret(LIFE)
    assert secret["app_private_key"] == rotated.private_pem.strip()
    assert secret["app_auth_token"] == "tok-new"


def test_adding_again_changes_the_binding_when_given_and_keeps_it_when_not(
    table: str, tmp_path: Path, app_keys: KeyPair, alipay_keys: KeyPair
) -> None:
    assert _add(table, tmp_path, LIFE, "life", app_keys, alipay_keys) == 0
    assert _add(table, tmp_path, OTHER_LIFE, "life", app_keys, alipay_keys) == 0
    assert _add(table, tmp_path, MINI, "mini", app_keys, alipay_keys, "--life-account", LIFE) == 0
    assert _cli(table, "apps", "configure", "--app-id", MINI, "--template", "MINI-TPL") == 0
    registry = AppRegistry(boto3.client("dynamodb"), table)

    assert _add(table, tmp_path, MINI, "mini", app_keys, alipay_keys) == 0  # no --life-account: binding kept
    kept = registry.get(MINI)
    assert kept is not None and kept.life_account == LIFE and kept.templates == ["MINI-TPL"]

    assert _add(table, tmp_path, MINI, "mini", app_keys, alipay_keys, "--life-account", OTHER_LIFE) == 0
    moved = registry.get(MINI)
    assert moved is not None and moved.life_account == OTHER_LIFE and moved.templates == ["MINI-TPL"]
    assert registry.bindings() == {LIFE: [], OTHER_LIFE: [MINI]}


def test_a_refused_re_add_changes_nothing(
    table: str, tmp_path: Path, app_keys: KeyPair, alipay_keys: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _add(table, tmp_path, LIFE, "life", app_keys, alipay_keys) == 0
    assert _cli(table, "apps", "configure", "--app-id", LIFE, "--template", "TPL-1") == 0
    before = _secret(LIFE)
    # the app's own public key where Alipay's belongs: refused before anything is written
    swapped = _add(table, tmp_path, LIFE, "life", app_keys, app_keys)
    assert swapped == 2
    assert "lifelink:" in capsys.readouterr().err
    assert _secret(LIFE) == before
    record = AppRegistry(boto3.client("dynamodb"), table).get(LIFE)
    assert record is not None and record.templates == ["TPL-1"]
