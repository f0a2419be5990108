"""Per-app message policy and the pure decision: may this job go out now?

``decide(job, policy, facts, now)`` returns one of
- :class:`Send`;
- :class:`Hold` ``(until, reason)``: quiet hours (``"quiet_hours"``) or a deferred daily cap
  (``"daily_cap_deferred"``); the job comes back at ``until`` and is decided again;
- :class:`Skip` ``(reason)``: consent or Alipay's rules forbid it, for good;
- :class:`Capped` ``(reason)``: a frequency limit is used up;
- :class:`Expired`: ``not_after`` has passed (or would, before the job may go out).

Checks, in order: deadline; consent (life-account pushes only to followers — ``"not_follower"`` when we
never saw a follow, ``"unfollowed"`` after an unfollow; subscription messages only with a grant,
``"no_grant"``); Alipay's 48-hour window for custom messages (``"outside_48h_window"``, measured at the
moment the job may go out); quiet hours (hold until the window opens; ``"quiet_hours_max_hold"`` when that is
more than ``max_hold`` after the job was created); then limits: Alipay's custom-message limit
(``"custom_daily_limit"``, 100 per user per day), group sends once per user per week (``"weekly_limit"``;
label sends also at most 5 calls a week, ``"label_weekly_calls"``), and the app's own cap per channel and
calendar day (``"daily_cap"``: skip, or defer to the next day). Transactional jobs are exempt from the
app's caps and, unless configured otherwise, from quiet hours; never from consent or Alipay's limits.

Days and weeks are calendar days and ISO weeks (Monday first) in the policy's timezone, Asia/Shanghai by
default. Counts in :class:`SendFacts` are what the counters held when read; the gateway takes the slot with
an atomic conditional increment afterwards and decides again if somebody else took it first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lifelink.domain.messages import Channel, MiniSubscriptionContent, OutboundJob

ALIPAY_CUSTOM_WINDOW = timedelta(hours=48)
ALIPAY_CUSTOM_PER_DAY = 100
ALIPAY_GROUP_PER_WEEK = 1
ALIPAY_LABEL_CALLS_PER_WEEK = 5

# Stable reason strings (events and the ledger carry them; reports group by them).
R_EXPIRED = "expired"
R_NOT_FOLLOWER = "not_follower"
R_UNFOLLOWED = "unfollowed"
R_NO_GRANT = "no_grant"
R_OUTSIDE_WINDOW = "outside_48h_window"
R_QUIET_HOURS = "quiet_hours"
R_QUIET_MAX_HOLD = "quiet_hours_max_hold"
R_DAILY_CAP = "daily_cap"
R_DAILY_CAP_DEFERRED = "daily_cap_deferred"
R_CUSTOM_DAILY = "custom_daily_limit"
R_WEEKLY = "weekly_limit"
R_LABEL_CALLS = "label_weekly_calls"

_FOLLOWER_CHANNELS = frozenset({Channel.life_template, Channel.life_custom})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FrequencyCap(_Model):
    per_day: int = Field(ge=0)
    on_exceed: Literal["skip", "defer"] = "skip"


class QuietHours(_Model):
    enabled: bool = True
    start: time = time(22, 0)
    end: time = time(8, 0)
    max_hold: timedelta = timedelta(hours=12)
    include_transactional: bool = False

    def contains(self, local: datetime) -> bool:
        t = local.timetz().replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # crosses midnight

    def opens_after(self, local: datetime) -> datetime:
        """The first moment at or after ``local`` (inside quiet hours) when sending is allowed again."""
        candidate = datetime.combine(local.date(), self.end, local.tzinfo)
        if candidate <= local:
            candidate += timedelta(days=1)
        return candidate


def _default_caps() -> dict[Channel, FrequencyCap]:
    return {
        Channel.life_template: FrequencyCap(per_day=3),
        Channel.life_custom: FrequencyCap(per_day=5),
        Channel.mini_subscription: FrequencyCap(per_day=3),
        Channel.coupon: FrequencyCap(per_day=2),
    }


class MessagePolicy(_Model):
    """An app's ``policy`` object in the registry; every field has a default."""

    timezone: str = "Asia/Shanghai"
    caps: dict[Channel, FrequencyCap] = Field(default_factory=_default_caps)
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    rate_per_second: float = Field(default=10.0, gt=0, le=10_000)
    # Life-account pushes to users we never saw follow (e.g. followers from before lifelink): off by default.
    assume_follower_when_unknown: bool = False

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def day(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()

    def week(self, now: datetime) -> str:
        year, week, _ = now.astimezone(self.zone).isocalendar()
        return f"{year}-W{week:02d}"

    def next_day_start(self, now: datetime) -> datetime:
        local = now.astimezone(self.zone)
        return datetime.combine(local.date() + timedelta(days=1), time(0), self.zone)

    @property
    def paced_rate(self) -> float:
        """The rate sends are spaced at: ``rate_per_second`` less :data:`PACING_MARGIN`. The shared limiter spaces
        the slots exactly; what Alipay sees also carries the jitter between a slot and the request's arrival (the
        event loop, the network), which could put one send more than the rate into a second at Alipay's end."""
        return self.rate_per_second * (1 - PACING_MARGIN)

    @classmethod
    def parse(cls, data: object) -> MessagePolicy:
        """The message policy from an app's policy document, passing over the sections other parts read
        (:data:`OTHER_SECTIONS`); any other unknown key is refused (a typo must not silently do nothing)."""
        if data is None:
            return cls()
        if isinstance(data, str | bytes):
            data = json.loads(data)
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in OTHER_SECTIONS}
        return cls.model_validate(data)


PACING_MARGIN = 0.04

# Sections of an app's policy document (AppRecord.policy) that are not the message policy: member tiers on
# follow/unfollow and tag thresholds (the events consumer), automation rules (lifelink.rules).
OTHER_SECTIONS = frozenset({"tier_on_follow", "tier_on_unfollow", "tags", "rules", "membership"})


@dataclass(frozen=True)
class UserState:
    following: bool | None = None
    last_interaction_at: datetime | None = None


@dataclass(frozen=True)
class SendFacts:
    """What the gateway read before deciding (user facts, grants, counters)."""

    user: UserState = field(default_factory=UserState)
    grants: int = 0  # remaining subscription grants for the job's template
    sent_today: int = 0  # sends on the job's channel to this user today (policy timezone)
    group_this_week: int = 0  # group sends (total + label calls) this week
    total_this_week: int = 0  # total.send calls this week
    label_this_week: int = 0  # sends to this label this week


@dataclass(frozen=True)
class Send:
    kind: Literal["send"] = "send"


@dataclass(frozen=True)
class Hold:
    until: datetime
    reason: str
    kind: Literal["hold"] = "hold"


@dataclass(frozen=True)
class Skip:
    reason: str
    kind: Literal["skip"] = "skip"


@dataclass(frozen=True)
class Capped:
    reason: str
    kind: Literal["capped"] = "capped"


@dataclass(frozen=True)
class Expired:
    reason: str = R_EXPIRED
    kind: Literal["expired"] = "expired"


Decision = Send | Hold | Skip | Capped | Expired


def _consent(job: OutboundJob, policy: MessagePolicy, facts: SendFacts) -> str | None:
    if job.channel in _FOLLOWER_CHANNELS:
        if facts.user.following is False:
            return R_UNFOLLOWED
        if facts.user.following is None and not policy.assume_follower_when_unknown:
            return R_NOT_FOLLOWER
    if job.channel is Channel.mini_subscription:
        assert isinstance(job.content, MiniSubscriptionContent)
        if facts.grants <= 0:
            return R_NO_GRANT
    return None


def _release_time(job: OutboundJob, policy: MessagePolicy, at: datetime) -> datetime:
    """``at`` moved past quiet hours, if they apply to this job."""
    quiet = policy.quiet_hours
    if not quiet.enabled or (job.transactional and not quiet.include_transactional):
        return at
    local = at.astimezone(policy.zone)
    if not quiet.contains(local):
        return at
    return quiet.opens_after(local).astimezone(UTC)


def _limits(job: OutboundJob, policy: MessagePolicy, facts: SendFacts, now: datetime) -> Decision | None:
    if job.channel is Channel.life_custom and facts.sent_today >= ALIPAY_CUSTOM_PER_DAY:
        return Capped(R_CUSTOM_DAILY)
    if job.channel is Channel.life_broadcast and facts.group_this_week >= ALIPAY_GROUP_PER_WEEK:
        return Capped(R_WEEKLY)
    if job.channel is Channel.life_label:
        if facts.total_this_week > 0 or facts.label_this_week >= ALIPAY_GROUP_PER_WEEK:
            return Capped(R_WEEKLY)
        if facts.group_this_week >= ALIPAY_LABEL_CALLS_PER_WEEK:
            return Capped(R_LABEL_CALLS)
    cap = policy.caps.get(job.channel)
    if cap is None or job.transactional or facts.sent_today < cap.per_day:
        return None
    if cap.on_exceed == "skip":
        return Capped(R_DAILY_CAP)
    return _hold_or_drop(job, policy, _release_time(job, policy, policy.next_day_start(now)), R_DAILY_CAP_DEFERRED)


def _hold_or_drop(job: OutboundJob, policy: MessagePolicy, until: datetime, reason: str) -> Decision:
    """Hold until ``until``; a job that would pass its deadline expires now, and a quiet-hours hold longer
    than ``max_hold`` after the job was created is dropped. (A deferred cap is bounded by the deadline only.)"""
    if until > job.not_after:
        return Expired()
    if reason == R_QUIET_HOURS and until - job.created_at > policy.quiet_hours.max_hold:
        return Skip(R_QUIET_MAX_HOLD)
    return Hold(until.astimezone(UTC), reason)


def decide(job: OutboundJob, policy: MessagePolicy, facts: SendFacts, now: datetime) -> Decision:
    """The policy's verdict on ``job`` at ``now`` (aware). Pure: reads nothing, writes nothing."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if now > job.not_after:
        return Expired()
    refused = _consent(job, policy, facts)
    if refused:
        return Skip(refused)
    release = _release_time(job, policy, now)
    if job.channel is Channel.life_custom:
        last = facts.user.last_interaction_at
        if last is None or release - last > ALIPAY_CUSTOM_WINDOW:
            return Skip(R_OUTSIDE_WINDOW)
    if release > now:
        return _hold_or_drop(job, policy, release, R_QUIET_HOURS)
    return _limits(job, policy, facts, now) or Send()
