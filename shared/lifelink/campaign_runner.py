"""Runs campaigns: EventBridge Scheduler's boundary and reconcile inputs in, phase transitions and actions out.

``CampaignRunner.handle(event, now)`` takes ``{"kind": "boundary", "campaign_id", "boundary", "scheduled_at"}``
(one campaign) or ``{"kind": "reconcile"}`` (every live campaign) and does every step that is due at ``now``, in
order (:func:`lifelink.domain.phases.due`): a late or missed schedule is caught up, and a schedule that fires twice
or out of order finds nothing left to do. Correctness never rests on the schedule: transitions are conditional on
the state they leave, and each action is claimed before it fires and marked done after (see
:mod:`lifelink.store.campaigns` for the crash window and why a re-fire sends nothing twice).

Paused campaigns do nothing until resumed; resuming catches up, in order, the steps that came due meanwhile.
Closing or cancelling calls ``on_finished(campaign_id)`` (the scheduler function removes the schedule group).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from lifelink.campaign_actions import ACTIONS, ActionContext, WinnerPools
from lifelink.domain.audience_expr import parse
from lifelink.domain.campaigns import PHASES, TERMINAL_STATES, Campaign, CampaignState, in_holdout
from lifelink.domain.messages import OutboundJob
from lifelink.domain.phases import LIVE_STATES, Step, due, fired_key, next_step, timeline
from lifelink.domain.policy import MessagePolicy
from lifelink.store.apps import AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.campaigns import CampaignStore, StoredCampaign, campaign_audience

MAX_STEPS_PER_RUN = 200  # a runaway guard: a campaign has at most 3 phases × 20 actions + 4 steps
STOP_MARGIN_S = 30.0  # with less time left than this, stop at the next progress save (the next run continues)

TimeLeft = Callable[[], float]  # seconds this invocation has left (Lambda: context.get_remaining_time_in_millis)


class CampaignNotFound(KeyError):
    pass


class _Stopped(Exception):
    """The campaign left the live states while an action was fanning out."""


class SqsPublisher:
    """Puts jobs on the outbound queue, 10 per ``SendMessageBatch``, up to ``parallel`` calls at once; entries SQS
    refuses are retried once, then raise (the action stays claimed and the next reconcile continues from its
    cursor)."""

    def __init__(self, sqs: Any, queue_url: str, parallel: int = 8) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._parallel = parallel

    def publish_batch(self, jobs: list[OutboundJob]) -> None:
        chunks = [jobs[start : start + 10] for start in range(0, len(jobs), 10)]
        if len(chunks) <= 1 or self._parallel <= 1:
            for chunk in chunks:
                self._send(chunk)
            return
        with ThreadPoolExecutor(max_workers=min(self._parallel, len(chunks))) as pool:
            for done in [pool.submit(self._send, chunk) for chunk in chunks]:
                done.result()

    def _send(self, chunk: list[OutboundJob]) -> None:
        entries = [{"Id": str(i), "MessageBody": job.to_body()} for i, job in enumerate(chunk)]
        for _attempt in range(2):
            answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            failed = {f["Id"] for f in answer.get("Failed", [])}
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                return
        raise RuntimeError(f"outbound queue refused {len(entries)} job(s)")


class CampaignRunner:
    def __init__(
        self,
        store: CampaignStore,
        audience: Audience,
        publisher: Any,
        *,
        registry: AppRegistry | None = None,
        pools: WinnerPools | None = None,
        counters: Any = None,
        on_finished: Callable[[str], None] | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,  # type: ignore[type-arg]
    ) -> None:
        self.store = store
        self.audience = audience
        self.publisher = publisher
        self.registry = registry
        self.pools = pools
        self.counters = counters
        self.on_finished = on_finished
        self._time_left: TimeLeft | None = None
        self._log = logger or logging.getLogger("lifelink.campaigns")

    @classmethod
    def from_env(cls, on_finished: Callable[[str], None] | None = None, **kwargs: Any) -> CampaignRunner:
        """From STATE_TABLE and OUTBOUND_QUEUE_URL (template.yaml sets them; the local stack too)."""
        from lifelink.store import aws
        from lifelink.store.counters import Counters
        from lifelink.store.participation import Participation

        table, ddb = os.environ["STATE_TABLE"], aws.client("dynamodb")
        return cls(
            CampaignStore(ddb, table),
            Audience(ddb, table),
            SqsPublisher(aws.client("sqs"), os.environ["OUTBOUND_QUEUE_URL"]),
            registry=AppRegistry(ddb, table),
            pools=Participation(ddb, table),
            counters=Counters(ddb, table),
            on_finished=on_finished,
            **kwargs,
        )

    # ---- scheduler inputs -----------------------------------------------------------------------------------

    def handle(self, event: dict[str, Any], now: datetime | None = None,
               time_left: TimeLeft | None = None) -> dict[str, Any]:
        """Do what is due; returns ``{"done": {campaign_id: [step keys]}}`` (empty lists when nothing was due).

        ``time_left`` (seconds): with less than :data:`STOP_MARGIN_S` left, a fan-out stops at its next progress
        save and gives its claim up, so the next reconcile continues it instead of waiting for the lease."""
        now = now or datetime.now(UTC)
        self._time_left = time_left
        kind = event.get("kind")
        if kind == "boundary":
            campaign_id = str(event.get("campaign_id", ""))
            if self.store.get(campaign_id) is None:
                self._log.warning("boundary for an unknown campaign", extra={"campaign_id": campaign_id})
                return {"done": {}}
            return {"done": {campaign_id: self.advance(campaign_id, now)}}
        if kind == "reconcile":
            return self._reconcile(now)
        raise ValueError(f"unknown scheduler input kind {kind!r}")

    def _reconcile(self, now: datetime) -> dict[str, Any]:
        """Every live campaign; one campaign's failure does not hold the others up (it is raised afterwards, so
        the invocation fails visibly; the failed campaign is retried by the next reconcile)."""
        done: dict[str, list[str]] = {}
        failed: list[tuple[str, Exception]] = []
        for cid, state in self.store.list():
            if state not in LIVE_STATES:
                continue
            try:
                done[cid] = self.advance(cid, now)
            except Exception as exc:
                self._log.exception("campaign step failed", extra={"campaign_id": cid})
                failed.append((cid, exc))
        if failed:
            raise failed[0][1]
        return {"done": done}

    def advance(self, campaign_id: str, now: datetime) -> list[str]:
        """Every due step of one campaign, in order; the keys of the steps this call did."""
        done: list[str] = []
        for _ in range(MAX_STEPS_PER_RUN):
            if self._out_of_time():
                break
            stored = self.store.get(campaign_id)
            if stored is None:
                break
            steps = due(stored.campaign, stored.state, self.store.fired(campaign_id), now)
            if not steps:
                break
            if not self._apply(stored, steps[0], now):
                break  # somebody else moved the state, or holds the action's claim: they carry on
            done.append(steps[0].key)
        return done

    def _apply(self, stored: StoredCampaign, step: Step, now: datetime) -> bool:
        cid = stored.campaign.id
        if step.kind == "enter":
            assert step.phase is not None
            ok = self.store.transition(cid, stored.state, step.phase)
            if ok:
                self._log.info("campaign phase", extra={"campaign_id": cid, "phase": step.phase})
            return ok
        if step.kind == "close":
            ok = self.store.transition(cid, stored.state, CampaignState.closed)
            if ok:
                self._log.info("campaign closed", extra={"campaign_id": cid})
                self._finished(cid)
            return ok
        return self._fire(stored, step, now)

    def _fire(self, stored: StoredCampaign, step: Step, now: datetime) -> bool:
        assert step.phase is not None and step.action_id is not None
        cid, phase, action_id = stored.campaign.id, step.phase, step.action_id
        if not self.store.claim(cid, phase, action_id, now):
            return False
        record = self.store.fired_records(cid).get(fired_key(phase, action_id))
        found = stored.campaign.action(action_id)
        assert found is not None
        _, action = found
        ctx = self._context(stored.campaign, phase, action, now)
        ctx.cursor = record.cursor if record else None
        ctx.progress = dict(record.result) if record and record.cursor else {}

        def save_progress(cursor: str, counts: dict[str, Any]) -> None:
            self.store.save_cursor(cid, phase, action_id, cursor, now, counts)
            if self._out_of_time():
                raise _Stopped("out of time")
            current = self.store.get(cid)
            if current is None or current.state not in LIVE_STATES:
                raise _Stopped(current.state.value if current else "deleted")

        ctx.save_progress = save_progress
        try:
            result = ACTIONS[action.type].fire(ctx)
        except _Stopped as stop:
            # Paused, cancelled or out of time mid fan-out: stop; the next run continues from the cursor at once.
            self.store.release_claim(cid, phase, action_id)
            self._log.info("campaign action stopped", extra={"campaign_id": cid, "action": fired_key(phase, action_id),
                                                             "state": str(stop)})
            return False
        first = self.store.mark_fired(cid, phase, action_id, result.counts, now)
        self._log.info("campaign action fired",
                       extra={"campaign_id": cid, "action": fired_key(phase, action_id), "counts": result.counts,
                              "first": first})
        return True

    def _out_of_time(self) -> bool:
        return self._time_left is not None and self._time_left() < STOP_MARGIN_S

    def _context(self, campaign: Campaign, phase: str, action: Any, now: datetime) -> ActionContext:
        return ActionContext(
            campaign=campaign, phase=phase, action=action, now=now, audience=self.audience,
            publisher=self.publisher, store=self.store, pools=self.pools, policy_for=self._policy,
            counters=self.counters,
        )

    def _policy(self, app_id: str) -> MessagePolicy:
        record = self.registry.get(app_id) if self.registry is not None else None
        return MessagePolicy.parse(record.policy if record else None)

    def _finished(self, campaign_id: str) -> None:
        if self.on_finished is None:
            return
        try:
            self.on_finished(campaign_id)
        except Exception:  # the campaign is finished either way; the schedules expire on their own
            self._log.exception("on_finished hook failed", extra={"campaign_id": campaign_id})

    # ---- operator commands -----------------------------------------------------------------------------------

    def _get(self, campaign_id: str) -> StoredCampaign:
        stored = self.store.get(campaign_id)
        if stored is None:
            raise CampaignNotFound(campaign_id)
        return stored

    def pause(self, campaign_id: str) -> bool:
        """Pause a live campaign (True when it was live and is now paused)."""
        stored = self._get(campaign_id)
        return stored.state in LIVE_STATES and self.store.transition(campaign_id, stored.state, CampaignState.paused)

    def resume(self, campaign_id: str, now: datetime | None = None) -> bool:
        """Resume a paused campaign where it stopped, catching up what came due meanwhile (True when resumed)."""
        stored = self._get(campaign_id)
        if stored.state is not CampaignState.paused or stored.paused_from is None:
            return False
        if not self.store.transition(campaign_id, CampaignState.paused, stored.paused_from):
            return False
        self._time_left = None
        self.advance(campaign_id, now or datetime.now(UTC))
        return True

    def cancel(self, campaign_id: str) -> bool:
        """Cancel a campaign that is not closed or cancelled already (True when this call cancelled it)."""
        stored = self._get(campaign_id)
        if stored.state in TERMINAL_STATES:
            return False
        ok = self.store.transition(campaign_id, stored.state, CampaignState.cancelled)
        if ok:
            self._finished(campaign_id)
        return ok

    def status(self, campaign_id: str, now: datetime | None = None) -> dict[str, Any]:
        """State, next boundary, and each action's status and counts."""
        now = now or datetime.now(UTC)
        stored = self._get(campaign_id)
        c = stored.campaign
        records = self.store.fired_records(campaign_id)
        position = stored.paused_from or stored.state  # a paused campaign's next step is where it stopped
        upcoming = next_step(c, position, {k for k, r in records.items() if r.status == "done"}, now)
        actions = {}
        for phase, action in c.actions():
            key = fired_key(phase, action.id)
            record = records.get(key)
            actions[key] = {
                "type": action.type,
                "fires_at": c.fire_time(phase, action).isoformat(),
                "status": record.status if record else "pending",
                "counts": record.result if record else {},
            }
            if action.type == "winners":
                draw = self.store.get_draw(campaign_id, action.id)
                if draw is not None:
                    actions[key]["draw"] = {"seed": draw.seed, "eligible_hash": draw.eligible_hash,
                                            "eligible_count": draw.eligible_count, "winners": len(draw.winners)}
        return {
            "id": c.id,
            "name": c.name,
            "state": stored.state.value,
            "paused_from": stored.paused_from.value if stored.paused_from else None,
            "version": stored.version,
            "definition_hash": stored.definition_hash,
            "phases": {name: {"start": spec.start.isoformat(), "end": spec.end.isoformat()}
                       for name, spec in c.phases.items()},
            "next_boundary": {"step": upcoming.key, "at": upcoming.at.isoformat()} if upcoming else None,
            "actions": actions,
        }

    # ---- dry run ---------------------------------------------------------------------------------------------

    def preview(self, campaign_id: str, phase: str | None = None, now: datetime | None = None) -> dict[str, Any]:
        """What the campaign's actions would do (``phase``: that phase's actions; None: every action not fired
        yet), decided as the message gateway would at each fire time. Reads only: writes and sends nothing."""
        now = now or datetime.now(UTC)
        if phase is not None and phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r} (one of {', '.join(PHASES)})")
        stored = self._get(campaign_id)
        c = stored.campaign
        done = self.store.fired(campaign_id)
        steps = [s for s in timeline(c) if s.kind == "fire"
                 and (s.phase == phase if phase else s.fired_key not in done)]
        members = list(campaign_audience(self.audience, c))
        holdout = sum(1 for u in members if in_holdout(c.life_account, c.id, u, c.holdout_share))
        simulated: dict[tuple[str, str, str], int] = {}
        out_actions = []
        for step in steps:
            assert step.phase is not None and step.action_id is not None
            found = c.action(step.action_id)
            assert found is not None
            ctx = ActionContext(
                campaign=c, phase=step.phase, action=found[1], now=now, audience=self.audience, store=self.store,
                pools=self.pools, policy_for=self._policy, counters=self.counters, simulated=simulated,
                audience_cache=members,
            )
            detail = ACTIONS[found[1].type].preview(ctx)
            out_actions.append({"action": step.fired_key, "type": found[1].type, "fires_at": step.at.isoformat(),
                                "already_fired": step.fired_key in done, **detail})
        return {
            "campaign": c.id,
            "state": stored.state.value,
            "phase": phase,
            "audience": {
                "expression": c.audience.expression,
                "size": len(members),
                "holdout": holdout,
                "holdout_share": c.holdout_share,
                "expression_terms": str(parse(c.audience.expression)) if c.audience.expression else None,
            },
            "actions": out_actions,
            "totals": _totals(out_actions),
            "coupons": _coupon_totals(out_actions),
        }


def _totals(actions: list[dict[str, Any]]) -> dict[str, Any]:
    messages: dict[str, int] = {}
    would_send = expired = 0
    buckets: dict[str, dict[str, int]] = {"held": {}, "capped": {}, "skipped": {}}
    for a in actions:
        for channel, n in a.get("messages", {}).items():
            messages[channel] = messages.get(channel, 0) + n
        would_send += a.get("would_send", 0)
        expired += a.get("expired", 0)
        for bucket, into in buckets.items():
            for reason, n in a.get(bucket, {}).items():
                into[reason] = into.get(reason, 0) + n
    return {"messages": messages, "would_send": would_send, "expired": expired, **buckets}


def _coupon_totals(actions: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in actions:
        for coupon, use in a.get("coupons", {}).items():
            entry = out.setdefault(coupon, {**use, "up_to": 0, "actions": []})
            entry["up_to"] = min(entry.get("stock", 0), entry["up_to"] + use.get("up_to", 0))
            entry["actions"].append(a["action"])
    return out
