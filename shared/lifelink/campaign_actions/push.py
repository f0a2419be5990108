"""Template-message pushes to a campaign's audience: the fan-out every push action uses, and its dry run.

Fan-out: each follower of the life account that the audience expression selects and that is not in the holdout
gets one ``life_template`` job (kind marketing, ``campaign=<id>``, ``phase=<phase>.<action>``, ``not_after`` =
the end of the phase, the link into the mini program). Every :data:`PROGRESS_EVERY` users the jobs are published
(10 per ``SendMessageBatch``) and progress is saved (the last user queued, the counts so far), so a fan-out
interrupted by a crash, a timeout, a pause or a cancel continues after that user when the action fires again.
Users between the saved cursor and a crash are queued twice: their jobs have the same ledger key, so the
gateway sends them once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from lifelink.campaign_actions.base import ActionContext, ActionPreview
from lifelink.campaign_actions.links import link_url
from lifelink.domain.campaigns import Link, TemplateMessage, in_holdout
from lifelink.domain.messages import Channel, LifeTemplateContent, OutboundJob, Recipient, TemplateField
from lifelink.domain.policy import Capped, Expired, Hold, MessagePolicy, SendFacts, Skip, UserState, decide
from lifelink.store.campaigns import campaign_audience

PROGRESS_EVERY = 100
PREVIEW_SAMPLE = 2000  # recipients whose policy decision a preview reads facts for (per action)
_USER_ID = re.compile(r"^2088\d{12}$")


def recipient_for(user: str) -> Recipient:
    """A user key as Alipay wants it: a 2088… user_id, or else the app's open_id."""
    return Recipient(user_id=user) if _USER_ID.match(user) else Recipient(open_id=user)


def template_content(ctx: ActionContext, message: TemplateMessage, link: Link | None) -> LifeTemplateContent:
    url = link_url(ctx.campaign, link)
    return LifeTemplateContent(
        template_id=message.template_id,
        url=url,
        action_name=message.action_name if url else None,
        first=TemplateField(value=message.first) if message.first else None,
        keywords=[TemplateField(value=k) for k in message.keywords],
        remark=TemplateField(value=message.remark) if message.remark else None,
    )


def build_job(ctx: ActionContext, user: str, content: LifeTemplateContent, created_at: datetime) -> OutboundJob:
    return OutboundJob(
        app_id=ctx.campaign.life_account,
        channel=Channel.life_template,
        recipient=recipient_for(user),
        content=content,
        campaign=ctx.campaign.id,
        phase=ctx.job_phase,
        kind="marketing",
        not_after=ctx.phase_end,
        created_at=created_at,
    )


def audience_users(ctx: ActionContext) -> Iterator[str]:
    if ctx.audience_cache is not None:
        return iter(ctx.audience_cache)
    return campaign_audience(ctx.audience, ctx.campaign, after=ctx.cursor)


def fan_out(ctx: ActionContext, message: TemplateMessage | None, link: Link | None,
            users: Iterable[str] | None = None, holdout: bool = True) -> dict[str, Any]:
    """Queue ``message`` to ``users`` (default: the campaign audience, minus the holdout when ``holdout``)."""
    counts: dict[str, Any] = {"queued": 0, "held_out": 0, **ctx.progress}
    if message is None:
        return {"queued": 0, "message": "none"}
    if ctx.now >= ctx.phase_end:
        counts["not_sent"] = "phase_over"  # fired late, after its phase: the jobs would only expire
        return counts
    assert ctx.publisher is not None
    content = template_content(ctx, message, link)
    source = audience_users(ctx) if users is None else _after(users, ctx.cursor)
    pending: list[OutboundJob] = []
    seen, last = 0, ""
    for user in source:
        seen, last = seen + 1, user
        if holdout and in_holdout(ctx.campaign.life_account, ctx.campaign.id, user, ctx.campaign.holdout_share):
            counts["held_out"] += 1
        else:
            pending.append(build_job(ctx, user, content, ctx.now))
        if seen >= PROGRESS_EVERY:
            _flush(ctx, pending, counts, last)
            pending, seen = [], 0
    if seen:
        _flush(ctx, pending, counts, last)
    return counts


def _flush(ctx: ActionContext, jobs: list[OutboundJob], counts: dict[str, Any], last: str) -> None:
    """Publish (the publisher sends 10 per call, several calls at once), then record the cursor: every user up to
    ``last`` is queued."""
    assert ctx.publisher is not None
    if jobs:
        ctx.publisher.publish_batch(jobs)
        counts["queued"] += len(jobs)
    if ctx.save_progress:
        ctx.save_progress(last, counts)


def _after(users: Iterable[str], cursor: str | None) -> Iterator[str]:
    """``users`` (in a stable order) after ``cursor``."""
    seen = cursor is None
    for user in users:
        if seen:
            yield user
        elif user == cursor:
            seen = True


# ---- preview ----------------------------------------------------------------------------------------------


def preview_push(ctx: ActionContext, message: TemplateMessage | None, link: Link | None,
                 users: Iterable[str] | None = None, holdout: bool = True) -> ActionPreview:
    """What :func:`fan_out` would queue and what the message gateway would decide for each job at the fire time
    (consent, quiet hours, frequency caps as the counters hold them now plus the sends this preview already
    counted). Reads only. Recipients and holdout are exact; with more than :data:`PREVIEW_SAMPLE` recipients the
    decisions are taken for an evenly spread sample (the same users for every action) and scaled up, and
    ``sampled`` says so."""
    out: ActionPreview = {"recipients": 0, "holdout": 0, "messages": {}, "would_send": 0,
                          "held": {}, "capped": {}, "skipped": {}, "expired": 0}
    if message is None:
        out["note"] = "no message: this action sends nothing when it fires"
        return out
    at = max(ctx.now, ctx.fire_time)
    policy: MessagePolicy = ctx.policy_for(ctx.campaign.life_account) if ctx.policy_for else MessagePolicy()
    content = template_content(ctx, message, link)
    source = audience_users(ctx) if users is None else iter(users)
    recipients: list[str] = []
    for user in source:
        if holdout and in_holdout(ctx.campaign.life_account, ctx.campaign.id, user, ctx.campaign.holdout_share):
            out["holdout"] += 1
        else:
            recipients.append(user)
    examined = recipients
    if len(recipients) > PREVIEW_SAMPLE:
        examined = recipients[:: -(-len(recipients) // PREVIEW_SAMPLE)]
        out["sampled"] = {"examined": len(examined), "of": len(recipients)}
    tally: Counter[tuple[str, str]] = Counter()
    for user in examined:
        job = build_job(ctx, user, content, at)
        decision = decide(job, policy, _facts(ctx, job, policy, at), at)
        match decision:
            case Hold(reason=reason) | Capped(reason=reason) | Skip(reason=reason):
                tally[(decision.kind, reason)] += 1
            case Expired():
                tally[("expired", "")] += 1
            case _:
                tally[("send", "")] += 1
                _count_simulated(ctx, job, policy, at)
    scale = len(recipients) / len(examined) if examined else 0.0

    def scaled(n: int) -> int:
        return round(n * scale)

    buckets = {"hold": "held", "capped": "capped", "skip": "skipped"}
    for (kind, reason), n in sorted(tally.items()):
        if kind in buckets:
            out[buckets[kind]][reason] = scaled(n)
    out.update(recipients=len(recipients), would_send=scaled(tally[("send", "")]),
               expired=scaled(tally[("expired", "")]))
    out["messages"] = {Channel.life_template.value: len(recipients)} if recipients else {}
    return out


def _sim_key(job: OutboundJob, policy: MessagePolicy, at: datetime) -> tuple[str, str, str]:
    return (job.user_key, job.channel.value, policy.day(at).isoformat())


def _count_simulated(ctx: ActionContext, job: OutboundJob, policy: MessagePolicy, at: datetime) -> None:
    if ctx.simulated is not None:
        key = _sim_key(job, policy, at)
        ctx.simulated[key] = ctx.simulated.get(key, 0) + 1


def _facts(ctx: ActionContext, job: OutboundJob, policy: MessagePolicy, at: datetime) -> SendFacts:
    facts = ctx.audience.facts(job.app_id, job.user_key)
    user = UserState(facts.following, facts.last_interaction_at)
    sent_today = 0
    if ctx.counters is not None:
        from lifelink.store.counters import plan_for

        sent_today = ctx.counters.facts(plan_for(job, policy, at), user).sent_today
    if ctx.simulated is not None:
        sent_today += ctx.simulated.get(_sim_key(job, policy, at), 0)
    return SendFacts(user=user, sent_today=sent_today)
