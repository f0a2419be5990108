"""Fault injection for the simulator's ``/gateway.do``: latency, ``20000``, rate errors, timeouts and fatal errors.

Configure at runtime with ``FaultInjector.configure(**fields)`` (or ``AlipaySimulator.set_faults`` / HTTP
``POST /sim/faults``). Each request to a method in scope gets one ``FaultDecision``:

- ``latency_ms`` (+ uniform ``0..jitter_ms``) is slept before the request is handled, outside every lock.
- At most one fault, drawn with the rates ``fatal_rate``, ``rate_limit_rate``, ``unknown_error_rate``,
  ``timeout_rate`` (their sum must be <= 1):
  - ``unknown_error``: ``20000 isp.unknow-error``. Alipay's outcome is unknown on a 20000, so a share
    ``unknown_error_delivered_share`` (default 0.5) of them is still executed (the message is delivered,
    the coupon issued) before the 20000 is answered; the rest are not executed.
  - ``rate_limited``: Alipay's documented rate-limit answer, code ``40005`` "Call Limited" with sub_code
    ``isv.app-call-limited`` (Alipay's common error codes: 40005 isv.app-call-limited /
    isv.method-call-limited). Nothing is executed. ``rate_limit_code``/``rate_limit_sub_code`` override it.
  - ``timeout``: the request sleeps ``timeout_s`` (default 20 s, longer than lifelink's 15 s client timeout)
    before answering. A share ``timeout_delivered_share`` (default 0.5) is executed *before* the sleep
    (the message arrives, only the answer is lost: a retry then sees a duplicate / idempotent replay); the
    rest are not executed and, if anyone still listens, answered ``20000``.
  - ``fatal``: ``40006 isv.insufficient-isv-permissions`` by default (``fatal_code``/``fatal_sub_code``
    override it), nothing executed; lifelink.alipay.errors classifies it as fatal.
- Scope: ``methods`` (default: every outbound method in ``sim_methods.OUTBOUND_METHODS``; follow.query and
  others are never touched unless listed).

Determinism: with a ``seed``, each decision is a hash of (seed, app, method, biz_content, how many times this
exact request was seen before), so a seeded run makes the same decisions whatever the order in which
concurrent requests arrive; a retry of the same content draws afresh. Without a seed the draws are random.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any

DEFAULT_TIMEOUT_S = 20.0


class Fault(StrEnum):
    UNKNOWN_ERROR = "unknown_error"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    FATAL = "fatal"


@dataclass(frozen=True)
class FaultConfig:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    unknown_error_rate: float = 0.0
    unknown_error_delivered_share: float = 0.5
    rate_limit_rate: float = 0.0
    rate_limit_code: str = "40005"
    rate_limit_sub_code: str = "isv.app-call-limited"
    timeout_rate: float = 0.0
    timeout_s: float = DEFAULT_TIMEOUT_S
    timeout_delivered_share: float = 0.5
    fatal_rate: float = 0.0
    fatal_code: str = "40006"
    fatal_sub_code: str = "isv.insufficient-isv-permissions"
    seed: int | None = None
    methods: tuple[str, ...] | None = None  # None: the default outbound methods

    def validate(self) -> None:
        for name in ("latency_ms", "jitter_ms", "timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        rates = ("unknown_error_rate", "rate_limit_rate", "timeout_rate", "fatal_rate")
        shares = ("unknown_error_delivered_share", "timeout_delivered_share")
        for name in rates + shares:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if sum(getattr(self, name) for name in rates) > 1.0 + 1e-9:
            raise ValueError("the fault rates add up to more than 1")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["methods"] = None if self.methods is None else list(self.methods)
        return data


FIELD_NAMES = frozenset(f.name for f in fields(FaultConfig))


@dataclass(frozen=True)
class FaultDecision:
    latency_s: float = 0.0
    fault: Fault | None = None
    execute: bool = True  # run the method (deliver) despite the fault
    code: str | None = None
    sub_code: str | None = None
    msg: str | None = None
    sub_msg: str | None = None
    sleep_after_s: float = 0.0  # timeouts: sleep after executing, before answering


NO_FAULT = FaultDecision()

_MESSAGES: dict[Fault, tuple[str, str]] = {
    Fault.UNKNOWN_ERROR: ("Service Currently Unavailable", "系统繁忙"),
    Fault.RATE_LIMITED: ("Call Limited", "应用调用次数超限，包含调用频率超限"),
    Fault.FATAL: ("Insufficient Permissions", "ISV权限不足，建议在开发者中心检查签约是否已经生效"),
}


def _uniforms(*parts: str) -> tuple[float, float, float]:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=24).digest()
    return tuple(int.from_bytes(digest[i : i + 8], "big") / 2**64 for i in (0, 8, 16))  # type: ignore[return-value]


def _pick(u: float, rates: tuple[tuple[Fault, float], ...]) -> Fault | None:
    edge = 0.0
    for fault, rate in rates:
        edge += rate
        if u < edge:
            return fault
    return None


class FaultInjector:
    """Thread-safe holder of the fault configuration; ``decide`` is cheap and holds its lock briefly."""

    def __init__(self, default_methods: Iterable[str]) -> None:
        self.default_methods = frozenset(default_methods)
        self._lock = threading.Lock()
        self._config = FaultConfig()
        self._seen: Counter[str] = Counter()
        self._tally: Counter[str] = Counter()
        self._stopping = threading.Event()

    # -- configuration ----------------------------------------------------------------------------------
    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def configure(self, *, reset: bool = False, **changes: Any) -> FaultConfig:
        """Change some fields (``reset=True`` starts from the defaults). Raises ValueError on bad input."""
        unknown = set(changes) - FIELD_NAMES
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        if "methods" in changes and changes["methods"] is not None:
            methods = changes["methods"]
            if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
                raise ValueError("methods must be a list of method names")
            changes["methods"] = tuple(methods)
        for name, value in changes.items():
            if name.endswith(("_rate", "_share", "_ms", "_s")):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name} must be a number")
                changes[name] = float(value)
            elif name == "seed" and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError("seed must be an integer or null")
            elif name.endswith(("_code", "_sub_code")) and not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
        with self._lock:
            new = replace(FaultConfig() if reset else self._config, **changes)
            new.validate()
            if reset or "seed" in changes:
                self._seen.clear()
            self._config = new
            return new

    def clear(self) -> FaultConfig:
        return self.configure(reset=True)

    def tally(self) -> dict[str, int]:
        """How many requests got each fault (and ``executed:<fault>`` for those still executed)."""
        with self._lock:
            return dict(self._tally)

    # -- stopping (interrupts timeout sleeps) ------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- decisions ------------------------------------------------------------------------------------------
    def in_scope(self, method: str, config: FaultConfig) -> bool:
        return method in (self.default_methods if config.methods is None else config.methods)

    def decide(self, app_id: str, method: str, biz: Mapping[str, Any] | str | None) -> FaultDecision:
        with self._lock:
            config = self._config
            if not self.in_scope(method, config):
                return NO_FAULT
            if config.seed is None:
                u = _uniforms(secrets.token_hex(16))
            else:
                text = biz if isinstance(biz, str) else json.dumps(biz, sort_keys=True, ensure_ascii=False)
                key = f"{app_id}\x1f{method}\x1f{text}"
                nth = self._seen[key]
                self._seen[key] = nth + 1
                u = _uniforms(str(config.seed), key, str(nth))
            decision = self._draw(config, u)
            if decision.fault is not None:
                self._tally[decision.fault.value] += 1
                if decision.execute:
                    self._tally[f"executed:{decision.fault.value}"] += 1
            return decision

    @staticmethod
    def _draw(config: FaultConfig, u: tuple[float, float, float]) -> FaultDecision:
        pick, share, jitter = u
        latency_s = (config.latency_ms + jitter * config.jitter_ms) / 1000.0
        fault = _pick(
            pick,
            (
                (Fault.FATAL, config.fatal_rate),
                (Fault.RATE_LIMITED, config.rate_limit_rate),
                (Fault.UNKNOWN_ERROR, config.unknown_error_rate),
                (Fault.TIMEOUT, config.timeout_rate),
            ),
        )
        if fault is None:
            return FaultDecision(latency_s=latency_s) if latency_s else NO_FAULT
        if fault is Fault.FATAL:
            msg, sub_msg = _MESSAGES[fault]
            return FaultDecision(latency_s, fault, False, config.fatal_code, config.fatal_sub_code, msg, sub_msg)
        if fault is Fault.RATE_LIMITED:
            msg, sub_msg = _MESSAGES[fault]
            return FaultDecision(
                latency_s, fault, False, config.rate_limit_code, config.rate_limit_sub_code, msg, sub_msg
            )
        msg, sub_msg = _MESSAGES[Fault.UNKNOWN_ERROR]
        if fault is Fault.UNKNOWN_ERROR:
            execute = share < config.unknown_error_delivered_share
            return FaultDecision(latency_s, fault, execute, "20000", "isp.unknow-error", msg, sub_msg)
        execute = share < config.timeout_delivered_share
        return FaultDecision(
            latency_s, fault, execute, "20000", "isp.unknow-error", msg, sub_msg, sleep_after_s=config.timeout_s
        )
