"""`make run`'s demo campaign as a user meets it: the stack in its own process (ephemeral ports), the campaign
applied from local/demo/campaign.yaml with its phases scaled down to seconds, and its progress as printed: every
boundary delivered by the local Scheduler ticker, each phase entered in order, every action fired once, the
audience's jobs through the message gateway, and the schedule group gone once the campaign closed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

SCALE = "0.1"  # a one-minute lead becomes 6 s (the apply has time to finish), two-minute phases 12 s


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> str:
    state = tmp_path_factory.mktemp("lifelink-campaign-state")
    env = {**os.environ, "LIFELINK_MOTO_PORT": "0", "LIFELINK_API_PORT": "0", "LIFELINK_ALIPAY_PORT": "0",
           "LIFELINK_DEMO_TIME_SCALE": SCALE, "PYTHONUNBUFFERED": "1"}
    env.pop("AWS_ENDPOINT_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "lifelink_local.stack", "--exit", "--state-dir", str(state)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


def _events(out: str) -> list[str]:
    """The watch lines without their clock: ``[08:15:36] campaign …`` → ``campaign …``."""
    return [m.group(1) for m in re.finditer(r"^  \[\d\d:\d\d:\d\d\] (.*)$", out, re.MULTILINE)]


def test_the_campaign_moves_through_every_phase_in_order(output: str) -> None:
    states = [line.split(": ", 1)[1] for line in _events(output) if line.startswith("campaign demo-double-11: ")]
    assert states == ["scheduled", "scheduled → preheat", "preheat → burst", "burst → settle", "settle → closed"]
    assert "states: scheduled → preheat → burst → settle → closed" in output


def test_every_boundary_schedule_is_delivered_once_by_the_ticker(output: str) -> None:
    fired = [line.split()[1] for line in _events(output) if line.startswith("schedule ")]
    assert sorted(fired) == sorted(["preheat_start", "action-early", "burst_start", "settle_start",
                                    "action-survey", "settle_end"])
    assert all(line.endswith("delivered") for line in _events(output) if line.startswith("schedule "))


def test_every_action_fires_once_in_its_phase(output: str) -> None:
    fired = [line.split()[1] for line in _events(output) if line.startswith("action ")]
    assert sorted(fired) == ["burst.live", "burst.share", "preheat.early", "preheat.topic", "settle.draw",
                             "settle.survey"]
    events = _events(output)
    position = {line.split(": ", 1)[1]: i for i, line in enumerate(events) if line.startswith("campaign ")}
    for action in fired:
        index = next(i for i, line in enumerate(events) if line.startswith(f"action {action} "))
        phase = action.split(".")[0]
        entered = next(i for key, i in position.items() if key.endswith(f"→ {phase}"))
        assert index > entered, action


def test_pushes_reach_the_followers_through_the_gateway(output: str) -> None:
    # The journey leaves two followers of the life account; the topic push queues a job for each, and the
    # gateway decides both: sent, or held when the run falls in the default quiet hours (22:00-08:00 Shanghai).
    assert "action preheat.topic fired: held_out 0, queued 2" in output
    assert "jobs preheat.topic life_template: 2" in output
    decided = {m.group(1): int(m.group(2))
               for m in re.finditer(r"^  outcomes preheat\.topic life_template (.+): (\d+)$", output, re.MULTILINE)}
    assert sum(decided.values()) == 2, decided
    assert set(decided) <= {"sent", "held (quiet_hours)"}, decided


def test_early_bird_reservations_grant_a_coupon_each_and_feed_the_draw(output: str) -> None:
    for user in ("0001", "0002"):
        assert f"reservation early by user …{user}: reserved (coupon early-bird)" in output
    assert "jobs preheat.early coupon: 2" in output  # one coupon per reserving user, never two
    assert "action settle.draw fired: eligible 2, held_out 0, queued 2, winners 2" in output
    assert "jobs settle.draw life_template: 2" in output


def test_the_schedule_group_is_removed_when_the_campaign_closes(output: str) -> None:
    assert "schedule group lifelink-demo-double-11: removed" in output
