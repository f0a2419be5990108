"""Figure 4: messages/s through the message gateway vs the official Alipay SDK's ``execute`` loop, both against
the Alipay simulator with 20 ms latency; CPU ms per message; the per-app rate limit honoured.

Three processes, so that each CPU figure is one side's alone:

- the simulator (``lifelink_local.simulator.AlipaySimulator`` on 127.0.0.1, port 0) runs in a child process
  (``--simulator``), set up over its HTTP admin routes: one app per run with its public key, the template,
  every recipient a follower, ``latency_ms=20`` and no other fault. Its CPU is read from /proc and shown apart;
- **ours** runs in this process: the real ``OutboundGateway`` built by ``functions/message_gateway/app.py``'s
  own ``_build()`` (one pooled ``httpx.AsyncClient``, ``SEND_CONCURRENCY``=50, its thread pool) over DynamoDB,
  SQS and Secrets Manager on moto in-process (``mock_aws``; tables and queues from template.yaml). moto's CPU
  is therefore inside our figure: pessimistic against real DynamoDB. A second figure replaces the stores with
  in-memory fakes (below) to isolate the Alipay path. Jobs are SQS-shaped records fed in batches of 10, as
  Lambda's event source would, with 5 batches in flight at once (50 sends) in one process;
- **the SDK** runs in a child process (``--sdk``): ``DefaultAlipayClient.execute`` with
  ``AlipayOpenPublicMessageSingleSendRequest`` in a plain loop, every answer checked for code 10000.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from common import Row, heading, median, print_table
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_YAML = ROOT / "template.yaml"
GATEWAY_APP = ROOT / "functions" / "message_gateway" / "app.py"

LATENCY_MS = 20.0
SEND_CONCURRENCY = 50  # the one-process runs (moto, rate binding): five batches of 10 at once
CONTAINERS = 5  # Lambda's SQS event source starts with five concurrent invocations
CONTAINER_CONCURRENCY = 10  # template.yaml: SEND_CONCURRENCY 10, BatchSize 10
BATCH_SIZE = 10  # Lambda's SQS batch size
IN_FLIGHT_BATCHES = SEND_CONCURRENCY // BATCH_SIZE
ROUNDS = 3  # the target figure: rounds of (SDK loop, then five containers), a ratio per round, the median reported
N_JOBS = 2000  # per round: ours on in-memory stores, rate high enough not to bind (five containers)
N_ONE_CONTAINER_JOBS = 1000  # one container alone
N_MOTO_JOBS = 150  # ours on moto in-process: moto costs ~130 ms CPU a message, so a bounded count
N_RATE_JOBS = 300  # ours on in-memory stores with the rate limit binding
N_SDK = 100  # per round: the SDK is slow, a bounded count
HIGH_RATE = 2000.0
LOW_RATE = 50.0  # below what the gateway reaches here (~70-100/s), so the limiter binds
TARGET_RATIO = 20.0
TEMPLATE_ID = "TPL-BENCH-WELCOME"
SINGLE_SEND = "alipay.open.public.message.single.send"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


# ---- keys ------------------------------------------------------------------------------------------------


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pkcs1_one_line(key: rsa.RSAPrivateKey) -> str:
    """Alipay's "non-Java" private key text: PKCS#1 DER in one line of base64 (what the SDK takes)."""
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return base64.b64encode(der).decode()


def _public_one_line(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


# ---- the simulator in a child process --------------------------------------------------------------------


def _simulator_main() -> None:
    """Child: start the simulator on port 0, print its URL, run until stdin closes."""
    from lifelink_local.simulator import AlipaySimulator

    if os.environ.get("SIM_SWITCH"):
        sys.setswitchinterval(float(os.environ["SIM_SWITCH"]))
    setup = json.loads(sys.stdin.readline())
    sim = AlipaySimulator(setup["alipay_private_key"], port=0)
    sim.start()
    print(json.dumps({"url": sim.url}), flush=True)
    sys.stdin.read()
    sim.stop()


class SimulatorProcess:
    def __init__(self, alipay_key: rsa.RSAPrivateKey) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--simulator"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(json.dumps({"alipay_private_key": _pem(alipay_key)}) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the simulator process did not start")
        self.url = json.loads(line)["url"]
        self.gateway_url = f"{self.url}/gateway.do"
        self._admin = httpx.Client(base_url=self.url, timeout=10)

    def post(self, path: str, payload: Mapping[str, Any]) -> Any:
        answer = self._admin.post(path, json=dict(payload))
        answer.raise_for_status()
        return answer.json()

    def setup_app(self, app_id: str, app_public_key: str, followers: Sequence[str]) -> None:
        self.post("/sim/apps", {"app_id": app_id, "app_public_key": app_public_key})
        self.post("/sim/templates", {"app_id": app_id, "template_id": TEMPLATE_ID})
        for user in followers:
            self.post("/sim/followers", {"app_id": app_id, "user_id": user, "following": True})

    def deliveries(self, app_id: str) -> list[dict[str, Any]]:
        answer = self._admin.get("/sim/outbound", params={"app_id": app_id, "method": SINGLE_SEND})
        answer.raise_for_status()
        return list(answer.json())

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the simulator process (all threads), from /proc; None where there is none."""
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self._admin.close()
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# ---- jobs ------------------------------------------------------------------------------------------------


def _users(run: int, n: int) -> list[str]:
    return [f"2088{run:02d}{i:010d}" for i in range(n)]


def _job(app_id: str, user: str, campaign: str) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "channel": "life_template",
        "recipient": {"user_id": user},
        "content": {
            "template_id": TEMPLATE_ID,
            "url": "pages/welcome/index?from=follow",
            "action_name": "查看详情",
            "first": {"value": "欢迎关注西湖店生活号"},
            "keywords": [{"value": "会员年卡"}, {"value": "2025-01-18"}],
            "remark": {"value": "点击查看会员权益"},
        },
        "campaign": campaign,
        "phase": "p1",
        "kind": "transactional",  # quiet hours never hold it, whatever time the bench runs
        "not_after": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    }


def _records(app_id: str, users: Sequence[str], campaign: str) -> list[Any]:
    from lifelink.outbound import QueueRecord

    return [
        QueueRecord.from_lambda(
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"rh-{i}",
                "body": json.dumps(_job(app_id, user, campaign), ensure_ascii=False),
                "attributes": {"ApproximateReceiveCount": "1"},
            }
        )
        for i, user in enumerate(users)
    ]


# ---- measuring a run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    label: str
    messages: int  # confirmed sent (10000)
    wall_s: float
    cpu_s: float  # this side's process CPU
    sim_cpu_s: float | None = None
    problems: tuple[str, ...] = ()

    @property
    def per_second(self) -> float:
        return self.messages / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.messages if self.messages else float("nan")


async def _drive(gateway: Any, records: Sequence[Any], in_flight: int = IN_FLIGHT_BATCHES) -> list[Any]:
    """Batches of 10 records, ``in_flight`` invocations at a time (a Lambda container runs one at a time)."""
    batches = [list(records[i : i + BATCH_SIZE]) for i in range(0, len(records), BATCH_SIZE)]
    pending = iter(batches)
    outcomes: list[Any] = []

    async def invocation_slot() -> None:
        for batch in pending:
            report = await gateway.process(batch)
            outcomes.extend(report.outcomes)

    await asyncio.gather(*(invocation_slot() for _ in range(in_flight)))
    return outcomes


def _timed(label: str, loop: asyncio.AbstractEventLoop, gateway: Any, records: Sequence[Any],
           sim: SimulatorProcess | None, in_flight: int = IN_FLIGHT_BATCHES) -> RunResult:
    sim_cpu0 = sim.cpu_seconds() if sim else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    outcomes = loop.run_until_complete(_drive(gateway, records, in_flight))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    sim_cpu1 = sim.cpu_seconds() if sim else None
    sent = sum(1 for o in outcomes if o.status == "sent")
    problems: list[str] = []
    if sent != len(records):
        others: dict[str, int] = {}
        for o in outcomes:
            if o.status != "sent":
                others[f"{o.status}:{o.reason}"] = others.get(f"{o.status}:{o.reason}", 0) + 1
        problems.append(f"{len(records) - sent} of {len(records)} not sent: {others}")
    return RunResult(label, sent, wall, cpu,
                     None if sim_cpu0 is None or sim_cpu1 is None else sim_cpu1 - sim_cpu0, tuple(problems))


def _silent_logger(name: str) -> Any:
    """A Powertools Logger as the gateway gets it, writing its JSON lines to /dev/null. Powertools loggers of one
    service share the stdlib logger ``name``, so every handler already on it is pointed at /dev/null too."""
    from aws_lambda_powertools import Logger

    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    logger = Logger(service=name, logger_handler=logging.StreamHandler(devnull))
    for handler in logging.getLogger(name).handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    return logger


# ---- ours on moto in-process -----------------------------------------------------------------------------


def _load_gateway_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_message_gateway_app", GATEWAY_APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ours_on_moto(label: str, sim: SimulatorProcess, app_id: str, app_key: rsa.RSAPrivateKey,
                  alipay_key: rsa.RSAPrivateKey, rate: float, users: Sequence[str]) -> RunResult:
    import boto3
    from aws_lambda_powertools.utilities.parameters import base as powertools_parameters
    from moto import mock_aws

    from lifelink.store import aws as aws_clients
    from lifelink.store.apps import AppRecord, AppRegistry
    from lifelink.store.audience import Audience
    from lifelink_local.provision import provision

    saved = {k: os.environ.get(k) for k in (*AWS_ENV, "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    set_env: list[str] = []
    try:
        with mock_aws():
            aws_clients.client.cache_clear()
            ddb, sqs, secrets = boto3.client("dynamodb"), boto3.client("sqs"), boto3.client("secretsmanager")
            res = provision(TEMPLATE_YAML, prefix=f"bench{uuid.uuid4().hex[:6]}", dynamodb=ddb, sqs=sqs,
                            secretsmanager=secrets)
            env = res.function_environment("MessageGatewayFunction")
            env["ALIPAY_GATEWAY_URL"] = sim.gateway_url
            env["SEND_CONCURRENCY"] = str(SEND_CONCURRENCY)
            os.environ.update(env)
            set_env = list(env)
            table = env["STATE_TABLE"]
            AppRegistry(ddb, table, secrets).register(
                AppRecord(app_id=app_id, kind="life", secret_name=f"{env['APP_SECRET_PREFIX']}{app_id}",
                          policy={"rate_per_second": rate}),
                {"app_private_key": _pem(app_key), "alipay_public_key": _public_one_line(alipay_key)},
            )
            audience = Audience(ddb, table)
            since = datetime.now(UTC) - timedelta(days=1)
            for user in users:
                audience.set_following(app_id, user, True, since)

            module = _load_gateway_module()
            module.logger = _silent_logger("message_gateway")  # the logger _build() hands the gateway
            loop, gateway = module._build()
            records = _records(app_id, users, f"bench-{label}")
            try:
                loop.run_until_complete(_drive(gateway, _records(app_id, users[:1], "warm-up")))  # keys, pool
                result = _timed(label, loop, gateway, records[1:], sim)
            finally:
                http = getattr(gateway, "_http", None)
                if http is not None:
                    loop.run_until_complete(http.aclose())
                loop.close()
    finally:
        aws_clients.client.cache_clear()
        powertools_parameters.DEFAULT_PROVIDERS.clear()
        powertools_parameters.clear_caches()
        for k in set_env:
            os.environ.pop(k, None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return result


# ---- ours on in-memory stores ----------------------------------------------------------------------------


class _MemLedger:
    """The ledger's happy-path contract in a dict: claim (lease) -> finish."""

    def __init__(self) -> None:
        from lifelink.store.ledger import Status

        self._status = Status
        self._lock = threading.Lock()
        self.entries: dict[str, Any] = {}

    def get(self, ledger_key: str) -> Any:
        with self._lock:
            return self.entries.get(ledger_key)

    def claim(self, job: Any, owner: str, now: datetime, *, lease: timedelta, idempotent: bool,
              new: bool = True) -> Any:
        from lifelink.store.ledger import Claim, LedgerEntry

        with self._lock:
            current = self.entries.get(job.ledger_key)
            if current is not None and current.terminal:
                return Claim("done", current)
            if current is not None and current.lease_live(now):
                return Claim("busy", current)
            entry = LedgerEntry(
                ledger_key=job.ledger_key, status=self._status.sending,
                attempts=(current.attempts if current else 0) + 1,
                lease_owner=owner, lease_until=now + lease, app_id=job.app_id, channel=job.channel.value,
                campaign=job.campaign, phase=job.phase,
            )
            self.entries[job.ledger_key] = entry
            return Claim("claimed", entry)

    def _swap(self, ledger_key: str, owner: str | None, **changes: Any) -> Any:
        with self._lock:
            current = self.entries.get(ledger_key)
            if current is None or (owner is not None and current.lease_owner != owner):
                return None
            entry = replace(current, **changes)
            self.entries[ledger_key] = entry
            return entry

    def finish(self, ledger_key: str, owner: str, status: Any, now: datetime, *, reason: str | None = None,
               sub_code: str | None = None, sub_msg: str | None = None, retryable: bool | None = None,
               alipay_ref: str | None = None, attempt: int | None = None) -> Any:
        return self._swap(ledger_key, owner, status=status, reason=reason, sub_code=sub_code, sub_msg=sub_msg,
                          retryable=retryable if status is self._status.failed else None, alipay_ref=alipay_ref,
                          lease_until=None)

    def release(self, ledger_key: str, owner: str, now: datetime, reason: str) -> Any:
        return self._swap(ledger_key, owner, status=self._status.planned, reason=reason, lease_until=None)

    def close(self, job: Any, status: Any, reason: str, now: datetime, *, sub_code: str | None = None) -> Any:
        from lifelink.store.ledger import LedgerEntry

        with self._lock:
            entry = LedgerEntry(ledger_key=job.ledger_key, status=status, reason=reason, app_id=job.app_id,
                                sub_code=sub_code)
            self.entries[job.ledger_key] = entry
            return entry



def _mem_counters() -> Any:
    from lifelink.store.counters import Counters

    class MemCounters(Counters):
        """The real Counters (facts, plans) with the counter reads and writes on a dict."""

        def __init__(self) -> None:
            super().__init__(None, "mem")
            self._n: dict[tuple[str, str], int] = {}
            self._lock = threading.Lock()

        def read(self, slots: Sequence[Any]) -> list[int]:
            with self._lock:
                return [self._n.get((s.pk, s.sk), 0) for s in slots]

        def take(self, plan: Any) -> bool:
            slots = plan.slots if hasattr(plan, "slots") else list(plan)
            with self._lock:
                if any(s.limit is not None and self._n.get((s.pk, s.sk), 0) >= s.limit for s in slots):
                    return False
                for s in slots:
                    if not s.check_only:
                        self._n[(s.pk, s.sk)] = self._n.get((s.pk, s.sk), 0) + 1
                return True

        def give_back(self, plan: Any) -> None:
            slots = plan.taken if hasattr(plan, "taken") else [s for s in plan if not s.check_only]
            with self._lock:
                for s in slots:
                    self._n[(s.pk, s.sk)] = max(0, self._n.get((s.pk, s.sk), 0) - 1)

    return MemCounters()


class _MemRateTable:
    """``update_item`` for the rate limiter's expressions on a dict, so the real RateLimiter runs unchanged:
    the GCRA reservation (``SET tat = :next`` if idle, else ``ADD tat :interval`` within ``:latest``) and the
    older fixed window (``ADD n :one`` while ``n < :limit``). Any other expression fails loudly: the limiter
    changed and this fake must follow it."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], dict[str, float]] = {}
        self._lock = threading.Lock()

    def update_item(self, *, Key: Mapping[str, Any], UpdateExpression: str,
                    ExpressionAttributeValues: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        def value(name: str) -> float:
            return float(ExpressionAttributeValues[name]["N"])

        failed = ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem")
        with self._lock:
            item = self._items.setdefault((Key["pk"]["S"], Key["sk"]["S"]), {})
            if UpdateExpression.startswith("SET tat = :next"):
                if "tat" in item and item["tat"] > value(":now"):
                    raise failed
                item["tat"] = value(":next")
                return {}
            if UpdateExpression.startswith("ADD tat :interval"):
                if "tat" not in item or item["tat"] > value(":latest"):
                    raise failed
                item["tat"] += value(":interval")
                return {"Attributes": {"tat": {"N": f"{item['tat']:.6f}"}}}
            if UpdateExpression.startswith("ADD n :one"):
                if item.get("n", 0) >= value(":limit"):
                    raise failed
                item["n"] = item.get("n", 0) + 1
                return {}
        raise NotImplementedError(f"bench fake: unknown rate limiter expression {UpdateExpression!r}")


class _MemAudience:
    def __init__(self, followers: set[str]) -> None:
        from lifelink.store.audience import UserFacts

        self._facts = UserFacts
        self._followers = followers
        self._since = datetime.now(UTC) - timedelta(days=1)

    def facts(self, app_id: str, user: str) -> Any:
        following = user in self._followers
        return self._facts(following, self._since, self._since if following else None)


class _MemQueue:
    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        return None

    def requeue(self, body: str) -> None:
        return None


def _memory_gateway(app_id: str, app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey, rate: float,
                    users: Sequence[str], gateway_url: str, concurrency: int) -> tuple[Any, Any, Any]:
    """(loop, gateway, http): built as functions/message_gateway/app.py's _build() does, the stores in memory."""
    from fakes import FakeSQS

    from lifelink.alipay.transport import pooled_async_client
    from lifelink.outbound import OutboundGateway
    from lifelink.store.apps import AppRecord
    from lifelink.store.events_queue import EventPublisher
    from lifelink.store.rate_limit import RateLimiter

    record = AppRecord(app_id=app_id, kind="life", secret_name=f"lifelink/apps/{app_id}",
                       policy={"rate_per_second": rate})
    secret = {"app_private_key": _pem(app_key), "alipay_public_key": _public_one_line(alipay_key)}
    attribution = os.urandom(32).hex().encode()

    class Registry:
        def get(self, wanted: str) -> AppRecord | None:
            return record if wanted == app_id else None

    loop = asyncio.new_event_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=concurrency * 2 + 4))
    http = pooled_async_client(concurrency, httpx.Timeout(10.0, connect=3.0))
    gateway = OutboundGateway(
        registry=Registry(),
        secrets=lambda name: secret,
        audience=_MemAudience(set(users)),
        ledger=_MemLedger(),  # type: ignore[arg-type]
        counters=_mem_counters(),
        rate_limiter=RateLimiter(_MemRateTable(), "mem"),
        publisher=EventPublisher(FakeSQS(), "mem://events"),
        queue=_MemQueue(),
        http=http,
        attribution_key=lambda: attribution,
        default_gateway_url=gateway_url,
        concurrency=concurrency,
        logger=_silent_logger("message_gateway"),
    )
    return loop, gateway, http


def _ours_in_memory(label: str, sim: SimulatorProcess, app_id: str, app_key: rsa.RSAPrivateKey,
                    alipay_key: rsa.RSAPrivateKey, rate: float, users: Sequence[str]) -> RunResult:
    """One process, ``SEND_CONCURRENCY`` sends and ``IN_FLIGHT_BATCHES`` batches at once (the rate-binding run:
    one rate table, so the limit binds on every send)."""
    loop, gateway, http = _memory_gateway(app_id, app_key, alipay_key, rate, users, sim.gateway_url,
                                          SEND_CONCURRENCY)
    try:
        loop.run_until_complete(_drive(gateway, _records(app_id, users[:1], "warm-up")))
        return _timed(label, loop, gateway, _records(app_id, users[1:], f"bench-{label}"), sim)
    finally:
        loop.run_until_complete(http.aclose())
        loop.close()


# ---- ours as Lambda runs it: containers in processes ---------------------------------------------------


def _container_main() -> None:
    """Child: one "Lambda container" (its own process, event loop, pooled client and gateway, the stores in
    memory), handling one batch of 10 at a time with CONTAINER_CONCURRENCY sends at once, as template.yaml
    configures the function. Prints "ready" after a warm-up send, starts on a line from stdin, prints its result."""
    setup = json.loads(sys.stdin.readline())
    app_key = serialization.load_pem_private_key(setup["app_key"].encode(), None)
    alipay_key = serialization.load_pem_private_key(setup["alipay_key"].encode(), None)
    assert isinstance(app_key, rsa.RSAPrivateKey) and isinstance(alipay_key, rsa.RSAPrivateKey)
    users, app_id = setup["users"], setup["app_id"]
    loop, gateway, http = _memory_gateway(app_id, app_key, alipay_key, setup["rate"], users, setup["gateway_url"],
                                          CONTAINER_CONCURRENCY)
    try:
        loop.run_until_complete(_drive(gateway, _records(app_id, users[:1], f"warm-up-{setup['index']}"), 1))
        records = _records(app_id, users[1:], setup["campaign"])
        print("ready", flush=True)
        sys.stdin.readline()
        r = _timed(setup["campaign"], loop, gateway, records, None, in_flight=1)
    finally:
        loop.run_until_complete(http.aclose())
        loop.close()
    print(json.dumps({"sent": r.messages, "wall_s": r.wall_s, "cpu_s": r.cpu_s, "problems": list(r.problems)}),
          flush=True)


def _ours_containers(label: str, sim: SimulatorProcess, app_id: str, app_key: rsa.RSAPrivateKey,
                     alipay_key: rsa.RSAPrivateKey, rate: float, users: Sequence[str], containers: int) -> RunResult:
    """``containers`` child processes, each a container with its own share of the jobs, started together;
    throughput = every send confirmed / the time from the start signal until the last container finished."""
    jobs = list(users[1:])
    children = []
    for i in range(containers):
        child = subprocess.Popen([sys.executable, __file__, "--container"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdin and child.stdout
        share = [users[0], *jobs[i::containers]]
        child.stdin.write(json.dumps({
            "index": i, "app_id": app_id, "users": share, "rate": rate, "gateway_url": sim.gateway_url,
            "app_key": _pem(app_key), "alipay_key": _pem(alipay_key), "campaign": f"bench-{label}",
        }) + "\n")
        child.stdin.flush()
        children.append(child)
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a container process did not start")
        sim_cpu0 = sim.cpu_seconds()
        wall0 = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            assert child.stdout is not None
            results.append(json.loads(child.stdout.readline()))
        wall = time.perf_counter() - wall0
        sim_cpu1 = sim.cpu_seconds()
    finally:
        for child in children:
            child.wait(timeout=30)
    problems = tuple(p for r in results for p in r["problems"])
    return RunResult(label, sum(r["sent"] for r in results), wall, sum(r["cpu_s"] for r in results),
                     None if sim_cpu0 is None or sim_cpu1 is None else sim_cpu1 - sim_cpu0, problems)


# ---- the official SDK in a child process ---------------------------------------------------------------


def _patch_sdk_port() -> None:
    """alipay-sdk-python's WebUtils.get_http_connection always connects to port 80 (443 for https) and fails
    on a URL with a port (it adds the int port to a str). The simulator listens on an ephemeral port, so this
    replaces that one function with the same code honouring the URL's port; the SDK still opens a new
    connection per request, as it does unpatched."""
    import http.client
    from urllib.parse import urlparse

    from alipay.aop.api.util import WebUtils

    def get_http_connection(url: str, query_string: str, timeout: int) -> tuple[str, http.client.HTTPConnection]:
        parts = urlparse(url)
        if parts.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port or 443, timeout=timeout
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
        return f"{parts.scheme}://{parts.netloc}{parts.path}?{query_string}", connection

    WebUtils.get_http_connection = get_http_connection


def _sdk_main() -> None:
    """Child (TZ=Asia/Shanghai): N executes in a loop; prints wall, CPU and the answer codes as JSON."""
    from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
    from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
    from alipay.aop.api.request.AlipayOpenPublicMessageSingleSendRequest import (
        AlipayOpenPublicMessageSingleSendRequest,
    )
    from alipay.aop.api.response.AlipayOpenPublicMessageSingleSendResponse import (
        AlipayOpenPublicMessageSingleSendResponse,
    )

    setup = json.loads(sys.stdin.readline())
    _patch_sdk_port()
    config = AlipayClientConfig()
    config.server_url = setup["server_url"]
    config.app_id = setup["app_id"]
    config.app_private_key = setup["app_private_key"]
    config.alipay_public_key = setup["alipay_public_key"]
    client = DefaultAlipayClient(alipay_client_config=config)

    def send(user: str) -> str:
        request = AlipayOpenPublicMessageSingleSendRequest()
        # a dict goes through the SDK's model (AlipayOpenPublicMessageSingleSendModel), as callers use it
        template = {"template_id": TEMPLATE_ID, "context": setup["context"]}
        request.biz_content = {"to_user_id": user, "template": template}
        response = AlipayOpenPublicMessageSingleSendResponse()
        response.parse_response_content(client.execute(request))
        return f"{response.code}:{response.sub_code or ''}"

    users: list[str] = setup["users"]
    first = send(users[0])  # warm-up (imports, first connection), not timed
    codes: dict[str, int] = {}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for user in users[1:]:
        code = send(user)
        codes[code] = codes.get(code, 0) + 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "codes": codes, "first": first}), flush=True)


def _sdk_context() -> dict[str, Any]:
    """The same template context our gateway sends for ``_job`` (the attribution token stands in as text)."""
    return {
        "head_color": "#000000",
        "url": "pages/welcome/index?from=follow&ll=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "action_name": "查看详情",
        "first": {"color": "#000000", "value": "欢迎关注西湖店生活号"},
        "keyword1": {"color": "#000000", "value": "会员年卡"},
        "keyword2": {"color": "#000000", "value": "2025-01-18"},
        "remark": {"color": "#000000", "value": "点击查看会员权益"},
    }


def _sdk_run(sim: SimulatorProcess, app_id: str, app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey,
             users: Sequence[str]) -> RunResult:
    try:
        import alipay.aop.api  # noqa: F401 - only to know whether the child can run
    except Exception as exc:
        return RunResult("alipay-sdk-python", 0, 0.0, 0.0, None, (f"SDK not importable: {exc}",))
    setup = {
        "server_url": sim.gateway_url,
        "app_id": app_id,
        "app_private_key": _pkcs1_one_line(app_key),
        "alipay_public_key": _public_one_line(alipay_key),
        "users": list(users),
        "context": _sdk_context(),
    }
    sim_cpu0 = sim.cpu_seconds()
    done = subprocess.run(
        [sys.executable, __file__, "--sdk"],
        input=json.dumps(setup, ensure_ascii=False) + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "Asia/Shanghai"},  # the SDK stamps requests with local time; Alipay wants Beijing
        check=False,
    )
    sim_cpu1 = sim.cpu_seconds()
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return RunResult("alipay-sdk-python", 0, 0.0, 0.0, None, (f"SDK loop failed: {tail}",))
    out = json.loads(done.stdout.strip().splitlines()[-1])
    ok = int(out["codes"].get("10000:", 0))
    problems = () if ok == len(users) - 1 else (f"answers: {out['codes']} (warm-up: {out['first']})",)
    return RunResult("alipay-sdk-python", ok, out["wall_s"], out["cpu_s"],
                     None if sim_cpu0 is None or sim_cpu1 is None else sim_cpu1 - sim_cpu0, problems)


# ---- the rate check ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateCheck:
    delivered: int
    achieved: float  # deliveries / (last - first)
    max_sliding: int  # most deliveries in any 1 s window [t, t + 1 s)
    max_aligned: int  # most deliveries in one calendar second (the limiter's windows)


def rate_check(deliveries: Sequence[Mapping[str, Any]]) -> RateCheck:
    times = sorted(datetime.fromisoformat(str(d["at"])).timestamp() for d in deliveries)
    if not times:
        return RateCheck(0, 0.0, 0, 0)
    most, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        most = max(most, i - j + 1)
    per_second: dict[int, int] = {}
    for t in times:
        per_second[int(t)] = per_second.get(int(t), 0) + 1
    span = times[-1] - times[0]
    return RateCheck(len(times), (len(times) - 1) / span if span > 0 else float(len(times)), most,
                     max(per_second.values()))


# ---- the figure ----------------------------------------------------------------------------------------


def _fmt_cpu(r: RunResult) -> str:
    return f"{r.cpu_ms:,.2f}" if r.messages else "n/a"


def _pooled(label: str, results: Sequence[RunResult]) -> RunResult:
    """Several runs of one side as one: messages, wall and CPU summed (so msg/s is over all of them)."""
    sims = [r.sim_cpu_s for r in results]
    return RunResult(label, sum(r.messages for r in results), sum(r.wall_s for r in results),
                     sum(r.cpu_s for r in results), None if None in sims else sum(s for s in sims if s is not None),
                     tuple(p for r in results for p in r.problems))


def run() -> list[Row]:
    heading(f"4. Message gateway messages/s vs the Alipay SDK (simulator latency {LATENCY_MS:.0f} ms)")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sim = SimulatorProcess(alipay_key)
    try:
        sim.post("/sim/faults", {"reset": True, "latency_ms": LATENCY_MS})
        plans = [
            ("moto", "2021000000004001", HIGH_RATE, _users(1, N_MOTO_JOBS + 1)),
            ("memory-1", "2021000000004004", HIGH_RATE, _users(4, N_ONE_CONTAINER_JOBS + 1)),
            ("memory-rate", "2021000000004003", LOW_RATE, _users(3, N_RATE_JOBS + 1)),
        ]
        # Round r: the SDK loop, then the five containers right after it, each on its own app and users, so each
        # ratio compares two runs a few seconds apart (this machine's speed drifts by tens of % within minutes).
        rounds = [
            (f"20210000000041{r:02d}", _users(10 + r, N_JOBS + 1), f"20210000000049{r:02d}", _users(20 + r, N_SDK + 1))
            for r in range(ROUNDS)
        ]
        for _, app_id, _, users in plans:
            sim.setup_app(app_id, _public_one_line(app_key), users)
        for ours_app, ours_users, sdk_app, sdk_users in rounds:
            sim.setup_app(ours_app, _public_one_line(app_key), ours_users)
            sim.setup_app(sdk_app, _public_one_line(app_key), sdk_users)

        paired: list[tuple[RunResult, RunResult]] = []
        for r, (ours_app, ours_users, sdk_app, sdk_users) in enumerate(rounds):
            sdk_r = _sdk_run(sim, sdk_app, app_key, alipay_key, sdk_users)
            ours_r = _ours_containers(f"memory-{CONTAINERS}-r{r}", sim, ours_app, app_key, alipay_key, HIGH_RATE,
                                      ours_users, CONTAINERS)
            paired.append((ours_r, sdk_r))
        results: dict[str, RunResult] = {}
        for label, app_id, rate, users in plans:
            if label == "moto":
                results[label] = _ours_on_moto(label, sim, app_id, app_key, alipay_key, rate, users)
            elif label == "memory-rate":
                results[label] = _ours_in_memory(label, sim, app_id, app_key, alipay_key, rate, users)
            else:
                results[label] = _ours_containers(label, sim, app_id, app_key, alipay_key, rate, users, 1)
        checks = {label: rate_check(sim.deliveries(app_id)) for label, app_id, _, _ in plans}
    finally:
        sim.stop()

    moto, one, limited = results["moto"], results["memory-1"], results["memory-rate"]
    memory = _pooled(f"memory-{CONTAINERS}", [o for o, _ in paired])
    sdk = _pooled("alipay-sdk-python", [k for _, k in paired])
    round_ratios = [o.per_second / k.per_second for o, k in paired if o.messages and k.messages]

    def line(name: str, r: RunResult, rate: str) -> tuple[str, ...]:
        sim_ms = f"{1000 * r.sim_cpu_s / r.messages:,.2f}" if r.sim_cpu_s is not None and r.messages else "n/a"
        return (name, f"{r.messages:,}", f"{r.wall_s:,.2f}", f"{r.per_second:,.1f}", _fmt_cpu(r), sim_ms, rate)

    print(f"simulator: child process, 127.0.0.1 ephemeral port, latency {LATENCY_MS:.0f} ms, no other fault; "
          f"template messages (single.send) to distinct followers")
    print(f"ours, in memory: {CONTAINERS} containers as Lambda runs them (its SQS event source starts with five "
          f"concurrent invocations): each its own process, event loop, pooled client and OutboundGateway (stores as "
          f"dict fakes, the rest as deployed), one batch of {BATCH_SIZE} at a time with SEND_CONCURRENCY="
          f"{CONTAINER_CONCURRENCY} (template.yaml); all start together; CPU = the containers' own (process_time)")
    print(f"ours vs SDK: {ROUNDS} rounds, each the SDK loop ({N_SDK} calls) and then the {CONTAINERS} containers "
          f"({N_JOBS:,} messages); the rows below pool the rounds, the target is the median of the rounds' ratios")
    print(f"ours, one process: the gateway from functions/message_gateway/app.py _build(), SEND_CONCURRENCY="
          f"{SEND_CONCURRENCY}, {IN_FLIGHT_BATCHES} batches in flight; on moto: DynamoDB/SQS/Secrets Manager are moto "
          "in-process (mock_aws), so moto's CPU is in the figure (pessimistic against real DynamoDB); rate binding: "
          "one shared rate table, the limit binds on every send")
    print("SDK: DefaultAlipayClient.execute(AlipayOpenPublicMessageSingleSendRequest) in a loop, child process "
          "with TZ=Asia/Shanghai (its timestamps are local time); WebUtils.get_http_connection patched to honour "
          "the URL's port (the SDK always dials 80/443); one new TCP connection per call, as unpatched")
    print_table(
        ("sender", "sent", "wall s", "msg/s", "CPU ms/msg", "sim CPU ms/msg", "rate limit/s"),
        [
            line("lifelink gateway, one process, stores on moto", moto, f"{HIGH_RATE:,.0f}"),
            line(f"lifelink gateway, {CONTAINERS} containers, stores in memory", memory, f"{HIGH_RATE:,.0f}"),
            line("lifelink gateway, 1 container, stores in memory", one, f"{HIGH_RATE:,.0f}"),
            line("lifelink gateway, one process, rate binding", limited, f"{LOW_RATE:,.0f}"),
            line("alipay-sdk-python execute loop", sdk, "-"),
        ],
    )
    for r, (ours_r, sdk_r) in enumerate(paired):
        ratio = f"{ours_r.per_second / sdk_r.per_second:.1f}×" if ours_r.messages and sdk_r.messages else "n/a"
        print(f"round {r + 1}: {CONTAINERS} containers {ours_r.per_second:,.1f} msg/s ({_fmt_cpu(ours_r)} CPU ms/msg), "
              f"SDK {sdk_r.per_second:,.1f} msg/s: {ratio}")
    for r in (moto, memory, one, limited, sdk):
        for problem in r.problems:
            print(f"  ! {r.label}: {problem}")
    for label, check in checks.items():
        if label == "memory-1":
            continue  # its own in-memory rate table; the shared limit is the binding run
        configured = LOW_RATE if label == "memory-rate" else HIGH_RATE
        verdict = "≤" if check.max_sliding <= configured else ">"
        print(f"rate [{label}]: {check.delivered:,} deliveries at the simulator, achieved {check.achieved:,.1f}/s; "
              f"max sends in any 1 s window = {check.max_sliding} {verdict} configured {configured:,.0f} "
              f"(max in one calendar second: {check.max_aligned})")

    rows: list[Row] = []
    if len(round_ratios) == ROUNDS:
        target = median(round_ratios)
        rows.append(Row(f"gateway msg/s vs SDK ({CONTAINERS} containers, median of {ROUNDS})",
                        f"{memory.per_second:,.0f}", f"{sdk.per_second:,.1f}", target, f"≥ {TARGET_RATIO:.0f}×",
                        target >= TARGET_RATIO and not memory.problems and not sdk.problems))
    else:
        rows.append(Row(f"gateway msg/s vs SDK ({CONTAINERS} containers)", f"{memory.per_second:,.0f}", "n/a", None,
                        f"≥ {TARGET_RATIO:.0f}×", None))
    for name, ours in (("gateway msg/s vs SDK (moto, 1 proc)", moto), ("gateway msg/s vs SDK (1 container)", one)):
        ratio = ours.per_second / sdk.per_second if sdk.messages and ours.messages else None
        rows.append(Row(name, f"{ours.per_second:,.0f}", f"{sdk.per_second:,.1f}" if sdk.messages else "n/a", ratio,
                        "-", None))
    for name, ours in (("gateway CPU ms/msg (moto)", moto), ("gateway CPU ms/msg (in-mem)", memory)):
        ratio = sdk.cpu_ms / ours.cpu_ms if sdk.messages and ours.messages else None
        rows.append(Row(name, _fmt_cpu(ours), _fmt_cpu(sdk), ratio, "-", None))
    low = checks["memory-rate"]
    rows.append(Row(f"max sends/1 s at {LOW_RATE:.0f}/s limit", str(low.max_sliding), f"{LOW_RATE:.0f} (cfg)",
                    low.max_sliding / LOW_RATE, f"≤ {LOW_RATE:.0f}",
                    low.max_sliding <= LOW_RATE and not limited.problems))
    return rows


if __name__ == "__main__":
    if "--simulator" in sys.argv:
        _simulator_main()
    elif "--sdk" in sys.argv:
        _sdk_main()
    elif "--container" in sys.argv:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        _container_main()
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from common import print_summary

        print_summary(run())
