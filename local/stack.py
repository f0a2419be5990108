"""`make run`: the whole system on loopback, on the embedded default.

    moto's server (AWS APIs)        127.0.0.1:$LIFELINK_MOTO_PORT   (5000)
    HTTP front (API Gateway)        127.0.0.1:$LIFELINK_API_PORT    (3000)
    Alipay simulator                127.0.0.1:$LIFELINK_ALIPAY_PORT (3001)
    SQS pollers                     one per SQS event source in template.yaml
    Scheduler ticker                fires the EventBridge Scheduler schedules held in moto, and the
                                    template's ScheduleV2 rate() events ($LIFELINK_TICKER_SPEED, default 1)

Tables and queues come from template.yaml itself; functions get the environment the template gives them.
Keys are generated once into .lifelink/, and .lifelink/local.json describes the stack for clients.

Once up, it plays the seed playbook demo (lifelink_local.playbook: ``--users``, ``--speed``, ``--seed``; ``--no-demo``
skips it), prints the summary, writes .lifelink/report.html and keeps serving until Ctrl-C (``--exit`` stops).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from lifelink.store.apps import DEFAULT_SECRET_PREFIX, AppRecord, AppRegistry
from lifelink_local import localconf
from lifelink_local.front import Front
from lifelink_local.handlers import load_function
from lifelink_local.keys import ensure_pair
from lifelink_local.motoserver import MotoServer
from lifelink_local.pollers import PollerGroup, SqsPoller
from lifelink_local.provision import FUNCTION, Provisioned, provision
from lifelink_local.simulator import LOCAL_TIME_SCALE, AlipaySimulator
from lifelink_local.ticker import RateSchedule, ScaledClock, SchedulerTicker

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
TICKER_SPEED_ENV = "LIFELINK_TICKER_SPEED"


@dataclass(frozen=True)
class DemoApp:
    app_id: str
    kind: str
    name: str
    life_account: str | None = None
    seller_id: str | None = None
    welcome: dict[str, Any] | None = None


WELCOME_TEMPLATE = "TM_WELCOME_SILVER"
DEMO_WELCOME = {
    "template_id": WELCOME_TEMPLATE,
    "head_color": "#1677ff",
    "url": "alipays://platformapi/startapp?appId=2021004100000002&page=pages%2Fmember%2Findex",
    "action_name": "领取银卡会员",
    "first": {"value": "欢迎关注！"},
    "keywords": [{"value": "银卡会员"}, {"value": "关注即送"}],
    "remark": {"value": "点击进入小程序领取"},
}

DEMO_APPS = (
    DemoApp("2021004100000001", "life", "demo life account", seller_id="2088000000000001", welcome=DEMO_WELCOME),
    DemoApp("2021004100000002", "mini", "demo mini program", life_account="2021004100000001",
            seller_id="2088000000000001"),
    DemoApp("2021004100000003", "mini", "demo live-stream mini program", life_account="2021004100000001",
            seller_id="2088000000000001"),
)


class EventTap:
    """Local-only wiretap: every SQS message a consumer is handed, by queue, so the demo can show what flowed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, str]] = {}

    def wrap(self, queue_id: str, fn: Any) -> Any:
        def tapped(event: dict[str, Any]) -> Any:
            with self._lock:
                box = self._seen.setdefault(queue_id, {})
                for record in event.get("Records", []):
                    box.setdefault(record["messageId"], record["body"])
            return fn(event)

        return tapped

    def bodies(self, queue_id: str) -> list[str]:
        """Distinct messages (by SQS message id) handed to the consumer of ``queue_id``."""
        with self._lock:
            return list(self._seen.get(queue_id, {}).values())


@dataclass
class LocalStack:
    state_dir: Path
    moto_port: int | None = None
    api_port: int | None = None
    alipay_port: int | None = None
    log_level: str = "WARNING"
    time_scale: float = LOCAL_TIME_SCALE
    moto_process: bool = False  # moto's server in a child process: its CPU on another core (make run, demo)
    moto: MotoServer | None = None
    sim: AlipaySimulator | None = None
    front: Front | None = None
    pollers: PollerGroup = field(default_factory=PollerGroup)
    tap: EventTap = field(default_factory=lambda: EventTap())
    provisioned: Provisioned | None = None
    conf: dict[str, Any] = field(default_factory=dict)
    ticker: SchedulerTicker | None = None
    _invokers: dict[str, Any] = field(default_factory=dict)
    _invoke_lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        self.moto = MotoServer(self.moto_port, process=self.moto_process)
        endpoint = self.moto.start()
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",  # noqa: S106 - moto accepts any credentials
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
        )
        os.environ.pop("AWS_PROFILE", None)
        if self.log_level != "INFO":  # EMF lines are for CloudWatch; locally they drown the story (-v shows them)
            os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        alipay = ensure_pair(self.state_dir, "alipay")
        self.sim = AlipaySimulator(alipay.private.read_text(), port=self.alipay_port, time_scale=self.time_scale)
        self.sim.start()
        self.provisioned = provision(
            TEMPLATE, parameters={"LogLevel": self.log_level, "AlipayGatewayUrl": self.sim.gateway_url}
        )
        self.front = Front(self._routes(), self.api_port)
        self.front.start()
        self._start_pollers()
        self._start_ticker()
        apps = self._register_apps(alipay.public.read_text())
        self.conf = {
            "api_url": self.front.url,
            "alipay_gateway_url": self.sim.gateway_url,
            "aws_endpoint_url": endpoint,
            "region": REGION,
            "alipay_private_key_file": str(alipay.private.resolve()),
            "alipay_public_key_file": str(alipay.public.resolve()),
            "state_table": self.provisioned.tables["StateTable"],
            "events_queue_url": self.provisioned.queues["EventsQueue"],
            "events_dlq_url": self.provisioned.queues["EventsDLQ"],
            "app_secret_prefix": DEFAULT_SECRET_PREFIX,
            "queues": self._queue_pairs(),
            "webhook": {
                "gateway_url": f"{self.front.url}/alipay/gateway",
                "notify_url": f"{self.front.url}/alipay/notify",
            },
            "apps": apps,
        }
        localconf.save(self.conf, self.state_dir)
        return self

    def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()
        self.pollers.stop()
        for part in (self.front, self.sim, self.moto):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()

    # -- parts ----------------------------------------------------------------------------------------
    def _routes(self) -> list[tuple[str, str, Any, str | None]]:
        assert self.provisioned is not None
        specs = []
        for route in self.provisioned.http_routes():
            fn = load_function(
                route.handler_file,
                env=self.provisioned.function_environment(route.function_id),
                handler_name=route.handler_name,
                function_name=route.function_id,
            )
            specs.append((route.method, route.path, fn, route.auth))
        return specs

    def _start_pollers(self) -> None:
        assert self.provisioned is not None
        sqs = boto3.client("sqs")
        for mapping in self.provisioned.event_source_mappings():
            if not mapping.enabled:
                continue
            fn = load_function(
                mapping.handler_file,
                env=self.provisioned.function_environment(mapping.function_id),
                handler_name=mapping.handler_name,
                function_name=mapping.function_id,
            )
            self.pollers.add(
                SqsPoller(
                    sqs,
                    self.provisioned.queues[mapping.queue_id],
                    self.tap.wrap(mapping.queue_id, fn),
                    batch_size=mapping.batch_size,
                    max_batching_window_s=mapping.maximum_batching_window_s,
                    report_batch_item_failures=mapping.report_batch_item_failures,
                    name=mapping.function_id,
                )
            )
        self.pollers.start()

    def _start_ticker(self) -> None:
        """EventBridge Scheduler's deliveries: every function of the template is a target under its local ARN."""
        assert self.provisioned is not None
        provisioned = self.provisioned
        targets = {
            provisioned.function_arn(function_id): self._lazy_function(function_id)
            for function_id in provisioned.template.of_type(FUNCTION)
        }
        rates = [
            RateSchedule(f"{event.function_id}.{event.event_id}", provisioned.function_arn(event.function_id),
                         event.expression, event.input)
            for event in provisioned.schedule_events()
            if event.enabled
        ]
        speed = float(os.environ.get(TICKER_SPEED_ENV) or 1.0)
        self.ticker = SchedulerTicker(
            boto3.client("scheduler"), targets, rates=rates, clock=ScaledClock(speed), interval_s=0.5
        ).start()

    def invoke(self, function_id: str, event: dict[str, Any]) -> Any:
        """Deliver ``event`` to a function of the template as EventBridge Scheduler would (the ticker's path)."""
        assert self.provisioned is not None
        with self._invoke_lock:
            fn = self._invokers.get(function_id)
            if fn is None:
                fn = self._invokers[function_id] = self._lazy_function(function_id)
        return fn(event)

    def _lazy_function(self, function_id: str) -> Any:
        """The function's handler, loaded on first delivery (most functions are never a Scheduler target)."""
        assert self.provisioned is not None
        provisioned = self.provisioned
        loaded: list[Any] = []
        lock = threading.Lock()

        def invoke(event: dict[str, Any]) -> Any:
            with lock:
                if not loaded:
                    handler_file, handler_name = provisioned.template.handler_location(function_id)
                    loaded.append(load_function(handler_file, env=provisioned.function_environment(function_id),
                                                handler_name=handler_name, function_name=function_id))
            return loaded[0](event)

        return invoke

    def _queue_pairs(self) -> dict[str, dict[str, str]]:
        """Every queue with a dead-letter queue, by short name (EventsQueue → "events")."""
        assert self.provisioned is not None
        out = {}
        for logical in self.provisioned.queues:
            settings = self.provisioned.queue_settings(logical)
            if settings.dead_letter_queue_id:
                name = logical.removesuffix("Queue").lower()
                out[name] = {"url": settings.url, "dlq_url": self.provisioned.queues[settings.dead_letter_queue_id]}
        return out

    def _register_apps(self, alipay_public_pem: str) -> list[dict[str, Any]]:
        assert self.provisioned is not None and self.sim is not None
        registry = AppRegistry(
            boto3.client("dynamodb"), self.provisioned.tables["StateTable"], boto3.client("secretsmanager")
        )
        out = []
        for app in DEMO_APPS:
            pair = ensure_pair(self.state_dir / "apps" / app.app_id, "app")
            registry.register(
                AppRecord(
                    app_id=app.app_id,
                    kind=app.kind,  # type: ignore[arg-type]
                    secret_name=f"{DEFAULT_SECRET_PREFIX}{app.app_id}",
                    life_account=app.life_account,
                    seller_id=app.seller_id,
                    welcome=app.welcome,
                ),
                {"app_private_key": pair.private.read_text(), "alipay_public_key": alipay_public_pem},
            )
            self.sim.register_app(app.app_id, pair.public.read_text())
            if app.welcome:
                self.sim.register_template(app.app_id, app.welcome["template_id"])
            out.append(
                {
                    "app_id": app.app_id,
                    "kind": app.kind,
                    "name": app.name,
                    "life_account": app.life_account,
                    "app_private_key_file": str(pair.private.resolve()),
                    "app_public_key_file": str(pair.public.resolve()),
                    "alipay_public_key_file": str((self.state_dir / "alipay_public_key.pem").resolve()),
                }
            )
        return out


def _serve_forever(stack: LocalStack) -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


def main(argv: list[str] | None = None) -> int:
    from lifelink_local.playbook.command import add_arguments, run_demo
    from lifelink_local.playbook.driver import PlaybookError

    parser = argparse.ArgumentParser(prog="make run", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--no-demo", action="store_true", help="start the stack without the playbook demo")
    parser.add_argument("--exit", action="store_true", help="exit after the demo instead of serving")
    parser.add_argument("--verbose", action="store_true", help="show the functions' INFO logs")
    parser.add_argument("--state-dir", type=Path, default=localconf.STATE_DIR)
    args = parser.parse_args(argv)

    started = time.monotonic()
    stack = LocalStack(args.state_dir, log_level="INFO" if args.verbose else "WARNING", moto_process=True)
    try:
        stack.start()
        up = time.monotonic() - started
        print(f"lifelink local stack up in {up:.1f} s")
        print(f"  API (HTTP front)    {stack.conf['api_url']}")
        print(f"  Alipay simulator    {stack.conf['alipay_gateway_url']}")
        print(f"  AWS (moto server)   {stack.conf['aws_endpoint_url']}")
        print(f"  contract            {localconf.path(args.state_dir)}", flush=True)
        ok = True
        if not args.no_demo:
            try:
                run_demo(stack, args.users, args.speed, args.seed)
            except PlaybookError:
                ok = False
        if args.exit:
            return 0 if ok else 1
        print("\nserving; Ctrl-C to stop")
        sys.stdout.flush()
        _serve_forever(stack)
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
