"""POST /messages and GET /messages/{ledger_key} through the handler, against moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3

from lifelink.api import MAX_BODY_BYTES
from lifelink.domain.messages import parse_job
from lifelink.store.ledger import Ledger, Status
from tests.unit.api.conftest import LIFE_APP, MINI_APP, OPEN_ID, Call, outbound_bodies, template_job


def test_a_valid_job_is_queued_and_answered_with_its_ledger_key(call: Call, stack: Any) -> None:
    answer = call("POST", "/messages", template_job())

    assert answer.status == 202
    assert answer.body["status"] == "queued"
    assert answer.body["ledger_key"] == f"{LIFE_APP}|spring|warmup|{OPEN_ID}|life_template"
    (body,) = outbound_bodies(stack)
    job = parse_job(body)
    assert job.ledger_key == answer.body["ledger_key"]
    assert (job.app_id, job.channel.value, job.recipient.open_id, job.kind) == (
        LIFE_APP,
        "life_template",
        OPEN_ID,
        "transactional",
    )
    assert job.content.template_id == "TPL_WELCOME"


def test_a_base64_body_is_read_like_a_text_one(call: Call, stack: Any) -> None:
    answer = call("POST", "/messages", json.dumps(template_job()), base64_body=True)
    assert answer.status == 202
    assert len(outbound_bodies(stack)) == 1


def test_every_field_error_comes_back_at_once(call: Call, stack: Any) -> None:
    bad = template_job(
        app_id="not an id",
        not_after="2025-01-01T08:00:00",  # no timezone
        priority=42,
        unexpected="x",
    )
    bad["content"]["keywords"] = []

    answer = call("POST", "/messages", bad)

    assert answer.status == 422
    locs = {tuple(e["loc"]) for e in answer.body["errors"]}
    assert ("body", "app_id") in locs
    assert ("body", "not_after") in locs
    assert ("body", "priority") in locs
    assert ("body", "unexpected") in locs
    assert any(loc[:2] == ("body", "content") and loc[-1] == "keywords" for loc in locs)
    assert all(set(e) == {"loc", "msg", "type"} and e["msg"] for e in answer.body["errors"])
    assert OPEN_ID not in json.dumps(answer.body)  # what was sent is never echoed
    assert outbound_bodies(stack) == []


def test_a_job_that_breaks_a_channel_rule_is_refused(call: Call, stack: Any) -> None:
    broadcast_to_a_user = template_job(
        channel="life_broadcast", content={"msg_type": "text", "text": {"content": "hello"}}
    )
    answer = call("POST", "/messages", broadcast_to_a_user)
    assert answer.status == 422
    assert any("broadcast" in e["msg"] for e in answer.body["errors"])
    assert outbound_bodies(stack) == []


def test_a_body_that_is_not_json_is_a_422(call: Call, stack: Any) -> None:
    answer = call("POST", "/messages", "{not json")
    assert answer.status == 422
    assert answer.body["errors"][0]["loc"][0] == "body"
    assert outbound_bodies(stack) == []


def test_an_unregistered_app_is_refused(call: Call, stack: Any) -> None:
    answer = call("POST", "/messages", template_job(app_id="2021999999999999"))
    assert answer.status == 422
    assert answer.body["errors"] == [
        {"loc": ["body", "app_id"], "msg": "app 2021999999999999 is not registered", "type": "unknown_app"}
    ]
    assert outbound_bodies(stack) == []


def test_a_channel_the_app_cannot_send_on_is_refused(call: Call, stack: Any) -> None:
    life_message_from_a_mini_program = template_job(app_id=MINI_APP)
    answer = call("POST", "/messages", life_message_from_a_mini_program)
    assert answer.status == 422
    assert [e["loc"] for e in answer.body["errors"]] == [["body", "channel"]]

    subscription_from_a_life_account = template_job(
        channel="mini_subscription", content={"user_template_id": "TPL_1", "data": {"thing1": "Order shipped"}}
    )
    answer = call("POST", "/messages", subscription_from_a_life_account)
    assert answer.status == 422
    assert [e["loc"] for e in answer.body["errors"]] == [["body", "channel"]]
    assert outbound_bodies(stack) == []

    ok = call("POST", "/messages", {**subscription_from_a_life_account, "app_id": MINI_APP})
    assert ok.status == 202


def test_a_body_over_the_bound_is_a_413(call: Call, stack: Any) -> None:
    job = template_job()
    job["content"]["remark"] = {"value": "x" * 10}
    padded = json.dumps(job) + " " * (MAX_BODY_BYTES + 1 - len(json.dumps(job)))
    assert len(padded.encode()) == MAX_BODY_BYTES + 1

    answer = call("POST", "/messages", padded)

    assert answer.status == 413
    assert answer.body["errors"][0]["loc"] == ["body"]
    assert outbound_bodies(stack) == []
    # At the bound itself the same job is accepted.
    assert call("POST", "/messages", padded[:-1]).status == 202


def _ledger(stack: Any) -> Ledger:
    return Ledger(boto3.client("dynamodb"), stack.tables["StateTable"])


def test_the_ledger_entry_of_a_job_is_returned_with_its_history(call: Call, stack: Any) -> None:
    key = call("POST", "/messages", template_job()).body["ledger_key"]
    job = parse_job(outbound_bodies(stack)[0])
    ledger, t0 = _ledger(stack), datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    # What the gateway does: a send that Alipay answered 20000 (retryable), then a successful one.
    assert ledger.claim(job, "worker-1", t0, lease=timedelta(seconds=30), idempotent=False).result == "claimed"
    ledger.finish(key, "worker-1", Status.failed, t0, reason="isp.unknow-error", sub_code="20000", retryable=True)
    t1 = t0 + timedelta(seconds=10)
    assert ledger.claim(job, "worker-2", t1, lease=timedelta(seconds=30), idempotent=False).result == "claimed"
    ledger.finish(key, "worker-2", Status.sent, t1, alipay_ref="msg-123")

    answer = call("GET", f"/messages/{quote(key, safe='')}", route="/messages/{ledger_key}")

    assert answer.status == 200
    assert answer.body["ledger_key"] == key
    assert answer.body["status"] == "sent"
    assert answer.body["attempts"] == 2
    assert (answer.body["app_id"], answer.body["channel"], answer.body["campaign"]) == (
        LIFE_APP,
        "life_template",
        "spring",
    )
    assert [h["status"] for h in answer.body["history"]] == ["sending", "failed", "sending", "sent"]
    assert answer.body["history"][1]["sub_code"] == "20000"
    assert "lease_owner" not in answer.body and "lease_until" not in answer.body


def test_group_send_keys_with_star_and_colon_are_found(call: Call, stack: Any) -> None:
    broadcast = template_job(
        channel="life_broadcast", recipient={}, content={"msg_type": "text", "text": {"content": "Hi"}}
    )
    label = {**broadcast, "channel": "life_label", "recipient": {"label_id": "42"}}
    for body in (broadcast, label):
        answer = call("POST", "/messages", body)
        assert answer.status == 202, answer.body
        key = answer.body["ledger_key"]
        assert ("*" in key) if body is broadcast else ("label:42" in key)
        job = parse_job(json.dumps(body))
        _ledger(stack).hold(job, datetime.now(UTC) + timedelta(hours=8), "quiet_hours", datetime.now(UTC))
        for path_key in (quote(key, safe=""), key):  # clients may or may not encode | * :
            got = call("GET", f"/messages/{path_key}", route="/messages/{ledger_key}")
            assert (got.status, got.body["ledger_key"], got.body["status"]) == (200, key, "held")
            assert got.body["reason"] == "quiet_hours"


def test_an_unknown_ledger_key_is_a_404(call: Call, stack: Any) -> None:
    job = parse_job(json.dumps(template_job()))
    _ledger(stack).close(job, Status.skipped, "not_following", datetime.now(UTC))
    other = job.ledger_key.replace(OPEN_ID, "someone-else")
    answer = call("GET", f"/messages/{quote(other, safe='')}")
    assert answer.status == 404
    assert answer.body["errors"][0]["loc"] == ["path", "ledger_key"]
    assert call("GET", f"/messages/{quote(job.ledger_key, safe='')}").status == 200
    assert call("GET", "/messages/" + "x" * 2000).status == 404


def test_routes_outside_the_api_are_404(call: Call) -> None:
    assert call("GET", "/nothing-here").status == 404
    assert call("DELETE", "/messages/abc").status == 404
