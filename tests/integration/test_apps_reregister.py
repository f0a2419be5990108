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


def test_certificate_mode_stores_the_certificates_and_a_re_add_with_keys_switches_back(
    table: str, tmp_path: Path, app_keys: KeyPair, alipay_keys: KeyPair, other_keys: KeyPair,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lifelink_local import sim_crypto
    from tests.pki import make_pki

    pki = make_pki(app_keys.private, alipay_keys.private)
    files = {"app.crt": pki.app_cert, "alipay.crt": pki.alipay_cert, "root.crt": pki.root_bundle,
             "app.key": app_keys.private_pem}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cert_args = ["--app-cert", str(tmp_path / "app.crt"), "--alipay-cert", str(tmp_path / "alipay.crt"),
                 "--alipay-root-cert", str(tmp_path / "root.crt")]
    capsys.readouterr()
    assert _cli(table, "--json", "apps", "add", "--app-id", LIFE, "--kind", "life",
                "--app-private-key", str(tmp_path / "app.key"), *cert_args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mode"] == "cert"
    assert printed["app_cert_sn"] == sim_crypto.certificate_sn(pki.app_cert)
    assert printed["alipay_root_cert_sn"] == sim_crypto.root_certificate_sn(pki.root_bundle)
    secret = _secret(LIFE)
    assert (secret["app_cert"], secret["alipay_cert"], secret["alipay_root_cert"]) == (
        pki.app_cert.strip(), pki.alipay_cert.strip(), pki.root_bundle.strip())
    assert secret["alipay_public_key"] == pki.alipay_cert.strip()  # the webhook verifies callbacks with it
    assert _cli(table, "apps", "configure", "--app-id", LIFE, "--template", "TPL-1") == 0

    # an app certificate that is not the app key's: refused, nothing changes
    (tmp_path / "other.crt").write_text(make_pki(other_keys.private, alipay_keys.private).app_cert)
    refused = ["--app-cert", str(tmp_path / "other.crt"), *cert_args[2:]]
    assert _cli(table, "apps", "add", "--app-id", LIFE, "--kind", "life",
                "--app-private-key", str(tmp_path / "app.key"), *refused) == 2
    assert "app_cert" in capsys.readouterr().err
    assert _secret(LIFE) == secret

    assert _add(table, tmp_path, LIFE, "life", app_keys, alipay_keys) == 0  # back to public-key mode
    record = AppRegistry(boto3.client("dynamodb"), table).get(LIFE)
    assert record is not None and record.mode == "key" and record.templates == ["TPL-1"]
    assert "app_cert" not in _secret(LIFE)
