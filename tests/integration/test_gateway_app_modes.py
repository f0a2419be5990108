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
from lifelink_local.sim_gateway import SIGN_ERROR_PREFIX
from tests.conftest import KeyPair
from tests.integration.test_message_gateway import SINGLE_SEND, Stack, template_job

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
