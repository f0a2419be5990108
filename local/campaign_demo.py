"""`make run`'s demo campaign: apply local/demo/campaign.yaml to the demo apps and watch it move through its phases.

Applying goes through the internal API (``POST /campaigns``, SigV4-signed, via the local HTTP front) when the
template routes it, else straight through the campaign store and :class:`lifelink.scheduling.CampaignSchedules`
(the same calls the API makes). Either way the boundaries become EventBridge Scheduler ``at()`` schedules in
moto, which the local ticker fires at their time into the campaign scheduler function.

:class:`CampaignWatch` prints, as they happen: schedules fired by the ticker, state changes, actions fired (with
their counts), jobs put on the outbound queue and what the message gateway did with them.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import boto3
import yaml

from lifelink.domain.campaigns import TERMINAL_STATES, Campaign, CampaignState

if TYPE_CHECKING:
    from lifelink_local.stack import LocalStack
    from lifelink_local.ticker import Firing

DEMO_FILE = Path(__file__).resolve().parent / "demo" / "campaign.yaml"
TIME_SCALE_ENV = "LIFELINK_DEMO_TIME_SCALE"
TIME_KEYS = ("start", "end", "at")
# The journey's followers of the demo life account (user 3 unfollowed): they reserve in the early-bird action as
# soon as preheat opens, so the settle draw has a pool.
RESERVING_USERS = ("2088102100000001", "2088102100000002")


def time_scale() -> float:
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    scale = float(raw)
    if scale <= 0:
        raise ValueError(f"{TIME_SCALE_ENV} must be positive")
    return scale


def _offset(value: str) -> timedelta | None:
    text = value.strip()
    if not (text.startswith("+") and text.endswith("s")):
        return None
    return timedelta(seconds=float(text[1:-1]))


def load_definition(now: datetime, scale: float = 1.0, path: Path = DEMO_FILE) -> dict[str, Any]:
    """The demo definition with every ``"+Ns"`` time replaced by ``now + N × scale`` seconds (whole seconds, in the
    campaign's time zone)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    zone = ZoneInfo(str(data.get("timezone", "Asia/Shanghai")))
    origin = now.astimezone(zone).replace(microsecond=0)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                offset = _offset(value) if key in TIME_KEYS and isinstance(value, str) else None
                out[key] = (origin + offset * scale).replace(microsecond=0).isoformat() if offset else walk(value)
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(data)


def template_ids(definition: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("template_id"), str):
                found.add(node["template_id"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(definition)
    return found


@dataclass
class Applied:
    campaign: Campaign
    via: str  # "api" | "store"
    status: int | None
    answer: Any


def apply_demo(stack: LocalStack, now: datetime | None = None) -> Applied:
    """Register the demo's template at the simulator, then apply the campaign (API if routed, else store)."""
    assert stack.provisioned is not None and stack.sim is not None and stack.front is not None
    definition = load_definition(now or datetime.now(UTC), time_scale())
    campaign = Campaign.model_validate(definition)
    for template_id in template_ids(definition):
        stack.sim.register_template(campaign.life_account, template_id)
    for coupon in campaign.coupons.values():  # coupon jobs may go out under the life account or a mini program
        for app_id in (campaign.life_account, *campaign.mini_programs):
            stack.sim.register_activity(app_id, coupon.activity_id, coupon.stock)
    if _routed(stack, "POST", "/campaigns"):
        from botocore.credentials import Credentials

        from lifelink_local.api_client import ApiClient

        with ApiClient(stack.front.url, Credentials("local", "local"), stack.provisioned.region) as api:
            answer = api.request("POST", "/campaigns", definition)
        return Applied(campaign, "api", answer.status, answer.body)
    return _apply_directly(stack, campaign)


def _routed(stack: LocalStack, method: str, path: str) -> bool:
    assert stack.provisioned is not None
    return any(r.method == method and r.path == path for r in stack.provisioned.http_routes())


def reserve(stack: LocalStack, campaign: Campaign, action_id: str, user: str) -> str:
    """One early-bird reservation, as the mini program's backend makes it: ``POST /campaigns/{id}/reservations``
    when routed, else the participation store (what that route calls). Returns a short description."""
    assert stack.provisioned is not None and stack.front is not None
    if _routed(stack, "POST", "/campaigns/{campaign_id}/reservations"):
        from botocore.credentials import Credentials

        from lifelink_local.api_client import ApiClient, path_part

        with ApiClient(stack.front.url, Credentials("local", "local"), stack.provisioned.region) as api:
            answer = api.request("POST", f"/campaigns/{path_part(campaign.id)}/reservations",
                                 {"action": action_id, "user": {"user_id": user}})
        body = answer.body if isinstance(answer.body, dict) else {}
        if not answer.ok:
            return f"refused ({answer.status}: {'; '.join(e.get('msg', '') for e in answer.errors())})"
        return f"{body.get('result', 'reserved')} (coupon {body.get('coupon') or '-'})"
    from lifelink.domain.messages import Recipient
    from lifelink.store.audience import Audience
    from lifelink.store.campaigns import CampaignStore
    from lifelink.store.ledger import Ledger
    from lifelink.store.participation import Participation

    table, ddb = stack.provisioned.tables["StateTable"], boto3.client("dynamodb")
    stored = CampaignStore(ddb, table).get(campaign.id)
    assert stored is not None
    participation = Participation(ddb, table, sqs=boto3.client("sqs"),
                                  queue_url=stack.provisioned.queues["OutboundQueue"],
                                  audience=Audience(ddb, table), ledger=Ledger(ddb, table))
    grant = participation.reserve(campaign, action_id, Recipient(user_id=user), datetime.now(UTC),
                                  state=stored.state)
    return f"{'reserved' if grant.created else 'already_reserved'} (coupon {grant.coupon or '-'})"


def _apply_directly(stack: LocalStack, campaign: Campaign) -> Applied:
    """What ``POST /campaigns`` does, without its checks: store, schedules, draft → scheduled."""
    from lifelink.scheduling import CampaignSchedules
    from lifelink.store.campaigns import CampaignStore

    assert stack.provisioned is not None
    env = stack.provisioned.function_environment("InternalApiFunction")
    store = CampaignStore(boto3.client("dynamodb"), stack.provisioned.tables["StateTable"])
    store.put(campaign)
    result = CampaignSchedules(
        boto3.client("scheduler"), env["SCHEDULER_TARGET_ARN"], env["SCHEDULER_ROLE_ARN"]
    ).create_for(campaign)
    store.transition(campaign.id, CampaignState.draft, CampaignState.scheduled)
    return Applied(campaign, "store", None, {"schedules": [*result.created, *result.updated, *result.kept]})


# --------------------------------------------------------------------------- watching


@dataclass
class CampaignWatch:
    """Polls the campaign's state and fired actions and the stack's queue taps; ``say`` gets one line per change."""

    stack: LocalStack
    campaign: Campaign
    say: Callable[[str], None] = print
    interval_s: float = 0.25
    lines: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _fired: set[str] = field(default_factory=set)
    _reserved: bool = False
    _jobs: Counter[str] = field(default_factory=Counter)
    _outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    _started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def emit(self, text: str) -> None:
        clock = datetime.now(ZoneInfo(self.campaign.timezone)).strftime("%H:%M:%S")
        line = f"  [{clock}] {text}"
        with self._lock:
            self.lines.append(line)
        self.say(line)

    def on_fire(self, firing: Firing) -> None:
        """The ticker's hook: a schedule of this campaign was delivered."""
        if firing.group != f"lifelink-{self.campaign.id}" and firing.kind != "rate":
            return
        if firing.kind == "rate":
            return  # the reconciler runs every five minutes; it shows up as the changes it makes
        outcome = "delivered" if firing.ok else f"failed ({firing.error})"
        self.emit(f"schedule {firing.name} fired ({firing.event.get('boundary')}): {outcome}")

    def start(self) -> CampaignWatch:
        self._thread = threading.Thread(target=self._run, name="campaign-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        from lifelink.store.campaigns import CampaignStore

        assert self.stack.provisioned is not None
        store = CampaignStore(boto3.client("dynamodb"), self.stack.provisioned.tables["StateTable"])
        while not self._stop.is_set():
            try:
                self._poll(store)
            except Exception as exc:  # keep watching; the stack may be busy
                self.emit(f"(watch: {exc!r})")
            if self.finished.is_set():
                self._poll(store)
                return
            self._stop.wait(self.interval_s)

    def _poll(self, store: Any) -> None:
        stored = store.get(self.campaign.id)
        if stored is None:
            return
        state = str(stored.state.value if hasattr(stored.state, "value") else stored.state)
        if not self.states or self.states[-1] != state:
            before = self.states[-1] if self.states else None
            self.states.append(state)
            self.emit(f"campaign {self.campaign.id}: {before + ' → ' if before else ''}{state}")
        if state == CampaignState.preheat.value and not self._reserved:
            self._reserved = True
            self._reserve_early_birds()
        for key, record in sorted(store.fired_records(self.campaign.id).items()):
            if record.status == "done" and key not in self._fired:
                self._fired.add(key)
                counts = ", ".join(f"{k} {v}" for k, v in sorted(record.result.items())) or "nothing to send"
                self.emit(f"action {key} fired: {counts}")
        self._watch_queues()
        if CampaignState(state) in TERMINAL_STATES:
            self.finished.set()

    def _reserve_early_birds(self) -> None:
        """The followers reserve in each early-bird action while preheat is open (the draw's pool)."""
        for _, action in self.campaign.actions():
            if action.type != "early_bird":
                continue
            for user in RESERVING_USERS:
                try:
                    said = reserve(self.stack, self.campaign, action.id, user)
                except Exception as exc:
                    said = f"failed ({exc!r})"
                self.emit(f"reservation {action.id} by user …{user[-4:]}: {said}")

    def _watch_queues(self) -> None:
        jobs: Counter[str] = Counter()
        for body in self.stack.tap.bodies("OutboundQueue"):
            job = _json(body)
            if job.get("campaign") == self.campaign.id:
                jobs[f"{job.get('phase')} {job.get('channel')}"] += 1
        for key, n in sorted(jobs.items()):
            if n > self._jobs[key]:
                self.emit(f"jobs on the outbound queue: {key} ×{n}")
                self._jobs[key] = n
        outcomes: Counter[tuple[str, str]] = Counter()
        for body in self.stack.tap.bodies("EventsQueue"):
            event = _json(body)
            if event.get("type") == "message_outcome" and event.get("campaign") == self.campaign.id:
                why = f" ({event['reason']})" if event.get("reason") else ""
                outcomes[(f"{event.get('phase')} {event.get('channel')}", f"{event.get('status')}{why}")] += 1
        for (phase, status), n in sorted(outcomes.items()):
            if n > self._outcomes[(phase, status)]:
                self.emit(f"message gateway: {phase} {status} ×{n}")
                self._outcomes[(phase, status)] = n

    def summary(self) -> list[str]:
        """What the campaign did, for the closing note."""
        with self._lock:
            fired = sorted(self._fired)
            jobs = dict(self._jobs)
            outcomes = dict(self._outcomes)
        out = [f"states: {' → '.join(self.states)}", f"actions fired: {', '.join(fired) or 'none'}",
               f"schedule group lifelink-{self.campaign.id}: {self._group_state()}"]
        out += [f"jobs {key}: {n}" for key, n in sorted(jobs.items())]
        out += [f"outcomes {phase} {status}: {n}" for (phase, status), n in sorted(outcomes.items())]
        return out


    def _group_state(self) -> str:
        from botocore.exceptions import ClientError

        try:
            boto3.client("scheduler").get_schedule_group(Name=f"lifelink-{self.campaign.id}")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return "removed"
            return f"unknown ({exc})"
        return "still there"


def _json(body: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
