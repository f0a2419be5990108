"""The campaign phase machine, as pure functions: what is due at ``now``, given the state and what has fired.

States: draft → scheduled → preheat → burst → settle → closed, plus paused (from any live state; resume goes
back to the state it was paused in) and cancelled (from anything but closed). ``due`` lists every step whose
time has come, in time order (entering a phase before the actions it starts with, closing last), minus those
already done: running it again after the steps were applied returns nothing, and running it late returns
every missed step so the runner catches up in order. Draft, paused, cancelled and closed campaigns have
nothing due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from lifelink.domain.campaigns import PHASES, Campaign, CampaignState

LIVE_STATES = frozenset(
    {CampaignState.scheduled, CampaignState.preheat, CampaignState.burst, CampaignState.settle}
)
# Position of each live state on the way through; closed is after everything.
_ORDER: dict[CampaignState, int] = {
    CampaignState.draft: -2,
    CampaignState.scheduled: -1,
    CampaignState.preheat: 0,
    CampaignState.burst: 1,
    CampaignState.settle: 2,
    CampaignState.closed: 3,
}
_RANK = {"enter": 0, "fire": 1, "close": 2}

StepKind = Literal["enter", "fire", "close"]


@dataclass(frozen=True)
class Step:
    """One thing to do: enter a phase, fire an action of a phase, or close the campaign."""

    kind: StepKind
    at: datetime
    phase: str | None = None
    action_id: str | None = None

    @property
    def key(self) -> str:
        if self.kind == "enter":
            return f"enter:{self.phase}"
        if self.kind == "fire":
            return f"fire:{self.phase}.{self.action_id}"
        return "close"

    @property
    def fired_key(self) -> str:
        """``phase.action`` (fire steps): the key in ``fired``."""
        return f"{self.phase}.{self.action_id}"


def fired_key(phase: str, action_id: str) -> str:
    return f"{phase}.{action_id}"


def timeline(campaign: Campaign) -> list[Step]:
    """Every step of the campaign, in the order the runner does them."""
    steps = [Step("enter", spec.start, phase=name) for name, spec in campaign.phases.items()]
    steps += [Step("fire", campaign.fire_time(p, a), phase=p, action_id=a.id) for p, a in campaign.actions()]
    steps.append(Step("close", campaign.phases.settle.end))
    phase_index = {name: i for i, name in enumerate(PHASES)}
    return sorted(steps, key=lambda s: (s.at, phase_index.get(s.phase or "", 3), _RANK[s.kind]))


def _done(step: Step, state: CampaignState, fired: set[str]) -> bool:
    if step.kind == "enter":
        return _ORDER[state] >= _ORDER[CampaignState(step.phase)]
    if step.kind == "fire":
        return step.fired_key in fired
    return state is CampaignState.closed


def due(campaign: Campaign, state: CampaignState | str, fired: set[str], now: datetime) -> list[Step]:
    """The steps to do now, in order. Nothing for draft, paused, cancelled or closed campaigns."""
    state = CampaignState(state)
    if state not in LIVE_STATES:
        return []
    return [s for s in timeline(campaign) if s.at <= now and not _done(s, state, fired)]


def pending(campaign: Campaign, state: CampaignState | str, fired: set[str]) -> list[Step]:
    """Every step not done yet, due or not (status: the next boundary). For a paused campaign pass the state it
    was paused in."""
    state = CampaignState(state)
    if state not in _ORDER or state is CampaignState.closed:
        return []
    return [s for s in timeline(campaign) if not _done(s, state, fired)]


def next_step(
    campaign: Campaign, state: CampaignState | str, fired: set[str], now: datetime
) -> Step | None:
    """The first step that is not done and not yet due (None when nothing is left)."""
    return next((s for s in pending(campaign, state, fired) if s.at > now), None)


def can_transition(from_state: CampaignState | str, to_state: CampaignState | str) -> bool:
    """Whether the machine allows ``from_state`` → ``to_state`` (resume: paused → the state it came from)."""
    a, b = CampaignState(from_state), CampaignState(to_state)
    if a in (CampaignState.closed, CampaignState.cancelled):
        return False
    if b is CampaignState.cancelled:
        return True
    if b is CampaignState.paused:
        return a in LIVE_STATES
    if a is CampaignState.paused:
        return b in LIVE_STATES
    if a is CampaignState.draft:
        return b is CampaignState.scheduled
    if b is CampaignState.closed:
        return a is CampaignState.settle
    return b in _ORDER and _ORDER[b] > _ORDER[a] >= _ORDER[CampaignState.scheduled]
