"""Per-app automation settings: ``AppRecord.policy["rules"]`` (every field has a default; unknown keys are refused).

```json
{"rules": {
  "browse_no_order": {"enabled": true, "hours": 24, "activity_id": "ACT123", "window_days": 7},
  "first_order": {"enabled": true, "message": {"channel": "life_template", "content": {"template_id": "T1",
                  "keywords": [{"value": "Welcome, member"}]}}},
  "come_back": {"enabled": true, "silent_days": 30, "activity_id": "ACT456"},
  "tiers": {"tier_on_follow": "silver", "on_unfollow": "keep", "card_template_id": "CT1", "confirm_follow": true}
}}
```
When ``rules.tiers`` is absent, the tier settings the aggregator reads (``policy.tier_on_follow``,
``policy.tier_on_unfollow``) are used, so both agree. See docs/rules.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from lifelink.domain.messages import CONTENT_MODELS, Channel

MessageChannel = Literal["life_template", "life_custom", "mini_subscription", "coupon"]
# A tier names the card level and part of the card job's phase: no spaces, "|" or "#".
TierName = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[^|#\s]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RuleMessage(_Model):
    """What a rule sends: a channel and that channel's content (lifelink.domain.messages), checked here."""

    channel: MessageChannel
    content: dict[str, Any]

    @model_validator(mode="after")
    def _content_valid(self) -> RuleMessage:
        CONTENT_MODELS[Channel(self.channel)].model_validate({**self.content, "type": self.channel})
        return self


class _SendingRule(_Model):
    enabled: bool = False
    # The job's app: the app the user was seen in ("app": its own ids), or the life account the app is bound to
    # ("life_account": only users known by their 2088… user_id, which every app of the account shares).
    send_via: Literal["app", "life_account"] = "app"
    valid_hours: float = Field(default=24.0, gt=0, le=24 * 30)  # the job's not_after, from when it is made


class BrowseNoOrder(_SendingRule):
    """A product view with no paid order within ``hours`` → a coupon, at most once per user per window of
    ``window_days`` days (calendar windows in the app's zone)."""

    hours: float = Field(default=24.0, gt=0, le=24 * 30)
    activity_id: str | None = Field(default=None, min_length=1, max_length=64)
    window_days: int = Field(default=7, ge=1, le=366)

    @model_validator(mode="after")
    def _needs_coupon(self) -> BrowseNoOrder:
        if self.enabled and not self.activity_id:
            raise ValueError("browse_no_order needs activity_id when enabled")
        return self


class FirstOrder(_SendingRule):
    """The user's first paid order → the member-guide message, once ever."""

    message: RuleMessage | None = None
    kind: Literal["transactional", "marketing"] = "transactional"
    valid_hours: float = Field(default=72.0, gt=0, le=24 * 30)

    @model_validator(mode="after")
    def _needs_message(self) -> FirstOrder:
        if self.enabled and self.message is None:
            raise ValueError("first_order needs a message when enabled")
        return self


class ComeBack(_SendingRule):
    """Silent for ``silent_days`` (no open, read or order) → a come-back gift (a coupon, or a message), once per
    silence (the window is the day the silence started)."""

    silent_days: int = Field(default=30, ge=1, le=3650)
    activity_id: str | None = Field(default=None, min_length=1, max_length=64)
    message: RuleMessage | None = None
    valid_hours: float = Field(default=48.0, gt=0, le=24 * 30)

    @model_validator(mode="after")
    def _one_gift(self) -> ComeBack:
        if self.activity_id and self.message:
            raise ValueError("come_back sends a coupon (activity_id) or a message, not both")
        if self.enabled and not (self.activity_id or self.message):
            raise ValueError("come_back needs activity_id or message when enabled")
        return self


class MemberTiers(_Model):
    """Following grants ``tier_on_follow`` (None: no tier); ``on_unfollow`` keeps the tier, drops it or sets a named
    tier. With ``card_template_id`` each granted tier is also written to the member card (``alipay.marketing.card.
    update``, card number = the user's id, type ``card_no_type``). ``confirm_follow`` asks Alipay
    (``alipay.open.public.user.follow.query``) before granting."""

    tier_on_follow: TierName | None = "silver"
    on_unfollow: TierName = "keep"  # "keep" | "drop" | a tier
    card_template_id: str | None = Field(default=None, min_length=1, max_length=64)
    card_no_type: Literal["D_ALIPAY_UID", "D_OPEN_ID"] | None = None  # None: user_id when known, else open_id
    confirm_follow: bool = False


class RulesConfig(_Model):
    browse_no_order: BrowseNoOrder = Field(default_factory=BrowseNoOrder)
    first_order: FirstOrder = Field(default_factory=FirstOrder)
    come_back: ComeBack = Field(default_factory=ComeBack)
    tiers: MemberTiers = Field(default_factory=MemberTiers)


def rules_config(policy: dict[str, Any] | None) -> RulesConfig:
    """An app's rules from its policy document (``AppRecord.policy``); defaults when absent."""
    policy = policy or {}
    raw = dict(policy.get("rules") or {})
    if "tiers" not in raw:
        tiers: dict[str, Any] = {}
        if "tier_on_follow" in policy:
            tiers["tier_on_follow"] = policy["tier_on_follow"] or None
        if "tier_on_unfollow" in policy:
            value = policy["tier_on_unfollow"]
            tiers["on_unfollow"] = "keep" if value is None else ("drop" if value in ("", "none") else value)
        raw["tiers"] = tiers
    return RulesConfig.model_validate(raw)
