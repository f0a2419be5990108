"""The message gateway against the Alipay simulator for apps set up in other ways than the default: an app whose
keys Alipay does not accept (its ``sub_msg`` kept and logged, redacted), certificate mode and third-party mode."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from lifelink.alipay.keys import public_key_one_line
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.ledger import Status
from lifelink_local import sim_crypto
from lifelink_local.sim_gateway import SIGN_ERROR_PREFIX
from tests.conftest import KeyPair
from tests.integration.test_message_gateway import SINGLE_SEND, TEMPLATE_ID, Stack, template_job
from tests.pki import Pki, another_app_cert, certificate, make_pki

pytestmark = pytest.mark.integration

BAD_KEYS_APP = "2021000000000881"


@pytest.fixture(scope="module")
def stack(app_keys: KeyPair, alipay_keys: KeyPair) -> Iterator[Stack]:
    mp = pytest.MonkeyPatch()
    s = Stack(mp, app_keys, alipay_keys)
    yield s
    s.close()
    mp.undo()


def _register(stack: Stack, app_id: str, secret: dict[str, str], **record: object) -> None:
    AppRegistry(stack.ddb, stack.table, stack.secrets).register(
        AppRecord(app_id=app_id, kind="life", secret_name=f"{stack.env['APP_SECRET_PREFIX']}{app_id}", **record),
        secret,
    )


def _follower(stack: Stack, app_id: str) -> str:
    user = "2088" + str(uuid.uuid4().int)[:12]
    stack.sim.set_follower(app_id, user)
    stack.audience.set_following(app_id, user, True, datetime.now(UTC) - timedelta(days=1))
    return user


def test_alipays_sub_msg_is_kept_in_the_ledger_and_the_event_and_logged_without_user_ids(
    stack: Stack, app_keys: KeyPair, alipay_keys: KeyPair, other_keys: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    # Alipay has another public key for this app than the one it signs with: isv.invalid-signature
    stack.sim.register_app(BAD_KEYS_APP, public_key_one_line(other_keys.private))
    keys = {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_keys.public_pem}
    _register(stack, BAD_KEYS_APP, keys)
    user = _follower(stack, BAD_KEYS_APP)
    stack.enqueue(template_job(user, "badkeys", app_id=BAD_KEYS_APP))
    caplog.set_level(logging.DEBUG, logger="message_gateway")
    assert stack.invoke_once() == {"batchItemFailures": []}  # fatal: acknowledged

    call = [c for c in stack.sim.calls() if c["app_id"] == BAD_KEYS_APP][-1]
    assert (call["method"], call["sub_code"]) == (SINGLE_SEND, "isv.invalid-signature")
    key = f"{BAD_KEYS_APP}|badkeys|p1|{user}|life_template"
    entry = stack.ledger.get(key)
    assert entry is not None and entry.status is Status.failed and not entry.retryable
    assert (entry.reason, entry.sub_code) == ("40002", "isv.invalid-signature")
    sub_msg = entry.sub_msg
    assert sub_msg is not None and sub_msg.startswith(SIGN_ERROR_PREFIX)
    assert f"app_id={BAD_KEYS_APP}" in sub_msg  # the string Alipay verified, start ...
    assert "sign_type=RSA2" in sub_msg and "version=1.0" in sub_msg  # ... and end
    assert len(sub_msg) <= 512
    assert user not in sub_msg
    history = [h for h in entry.history if h.get("status") == "failed"]
    assert history and history[-1]["sub_msg"] == sub_msg

    events = stack.outcome_events(key)
    assert [(e["status"], e["sub_code"], e["sub_msg"]) for e in events] == [
        ("failed", "isv.invalid-signature", sub_msg)
    ]

    ours = [r for r in caplog.records if r.name == "message_gateway"]  # botocore's DEBUG lines carry bodies
    failures = [r for r in ours if r.getMessage() == "message failed"]
    assert failures and failures[-1].sub_msg == sub_msg and failures[-1].sub_code == "isv.invalid-signature"
    everything = "\n".join(json.dumps(r.__dict__, default=str, ensure_ascii=False) for r in ours)
    assert user not in everything
    private_body = "".join(app_keys.private_pem.strip().splitlines()[1:-1])
    assert private_body[:40] not in everything and public_key_one_line(app_keys.private)[:60] not in everything


# ---- certificate mode and third-party mode ------------------------------------------------------------------

CERT_APP = "2021000000000882"
CERT_APP_OTHER_SN = "2021000000000883"
CERT_APP_OLD_ALIPAY_CERT = "2021000000000884"
CERT_APP_NO_CERTS = "2021000000000885"
THIRD_PARTY_APP = "2021000000000886"


@pytest.fixture(scope="module")
def pki(stack: Stack, app_keys: KeyPair, alipay_keys: KeyPair) -> Pki:
    made = make_pki(app_keys.private, alipay_keys.private)
    stack.sim.openapi.set_certificates(made.alipay_cert, made.root_bundle)  # the simulator's Alipay key's certificate
    return made


def _cert_secret(app_keys: KeyPair, pki: Pki, **extra: str) -> dict[str, str]:
    return {
        "app_private_key": app_keys.private_pem,
        "alipay_public_key": pki.alipay_cert,
        "app_cert": pki.app_cert,
        "alipay_cert": pki.alipay_cert,
        "alipay_root_cert": pki.root_bundle,
        **extra,
    }


def _send(stack: Stack, app_id: str, campaign: str) -> tuple[str, dict[str, object] | None]:
    stack.sim.register_template(app_id, TEMPLATE_ID)
    user = _follower(stack, app_id)
    stack.enqueue(template_job(user, campaign, app_id=app_id))
    result = stack.invoke_once()
    assert result is not None
    return f"{app_id}|{campaign}|p1|{user}|life_template", result


def _calls(stack: Stack, app_id: str) -> list[dict[str, object]]:
    return [c for c in stack.sim.calls() if c["app_id"] == app_id]


def test_a_certificate_mode_app_sends_with_both_sns_and_alipays_certified_answer_verifies(
    stack: Stack, app_keys: KeyPair, pki: Pki
) -> None:
    stack.sim.openapi.register_app(CERT_APP, app_cert=pki.app_cert)
    _register(stack, CERT_APP, _cert_secret(app_keys, pki), mode="cert")
    key, result = _send(stack, CERT_APP, "certs")
    assert result == {"batchItemFailures": []}
    entry = stack.ledger.get(key)
    assert entry is not None and entry.status is Status.sent, entry
    [call] = _calls(stack, CERT_APP)
    assert call["code"] == "10000"
    assert call["app_cert_sn"] == sim_crypto.certificate_sn(pki.app_cert)
    assert call["alipay_root_cert_sn"] == sim_crypto.root_certificate_sn(pki.root_bundle)


def test_a_certificate_alipay_does_not_have_for_the_app_fails_with_app_cert_not_exist(
    stack: Stack, app_keys: KeyPair, pki: Pki
) -> None:
    # Alipay holds another certificate of the same app key (e.g. the app's certificate was renewed)
    stack.sim.openapi.register_app(CERT_APP_OTHER_SN, app_cert=another_app_cert(pki, app_keys.private, 4242))
    _register(stack, CERT_APP_OTHER_SN, _cert_secret(app_keys, pki), mode="cert")
    key, result = _send(stack, CERT_APP_OTHER_SN, "othersn")
    assert result == {"batchItemFailures": []}  # fatal
    entry = stack.ledger.get(key)
    assert entry is not None and entry.status is Status.failed and not entry.retryable
    assert (entry.reason, entry.sub_code) == ("40002", "isv.app-cert-not-exist")


def test_an_answer_signed_under_a_certificate_not_configured_is_not_trusted(
    stack: Stack, app_keys: KeyPair, alipay_keys: KeyPair, pki: Pki
) -> None:
    # the secret holds an older certificate of Alipay's key: the answer names a certificate lifelink does not have
    older = certificate(alipay_keys.private, "alipay", pki.root_key, pki.root_name, 0x2018000001)
    stack.sim.openapi.register_app(CERT_APP_OLD_ALIPAY_CERT, app_cert=pki.app_cert)
    secret = _cert_secret(app_keys, pki, alipay_cert=older, alipay_public_key=older)
    _register(stack, CERT_APP_OLD_ALIPAY_CERT, secret, mode="cert")
    key, _ = _send(stack, CERT_APP_OLD_ALIPAY_CERT, "oldcert")
    [call] = _calls(stack, CERT_APP_OLD_ALIPAY_CERT)
    assert call["code"] == "10000"  # Alipay did it ...
    entry = stack.ledger.get(key)
    assert entry is not None and entry.status is Status.failed  # ... but its answer is not verified: at most once
    assert (entry.reason, entry.retryable) == ("bad_response", False)


def test_an_app_in_certificate_mode_without_certificates_is_a_configuration_error(
    stack: Stack, app_keys: KeyPair, alipay_keys: KeyPair, pki: Pki
) -> None:
    stack.sim.openapi.register_app(CERT_APP_NO_CERTS, app_cert=pki.app_cert)
    keys = {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_keys.public_pem}
    _register(stack, CERT_APP_NO_CERTS, keys, mode="cert")
    key, result = _send(stack, CERT_APP_NO_CERTS, "nocerts")
    assert result is not None and len(result["batchItemFailures"]) == 1  # retried once the secret is fixed
    assert _calls(stack, CERT_APP_NO_CERTS) == []  # never sent unsigned-for-certificates to Alipay
    entry = stack.ledger.get(key)
    assert entry is None or entry.status is not Status.sent
    events = stack.outcome_events(key)
    assert [(e["status"], e["reason"], e["retryable"]) for e in events] == [("failed", "app_config", True)]


def test_a_third_party_app_sends_the_merchants_app_auth_token_on_each_request(
    stack: Stack, app_keys: KeyPair, alipay_keys: KeyPair
) -> None:
    stack.sim.register_app(THIRD_PARTY_APP, public_key_one_line(app_keys.private))
    secret = {
        "app_private_key": app_keys.private_pem,
        "alipay_public_key": alipay_keys.public_pem,
        "app_auth_token": "202501BBmerchanttoken",
    }
    _register(stack, THIRD_PARTY_APP, secret, third_party=True)
    for campaign in ("tp1", "tp2"):
        key, _ = _send(stack, THIRD_PARTY_APP, campaign)
        entry = stack.ledger.get(key)
        assert entry is not None and entry.status is Status.sent
    calls = _calls(stack, THIRD_PARTY_APP)
    assert [(c["code"], c["app_auth_token"], c["app_cert_sn"]) for c in calls] == [
        ("10000", "202501BBmerchanttoken", None)
    ] * 2
