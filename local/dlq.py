"""Dead-letter queues: look at what failed, and move it back to its source queue once the cause is fixed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QueuePair:
    name: str
    url: str
    dlq_url: str


def show(
    sqs: Any, pair: QueuePair, limit: int = 10, describe: Callable[[str], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Depth and up to ``limit`` sample messages. Peeked messages become visible again at once. ``describe`` adds
    what is known about a message now (for outbound jobs: the ledger's state)."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=pair.dlq_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    got = sqs.receive_message(
        QueueUrl=pair.dlq_url, MaxNumberOfMessages=max(1, min(limit, 10)), VisibilityTimeout=30,
        AttributeNames=["All"], MessageAttributeNames=["All"],
    )
    samples = []
    for m in got.get("Messages", []):
        sqs.change_message_visibility(QueueUrl=pair.dlq_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        try:
            body: Any = json.loads(m["Body"])
            summary = {k: body.get(k) for k in ("type", "event_id", "app_id", "occurred_at") if isinstance(body, dict)}
        except json.JSONDecodeError:
            summary = {"body": m["Body"][:200]}
        samples.append({
            "message_id": m["MessageId"],
            "receive_count": m.get("Attributes", {}).get("ApproximateReceiveCount"),
            **summary,
            **(describe(m["Body"]) if describe else {}),
        })
    return {
        "queue": pair.name,
        "dlq_url": pair.dlq_url,
        "depth": int(attrs.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "samples": samples,
    }


def redrive(sqs: Any, pair: QueuePair, max_messages: int | None = None) -> dict[str, Any]:
    """Move messages from the DLQ back to the source queue: send first, then delete, so none is lost
    (a crash in between leaves a copy in both; consumers are idempotent by event id)."""
    moved = 0
    while max_messages is None or moved < max_messages:
        want = 10 if max_messages is None else max(1, min(10, max_messages - moved))
        got = sqs.receive_message(
            QueueUrl=pair.dlq_url, MaxNumberOfMessages=want, VisibilityTimeout=60, MessageAttributeNames=["All"]
        )
        msgs = got.get("Messages", [])
        if not msgs:
            break
        entries = [
            {"Id": str(i), "MessageBody": m["Body"], **({"MessageAttributes": m["MessageAttributes"]}
                                                       if m.get("MessageAttributes") else {})}
            for i, m in enumerate(msgs)
        ]
        sent = sqs.send_message_batch(QueueUrl=pair.url, Entries=entries)
        ok = {s["Id"] for s in sent.get("Successful", [])}
        done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs) if str(i) in ok]
        if done:
            sqs.delete_message_batch(QueueUrl=pair.dlq_url, Entries=done)
        moved += len(done)
        if len(done) < len(msgs):
            failed = [f.get("Message", "") for f in sent.get("Failed", [])]
            return {"queue": pair.name, "moved": moved, "error": f"send to source failed: {failed}"}
    return {"queue": pair.name, "moved": moved}


def describe_outbound(ledger_get: Callable[[str], Any]) -> Callable[[str], dict[str, Any]]:
    """For an outbound job in the DLQ: its channel, ledger key and what the ledger says now. Each copy of a job has
    its own five receives, so a copy can reach the DLQ while its sibling copy goes on to finish the job; such a
    stale copy is harmless (redriven, the gateway acknowledges it as a duplicate) and is marked so."""
    from lifelink.domain.messages import InvalidJob, parse_job

    def describe(body: str) -> dict[str, Any]:
        try:
            job = parse_job(body)
        except InvalidJob as exc:  # a poison body: say why, as the gateway did
            return {"invalid": str(exc)[:200]}
        entry = ledger_get(job.ledger_key)
        out: dict[str, Any] = {"channel": job.channel.value, "ledger_key": job.ledger_key}
        if entry is None:
            out["ledger"] = "none (never booked)"
            return out
        out["ledger"] = entry.status.value + (f"({entry.reason})" if entry.reason else "")
        out["attempts"] = entry.attempts
        if entry.terminal:
            out["note"] = "finished by another copy: redrive acknowledges it, or purge it"
        return out

    return describe
