"""Figure 2: webhook requests/s per core for verify + parse + normalise, and through the service layer.

A corpus of Alipay-signed bodies is built with the simulator's own builders (lifelink_local.sim_push) and a
throwaway "Alipay" key: life-account follow / menu click / text messages (GBK gateway forms with XML
biz_content) and paid-trade notifications (UTF-8). Then, in one thread:

- "core path": parse_form → detect_family → verify_callback → parse_gateway_xml → from_gateway /
  from_notify, i.e. the webhook's CPU work without AWS I/O;
- "service": WebhookService.handle with the real registry/keyring/publisher over in-memory I/O fakes
  (bench/fakes.py) and a Powertools Logger writing to /dev/null; gateway messages are answered with a
  signed XML ack, which costs one RSA sign each;
- the stages one by one, to show the share spent in RSA verify.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from common import Row, heading, median, print_table
from cryptography.hazmat.primitives.asymmetric import rsa
from fakes import FakeDynamoDB, FakeOnce, FakeSecrets, FakeSQS

from lifelink.alipay.callbacks import CallbackFamily, detect_family, parse_form, signed_content, verify_callback
from lifelink.alipay.keys import public_key_one_line
from lifelink.alipay.lifegateway import parse_gateway_xml
from lifelink.alipay.signing import verify
from lifelink.domain.events import DomainEvent
from lifelink.domain.normalise import event_id_for, from_gateway, from_notify
from lifelink.store.app_keys import AppKeyring
from lifelink.store.apps import AppRecord, AppRegistry, _to_item
from lifelink.store.events_queue import EventPublisher
from lifelink.webhook import WebhookService
from lifelink_local.sim_push import Pusher, form_encode

N_BODIES = 2000
ROUNDS = 3
CORE_SECONDS = 1.0  # per round: the corpus is replayed until this much time has passed
LIFE_APP = "2021004101230001"
MINI_APP = "2021004101230002"
SELLER = "2088511833207846"
USERS = [f"20881021778{n:05d}" for n in range(50)]


@dataclass(frozen=True)
class Request:
    kind: str  # follow, menu_click, text, trade
    body: bytes
    content_type: str


def _corpus(pusher: Pusher) -> list[Request]:
    out: list[Request] = []
    for i in range(N_BODIES):
        user = USERS[i % len(USERS)]
        slot = i % 10
        if slot < 7:
            if slot < 3:
                kind = "follow"
                fields: dict[str, Any] = {
                    "MsgType": "event", "EventType": "follow", "FromAlipayUserId": user,
                    "ActionParam": json.dumps({"scene": {"sceneId": f"store-qr-{i % 7}"}}),
                    "UserInfo": json.dumps({"logon_id": "138****0000", "user_name": "王小明"}, ensure_ascii=False),
                }
            elif slot < 5:
                kind = "menu_click"
                fields = {"MsgType": "event", "EventType": "click", "FromAlipayUserId": user,
                          "ActionParam": f"menu-会员中心-{i % 4}"}
            else:
                kind = "text"
                fields = {"MsgType": "text", "FromAlipayUserId": user,
                          "Text": {"Content": f"你好，请问西湖店今天几点关门？订单 {i}"}}
            fields["MsgId"] = f"bench-{i}"
            params = pusher.build_gateway(LIFE_APP, fields, "GBK")
            out.append(Request(kind, form_encode(params, "GBK"), "application/x-www-form-urlencoded; charset=GBK"))
        else:
            params = pusher.build_notify({
                "app_id": MINI_APP, "auth_app_id": MINI_APP, "seller_id": SELLER, "buyer_id": user,
                "out_trade_no": f"LL2025011809{i:08d}", "trade_no": f"2025011822001446881{i:09d}",
                "trade_status": "TRADE_SUCCESS", "total_amount": "88.80", "receipt_amount": "88.80",
                "buyer_pay_amount": "88.80", "invoice_amount": "88.80", "point_amount": "0.00",
                "subject": "生活号会员年卡 · 杭州西湖店", "body": "会员年卡一张，含 12 次免费咖啡",
                "gmt_create": "2025-01-18 09:30:12", "gmt_payment": "2025-01-18 09:30:20",
                "fund_bill_list": '[{"amount":"88.80","fundChannel":"ALIPAYACCOUNT"}]',
            }, "utf-8")
            ctype = "application/x-www-form-urlencoded; charset=utf-8"
            out.append(Request("trade", form_encode(params, "utf-8"), ctype))
    return out


def _core_path(alipay_public: rsa.RSAPublicKey) -> Callable[[Request], DomainEvent]:
    def handle(req: Request) -> DomainEvent:
        params, charset = parse_form(req.body, req.content_type)
        family = detect_family(params)
        verify_callback(params, charset, alipay_public)
        now = datetime.now(UTC)
        if family is CallbackFamily.GATEWAY:
            msg = parse_gateway_xml(params["biz_content"])
            app_id = msg.app_id or ""
            return from_gateway(app_id, msg, event_id=event_id_for(app_id, f"msg:{msg.msg_id}"), received_at=now)
        app_id = params["app_id"]
        return from_notify(app_id, params, event_id=event_id_for(app_id, f"notify:{params['notify_id']}"),
                           received_at=now, family=family.value)

    return handle


def _service(alipay_private: rsa.RSAPrivateKey, app_private: rsa.RSAPrivateKey) -> tuple[WebhookService, FakeSQS]:
    from cryptography.hazmat.primitives import serialization

    app_pem = app_private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    secret = {"app_private_key": app_pem, "alipay_public_key": public_key_one_line(alipay_private)}
    records = [
        AppRecord(app_id=LIFE_APP, kind="life", secret_name=f"lifelink/apps/{LIFE_APP}"),
        AppRecord(app_id=MINI_APP, kind="mini", secret_name=f"lifelink/apps/{MINI_APP}", seller_id=SELLER,
                  life_account=LIFE_APP),
    ]
    sqs = FakeSQS()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    logger = Logger(service="webhook-bench", logger_handler=logging.StreamHandler(devnull))
    service = WebhookService(
        AppRegistry(FakeDynamoDB([_to_item(r) for r in records]), "state"),
        AppKeyring(fetch=FakeSecrets({r.secret_name: secret for r in records})),
        EventPublisher(sqs, "https://sqs.local/events"),
        FakeOnce(),
        logger=logger,
    )
    return service, sqs


def _timed_pass(corpus: list[Request], op: Callable[[Request], Any], per_kind: dict[str, list[float]]) -> float:
    clock = time.perf_counter
    start = clock()
    for req in corpus:
        t0 = clock()
        op(req)
        per_kind[req.kind].append(clock() - t0)
    return clock() - start


def run() -> list[Row]:
    heading("2. Webhook requests/s per core: verify + parse + normalise (no AWS I/O)")
    alipay_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    app_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pusher = Pusher(alipay_private)
    try:
        corpus = _corpus(pusher)
    finally:
        pusher.close()
    alipay_public = alipay_private.public_key()
    core = _core_path(alipay_public)
    kinds = defaultdict(int)
    for req in corpus:
        kinds[req.kind] += 1
        core(req)  # every body must verify and normalise, or the benchmark is broken
    service, sqs = _service(alipay_private, app_private)

    # Inputs for the stage-by-stage timing, prepared outside the timed loops.
    decoded = [parse_form(r.body, r.content_type) for r in corpus]
    families = [detect_family(p) for p, _ in decoded]
    signed = [
        (signed_content(p, f).encode("gbk" if c.upper() == "GBK" else "utf-8"), p["sign"])
        for (p, c), f in zip(decoded, families, strict=True)
    ]
    xml_items = [p["biz_content"] for (p, _), f in zip(decoded, families, strict=True) if f is CallbackFamily.GATEWAY]
    messages = [parse_gateway_xml(x) for x in xml_items]
    now = datetime.now(UTC)
    notify_params = [p for (p, _), f in zip(decoded, families, strict=True) if f is not CallbackFamily.GATEWAY]

    def normalise_all() -> None:
        for m in messages:
            from_gateway(LIFE_APP, m, event_id=event_id_for(LIFE_APP, f"msg:{m.msg_id}"), received_at=now)
        for p in notify_params:
            from_notify(MINI_APP, p, event_id=event_id_for(MINI_APP, p["notify_id"]), received_at=now)

    stages: dict[str, Callable[[], None]] = {
        "parse_form + detect_family": lambda: [detect_family(parse_form(r.body, r.content_type)[0]) for r in corpus]
        and None,
        "RSA verify (signing.verify)": lambda: [verify(c, s, alipay_public) for c, s in signed] and None,
        "verify_callback (canonical string + RSA)": lambda: [
            verify_callback(p, c, alipay_public) for p, c in decoded] and None,
        "parse_gateway_xml": lambda: [parse_gateway_xml(x) for x in xml_items] and None,
        "normalise (from_gateway / from_notify)": normalise_all,
    }

    core_rates: list[float] = []
    service_rates: list[float] = []
    core_kind: dict[str, list[float]] = defaultdict(list)
    service_kind: dict[str, list[float]] = defaultdict(list)
    stage_times: dict[str, list[float]] = defaultdict(list)
    for n in range(ROUNDS):
        def core_round() -> None:
            done, spent = 0, 0.0
            while spent < CORE_SECONDS:
                spent += _timed_pass(corpus, core, core_kind)
                done += len(corpus)
            core_rates.append(done / spent)

        def service_round() -> None:
            service._deduper = FakeOnce()  # a fresh idempotency table: every delivery is new again
            sqs.sent.clear()
            replies: list[Any] = []
            spent = _timed_pass(corpus, lambda r: replies.append(service.handle(r.body, r.content_type)),
                                service_kind)
            bad = [r.outcome for r in replies if r.status != 200 or not r.outcome.startswith("accepted")]
            assert not bad and len(sqs.sent) == len(corpus), f"service refused bodies: {bad[:3]}"
            service_rates.append(len(corpus) / spent)

        def stage_round() -> None:
            for name, fn in stages.items():
                t0 = time.perf_counter()
                fn()
                stage_times[name].append((time.perf_counter() - t0) / len(corpus))

        order = [core_round, service_round, stage_round]
        for step in order[n % 3:] + order[: n % 3]:
            step()

    core_rate, service_rate = median(core_rates), median(service_rates)
    core_us = 1e6 / core_rate
    verify_us = median(stage_times["RSA verify (signing.verify)"]) * 1e6
    mix = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    print(f"corpus: {len(corpus)} signed bodies ({mix}); gateway forms GBK, trade notifications UTF-8; "
          f"mean body {sum(len(r.body) for r in corpus) / len(corpus):,.0f} bytes; {ROUNDS} rounds, medians")

    def per_kind(samples: dict[str, list[float]]) -> str:
        return ", ".join(f"{k} {median(v) * 1e6:,.0f}" for k, v in sorted(samples.items()))

    print_table(
        ("path", "requests/s", "µs/request", "median µs by kind"),
        [
            ("core: parse + verify + normalise", f"{core_rate:,.0f}", f"{core_us:,.1f}", per_kind(core_kind)),
            ("service: WebhookService.handle (fake I/O)", f"{service_rate:,.0f}", f"{1e6 / service_rate:,.1f}",
             per_kind(service_kind)),
        ],
    )
    print()
    print("core path stage by stage (µs per request, averaged over the whole corpus; share of the core path):")
    print_table(
        ("stage", "µs/request", "share"),
        [(name, f"{median(v) * 1e6:,.1f}", f"{median(v) * 1e6 / core_us:.0%}") for name, v in stage_times.items()],
    )
    print(f"RSA verify is {verify_us / core_us:.0%} of the core path; the service layer adds "
          f"{1e6 / service_rate - core_us:,.1f} µs/request on average (mostly the RSA-signed XML ack every gateway "
          "message gets, then registry/keyring lookups, JSON event serialisation and the JSON log line)")
    return [
        Row("webhook core req/s/core", f"{core_rate:,.0f}", "-", None, f"RSA verify {verify_us / core_us:.0%}", None),
        Row("webhook service req/s/core", f"{service_rate:,.0f}", "-", None, "(fake I/O, signed acks)", None),
    ]
