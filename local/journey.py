"""The short journey `make run` plays through the simulator: Alipay-signed callbacks to our webhook over
real HTTP, then a look at what landed on the `events` queue."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3

from lifelink.domain.events import parse_event

if TYPE_CHECKING:
    from lifelink_local.stack import LocalStack

USERS = ("2088102100000001", "2088102100000002", "2088102100000003")
EXPECTED = Counter(
    {"gateway_check": 1, "follow": 3, "unfollow": 1, "menu_click": 1, "user_message": 1, "order_paid": 1}
)


@dataclass
class Step:
    what: str
    status: int | None
    answer: str

    @property
    def line(self) -> str:
        return f"  {self.what:<62} → {self.status} {self.answer}"


@dataclass
class JourneyResult:
    steps: list[Step] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    outcomes: list[Any] = field(default_factory=list)  # message_outcome events from the gateway
    welcomes: list[dict[str, Any]] = field(default_factory=list)  # what the simulator received

    @property
    def counts(self) -> Counter[str]:
        return Counter(e.type for e in self.events)

    @property
    def ok(self) -> bool:
        return self.counts == EXPECTED


def _answer(response: Any) -> tuple[int | None, str]:
    if response is None:
        return None, "no answer"
    text = response.text
    if text.startswith("<?xml"):
        if "<success>true</success>" in text:
            return response.status_code, "signed reply: gateway check passed"
        if "VERIFY_FAILED" in text:
            return response.status_code, "signed reply: VERIFY_FAILED"
        return response.status_code, "signed ack"
    return response.status_code, text[:60]


def consumed_events(stack: LocalStack, until: Callable[[list[Any]], bool], timeout_s: float = 20) -> list[Any]:
    """Events the consumer of the events queue has been handed (the stack's tap), once ``until`` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = [parse_event(b) for b in stack.tap.bodies("EventsQueue")]
        if until(events) or time.monotonic() > deadline:
            return sorted(events, key=lambda e: e.received_at)
        time.sleep(0.1)


def peek_events(queue_url: str) -> list[Any]:
    """Read every message on the queue and make them visible again at once (no consumer runs yet)."""
    sqs = boto3.client("sqs")
    seen: dict[str, Any] = {}
    handles: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0)
        msgs = got.get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            seen[m["MessageId"]] = parse_event(m["Body"])
            handles.append(m["ReceiptHandle"])
    for i in range(0, len(handles), 10):
        entries = [
            {"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0} for n, h in enumerate(handles[i : i + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
    return sorted(seen.values(), key=lambda e: e.received_at)


def run_journey(stack: LocalStack) -> JourneyResult:
    assert stack.sim is not None
    sim, conf = stack.sim, stack.conf
    life = conf["apps"][0]["app_id"]
    gateway, notify = conf["webhook"]["gateway_url"], conf["webhook"]["notify_url"]
    result = JourneyResult()

    def gw(what: str, fields: dict[str, Any]) -> None:
        result.steps.append(Step(what, *_answer(sim.push_gateway(gateway, life, fields))))

    gw("gateway check (alipay.service.check)", {"MsgType": "event", "EventType": "verifygw"})
    for n, user in enumerate(USERS, 1):
        scene = json.dumps({"scene": {"sceneId": f"store-qr-{n}"}})
        gw(f"follow by user {n} from QR scene store-qr-{n}",
           {"MsgType": "event", "EventType": "follow", "FromAlipayUserId": user, "ActionParam": scene,
            "MsgId": f"journey-follow-{n}"})
    gw("unfollow by user 3", {"MsgType": "event", "EventType": "unfollow", "FromAlipayUserId": USERS[2],
                               "MsgId": "journey-unfollow-3"})
    gw("menu click 'early-bird' by user 1", {"MsgType": "event", "EventType": "click", "ActionParam": "early-bird",
                                             "FromAlipayUserId": USERS[0], "MsgId": "journey-click-1"})
    gw("text message '早鸟券还有吗？' by user 2 (GBK)", {"MsgType": "text", "FromAlipayUserId": USERS[1],
                                                 "MsgId": "journey-text-2", "Text": {"Content": "早鸟券还有吗？"}})
    trade = {
        "app_id": life,
        "out_trade_no": "JOURNEY-ORDER-1",
        "trade_no": "2026112422001400000000000001",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "88.80",
        "seller_id": "2088000000000001",
        "buyer_id": USERS[0],
        "gmt_payment": "2026-11-24 20:01:02",
        "subject": "早鸟套餐",
    }
    delivery = sim.push_notify(notify, trade)
    result.steps.append(Step("paid trade notification, ¥88.80 by user 1", *_answer(delivery.last_response)))
    retry = sim.redeliver(delivery.delivery_id)
    result.steps.append(Step("the same notification again (Alipay's retry, same notify_id)", *_answer(retry)))
    if not any(m.queue_id == "EventsQueue" for m in stack.provisioned.event_source_mappings()):  # type: ignore[union-attr]
        result.events = peek_events(conf["events_queue_url"])
        return result

    def journey_done(events: list[Any]) -> bool:
        inbound = Counter(e.type for e in events if e.type != "message_outcome")
        welcomed = [e for e in events if e.type == "message_outcome" and e.campaign == "welcome"]
        return inbound == EXPECTED and len(welcomed) >= sum(inbound[k] for k in ("follow",))

    everything = consumed_events(stack, journey_done)
    result.events = [e for e in everything if e.type != "message_outcome"]
    result.outcomes = [e for e in everything if e.type == "message_outcome"]
    result.welcomes = sim.outbound("alipay.open.public.message.single.send", life)
    return result


def print_journey(result: JourneyResult) -> None:
    print("\nJourney: the simulator plays Alipay and posts signed callbacks to the webhook")
    for step in result.steps:
        print(step.line)
    counts = result.counts
    print(f"\nOn the events queue: {len(result.events)} events from Alipay's callbacks")
    for kind, n in sorted(counts.items()):
        print(f"  {kind:<14} {n}")
    paid = counts.get("order_paid", 0)
    print(f"The notification arrived twice and was queued {paid} time(s): the duplicate was "
          f"{'dropped' if paid == 1 else 'NOT dropped'}.")
    if result.outcomes or result.welcomes:
        print("\nWelcome messages (the events consumer queues one per new follower; the gateway decides):")
        for outcome in sorted(result.outcomes, key=lambda o: o.ledger_key):
            user = outcome.ledger_key.split("|")[3]
            why = f" ({outcome.reason})" if outcome.reason else ""
            print(f"  user …{user[-4:]}: {outcome.status}{why}")
        print(f"The simulator received {len(result.welcomes)} template message(s) "
              f"(alipay.open.public.message.single.send), each with a tracked link.")
    print("Journey " + ("complete: every expected event reached the events consumer." if result.ok
                        else f"INCOMPLETE: expected {dict(EXPECTED)}"))
