"""The message gateway's fault test (issue 3): 10,000 jobs, each delivered twice, against a simulator answering
10 % ``20000``, 5 % timeouts and 1 % fatal errors.

Real pieces: the gateway's Lambda handler (four "containers", each its own import of the function with its own
event loop and pooled httpx client), DynamoDB and SQS on moto (in-process ``mock_aws``, every backend
operation atomic as on AWS), the outbound queue and its DLQ (maxReceiveCount 5) from template.yaml, and the
Alipay simulator over real HTTP on loopback with seeded faults. The client timeout is 0.5 s (the function's
``HTTP_TIMEOUT``) and the simulator's injected timeouts sleep 0.9 s; retries back off 1-2 s
(``OUTBOUND_BACKOFF_*``). A second simulator answers every call of one app with retryable errors, so some
jobs certainly exhaust their five receives and reach the DLQ.

Checks, per job: the ledger's final state is sent, failed(fatal) with Alipay's code and sub_code,
failed(retryable) with both copies in the DLQ, or skipped/capped with the expected reason; every Alipay call
the simulator saw is one ledger attempt with the same answer; coupons (``out_biz_no``) and subscription
messages (one grant each) arrive at most once; every delivery of the other channels is either the one the
ledger calls sent or is explained by a call that Alipay executed but answered with ``20000`` or a timeout;
each terminal ledger state has exactly one outcome event, each retryable failure one event; counters, grants
and coupon stock agree with the ledger; the fault tally agrees with the call log. A tally table is printed
(``pytest -s``) and written to ``fault_tally.txt`` in the test's tmp dir.

``LIFELINK_FAULT_JOBS`` sets the number of jobs: ``make test`` runs the issue's 10,000 beside the rest of the suite
(about 20 minutes of one core; ``FAULT_JOBS=`` overrides it), a plain ``pytest`` run 300 (about 2 minutes).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from lifelink.alipay.keys import public_key_one_line
from lifelink.domain.messages import parse_job
from lifelink.store import aws as aws_clients
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.ledger import LedgerEntry, Status, ledger_item_key
from lifelink_local.dlq import QueuePair, redrive
from lifelink_local.provision import provision
from lifelink_local.sim_methods import CARD_UPDATE, CUSTOM_SEND, MINI_TEMPLATE_SEND, SINGLE_SEND, VOUCHER_SEND
from lifelink_local.simulator import AlipaySimulator
from tests.conftest import AWS_ENV, TEMPLATE, KeyPair
from tests.integration.outbound_support import Fleet, atomic_moto_backends, drain, send_all

N_JOBS = int(os.environ.get("LIFELINK_FAULT_JOBS", "300"))
RUN_DEADLINE_S = 900 + 0.3 * N_JOBS  # the gateway's run; ~0.15 s a job on moto in-process, on one core

pytestmark = [pytest.mark.integration, pytest.mark.timeout(int(RUN_DEADLINE_S) + 600)]
CONTAINERS = int(os.environ.get("LIFELINK_FAULT_CONTAINERS", "4"))
CLIENT_TIMEOUT_S = 0.5
SIM_TIMEOUT_S = 0.9
FAULTS = {"unknown_error_rate": 0.10, "timeout_rate": 0.05, "fatal_rate": 0.01, "timeout_s": SIM_TIMEOUT_S, "seed": 3}
# The DLQ app's own simulator: every call a retryable error (half 20000, half 40005 call-limited).
DLQ_FAULTS = {"unknown_error_rate": 0.5, "rate_limit_rate": 0.5, "seed": 4}
MAX_RECEIVES = 5

LIFE = "2021000000000881"
MINI = "2021000000000882"
DLQ_APP = "2021000000000883"
TPL = "TPL-FAULT"
CAP_TPLS = [f"TPL-CAP-{i}" for i in range(1, 6)]
SUB_TPL = "SUB-FAULT"
ACTIVITY = "ACT-FAULT"
CAP_PER_DAY = 3  # the default policy's life_template cap for marketing sends


# ---- the stack ---------------------------------------------------------------------------------------------


@dataclass
class Stack:
    ddb: Any
    sqs: Any
    res: Any
    env: dict[str, str]
    sim: AlipaySimulator
    dlq_sim: AlipaySimulator
    audience: Audience

    @property
    def table(self) -> str:
        return self.env["STATE_TABLE"]


@pytest.fixture
def stack(app_keys: KeyPair, alipay_keys: KeyPair) -> Iterator[Stack]:
    from aws_lambda_powertools.utilities.parameters import base
    from moto import mock_aws

    mp = pytest.MonkeyPatch()
    for k, v in AWS_ENV.items():
        mp.setenv(k, v)
    mp.delenv("AWS_ENDPOINT_URL", raising=False)
    aws_clients.client.cache_clear()
    sims: list[AlipaySimulator] = []
    try:
        with mock_aws(), atomic_moto_backends():
            ddb, sqs, secrets = boto3.client("dynamodb"), boto3.client("sqs"), boto3.client("secretsmanager")
            res = provision(TEMPLATE, prefix=f"ft{uuid.uuid4().hex[:6]}", dynamodb=ddb, sqs=sqs, secretsmanager=secrets)
            sim, dlq_sim = (
                AlipaySimulator(alipay_keys.private_pem, port=0),
                AlipaySimulator(alipay_keys.private_pem, port=0),
            )
            for s in (sim, dlq_sim):
                s.start()
                sims.append(s)
            env = res.function_environment("MessageGatewayFunction")
            env.update(
                ALIPAY_GATEWAY_URL=sim.gateway_url,
                POWERTOOLS_LOG_LEVEL="WARNING",
                OUTBOUND_BACKOFF_BASE_S="1",
                OUTBOUND_BACKOFF_MAX_S="2",
            )
            for k, v in env.items():
                mp.setenv(k, v)
            app_public = public_key_one_line(app_keys.private)
            alipay_public = (
                alipay_keys.private.public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                .decode()
            )
            policy = {"quiet_hours": {"enabled": False}, "rate_per_second": 5000}
            registry = AppRegistry(ddb, env["STATE_TABLE"], secrets)
            for app_id, kind, gateway in ((LIFE, "life", None), (MINI, "mini", None), (DLQ_APP, "life", dlq_sim)):
                (gateway or sim).register_app(app_id, app_public)
                registry.register(
                    AppRecord(
                        app_id=app_id,
                        kind=kind,
                        secret_name=f"{env['APP_SECRET_PREFIX']}{app_id}",
                        policy=policy,
                        gateway_url=gateway.gateway_url if gateway else None,
                    ),
                    {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_public},
                )
            yield Stack(ddb, sqs, res, env, sim, dlq_sim, Audience(ddb, env["STATE_TABLE"]))
    finally:
        for s in sims:
            s.stop()
        aws_clients.client.cache_clear()
        base.DEFAULT_PROVIDERS.clear()
        base.clear_caches()
        mp.undo()


# ---- the jobs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    kind: str  # template | coupon | custom | mini | card | cap | skip_* | dlq_template | dlq_coupon
    body: dict[str, Any]
    key: str  # the ledger key
    sim_key: tuple[str, ...]  # how the simulator's calls and deliveries name it
    expect: str | None = None  # "skipped:<reason>" where the policy decides it


def _body(app: str, channel: str, user: str, content: dict[str, Any], campaign: str, kind: str) -> dict[str, Any]:
    return {
        "app_id": app,
        "channel": channel,
        "recipient": {"user_id": user},
        "content": content,
        "campaign": campaign,
        "phase": "p1",
        "kind": kind,
        "not_after": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    }


def _job(kind: str, body: dict[str, Any], sim_key: tuple[str, ...], expect: str | None = None) -> Job:
    job = parse_job(body)
    return Job(kind, body, job.ledger_key, sim_key, expect)


def template_content(template_id: str) -> dict[str, Any]:
    return {"template_id": template_id, "url": "pages/offer/index?src=fault", "keywords": [{"value": "到货提醒"}]}


CUSTOM_CONTENT = {"msg_type": "text", "text": {"content": "您的订单已发货"}}
SUB_CONTENT = {"user_template_id": SUB_TPL, "page": "pages/order/index", "data": {"keyword1": "已发货"}}


def make_jobs(stack: Stack, n: int) -> list[Job]:
    """The mix (scaled to ``n``) and the facts each job needs, in the stores and in the simulators."""
    sim, aud, dsim = stack.sim, stack.audience, stack.dlq_sim
    yesterday = datetime.now(UTC) - timedelta(days=1)
    users = iter(f"2088{i:012d}" for i in range(10**6, 10**7))
    jobs: list[Job] = []

    def follower(app: str, s: AlipaySimulator) -> str:
        user = next(users)
        s.set_follower(app, user)
        aud.set_following(app, user, True, yesterday)
        return user

    for tpl in (TPL, *CAP_TPLS):
        sim.register_template(LIFE, tpl)
    sim.register_template(MINI, SUB_TPL)
    sim.register_activity(LIFE, ACTIVITY, stock=n)
    dsim.register_template(DLQ_APP, TPL)
    dsim.register_activity(DLQ_APP, ACTIVITY, stock=n)

    counts = {
        "dlq": 20,
        "skip_not_follower": n // 100,
        "skip_no_grant": n // 200,
        "skip_window": n // 200,
        "cap_users": n // 170,
        "mini": n // 20,
        "custom": n // 20,
        "card": n // 33,
        "coupon": n * 35 // 100,
    }
    for _ in range(counts["dlq"]):
        user = follower(DLQ_APP, dsim)
        body = _body(DLQ_APP, "life_template", user, template_content(TPL), "dlq", "transactional")
        jobs.append(_job("dlq_template", body, ("single", DLQ_APP, user, TPL)))
        body = _body(DLQ_APP, "coupon", next(users), {"activity_id": ACTIVITY}, "dlq", "transactional")
        jobs.append(_job("dlq_coupon", body, ("voucher", DLQ_APP, parse_job(body).out_biz_no)))
    for _ in range(counts["skip_not_follower"]):
        user = next(users)  # never followed
        body = _body(LIFE, "life_template", user, template_content(TPL), "fault", "transactional")
        jobs.append(_job("skip_not_follower", body, ("single", LIFE, user, TPL), "skipped:not_follower"))
    for _ in range(counts["skip_no_grant"]):
        user = next(users)  # no grant
        body = _body(MINI, "mini_subscription", user, SUB_CONTENT, "fault", "transactional")
        jobs.append(_job("skip_no_grant", body, ("mini", MINI, user, SUB_TPL), "skipped:no_grant"))
    for _ in range(counts["skip_window"]):
        user = follower(LIFE, sim)  # follows, but never interacted: outside the 48 h window
        body = _body(LIFE, "life_custom", user, CUSTOM_CONTENT, "fault", "transactional")
        jobs.append(_job("skip_window", body, ("custom", LIFE, user), "skipped:outside_48h_window"))
    for _ in range(counts["cap_users"]):
        user = follower(LIFE, sim)  # five marketing templates the same day, the cap is three
        for i, tpl in enumerate(CAP_TPLS, start=1):
            body = _body(LIFE, "life_template", user, template_content(tpl), f"cap{i}", "marketing")
            jobs.append(_job("cap", body, ("single", LIFE, user, tpl)))
    for _ in range(counts["mini"]):
        user = next(users)
        aud.grant(MINI, user, SUB_TPL, 1)
        sim.grant(MINI, user, SUB_TPL, 1)
        body = _body(MINI, "mini_subscription", user, SUB_CONTENT, "fault", "transactional")
        jobs.append(_job("mini", body, ("mini", MINI, user, SUB_TPL)))
    for _ in range(counts["custom"]):
        user = follower(LIFE, sim)
        aud.touch(LIFE, user, datetime.now(UTC) - timedelta(hours=1))
        sim.record_interaction(LIFE, user)
        body = _body(LIFE, "life_custom", user, CUSTOM_CONTENT, "fault", "transactional")
        jobs.append(_job("custom", body, ("custom", LIFE, user)))
    for i in range(counts["card"]):
        card_no = f"CARD{i:010d}"
        content = {"target_card_no": card_no, "level": "VIP2"}
        jobs.append(
            _job(
                "card",
                _body(LIFE, "member_card", next(users), content, "fault", "transactional"),
                ("card", LIFE, card_no),
            )
        )
    for _ in range(counts["coupon"]):
        body = _body(LIFE, "coupon", next(users), {"activity_id": ACTIVITY}, "fault", "transactional")
        jobs.append(_job("coupon", body, ("voucher", LIFE, parse_job(body).out_biz_no)))
    while len(jobs) < n:
        user = follower(LIFE, sim)
        body = _body(LIFE, "life_template", user, template_content(TPL), "fault", "transactional")
        jobs.append(_job("template", body, ("single", LIFE, user, TPL)))
    random.Random(11).shuffle(jobs)
    assert len({j.key for j in jobs}) == len(jobs) == n
    assert len({j.sim_key for j in jobs}) == n
    return jobs


def delivered_twice(jobs: list[Job]) -> list[str]:
    """Two queue messages per job: for half of them the copies are neighbours (usually one batch, handled in
    turn); for the other half the second copy comes after every first copy (another batch, often another
    container, while the first may be backing off)."""
    first, second = [], []
    for i, job in enumerate(jobs):
        text = json.dumps(job.body, ensure_ascii=False)
        first.append(text)
        (first if i % 2 == 0 else second).append(text)
    return first + second


# ---- what the simulators saw -------------------------------------------------------------------------------


def call_key(app: str, method: str, biz: dict[str, Any]) -> tuple[str, ...]:
    if method == SINGLE_SEND:
        return ("single", app, biz.get("to_user_id", ""), biz["template"]["template_id"])
    if method == CUSTOM_SEND:
        return ("custom", app, biz.get("to_user_id", ""))
    if method == MINI_TEMPLATE_SEND:
        return ("mini", app, biz.get("to_user_id", ""), biz["user_template_id"])
    if method == VOUCHER_SEND:
        return ("voucher", app, biz["out_biz_no"])
    if method == CARD_UPDATE:
        return ("card", app, biz["target_card_no"])
    return ("other", app, method)


def delivery_key(d: dict[str, Any]) -> tuple[str, ...]:
    detail, app, method = d.get("detail") or {}, d["app_id"], d["method"]
    if method == SINGLE_SEND:
        return ("single", app, d["recipient"], detail["template_id"])
    if method == CUSTOM_SEND:
        return ("custom", app, d["recipient"])
    if method == MINI_TEMPLATE_SEND:
        return ("mini", app, d["recipient"], detail["user_template_id"])
    if method == VOUCHER_SEND:
        return ("voucher", app, detail["out_biz_no"])
    if method == CARD_UPDATE:
        return ("card", app, d["recipient"])
    return ("other", app, method)


def call_answer(call: dict[str, Any]) -> str:
    """The answer the gateway should have recorded for one call: the code, or "timeout"."""
    return "timeout" if call["fault"] == "timeout" else str(call["code"])


def ledger_answers(entry: LedgerEntry) -> list[str]:
    """The answers the ledger recorded, one per attempt (finish() writes the attempt number)."""
    return [
        "10000" if h["status"] == "sent" else str(h.get("reason"))
        for h in entry.history
        if h["status"] in ("sent", "failed") and "attempt" in h
    ]


# ---- the test ----------------------------------------------------------------------------------------------


def redrive_stale_copies(
    stack: Stack, messages: list[dict[str, Any]], entries: dict[str, LedgerEntry], events: dict[str, dict[str, Any]]
) -> None:
    """Put the stale copies back on the DLQ, redrive them as an operator would, and run the gateway on them: each
    is acknowledged as a duplicate, Alipay sees no call, the ledger is unchanged, and the only events are copies
    of outcome events already published."""
    dlq_url = stack.res.queues["OutboundDLQ"]
    send_all(stack.sqs, dlq_url, [m["Body"] for m in messages])
    pair = QueuePair("outbound", stack.env["OUTBOUND_QUEUE_URL"], dlq_url)
    assert redrive(stack.sqs, pair) == {"queue": "outbound", "moved": len(messages)}
    calls_before = len(stack.sim.calls()) + len(stack.dlq_sim.calls())
    fleet = Fleet(lambda: boto3.client("sqs"), pair.url, stack.res.queue_arns["OutboundQueue"], containers=1)
    try:
        stats = fleet.run(deadline_s=300)
    finally:
        fleet.close()
    assert stats.records == len(messages) and stats.retried == 0, stats
    assert len(stack.sim.calls()) + len(stack.dlq_sim.calls()) == calls_before, "a redriven stale copy called Alipay"
    for m in messages:
        key = parse_job(m["Body"]).ledger_key
        after = LedgerEntry.from_item(
            stack.ddb.get_item(TableName=stack.table, Key=ledger_item_key(key), ConsistentRead=True)["Item"]
        )
        assert after == entries[key], (key, after, entries[key])
    again = [json.loads(m["Body"]) for m in drain(stack.sqs, stack.env["EVENTS_QUEUE_URL"])]
    for e in again:
        assert e["event_id"] in events, f"a redriven stale copy published a new event: {e}"
    assert drain(stack.sqs, dlq_url) == []


@dataclass
class Tally:
    lines: list[str] = field(default_factory=list)

    def row(self, label: str, value: Any) -> None:
        self.lines.append(f"{label:<58} {value}")

    def section(self, title: str) -> None:
        self.lines.append(f"-- {title}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def test_ten_thousand_jobs_delivered_twice_under_faults(stack: Stack, tmp_path: Path) -> None:
    started = time.monotonic()
    jobs = make_jobs(stack, N_JOBS)
    by_key = {j.key: j for j in jobs}
    by_sim_key = {j.sim_key: j for j in jobs}
    bodies = delivered_twice(jobs)
    setup_s = time.monotonic() - started
    stack.sim.set_faults(reset=True, **FAULTS)
    stack.dlq_sim.set_faults(reset=True, **DLQ_FAULTS)

    def short_timeout(module: Any) -> None:
        module.HTTP_TIMEOUT = httpx.Timeout(CLIENT_TIMEOUT_S)

    fleet = Fleet(
        lambda: boto3.client("sqs"),
        stack.env["OUTBOUND_QUEUE_URL"],
        stack.res.queue_arns["OutboundQueue"],
        containers=CONTAINERS,
        prepare=short_timeout,
    )
    try:
        stats = fleet.run(deadline_s=RUN_DEADLINE_S, feed=bodies)
    finally:
        fleet.close()

    # ---- collect -------------------------------------------------------------------------------------------
    entries: dict[str, LedgerEntry] = {}
    for page in stack.ddb.get_paginator("scan").paginate(
        TableName=stack.table,
        FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues={":p": {"S": "LEDGER#"}},
    ):
        for item in page["Items"]:
            entry = LedgerEntry.from_item(item)
            entries[entry.ledger_key] = entry
    events = [json.loads(m["Body"]) for m in drain(stack.sqs, stack.env["EVENTS_QUEUE_URL"])]
    # Events are at-least-once (SQS, and a redelivery that finds a job finished publishes its outcome event
    # again). Consumers dedupe by event_id, so reconcile on distinct event ids, and check
    # that every copy of an event is the same event.
    copies: dict[str, dict[str, Any]] = {}
    duplicate_copies = 0
    for e in (e for e in events if e.get("type") == "message_outcome"):
        if e["event_id"] in copies:
            duplicate_copies += 1
            assert {k: v for k, v in e.items() if k != "received_at"} == {
                k: v for k, v in copies[e["event_id"]].items() if k != "received_at"
            }, ("two different events share an id", e, copies[e["event_id"]])
        else:
            copies[e["event_id"]] = e
    outcome_events = list(copies.values())
    # A run makes a stale DLQ copy (see below) only now and then (about once in 20,000 copies); one more, of a
    # sent job, is planted so that redriving stale copies is checked on every run.
    planted = next(j for j in jobs if j.kind == "template" and entries[j.key].status is Status.sent)
    send_all(stack.sqs, stack.res.queues["OutboundDLQ"], [json.dumps(planted.body, ensure_ascii=False)])
    dlq_messages = drain(stack.sqs, stack.res.queues["OutboundDLQ"])
    dlq_keys = Counter(parse_job(m["Body"]).ledger_key for m in dlq_messages)
    calls = [c for s in (stack.sim, stack.dlq_sim) for c in s.calls()]
    deliveries = [d for s in (stack.sim, stack.dlq_sim) for d in s.outbound()]

    calls_by: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in calls:
        job = by_sim_key.get(call_key(c["app_id"], c["method"], c["biz"] or {}))
        assert job is not None, f"a call the test did not ask for: {c['method']} {c['biz']}"
        calls_by[job.key].append(c)
    delivered_by: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in deliveries:
        job = by_sim_key.get(delivery_key(d))
        assert job is not None, f"a delivery the test did not ask for: {d}"
        delivered_by[job.key].append(d)
    events_by: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in outcome_events:
        assert e["ledger_key"] in by_key, f"an outcome event for no job: {e['ledger_key']}"
        events_by[e["ledger_key"]].append(e)

    # ---- every job ends sent, failed(fatal) with its reason, in the DLQ, or skipped/capped -------------------
    finals: Counter[str] = Counter()
    fatal: Counter[tuple[str, str | None]] = Counter()
    skipped: Counter[str] = Counter()
    capped: Counter[str] = Counter()
    sent_by_cap_user: Counter[str] = Counter()
    dlq_jobs: set[str] = set()
    for job in jobs:
        entry = entries.get(job.key)
        assert entry is not None, f"no ledger entry for {job.kind} job {job.key}"
        if entry.status is Status.sent:
            finals["sent"] += 1
            assert entry.alipay_ref or job.kind == "card", job.key
            if job.kind == "cap":
                sent_by_cap_user[job.body["recipient"]["user_id"]] += 1
        elif entry.status is Status.failed and entry.retryable is False:
            finals["failed(fatal)"] += 1
            assert entry.reason and entry.sub_code, f"fatal without Alipay's reason: {entry}"
            fatal[(entry.reason, entry.sub_code)] += 1
        elif not entry.terminal and entry.status in (Status.failed, Status.planned):
            # failed(retryable), or planned(rate_limited) when the last receive gave its claim back: the job's
            # receives ran out and both copies must be in the DLQ
            finals[f"{entry.status.value}({entry.reason}, retryable) -> DLQ"] += 1
            dlq_jobs.add(job.key)
            assert dlq_keys[job.key] == 2, f"both copies of {job.key} belong in the DLQ, found {dlq_keys[job.key]}"
        elif entry.status in (Status.skipped, Status.capped):
            assert entry.reason, entry
            (skipped if entry.status is Status.skipped else capped)[entry.reason] += 1
            finals[entry.status.value] += 1
        else:
            pytest.fail(f"{job.kind} job {job.key} ended {entry.status} ({entry.reason})")
        if job.expect:
            assert f"{entry.status.value}:{entry.reason}" == job.expect, (job.key, entry)
        if job.kind.startswith("dlq_"):
            assert not entry.terminal, (job.key, entry)
        if job.kind == "cap" and entry.status is Status.capped:
            assert entry.reason == "daily_cap", entry
        if job.kind not in ("cap",) and not job.expect:
            assert entry.status in (Status.sent, Status.failed), (job.key, entry)
    # Each copy of a job has its own five receives. A copy can spend them (failures, waits for its sibling's
    # lease) and reach the DLQ while its sibling copy goes on to finish the job: a stale copy. It is harmless:
    # redriven, the gateway finds the job finished and acknowledges it (checked below).
    stale = {key: n for key, n in dlq_keys.items() if key not in dlq_jobs}
    for key in stale:
        assert entries[key].terminal, f"{key} is in the DLQ, but the ledger says {entries[key].status}"
    assert dlq_jobs <= set(dlq_keys), "the DLQ holds every job the ledger leaves unfinished"
    assert all(n <= CAP_PER_DAY for n in sent_by_cap_user.values()), sent_by_cap_user
    assert capped["daily_cap"] > 0
    assert len(entries) == len(jobs), "no ledger entry for anything but the jobs"

    # ---- the simulators: one call per ledger attempt, with the answer the ledger recorded --------------------
    slow: Counter[str] = Counter()  # clean answers that came after the client's timeout
    never_arrived: Counter[str] = Counter()
    causes: Counter[str] = Counter()  # extra deliveries of non-idempotent channels, by cause
    delivered_though_failed: Counter[str] = Counter()
    doubles_by_channel: Counter[str] = Counter()
    for job in jobs:
        entry, job_calls, got = entries[job.key], calls_by[job.key], delivered_by[job.key]
        answers = ledger_answers(entry)  # one per claim that went to Alipay (a claim given back never did)
        from_calls, from_ledger = Counter(map(call_answer, job_calls)), Counter(answers)
        # a client timeout may fire before the request leaves a loaded machine: Alipay never saw that attempt
        unsent = len(answers) - len(job_calls)
        assert 0 <= unsent <= from_ledger["timeout"], (job.key, answers, len(job_calls))
        never_arrived["timeouts that never reached Alipay"] += unsent
        lost = from_calls - from_ledger  # answered by the simulator, but the gateway had timed out
        assert from_ledger - from_calls == Counter({"timeout": lost.total() + unsent}), (job.key, from_calls,
                                                                                       from_ledger)
        slow.update(lost)
        sent = entry.status is Status.sent
        refs = {d["ref"] for d in got}
        if sent and job.kind != "card":
            assert entry.alipay_ref in refs, f"the ledger's {entry.alipay_ref} never arrived: {job.key}"
        executed_faults = sum(1 for c in job_calls if c["fault"] and c["executed"])
        if job.sim_key[0] in ("voucher", "mini"):
            # an idempotency key (out_biz_no) or a one-time grant: never twice, whatever the faults. Executed but
            # not known to the ledger: a fault Alipay executed, or a clean answer after the client's timeout.
            unseen = executed_faults + lost["10000"]
            assert len(got) == 1 if sent else len(got) <= min(1, unseen), (job.key, len(got), job_calls)
            if not sent and got:
                why = "answered 20000/timeout" if executed_faults else "answered after the client's timeout"
                delivered_though_failed[f"{job.sim_key[0]}: executed, {why}, then failed"] += 1
            continue
        clean_ok = sum(1 for c in job_calls if c["fault"] is None and c["code"] == "10000")
        timeout_delivered = sum(1 for c in job_calls if c["fault"] == "timeout" and c["code"] == "10000")
        unknown_executed = sum(1 for c in job_calls if c["fault"] == "unknown_error" and c["executed"])
        late_ok = lost["10000"]
        assert clean_ok == (1 if sent else 0) + late_ok, (job.key, clean_ok, sent, late_ok)
        unknown_delivered = len(got) - clean_ok - timeout_delivered
        assert 0 <= unknown_delivered <= unknown_executed, (job.key, len(got), job_calls)
        extra = len(got) - (1 if sent else 0)
        if extra:
            bucket = causes if sent else delivered_though_failed
            bucket["20000 (executed by Alipay)"] += unknown_delivered
            bucket["timeout (executed by Alipay)"] += timeout_delivered
            bucket["answer after the client's timeout"] += late_ok
            if sent:
                doubles_by_channel[job.body["channel"]] += extra

    # ---- outcome events: one per terminal state, one per retryable failure ----------------------------------
    terminal_events = retry_events = 0
    for job in jobs:
        entry, evs = entries[job.key], events_by[job.key]
        final = [e for e in evs if not (e["status"] == "failed" and e["retryable"])]
        retries = [e for e in evs if e["status"] == "failed" and e["retryable"]]
        if entry.terminal:
            assert len(final) == 1, (job.key, entry.status, final)
            e = final[0]
            assert (e["status"], e["reason"], e.get("sub_code")) == (entry.status.value, entry.reason, entry.sub_code)
            terminal_events += 1
        else:
            assert final == [], (job.key, final)
        retryable_finishes = [h for h in entry.history if h["status"] == "failed" and h.get("retryable") is True]
        assert len(retries) == len(retryable_finishes), (job.key, len(retries), len(retryable_finishes))
        retry_events += len(retries)
    assert terminal_events + retry_events == len(outcome_events)

    # ---- counters, grants, coupon stock, fault tallies ------------------------------------------------------
    counted: Counter[tuple[str, str]] = Counter()
    for page in stack.ddb.get_paginator("scan").paginate(
        TableName=stack.table, FilterExpression="begins_with(pk, :p)", ExpressionAttributeValues={":p": {"S": "CAP#"}}
    ):
        for item in page["Items"]:
            if item["sk"]["S"].startswith("DAY#") and int(item["n"]["N"]):
                counted[(item["pk"]["S"], item["sk"]["S"].rsplit("#", 1)[1])] += int(item["n"]["N"])
    expected_counts = Counter(
        (f"CAP#{j.body['app_id']}#{j.body['recipient']['user_id']}", j.body["channel"])
        for j in jobs
        if entries[j.key].status is Status.sent
    )
    assert counted == expected_counts, "daily counters hold exactly the sends the ledger recorded"
    for job in jobs:
        if job.kind == "mini":
            user, sent = job.body["recipient"]["user_id"], entries[job.key].status is Status.sent
            assert stack.audience.grants(MINI, user, SUB_TPL) == (0 if sent else 1), job.key
            assert stack.sim.grants_left(MINI, user, SUB_TPL) == 1 - len(delivered_by[job.key]), job.key
    coupons_issued = sum(len(delivered_by[j.key]) for j in jobs if j.kind == "coupon")
    assert N_JOBS - (stack.sim.stock_left(LIFE, ACTIVITY) or 0) == coupons_issued
    replays = sum(stack.sim.openapi.outbound.voucher_replays.values())
    fault_tally: Counter[str] = Counter()
    for s, sim_calls in (
        (stack.sim, [c for c in calls if c["app_id"] != DLQ_APP]),
        (stack.dlq_sim, [c for c in calls if c["app_id"] == DLQ_APP]),
    ):
        tally = Counter(s.fault_tally())
        from_log = Counter(c["fault"] for c in sim_calls if c["fault"])
        from_log.update(f"executed:{c['fault']}" for c in sim_calls if c["fault"] and c["executed"])
        assert tally == from_log, (tally, from_log)
        fault_tally.update(tally)
    # the run exercised what it claims to
    assert fault_tally["unknown_error"] and fault_tally["timeout"] and fault_tally["fatal"]
    assert fault_tally["rate_limited"] and dlq_jobs and replays > 0
    assert any(entries[j.key].status is Status.sent and entries[j.key].attempts > 1 for j in jobs)

    # ---- stale DLQ copies: `dlq redrive` moves them back; the gateway calls nobody and changes nothing -------
    assert planted.key in stale
    redrive_stale_copies(stack, [m for m in dlq_messages if parse_job(m["Body"]).ledger_key in stale], entries, copies)

    # ---- the tally ------------------------------------------------------------------------------------------
    t = Tally()
    t.section(f"fault test: {N_JOBS} jobs x 2 deliveries, {CONTAINERS} containers, faults {FAULTS}")
    t.row("jobs by kind", dict(sorted(Counter(j.kind for j in jobs).items())))
    for name, n in sorted(finals.items()):
        t.row(f"final: {name}", n)
    for (reason, sub_code), n in sorted(fatal.items()):
        t.row(f"  failed(fatal) {reason} {sub_code}", n)
    for reason, n in sorted(skipped.items()):
        t.row(f"  skipped {reason}", n)
    for reason, n in sorted(capped.items()):
        t.row(f"  capped {reason}", n)
    t.row("DLQ: jobs / messages", f"{len(dlq_jobs)} / {dlq_keys.total() - sum(stale.values())}")
    t.row("DLQ: stale copies (a sibling finished the job; redriven, acked)", f"{sum(stale.values()) - 1} (+1 planted)")
    t.row(
        "attempts (Alipay calls) by count per job", dict(sorted(Counter(e.attempts for e in entries.values()).items()))
    )
    t.row("simulator calls (main + DLQ app)", len(calls))
    t.row("fault tally", dict(sorted(fault_tally.items())))
    t.row("coupons issued / out_biz_no issued twice / replays absorbed", f"{coupons_issued} / 0 / {replays}")
    t.row(
        "double deliveries of sent jobs (no idempotency key)", f"{causes.total()} by channel {dict(doubles_by_channel)}"
    )
    for cause, n in sorted(causes.items()):
        t.row(f"  cause: {cause}", n)
    t.row("delivered though the ledger says failed", delivered_though_failed.total())
    for cause, n in sorted(delivered_though_failed.items()):
        t.row(f"  cause: {cause}", n)
    t.row("slow answers (clean, after the client's timeout)", dict(slow))
    t.row("attempts that timed out before reaching Alipay", dict(never_arrived))
    t.row(
        "outcome events: terminal / retryable failures / distinct total / duplicate copies",
        f"{terminal_events} / {retry_events} / {len(outcome_events)} / {duplicate_copies}",
    )
    t.row(
        "handler invocations / records / batch item failures",
        f"{stats.invocations} / {stats.records} / {stats.retried}",
    )
    t.row(
        "seconds: setup / gateway run / total",
        f"{setup_s:.1f} / {stats.seconds:.1f} / {time.monotonic() - started:.1f}",
    )
    text = t.text()
    (tmp_path / "fault_tally.txt").write_text(text)
    print("\n" + text)
