"""The message gateway end to end: moto's server over HTTP (tables and queues from template.yaml), the Alipay
simulator on loopback, the Lambda handler, and the outbound queue driven like Lambda's SQS event source."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from cryptography.hazmat.primitives import serialization

from lifelink.alipay.keys import public_key_one_line
from lifelink.domain.attribution import message_ref, token_from_query, verify_token
from lifelink.store import aws as aws_clients
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.ledger import Ledger, Status
from lifelink_local.handlers import LambdaContext
from lifelink_local.motoserver import MotoServer
from lifelink_local.pollers import build_sqs_event
from lifelink_local.provision import provision
from lifelink_local.simulator import AlipaySimulator
from tests.conftest import AWS_ENV, TEMPLATE, KeyPair, load_function
from tests.outcomes import distinct_outcomes

pytestmark = pytest.mark.integration

APP = "2021000000000777"
TEMPLATE_ID = "TPL-WELCOME"
SINGLE_SEND = "alipay.open.public.message.single.send"
VOUCHER_SEND = "alipay.marketing.activity.voucher.send"


def pem(pair: KeyPair) -> str:
    return pair.private_pem


class Stack:
    def __init__(self, mp: pytest.MonkeyPatch, app_keys: KeyPair, alipay_keys: KeyPair) -> None:
        self.moto = MotoServer(port=0)
        endpoint = self.moto.start()
        for k, v in AWS_ENV.items():
            mp.setenv(k, v)
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        aws_clients.client.cache_clear()
        self.ddb = boto3.client("dynamodb")
        self.sqs = boto3.client("sqs")
        self.secrets = boto3.client("secretsmanager")
        self.res = provision(
            TEMPLATE, prefix=f"gw{uuid.uuid4().hex[:6]}", dynamodb=self.ddb, sqs=self.sqs, secretsmanager=self.secrets
        )
        self.sim = AlipaySimulator(pem(alipay_keys), port=0)
        self.sim.start()
        self.sim.register_app(APP, public_key_one_line(app_keys.private))
        self.sim.register_template(APP, TEMPLATE_ID)
        env = self.res.function_environment("MessageGatewayFunction")
        env["ALIPAY_GATEWAY_URL"] = self.sim.gateway_url
        for k, v in env.items():
            mp.setenv(k, v)
        self.env = env
        self.table = env["STATE_TABLE"]
        self.outbound_url = env["OUTBOUND_QUEUE_URL"]
        self.events_url = env["EVENTS_QUEUE_URL"]
        alipay_public = (
            alipay_keys.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        AppRegistry(self.ddb, self.table, self.secrets).register(
            AppRecord(app_id=APP, kind="life", secret_name=f"{env['APP_SECRET_PREFIX']}{APP}"),
            {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_public},
        )
        self.audience = Audience(self.ddb, self.table)
        self.ledger = Ledger(self.ddb, self.table)
        self.module = load_function("message_gateway")
        self.events: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def close(self) -> None:
        from aws_lambda_powertools.utilities.parameters import base

        self.sim.stop()
        self.moto.stop()
        aws_clients.client.cache_clear()
        # Powertools keeps its secrets provider (a boto3 client on this moto endpoint) and values process-wide.
        base.DEFAULT_PROVIDERS.clear()
        base.clear_caches()

    # -- helpers ---------------------------------------------------------------------------------------------
    def follower(self) -> str:
        user = "2088" + uuid.uuid4().hex[:12]
        self.sim.set_follower(APP, user)
        self.audience.set_following(APP, user, True, datetime.now(UTC) - timedelta(days=1))
        return user

    def enqueue(self, body: dict[str, Any], times: int = 1) -> None:
        for _ in range(times):
            self.sqs.send_message(QueueUrl=self.outbound_url, MessageBody=json.dumps(body))

    def invoke_once(self) -> dict[str, Any] | None:
        """One poll as Lambda's event source does it: receive, invoke, delete what did not fail."""
        got = self.sqs.receive_message(
            QueueUrl=self.outbound_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not got:
            return None
        arn = self.res.queue_arns["OutboundQueue"]
        result = self.module.handler(build_sqs_event(got, arn, "us-east-1"), LambdaContext(function_name="gw"))
        self.results.append(result)
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        for m in got:
            if m["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.outbound_url, ReceiptHandle=m["ReceiptHandle"])
        return result

    def drain(self, rounds: int = 5) -> None:
        for _ in range(rounds):
            if self.invoke_once() is None:
                return

    def outcome_events(self, ledger_key: str) -> list[dict[str, Any]]:
        while True:
            got = self.sqs.receive_message(QueueUrl=self.events_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                break
            for m in got:
                self.events.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.events_url, ReceiptHandle=m["ReceiptHandle"])
        mine = (e for e in self.events if e.get("type") == "message_outcome" and e["ledger_key"] == ledger_key)
        return distinct_outcomes(mine)

    def not_visible(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.outbound_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def attribution_key(self) -> bytes:
        return self.secrets.get_secret_value(SecretId=self.env["ATTRIBUTION_SECRET_NAME"])["SecretString"].encode()


@pytest.fixture(scope="module")
def stack(app_keys: KeyPair, alipay_keys: KeyPair) -> Iterator[Stack]:
    mp = pytest.MonkeyPatch()
    s = Stack(mp, app_keys, alipay_keys)
    yield s
    s.close()
    mp.undo()


def template_job(user: str, campaign: str, template_id: str = TEMPLATE_ID, **kw: Any) -> dict[str, Any]:
    body = {
        "app_id": APP,
        "channel": "life_template",
        "recipient": {"user_id": user},
        "content": {
            "template_id": template_id,
            "url": "pages/welcome/index?from=follow",
            "keywords": [{"value": "欢迎关注"}],
        },
        "campaign": campaign,
        "phase": "p1",
        "kind": "transactional",  # so quiet hours never hold it, whatever time the test runs
        "not_after": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    }
    body.update(kw)
    return body


def sends_to(stack: Stack, user: str, method: str = SINGLE_SEND) -> list[dict[str, Any]]:
    return [c for c in stack.sim.calls() if c["method"] == method and user in json.dumps(c["biz"])]


def test_a_job_delivered_twice_is_sent_once(stack: Stack) -> None:
    user = stack.follower()
    body = template_job(user, "welcome")
    stack.enqueue(body, times=2)
    stack.drain()
    stack.enqueue(body)  # and once more, after the first went out
    stack.drain()

    calls = sends_to(stack, user)
    assert len(calls) == 1 and calls[0]["code"] == "10000"
    key = f"{APP}|welcome|p1|{user}|life_template"
    entry = stack.ledger.get(key)
    assert entry and entry.status is Status.sent and entry.attempts == 1
    events = stack.outcome_events(key)
    assert [e["status"] for e in events] == ["sent"]
    assert events[0]["message_ref"] == message_ref(key) and events[0]["source"] == "message_gateway"

    url = calls[0]["biz"]["template"]["context"]["url"]
    assert url.startswith("pages/welcome/index?from=follow&")
    att = verify_token(token_from_query(urlsplit(url).query) or "", stack.attribution_key())
    assert (att.app_id, att.campaign, att.message) == (APP, "welcome", message_ref(key))
    assert dict(parse_qsl(url.partition("?")[2]))["from"] == "follow"


def test_a_retryable_error_goes_back_with_backoff_then_sends(stack: Stack) -> None:
    user = stack.follower()
    stack.sim.set_faults(reset=True, unknown_error_rate=1.0, unknown_error_delivered_share=0.0)
    try:
        stack.enqueue(template_job(user, "retry"))
        result = stack.invoke_once()
    finally:
        stack.sim.clear_faults()
    assert result is not None and len(result["batchItemFailures"]) == 1
    key = f"{APP}|retry|p1|{user}|life_template"
    entry = stack.ledger.get(key)
    assert entry and entry.status is Status.failed and entry.retryable and entry.reason == "20000"
    assert entry.attempts == 1
    # backed off: the record is invisible, not immediately redelivered
    assert stack.invoke_once() is None and stack.not_visible() == 1
    failed = stack.outcome_events(key)
    assert [(e["status"], e["retryable"], e["sub_code"]) for e in failed] == [("failed", True, "isp.unknow-error")]

    # first backoff: 5-10 s (base 10 s, jitter over the upper half); then it elapses and the next receive sends
    assert 3 <= let_backoff_elapse(stack) <= 10
    stack.drain()
    entry = stack.ledger.get(key)
    assert entry and entry.status is Status.sent and entry.attempts == 2
    assert len([c for c in sends_to(stack, user) if c["code"] == "10000"]) == 1
    assert [e["status"] for e in stack.outcome_events(key)] == ["failed", "sent"]


def let_backoff_elapse(stack: Stack) -> int:
    """Stand in for time passing: end the hidden period of the outbound queue's in-flight messages in moto's
    backend (the server runs in this process); returns how long they still had to wait, in seconds."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues[stack.outbound_url.rsplit("/", 1)[1]]
    now = unix_time_millis()
    remaining = [m.visible_at - now for m in queue._messages if m.visible_at > now]
    for message in queue._messages:
        message.change_visibility(0)
    return int(max(remaining, default=0) / 1000)


def test_a_fatal_error_ends_failed_with_alipays_sub_code(stack: Stack) -> None:
    user = stack.follower()
    stack.enqueue(template_job(user, "fatal", template_id="TPL-NOT-REGISTERED"))
    result = stack.invoke_once()
    assert result == {"batchItemFailures": []}  # acknowledged: retrying cannot help
    key = f"{APP}|fatal|p1|{user}|life_template"
    entry = stack.ledger.get(key)
    assert entry and entry.status is Status.failed and entry.terminal
    assert (entry.reason, entry.sub_code, entry.retryable) == ("40004", "MSG_TEMPLATE_NOT_EXIST", False)
    events = stack.outcome_events(key)
    assert [(e["status"], e["sub_code"], e["retryable"]) for e in events] == [
        ("failed", "MSG_TEMPLATE_NOT_EXIST", False)
    ]


def test_skips_and_poison_jobs_are_events_and_never_reach_alipay(stack: Stack) -> None:
    stranger = "2088" + uuid.uuid4().hex[:12]
    stack.enqueue(template_job(stranger, "consent"))
    stack.sqs.send_message(QueueUrl=stack.outbound_url, MessageBody='{"app_id": "x", "channel": "fax"}')
    result = stack.invoke_once()
    assert result == {"batchItemFailures": []}
    assert sends_to(stack, stranger) == []
    key = f"{APP}|consent|p1|{stranger}|life_template"
    assert [(e["status"], e["reason"]) for e in stack.outcome_events(key)] == [("skipped", "not_follower")]
    poison = [e for e in stack.events if e.get("reason") == "invalid_job"]
    assert len(poison) == 1 and poison[0]["status"] == "failed"
    assert stack.ledger.get(key).status is Status.skipped  # type: ignore[union-attr]


def test_a_coupon_delivered_twice_is_issued_once(stack: Stack) -> None:
    user = "2088" + uuid.uuid4().hex[:12]
    stack.sim.register_activity(APP, "ACT-1", stock=5)
    body = {
        "app_id": APP,
        "channel": "coupon",
        "recipient": {"user_id": user},
        "content": {"activity_id": "ACT-1"},
        "campaign": "coupon",
        "kind": "transactional",
        "not_after": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    }
    stack.enqueue(body, times=2)
    stack.drain()
    assert stack.sim.stock_left(APP, "ACT-1") == 4
    calls = sends_to(stack, user, VOUCHER_SEND)
    assert len(calls) == 1
    key = f"{APP}|coupon|-|{user}|coupon"
    assert calls[0]["biz"]["out_biz_no"] == stack.ledger.get(key).out_biz_no  # type: ignore[union-attr]
