"""The proof's stack: the local stack of ``make run`` (moto's server over HTTP, the HTTP front, the SQS pollers,
the scheduler ticker, the Alipay simulator) on ephemeral ports, plus what the scenarios need around it:
per-scenario apps (each its own life account, so its counters are its own), Alipay-signed callbacks sent to
the webhook over HTTP, a wait until the queues are quiet, and reads of the ground truth (counters, profiles,
ledger, the simulator's deliveries). DynamoDB throttling (:mod:`lifelink_local.moto_faults`) sits in front of
moto's server, off until a scenario enables it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx

from lifelink.domain.messages import parse_job
from lifelink.store.apps import DEFAULT_SECRET_PREFIX, AppRecord, AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.ledger import LedgerEntry
from lifelink.store.metrics_store import MetricsStore
from lifelink.store.profiles import Profile, ProfileStore
from lifelink_local.keys import ensure_pair
from lifelink_local.moto_faults import DynamoThrottle
from lifelink_local.sim_push import form_encode
from lifelink_local.stack import DEMO_WELCOME, WELCOME_TEMPLATE, LocalStack

# Outbound retries back off 1-2 s here (the function's defaults are longer): the same code path, less waiting.
PROOF_ENV = {"OUTBOUND_BACKOFF_BASE_S": "1", "OUTBOUND_BACKOFF_MAX_S": "2"}
PROOF_POLICY = {"quiet_hours": {"enabled": False}, "rate_per_second": 100}
SELLER = "2088000000000001"
BEIJING = timedelta(hours=8)


@dataclass(frozen=True)
class Callback:
    """One Alipay callback: the signed body, sent as often as a scenario likes (identical each time)."""

    key: tuple[str, ...]  # how the proof names it: (event type, user[, order])
    family: str  # "gateway" (life-account gateway: Alipay does not retry) or "notify" (retried until "success")
    body: bytes
    content_type: str


@dataclass
class Answers:
    """What the webhook answered, per callback key."""

    accepted: Counter[tuple[str, ...]]
    refused: Counter[tuple[str, ...]]


def beijing_time(at: datetime) -> str:
    return (at.astimezone(UTC) + BEIJING).strftime("%Y-%m-%d %H:%M:%S")


class ProofStack:
    def __init__(self, state_dir: Path | None = None) -> None:
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix="lifelink-proof-")
        self.state_dir = state_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.stack = LocalStack(self.state_dir, moto_port=0, api_port=0, alipay_port=0, log_level="WARNING")
        self.throttle = DynamoThrottle(seed=6)
        self.http = httpx.Client(timeout=30.0, trust_env=False)

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> ProofStack:
        os.environ.update(PROOF_ENV)
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        self.stack.start()
        assert self.stack.moto is not None
        self.stack.moto.wrap_app(self.throttle)
        self.ddb = boto3.client("dynamodb")
        self.sqs = boto3.client("sqs")
        self.registry = AppRegistry(self.ddb, self.table("StateTable"), boto3.client("secretsmanager"))
        self.audience = Audience(self.ddb, self.table("StateTable"))
        return self

    def stop(self) -> None:
        self.http.close()
        self.stack.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> ProofStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- parts --------------------------------------------------------------------------------------------
    @property
    def sim(self) -> Any:
        assert self.stack.sim is not None
        return self.stack.sim

    @property
    def provisioned(self) -> Any:
        assert self.stack.provisioned is not None
        return self.stack.provisioned

    def table(self, logical_id: str) -> str:
        return str(self.provisioned.tables[logical_id])

    def queue(self, logical_id: str) -> str:
        return str(self.provisioned.queues[logical_id])

    def poller(self, function_id: str) -> Any:
        return next(p for p in self.stack.pollers.pollers if p.name == function_id)

    def set_visibility(self, queue_id: str, seconds: int) -> int:
        """Set the queue's visibility timeout; returns the one it had."""
        url = self.queue(queue_id)
        before = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(seconds)})
        return int(before["Attributes"]["VisibilityTimeout"])

    def new_life_app(self, app_id: str) -> str:
        """A life account of its own (welcome message on follow, the proof's send policy), known to the simulator."""
        pair = ensure_pair(self.state_dir / "apps" / app_id, "app")
        self.registry.register(
            AppRecord(app_id=app_id, kind="life", secret_name=f"{DEFAULT_SECRET_PREFIX}{app_id}", seller_id=SELLER,
                      welcome=DEMO_WELCOME, policy=PROOF_POLICY),
            {"app_private_key": pair.private.read_text(), "alipay_public_key": self.sim.alipay_public_key_one_line},
        )
        self.sim.register_app(app_id, pair.public.read_text())
        self.sim.register_template(app_id, WELCOME_TEMPLATE)
        return app_id

    # -- callbacks ----------------------------------------------------------------------------------------
    def gateway_callback(self, app_id: str, key: tuple[str, ...], fields: dict[str, Any]) -> Callback:
        params = self.sim.pusher.build_gateway(app_id, fields, "GBK")
        return Callback(key, "gateway", form_encode(params, "GBK"), "application/x-www-form-urlencoded; charset=GBK")

    def notify_callback(self, key: tuple[str, ...], params: dict[str, str]) -> Callback:
        signed = self.sim.pusher.build_notify(params, "utf-8")
        return Callback(key, "notify", form_encode(signed, "utf-8"),
                        "application/x-www-form-urlencoded; charset=utf-8")

    def follow(self, app_id: str, user: str, at: datetime, msg_id: str | None) -> Callback:
        fields: dict[str, Any] = {"MsgType": "event", "EventType": "follow", "FromAlipayUserId": user,
                                  "ActionParam": '{"scene":{"sceneId":"proof"}}',
                                  "CreateTime": str(int(at.timestamp() * 1000))}
        if msg_id:
            fields["MsgId"] = msg_id
        self.sim.set_follower(app_id, user)  # Alipay's own follower list
        return self.gateway_callback(app_id, ("follow", user), fields)

    def gateway_event(self, app_id: str, event_type: str, user: str, at: datetime, msg_id: str | None,
                      action_param: str | None = None) -> Callback:
        fields: dict[str, Any] = {"MsgType": "event", "EventType": event_type, "FromAlipayUserId": user,
                                  "CreateTime": str(int(at.timestamp() * 1000))}
        if action_param:
            fields["ActionParam"] = action_param
        if msg_id:
            fields["MsgId"] = msg_id
        name = {"click": "menu_click"}.get(event_type, event_type)
        return self.gateway_callback(app_id, (name, user), fields)

    def paid(self, app_id: str, user: str, order: str, cents: int, at: datetime) -> Callback:
        params = {"app_id": app_id, "out_trade_no": order, "trade_no": f"2026{order[-20:]:0>24}",
                  "trade_status": "TRADE_SUCCESS", "total_amount": f"{cents / 100:.2f}", "seller_id": SELLER,
                  "buyer_id": user, "gmt_payment": beijing_time(at), "subject": "proof"}
        return self.notify_callback(("order_paid", user, order), params)

    def deliver(self, callbacks: Iterable[Callback], workers: int = 8, notify_retries: int = 7) -> Answers:
        """Send each callback once (concurrently, in the order given as far as ``workers`` allow). A notification
        not answered ``success`` is sent again afterwards, up to ``notify_retries`` times, as Alipay's retries do
        (their 4 min … 15 h schedule compressed); a gateway push is sent once (Alipay does not retry those)."""
        answers = Answers(Counter(), Counter())
        lock = threading.Lock()
        again: list[Callback] = []
        url = self.stack.conf["webhook"]

        def send(cb: Callback) -> None:
            target = url["gateway_url"] if cb.family == "gateway" else url["notify_url"]
            try:
                r = self.http.post(target, content=cb.body, headers={"content-type": cb.content_type})
                ok = r.status_code == 200 and (cb.family == "gateway" or r.text.strip() == "success")
            except httpx.HTTPError:
                ok = False
            with lock:
                (answers.accepted if ok else answers.refused)[cb.key] += 1
                if not ok and cb.family == "notify":
                    again.append(cb)

        pending = list(callbacks)
        for attempt in range(notify_retries + 1):
            if not pending:
                break
            if attempt:
                time.sleep(0.5)
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(send, pending))
            pending, again = again, []
        return answers

    # -- waiting ------------------------------------------------------------------------------------------
    def queue_depth(self, queue_id: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue(queue_id),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed"],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def wait_quiet(self, timeout_s: float = 600.0, queues: tuple[str, ...] = ("EventsQueue", "OutboundQueue"),
                   settle_s: float = 1.0) -> float:
        """Until every queue has been empty (nothing visible, in flight or delayed) for three looks in a row."""
        started = time.monotonic()
        quiet = 0
        while quiet < 3:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"queues not quiet after {timeout_s} s: "
                                   + ", ".join(f"{q}={self.queue_depth(q)}" for q in queues))
            quiet = quiet + 1 if all(self.queue_depth(q) == 0 for q in queues) else 0
            time.sleep(settle_s if quiet else 0.5)
        return time.monotonic() - started

    # -- ground truth -------------------------------------------------------------------------------------
    def counter_total(self, group: str, name: str) -> float:
        return sum(MetricsStore(self.ddb, self.table("MetricsTable")).counters(group, name).values())

    def profile(self, group: str, user: str) -> Profile | None:
        return ProfileStore(self.ddb, self.table("ProfilesTable")).get(group, user)[0]

    def welcomes(self, app_id: str) -> Counter[str]:
        """Welcome template messages the simulator delivered, per recipient."""
        return Counter(d["recipient"] for d in self.sim.outbound(app_id=app_id)
                       if (d.get("detail") or {}).get("template_id") == WELCOME_TEMPLATE)

    def published_events(self, app_id: str) -> list[dict[str, Any]]:
        """Every events-queue message of ``app_id`` handed to the events consumer (distinct SQS messages)."""
        import json

        out = []
        for body in self.stack.tap.bodies("EventsQueue"):
            event = json.loads(body)
            if event.get("app_id") == app_id:
                out.append(event)
        return out

    def ledger(self, prefix: str = "") -> dict[str, LedgerEntry]:
        entries: dict[str, LedgerEntry] = {}
        for page in self.ddb.get_paginator("scan").paginate(
            TableName=self.table("StateTable"), FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": f"LEDGER#{prefix}"}},
        ):
            for item in page["Items"]:
                entry = LedgerEntry.from_item(item)
                entries[entry.ledger_key] = entry
        return entries

    def drain_dlq(self, queue_id: str = "OutboundDLQ") -> Counter[str]:
        """Ledger keys of the jobs in the dead-letter queue (read and deleted)."""
        keys: Counter[str] = Counter()
        url = self.queue(queue_id)
        while True:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                           VisibilityTimeout=300).get("Messages", [])
            if not got:
                return keys
            for m in got:
                keys[parse_job(m["Body"]).ledger_key] += 1
            self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    def age_dedupe_records(self, hours: float) -> int:
        """Move the clock of the webhook's dedupe records ``hours`` forward: every record's expiry comes that much
        closer, as if it had been written ``hours`` ago. Returns how many records were aged."""
        table = self.table("IdempotencyTable")
        aged = 0
        for page in self.ddb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                if "expiration" not in item:
                    continue
                self.ddb.update_item(
                    TableName=table, Key={"id": item["id"]}, UpdateExpression="SET expiration = :e",
                    ExpressionAttributeValues={":e": {"N": str(int(item["expiration"]["N"]) - int(hours * 3600))}},
                )
                aged += 1
        return aged


@contextlib.contextmanager
def proof_stack() -> Iterator[ProofStack]:
    stack = ProofStack()
    try:
        yield stack.start()
    finally:
        stack.stop()


def now() -> datetime:
    return datetime.now(UTC)
