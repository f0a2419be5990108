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
