"""What every campaign action receives and returns.

An action module has ``fire(ctx) -> ActionResult`` (queue its messages, record what it did) and
``preview(ctx) -> ActionPreview`` (the same decisions, read-only: it writes and sends nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from lifelink.domain.campaigns import Campaign
from lifelink.domain.messages import OutboundJob
from lifelink.store.audience import Audience

ActionPreview = dict[str, Any]


class JobPublisher(Protocol):
    def publish_batch(self, jobs: list[OutboundJob]) -> None: ...


class WinnerPools(Protocol):
    """lifelink.store.participation.Participation (the participation helper's module)."""

    def pool_members(self, campaign_id: str, pool: str, action_id: str | None = None,
                     top: int | None = None) -> list[str]: ...


@dataclass
class ActionResult:
    counts: dict[str, Any] = field(default_factory=dict)


@dataclass
class ActionContext:
    """One action of one campaign, at ``now``. ``cursor`` is where an interrupted fan-out stopped;
    ``save_progress(cursor, counts)`` records progress (None in a preview)."""

    campaign: Campaign
    phase: str
    action: Any
    now: datetime
    audience: Audience
    publisher: JobPublisher | None = None
    store: Any = None  # lifelink.store.campaigns.CampaignStore
    pools: WinnerPools | None = None
    policy_for: Callable[[str], Any] | None = None  # app id -> MessagePolicy
    counters: Any = None  # lifelink.store.counters.Counters (preview: what caps already hold)
    cursor: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    save_progress: Callable[[str, dict[str, Any]], None] | None = None
    # Preview only: sends the preview already counted per (user, channel, day), so caps add up across actions.
    simulated: dict[tuple[str, str, str], int] | None = None
    audience_cache: list[str] | None = None  # preview: the campaign audience, computed once

    @property
    def fire_time(self) -> datetime:
        return self.campaign.fire_time(self.phase, self.action)

    @property
    def phase_end(self) -> datetime:
        return getattr(self.campaign.phases, self.phase).end

    @property
    def job_phase(self) -> str:
        return self.campaign.job_phase(self.phase, self.action.id)
