"""Request and answer bodies of the internal API (the OpenAPI schemas come from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

AppId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TemplateId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
MAX_TEMPLATES_PER_REPORT = 3  # my.requestSubscribeMessage asks for at most 3 templates per call
MAX_GRANTS_PER_REPORT = 100


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is, e.g. ['body', 'recipient', 'open_id'].")
    msg: str
    type: str


class ErrorBody(BaseModel):
    errors: list[FieldError] = Field(description="Every problem found, all at once.")


class Queued(BaseModel):
    ledger_key: str = Field(description="app|campaign|phase|user|channel: the job's entry in the send ledger.")
    status: Literal["queued"] = "queued"
    message_id: str = Field(description="The outbound queue's message id.")


class MessageState(BaseModel):
    """A send-ledger entry (lifelink.store.ledger), without its lease internals."""

    ledger_key: str
    status: str = Field(description="planned, held, sending, sent, capped, skipped or failed.")
    reason: str | None = Field(default=None, description="Why it was held, capped, skipped or failed.")
    sub_code: str | None = Field(default=None, description="Alipay's sub_code of a failed send.")
    retryable: bool | None = Field(default=None, description="For failed: whether the job will be tried again.")
    attempts: int = 0
    hold_until: str | None = None
    app_id: str | None = None
    channel: str | None = None
    campaign: str | None = None
    phase: str | None = None
    rule: str | None = None
    message_ref: str | None = Field(default=None, description="The message's reference in attribution tokens.")
    created_at: str | None = None
    updated_at: str | None = None
    history: list[dict[str, Any]] = Field(default_factory=list, description="Every transition, oldest first.")


class SubscriptionUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    open_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SubscriptionUser:
        if (self.open_id is None) == (self.user_id is None):
            raise ValueError("give exactly one of open_id or user_id (the id the app's jobs will use)")
        return self

    @property
    def key(self) -> str:
        return self.open_id or self.user_id or ""


class SubscriptionReport(BaseModel):
    """What the mini program's backend reports after ``my.requestSubscribeMessage``: the accepted templates."""

    model_config = ConfigDict(extra="forbid")
    app_id: AppId
    user: SubscriptionUser
    template_ids: list[TemplateId] = Field(min_length=1, max_length=MAX_TEMPLATES_PER_REPORT)
    count: int = Field(default=1, ge=1, le=MAX_GRANTS_PER_REPORT, description="One-time grants per template.")

    @field_validator("template_ids")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("template_ids repeats a template")
        return value


class Granted(BaseModel):
    app_id: str
    remaining: dict[str, int] = Field(description="Grants now held per template id, this report included.")


# ---- campaigns: administration (issue 4) -------------------------------------------------------------------


class CampaignBoundary(BaseModel):
    name: str = Field(description="preheat_start, burst_start, settle_start, settle_end or action:<id>.")
    at: str = Field(description="When, ISO 8601 with the campaign's UTC offset.")


class CampaignApplied(BaseModel):
    """What ``POST /campaigns`` did with a definition."""

    id: str
    result: Literal["created", "updated", "unchanged"] = Field(
        description="created: new; updated: a changed definition of a draft or scheduled campaign; "
        "unchanged: the same definition was already applied (nothing written)."
    )
    state: str = Field(description="The campaign's state after applying (scheduled, or later when re-applied).")
    definition_hash: str
    schedules: list[str] = Field(
        default_factory=list,
        description="Names of the pending one-time schedules (a boundary's name, `:` as `-`); boundaries already "
        "past have none (the reconciler catches up on them).",
    )
    next_boundary: CampaignBoundary | None = None


class CampaignPhaseWindow(BaseModel):
    phase: str
    start: str
    end: str
    status: Literal["upcoming", "current", "done"] = Field(description="Relative to the time of the answer.")


class CampaignDraw(BaseModel):
    """A winners draw as stored: anyone can re-run it from the seed over the eligible users (same hash)."""

    seed: str
    eligible_hash: str = Field(description="SHA-256 of the newline-joined sorted eligible users.")
    eligible_count: int
    winners: int = Field(description="How many winners were drawn.")


class CampaignActionStatus(BaseModel):
    phase: str
    id: str
    type: str
    fire_at: str = Field(description="When the action is due (its `at`, else the start of its phase).")
    status: Literal["pending", "firing", "fired"] = Field(
        description="pending: not started; firing: claimed, fan-out under way; fired: done (once per phase)."
    )
    counts: dict[str, int] = Field(default_factory=dict, description="What it did so far (queued, held out, …).")
    draw: CampaignDraw | None = Field(default=None, description="winners actions: the stored draw.")


class CampaignStatus(BaseModel):
    """``GET /campaigns/{campaign_id}``: state, phase windows, the next boundary, counts per action."""

    id: str
    name: str
    state: str = Field(description="draft, scheduled, preheat, burst, settle, closed, paused or cancelled.")
    paused_from: str | None = Field(default=None, description="For a paused campaign: the state resume returns to.")
    life_account: str
    mini_programs: list[str]
    timezone: str
    definition_hash: str
    phases: list[CampaignPhaseWindow]
    next_boundary: CampaignBoundary | None = None
    actions: list[CampaignActionStatus] = Field(default_factory=list)
    as_of: str = Field(description="The time the status was computed at.")


class CampaignSummary(BaseModel):
    id: str
    name: str
    state: str
    life_account: str
    starts_at: str = Field(description="Start of preheat.")
    ends_at: str = Field(description="End of settle.")


class CampaignList(BaseModel):
    campaigns: list[CampaignSummary]


class CampaignPreview(BaseModel):
    """``GET /campaigns/{campaign_id}/preview``: what the campaign's actions would do; nothing is sent or written."""

    model_config = ConfigDict(extra="allow")
    campaign_id: str
    phase: str | None = Field(default=None, description="The phase previewed; absent: every action not fired yet.")
    as_of: str
    state: str
    audience: dict[str, Any] = Field(description="expression, size, holdout (count) and holdout_share.")
    actions: list[dict[str, Any]] = Field(
        description="Per action: fires_at, already_fired, messages per channel, would_send, held / capped / "
        "skipped by reason, coupons and stock it would use."
    )
    totals: dict[str, Any] = Field(description="messages per channel, would_send, expired, held, capped, skipped.")
    coupons: dict[str, Any] = Field(description="Per coupon: stock and how many the actions could use (up_to).")


class CampaignTransitioned(BaseModel):
    """What pause, resume or cancel did."""

    id: str
    state: str = Field(description="The state now.")
    previous_state: str
    schedules_removed: bool = Field(default=False, description="cancel: the campaign's schedule group was deleted.")


# ---- campaign participation (lifelink.api.campaign_participation) ----------------------------------------

ParticipationActionId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=24, pattern=r"^[a-z0-9][a-z0-9_-]*$"),
    Field(description="The id of the campaign action taken part in."),
]
ParticipationApp = Annotated[
    AppId | None,
    Field(
        description="The app the user's id belongs to (open_ids are per app): one of the campaign's apps. "
        "Default: the campaign's first mini program. Coupon jobs are sent as this app."
    ),
]


class CampaignUser(BaseModel):
    """A user as the mini program's backend knows them: exactly one of ``user_id`` (2088…) or ``open_id``."""

    model_config = ConfigDict(extra="forbid")
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    open_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CampaignUser:
        if (self.open_id is None) == (self.user_id is None):
            raise ValueError("give exactly one of open_id or user_id")
        return self

    @property
    def key(self) -> str:
        return self.open_id or self.user_id or ""


class _ParticipationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: ParticipationActionId
    user: CampaignUser


class ReservationRequest(_ParticipationRequest):
    """An early-bird reservation."""

    app_id: ParticipationApp = None


class FlashSaleRequest(_ParticipationRequest):
    """Take one unit of a flash-sale window's stock."""

    window: ParticipationActionId = Field(description="The flash window's id.")


class ShareRequest(_ParticipationRequest):
    """The user shared (as the share task asks)."""

    app_id: ParticipationApp = None


class EntryRequest(_ParticipationRequest):
    """A UGC challenge entry."""

    title: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    content_url: Annotated[str, StringConstraints(max_length=1024, pattern=r"^https?://\S+$")] | None = Field(
        default=None, description="Where the entry's content (photo, video) is."
    )


class VoteRequest(_ParticipationRequest):
    """A vote for an entry (one per voter per entry per day in the campaign's time zone)."""

    entry_id: Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
    app_id: ParticipationApp = None


class ClaimRequest(_ParticipationRequest):
    """A winner claims the prize."""

    app_id: ParticipationApp = None


SurveyValue = Annotated[int | str, Field(description="rating: 1..5; choice: one of the options; text: ≤ 500 chars.")]


class SurveyRequest(_ParticipationRequest):
    """A survey answer: question id → value."""

    answers: dict[Annotated[str, StringConstraints(min_length=1, max_length=24)], SurveyValue] = Field(
        min_length=1, max_length=20
    )


class ParticipationGrant(BaseModel):
    """A reservation, share or claim: recorded once per user."""

    campaign_id: str
    action: str
    result: str = Field(
        description="reserved | already_reserved, shared | already_shared, claimed | already_claimed: the already_ "
        "answers are the user's earlier record (nothing new is granted or queued)."
    )
    at: str = Field(description="When it was recorded (the first time).")
    coupon: str | None = Field(default=None, description="The campaign coupon granted.")
    coupon_status: Literal["queued", "queueing", "sold_out", "none"] = Field(
        description="queued: the coupon job is on the outbound queue; queueing: another request is queueing it; "
        "sold_out: recorded without a coupon (shares only); none: no coupon."
    )
    ledger_key: str | None = Field(default=None, description="The coupon job's send-ledger entry.")


class FlashSaleTaken(BaseModel):
    campaign_id: str
    action: str
    window: str
    result: Literal["taken", "already_taken"]
    sku: str
    at: str


class CampaignEntry(BaseModel):
    entry_id: str
    action: str
    user: str = Field(description="The entrant's open_id or user_id.")
    title: str
    content_url: str | None = None
    at: str
    votes: int


class VoteRecorded(BaseModel):
    entry_id: str
    day: str = Field(description="The calendar day the vote counts for (campaign time zone).")
    votes: int = Field(description="The entry's votes, this one included.")


class LeaderboardEntry(CampaignEntry):
    rank: int


class Leaderboard(BaseModel):
    campaign_id: str
    action: str
    entries: list[LeaderboardEntry] = Field(description="Most votes first; ties go to the earlier entry.")


class ClaimsSummaryBody(BaseModel):
    campaign_id: str
    action: str
    winners: int
    claimed: int
    fulfilled: int = Field(description="Claims whose prize coupon was sent (its ledger entry reached `sent`).")
    claim_rate: float = Field(description="claimed / winners.")
    redemption_rate: float = Field(description="fulfilled / winners.")


class SurveyRecorded(BaseModel):
    campaign_id: str
    action: str
    result: Literal["answered", "already_answered"]
    at: str


class SurveySummaryBody(BaseModel):
    campaign_id: str
    action: str
    answers: int
    average_rating: dict[str, float | None] = Field(description="Per rating question (None: no ratings yet).")
    option_counts: dict[str, dict[str, int]] = Field(description="Per choice question, answers per option.")
    text_answers: dict[str, int] = Field(description="Per text question, how many answered it.")


# ---- behaviour events ingest (lifelink.api.events_ingest) ------------------------------------------------


class RejectedEvent(BaseModel):
    index: int = Field(description="The item's position in `events` (from 0).")
    errors: list[FieldError] = Field(
        description="Every problem of the item; `loc` is within the item (`[]`: the item as a whole). Type `queue`: "
        "the item was valid but the events queue refused it twice (send it again; its id is the same)."
    )


class EventsAccepted(BaseModel):
    accepted: int = Field(description="Items validated and put on the events queue.")
    rejected: list[RejectedEvent] = Field(description="The other items, by index (empty: all were accepted).")
