"""The local stand-in for EventBridge Scheduler's delivery: moto stores schedules but never fires them.

Each tick the :class:`SchedulerTicker`

- lists the schedule groups and their schedules in moto's Scheduler API (the same schedules the code creates on
  AWS), reads each one (``GetSchedule``: expression, time zone, target, input), and fires every enabled
  ``at()`` schedule whose time has come, oldest first, by calling the handler mapped to its target ARN with the
  schedule's ``Input`` as the raw event, as Scheduler does; afterwards an ``at()`` schedule with
  ``ActionAfterCompletion`` DELETE is deleted, one without it is remembered as done (it never fires again);
- fires ``rate()`` schedules every period: the template's ``ScheduleV2`` events (SAM creates those on deploy, so
  moto never holds them; see :meth:`lifelink_local.provision.Provisioned.schedule_events`) and any ``rate()``
  schedule found in moto, the first one period after the ticker first sees it.

A delivery whose handler raises is retried on later ticks, up to ``max_attempts`` (Scheduler retries too).
``cron()`` expressions are not fired locally (logged once). Time comes from ``clock`` (inject one in tests);
:class:`ScaledClock` runs faster than the wall clock for demos.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Invoke = Callable[[dict[str, Any]], Any]

_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def utc_now() -> datetime:
    return datetime.now(UTC)


class ScaledClock:
    """Wall-clock time sped up ``speed`` times from the moment it is made (``speed=1``: the wall clock)."""

    def __init__(self, speed: float = 1.0, base: Clock = utc_now) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._base = base
        self._origin = base()

    def __call__(self) -> datetime:
        return self._origin + (self._base() - self._origin) * self.speed


def parse_at(expression: str, timezone: str | None) -> datetime | None:
    """``at(2026-11-25T08:01:00)`` in ``timezone`` (UTC if none) as an aware time; None if not an at()."""
    match = _AT.match(expression.strip())
    if match is None:
        return None
    return datetime.fromisoformat(match.group(1)).replace(tzinfo=ZoneInfo(timezone or "UTC"))


def parse_rate(expression: str) -> timedelta | None:
    """``rate(5 minutes)`` as a period; None if not a rate()."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    unit = match.group(2).removesuffix("s")
    return timedelta(seconds=int(match.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class RateSchedule:
    """A recurring schedule the ticker owns (e.g. a template ScheduleV2 event): fire ``target`` every period."""

    name: str
    target_arn: str
    expression: str
    input: str | None = None

    @property
    def period(self) -> timedelta:
        period = parse_rate(self.expression)
        if period is None:
            raise ValueError(f"{self.name}: only rate() expressions fire locally, not {self.expression!r}")
        return period


@dataclass(frozen=True)
class Firing:
    """One delivery the ticker made."""

    group: str
    name: str
    kind: str  # "at" | "rate"
    due: datetime
    fired_at: datetime
    event: dict[str, Any]
    ok: bool
    result: Any = None
    error: str | None = None


@dataclass
class _Due:
    due: datetime
    group: str
    name: str
    kind: str
    target_arn: str
    input: str | None
    delete_after: bool = False
    key: tuple[str, ...] = ()


@dataclass
class _RateState:
    next_due: datetime
    period: timedelta


@dataclass
class SchedulerTicker:
    """Fires the schedules held in (moto's) EventBridge Scheduler and the template's rate() schedules.

    ``targets`` maps a target ARN to the callable that plays that Lambda function (it takes the raw event).
    ``on_fire`` sees every :class:`Firing` (the demo prints them). ``tick()`` is one pass; ``start()`` runs passes
    every ``interval_s`` wall-clock seconds on a daemon thread until ``stop()``.
    """

    scheduler: Any
    targets: dict[str, Invoke]
    rates: list[RateSchedule] = field(default_factory=list)
    clock: Clock = utc_now
    interval_s: float = 1.0
    max_attempts: int = 3
    on_fire: Callable[[Firing], None] | None = None
    fired: list[Firing] = field(default_factory=list)
    _done: set[tuple[str, ...]] = field(default_factory=set)
    _attempts: dict[tuple[str, ...], int] = field(default_factory=dict)
    _rate_state: dict[tuple[str, ...], _RateState] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # ---- one pass ---------------------------------------------------------------------------------------

    def tick(self) -> list[Firing]:
        """Fire everything due now, oldest first; returns what fired in this pass."""
        with self._lock:
            now = self.clock()
            due = [*self._due_in_scheduler(now), *self._due_rates(self._template_rates(), now)]
            due.sort(key=lambda d: (d.due, d.group, d.name))
            return [firing for item in due if (firing := self._fire(item, now)) is not None]

    def _template_rates(self) -> Iterable[tuple[tuple[str, ...], str, str, str, str | None, str]]:
        for rate in self.rates:
            yield ("template", rate.name), "template", rate.name, rate.expression, rate.input, rate.target_arn

    def _due_rates(self, rates: Iterable[Any], now: datetime) -> list[_Due]:
        out = []
        for key, group, name, expression, payload, target in rates:
            period = parse_rate(expression)
            if period is None:
                self._warn(f"{group}/{name}", f"{expression!r} does not fire locally (only at() and rate())")
                continue
            state = self._rate_state.get(key)
            if state is None or state.period != period:
                self._rate_state[key] = _RateState(next_due=now + period, period=period)
                continue
            if state.next_due <= now:
                out.append(_Due(state.next_due, group, name, "rate", target, payload, key=key))
        return out

    def _due_in_scheduler(self, now: datetime) -> list[_Due]:
        out: list[_Due] = []
        found_rates = []
        seen: set[tuple[str, ...]] = set()
        for group in self._groups():
            for summary in self._schedules(group):
                name = str(summary["Name"])
                try:
                    schedule = self.scheduler.get_schedule(Name=name, GroupName=group)
                except ClientError as exc:  # deleted since it was listed
                    if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                        continue
                    raise
                if str(schedule.get("State", "ENABLED")) != "ENABLED":
                    continue
                expression = str(schedule.get("ScheduleExpression", ""))
                target = schedule.get("Target") or {}
                key = (group, name, expression, str(schedule.get("LastModificationDate", "")))
                seen.add(key)
                at = parse_at(expression, schedule.get("ScheduleExpressionTimezone"))
                if at is not None:
                    if at <= now and key not in self._done:
                        delete = str(schedule.get("ActionAfterCompletion") or "NONE") == "DELETE"
                        out.append(_Due(at, group, name, "at", str(target.get("Arn", "")), target.get("Input"),
                                        delete_after=delete, key=key))
                    continue
                found_rates.append(
                    ((group, name), group, name, expression, target.get("Input"), str(target.get("Arn", "")))
                )
        self._done &= seen | {k for k in self._done if k[0] == "template"}
        return out + self._due_rates(found_rates, now)

    def _groups(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self.scheduler.list_schedule_groups(**kwargs)
            names += [str(g["Name"]) for g in page.get("ScheduleGroups", [])]
            if not page.get("NextToken"):
                return names
            kwargs["NextToken"] = page["NextToken"]

    def _schedules(self, group: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"GroupName": group}
        try:
            while True:
                page = self.scheduler.list_schedules(**kwargs)
                found += [s for s in page.get("Schedules", []) if s.get("GroupName", group) == group]
                if not page.get("NextToken"):
                    return found
                kwargs["NextToken"] = page["NextToken"]
        except ClientError as exc:  # the group went away meanwhile
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return found
            raise

    # ---- delivery ---------------------------------------------------------------------------------------

    def _fire(self, item: _Due, now: datetime) -> Firing | None:
        invoke = self.targets.get(item.target_arn)
        if invoke is None:
            self._warn(item.target_arn, f"{item.group}/{item.name}: no local function for target {item.target_arn}")
            self._settle(item, now)
            return None
        try:
            event = json.loads(item.input) if item.input else {}
        except ValueError:
            event = {"raw": item.input}
        try:
            result = invoke(event)
            firing = Firing(item.group, item.name, item.kind, item.due, now, event, ok=True, result=result)
        except Exception as exc:
            log.exception("ticker: %s/%s failed", item.group, item.name)
            firing = Firing(item.group, item.name, item.kind, item.due, now, event, ok=False, error=repr(exc))
            attempts = self._attempts.get(item.key, 0) + 1
            self._attempts[item.key] = attempts
            if attempts < self.max_attempts:
                self._record(firing)
                return firing  # due again on the next tick
        self._settle(item, now)
        self._record(firing)
        return firing

    def _settle(self, item: _Due, now: datetime) -> None:
        self._attempts.pop(item.key, None)
        if item.kind == "rate":
            state = self._rate_state[item.key]
            state.next_due += state.period
            if state.next_due <= now:  # missed periods are not made up, as Scheduler would not
                state.next_due = now + state.period
            return
        self._done.add(item.key)
        if item.delete_after:
            try:
                self.scheduler.delete_schedule(Name=item.name, GroupName=item.group)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise

    def _record(self, firing: Firing) -> None:
        self.fired.append(firing)
        if self.on_fire is not None:
            try:
                self.on_fire(firing)
            except Exception:
                log.exception("ticker: on_fire failed")

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("ticker: %s", message)

    # ---- thread -----------------------------------------------------------------------------------------

    def start(self) -> SchedulerTicker:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="scheduler-ticker", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("ticker: pass failed")
            self._stop.wait(self.interval_s)
