"""`lifelink dlq show outbound` says, for each outbound job in the DLQ, what the send ledger says of it now."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from lifelink.domain.messages import parse_job
from lifelink.store.ledger import LedgerEntry, Status
from lifelink_local.dlq import QueuePair, describe_outbound, redrive, show


def _job_body(user: str) -> str:
    return json.dumps(
        {
            "app_id": "2021000000000881",
            "channel": "life_template",
            "recipient": {"user_id": user},
            "content": {"template_id": "TPL-1", "url": "pages/index/index", "keywords": [{"value": "x"}]},
            "campaign": "spring",
            "phase": "burst",
            "kind": "marketing",
            "not_after": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        }
    )


def test_outbound_samples_carry_the_ledger_state_and_mark_stale_copies(aws: Any) -> None:
    failed_body, sent_body, unbooked_body = (_job_body(f"208800000000000{i}") for i in range(3))
    ledger = {
        parse_job(failed_body).ledger_key: LedgerEntry(
            parse_job(failed_body).ledger_key, Status.failed, reason="20000", retryable=True, attempts=5
        ),
        parse_job(sent_body).ledger_key: LedgerEntry(parse_job(sent_body).ledger_key, Status.sent, attempts=2),
    }
    sqs = boto3.client("sqs")
    pair = QueuePair("outbound", aws.queues["OutboundQueue"], aws.queues["OutboundDLQ"])
    for body in (failed_body, sent_body, unbooked_body, "{not json"):
        sqs.send_message(QueueUrl=pair.dlq_url, MessageBody=body)

    shown = show(sqs, pair, describe=describe_outbound(ledger.get))

    assert shown["depth"] == 4
    by_key = {s.get("ledger_key"): s for s in shown["samples"]}
    failed = by_key[parse_job(failed_body).ledger_key]
    assert (failed["channel"], failed["ledger"], failed["attempts"]) == ("life_template", "failed(20000)", 5)
    assert "note" not in failed  # unfinished: redrive it once Alipay is back
    sent = by_key[parse_job(sent_body).ledger_key]
    assert sent["ledger"] == "sent" and "another copy" in sent["note"]
    assert by_key[parse_job(unbooked_body).ledger_key]["ledger"] == "none (never booked)"
    assert "invalid" in by_key[None]
    # peeking changed nothing: every message is still there to redrive
    assert redrive(sqs, pair) == {"queue": "outbound", "moved": 4}
