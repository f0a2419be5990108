"""A campaign: its life account and mini programs, audience, holdout, three phases and their actions.

This module holds the *definition* (pydantic, accepted as YAML or JSON) and the checks that need nothing but
the definition itself. Checks that need the outside world (registered apps, known templates, audience size)
live in :mod:`lifelink.domain.campaign_checks`; the phase machine in :mod:`lifelink.domain.phases`.

Times: every datetime is aware. A naive datetime in a definition means wall-clock time in the campaign's
``timezone`` (Asia/Shanghai by default), as a merchant writes it.

Jobs that actions put on the outbound queue carry ``campaign=<id>`` and ``phase=<phase>.<action id>``, so
two actions of one phase on the same channel never share a ledger key, and a redelivered action sends once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

CAMPAIGN_VERSION = 1
PHASES: tuple[str, ...] = ("preheat", "burst", "settle")

Slug = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9-]*$")]
ActionId = Annotated[str, StringConstraints(min_length=1, max_length=24, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
AppId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Page = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class CampaignState(StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    preheat = "preheat"
    burst = "burst"
    settle = "settle"
    closed = "closed"
    paused = "paused"
    cancelled = "cancelled"


TERMINAL_STATES = frozenset({CampaignState.closed, CampaignState.cancelled})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---- what actions send -----------------------------------------------------------------------------------


class TemplateMessage(_Model):
    """A life-account template message (``message.single.send``); the link is built from the action's page, with
    an attribution token added by the gateway."""

    template_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    first: Text | None = None
    keywords: list[Text] = Field(min_length=1, max_length=10)
    remark: Text | None = None
    action_name: Annotated[str, StringConstraints(min_length=1, max_length=20)] = "查看详情"


class Link(_Model):
    """Where a message's link lands: a page of one of the campaign's mini programs (default: the first)."""

    page: Page
    mini_program: AppId | None = None


# ---- actions ---------------------------------------------------------------------------------------------


class _Action(_Model):
    id: ActionId
    # When the action fires: the start of its phase unless given (must fall inside the phase window).
    at: datetime | None = None


class TopicPush(_Action):
    """Preheat: a template message to the audience linking to a topic page in the mini program."""

    type: Literal["topic_push"] = "topic_push"
    message: TemplateMessage
    link: Link


class EarlyBird(_Action):
    """Preheat: reservations (``POST /campaigns/{id}/reservations``) each grant ``coupon`` once per user, from the
    coupon's stock; ``message`` (optional) invites the audience to reserve."""

    type: Literal["early_bird"] = "early_bird"
    coupon: Slug
    message: TemplateMessage | None = None
    link: Link | None = None


class FlashWindow(_Model):
    id: ActionId
    start: datetime
    end: datetime
    stock: int = Field(ge=1, le=10_000_000)
    sku: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class FlashSale(_Action):
    """Burst: live-stream flash-sale windows, each with its own time-boxed stock (taken through
    ``POST /campaigns/{id}/flash-sales``, once per user per window); ``message`` announces the live stream."""

    type: Literal["flash_sale"] = "flash_sale"
    windows: list[FlashWindow] = Field(min_length=1, max_length=20)
    live_link: Link
    message: TemplateMessage | None = None


class ShareTask(_Action):
    """Burst: a share (``POST /campaigns/{id}/shares``) is recorded once per user and unlocks ``reward`` once."""

    type: Literal["share_task"] = "share_task"
    reward: Slug  # a coupon of the campaign
    message: TemplateMessage | None = None
    link: Link | None = None


class UgcChallenge(_Action):
    """Burst: entries and votes (one vote per user per entry per Asia/Shanghai day), a leaderboard."""

    type: Literal["ugc_challenge"] = "ugc_challenge"
    max_entries_per_user: int = Field(default=1, ge=1, le=20)
    message: TemplateMessage | None = None
    link: Link | None = None


WinnerPool = Literal["reservations", "shares", "voters", "entrants", "top_entries"]


class Winners(_Action):
    """Settle: a seeded, reproducible draw of ``count`` winners from ``pool``; the announcement carries a claim link;
    a winner's claim (``POST /campaigns/{id}/claims``) sends ``prize`` (a coupon of the campaign) once."""

    type: Literal["winners"] = "winners"
    pool: WinnerPool
    count: int = Field(ge=1, le=100_000)
    prize: Slug
    seed: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None  # drawn and stored if absent
    message: TemplateMessage
    claim_link: Link


class SurveyQuestion(_Model):
    id: ActionId
    kind: Literal["rating", "choice", "text"]
    text: Text
    options: list[Text] | None = None  # choice only

    @model_validator(mode="after")
    def _options_for_choice(self) -> SurveyQuestion:
        if (self.kind == "choice") != bool(self.options):
            raise ValueError("a choice question needs options; other kinds take none")
        return self


class Survey(_Action):
    """Settle: a satisfaction survey push; ``POST /campaigns/{id}/survey`` takes one answer per user."""

    type: Literal["survey"] = "survey"
    questions: list[SurveyQuestion] = Field(min_length=1, max_length=20)
    message: TemplateMessage
    link: Link


Action = Annotated[
    TopicPush | EarlyBird | FlashSale | ShareTask | UgcChallenge | Winners | Survey,
    Field(discriminator="type"),
]


# ---- phases, audience, coupons ---------------------------------------------------------------------------


class PhaseSpec(_Model):
    start: datetime
    end: datetime
    actions: list[Action] = Field(default_factory=list, max_length=20)


class Phases(_Model):
    preheat: PhaseSpec
    burst: PhaseSpec
    settle: PhaseSpec

    def items(self) -> list[tuple[str, PhaseSpec]]:
        return [(name, getattr(self, name)) for name in PHASES]


class AudienceSpec(_Model):
    """Who the campaign's pushes go to: every follower of the life account, optionally narrowed by an expression
    over profile tags and member tiers, e.g. ``tier:gold or (tag:high_value and not tag:silent)``."""

    all_followers: bool = True
    expression: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None


class CouponStock(_Model):
    activity_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]  # Alipay voucher activity
    stock: int = Field(ge=0, le=100_000_000)


class Campaign(_Model):
    campaign_version: Literal[1] = CAMPAIGN_VERSION
    id: Slug
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    life_account: AppId
    mini_programs: list[AppId] = Field(min_length=1, max_length=10)
    timezone: str = "Asia/Shanghai"
    audience: AudienceSpec = Field(default_factory=AudienceSpec)
    holdout_share: float = Field(default=0.0, ge=0.0, le=0.5)
    coupons: dict[Slug, CouponStock] = Field(default_factory=dict)
    phases: Phases

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _localise_naive_times(cls, data: Any) -> Any:
        """Naive datetimes (strings without an offset) are wall-clock time in the campaign's time zone."""
        if not isinstance(data, dict):
            return data
        zone_name = data.get("timezone", "Asia/Shanghai")
        try:
            zone: tzinfo = ZoneInfo(str(zone_name))
        except Exception:
            return data  # the field validator reports it
        return _localise(data, zone)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def actions(self) -> list[tuple[str, Any]]:
        """(phase, action) in definition order."""
        return [(name, action) for name, spec in self.phases.items() for action in spec.actions]

    def action(self, action_id: str) -> tuple[str, Any] | None:
        return next(((p, a) for p, a in self.actions() if a.id == action_id), None)

    def fire_time(self, phase: str, action: Any) -> datetime:
        return action.at or getattr(self.phases, phase).start

    def boundaries(self) -> list[tuple[str, datetime]]:
        """Every time something is due, in order: ``<phase>_start``, ``settle_end`` and each action's own ``at``
        (``action:<id>``). One EventBridge Scheduler ``at()`` schedule is created per entry."""
        found = [(f"{name}_start", spec.start) for name, spec in self.phases.items()]
        found.append(("settle_end", self.phases.settle.end))
        found += [(f"action:{a.id}", a.at) for _, a in self.actions() if a.at is not None]
        return sorted(found, key=lambda item: item[1])

    def job_phase(self, phase: str, action_id: str) -> str:
        """The ``phase`` field of outbound jobs an action sends (part of their ledger key)."""
        return f"{phase}.{action_id}"

    def definition_hash(self) -> str:
        """A stable hash of the definition: re-applying the same definition is a no-op."""
        return hashlib.sha256(self.model_dump_json(exclude_none=True).encode()).hexdigest()[:16]


def _localise(value: Any, zone: tzinfo) -> Any:
    if isinstance(value, dict):
        return {k: (_localise_time(v, zone) if k in ("start", "end", "at") else _localise(v, zone))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_localise(v, zone) for v in value]
    return value


def _localise_time(value: Any, zone: tzinfo) -> Any:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value  # pydantic reports it
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)
    return value


def in_holdout(app_id: str, campaign_id: str, user: str, share: float) -> bool:
    """Whether a user is held out of a campaign's pushes (and so measures its uplift): a stable hash of
    (app, campaign, user) below ``share`` (BRIEF §4). The same user is in or out on every run and every container;
    ``app_id`` is the campaign's life account."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{app_id}|{campaign_id}|{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share
