"""The gateway's one-request read gives exactly what the stores' own reads give, for every channel's shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lifelink.domain.messages import parse_job
from lifelink.domain.policy import MessagePolicy
from lifelink.store.audience import Audience
from lifelink.store.counters import Counters, plan_for
from lifelink.store.ledger import Ledger
from lifelink.store.send_state import ComposedStateReader, SendStateReader

APP = "2021000000000971"
NOW = datetime(2025, 3, 5, 4, 0, tzinfo=UTC)  # 12:00 in Beijing


def _job(channel: str, user: str, **extra: Any) -> Any:
    content: dict[str, Any] = {
        "life_template": {"template_id": "TPL", "keywords": [{"value": "k"}]},
        "mini_subscription": {"user_template_id": "SUB", "data": {"k": "v"}},
        "coupon": {"activity_id": "ACT"},
        "life_broadcast": {"msg_type": "text", "text": {"content": "hi"}},
    }[channel]
    recipient = {} if channel == "life_broadcast" else {"user_id": user}
    return parse_job(
        {"app_id": APP, "channel": channel, "recipient": recipient, "content": content,
         "not_after": (NOW + timedelta(days=1)).isoformat(), **extra}
    )


@pytest.mark.parametrize("channel", ["life_template", "mini_subscription", "coupon", "life_broadcast"])
def test_batch_read_equals_the_stores_reads(aws: Any, channel: str) -> None:
    ddb, table = boto3.client("dynamodb"), aws.tables["StateTable"]
    ledger, audience, counters = Ledger(ddb, table), Audience(ddb, table), Counters(ddb, table)
    policy = MessagePolicy()
    seen = _job(channel, "2088000000000001")
    audience.set_following(APP, "2088000000000001", True, NOW - timedelta(days=2))
    audience.touch(APP, "2088000000000001", NOW - timedelta(hours=3))
    audience.grant(APP, "2088000000000001", "SUB", 2, at=NOW)
    plan = plan_for(seen, policy, NOW)
    assert counters.take(plan)
    counters.take(plan)  # a second send; refused where the channel allows one a week
    ledger.claim(seen, "owner-1", NOW, lease=timedelta(seconds=90), idempotent=True)
    unseen = _job(channel, "2088000000000002")

    batch, composed = SendStateReader(ddb, table), ComposedStateReader(ledger, audience, counters)
    for job in (seen, unseen):
        plan = plan_for(job, policy, NOW)
        template = "SUB" if channel == "mini_subscription" else None
        for facts in (True, False):
            args = (job.app_id, job.ledger_key, plan, job.recipient.key)
            one = batch.read(*args, facts=facts, template_id=template)
            other = composed.read(*args, facts=facts, template_id=template)
            assert one == other
    first = batch.read(seen.app_id, seen.ledger_key, plan_for(seen, policy, NOW), seen.recipient.key, facts=True,
                       template_id="SUB" if channel == "mini_subscription" else None)
    assert first.entry is not None and first.entry.status.value == "sending"
    assert first.facts.sent_today == (2 if plan_for(seen, policy, NOW).day else 0)
    if channel == "mini_subscription":
        assert first.facts.grants == 2
