"""The playbook campaign's timeline: local/demo/playbook.yaml's offsets (a base of 100-second phases) stretched to
fit the number of users and the speed, so the demo's own work of a phase (its pushes on the outbound queue, the
users' requests) fits inside the phase on a small machine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lifelink_local.campaign_demo import load_definition, time_scale

PLAYBOOK_FILE = Path(__file__).resolve().parents[1] / "demo" / "playbook.yaml"
BASE_PHASE_S = 100.0  # the phase length playbook.yaml's offsets are written in
PHASE_FLOOR_S = 40.0  # a phase at speed 1 for a handful of users
PHASE_PER_USER_S = 0.2  # CPU the local stack spends per user in the busiest phase (one push each, plus requests)
# A phase's work is about that of the follows (a webhook call, a fold and a welcome per user) and the article's
# reads: a phase lasts at least this share of the time those took on this machine, measured by the playbook.
MEASURED_SHARE = 0.8


@dataclass(frozen=True)
class Timeline:
    users: int
    speed: float
    measured_s: float = 0.0  # how long the follows and the article took to be folded and sent, on this machine

    @property
    def phase_s(self) -> float:
        """Seconds each phase lasts: the floor shortened by the speed, plus the users' share of the machine (all of
        it times ``LIFELINK_DEMO_TIME_SCALE``, default 1)."""
        planned = PHASE_FLOOR_S / self.speed + PHASE_PER_USER_S * self.users
        return max(planned, MEASURED_SHARE * self.measured_s) * time_scale()

    def fitted(self, measured_s: float) -> Timeline:
        """The same timeline, its phases long enough for a machine that took ``measured_s`` for the follows."""
        return Timeline(self.users, self.speed, measured_s)

    @property
    def scale(self) -> float:
        """Wall-clock seconds per second of playbook.yaml's base timeline."""
        return self.phase_s / BASE_PHASE_S

    def definition(self, now: datetime, path: Path = PLAYBOOK_FILE) -> dict[str, Any]:
        return load_definition(now, self.scale, path)
