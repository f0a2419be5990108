"""`lifelink demo` as a user meets it: the playbook on a local stack of its own (ephemeral ports), a few synthetic
users from the default seed, the campaign's phases sized to seconds. Checked against the population the seed makes
(who reserves, shares, buys, answers) and against the simulator's own count of what it received."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lifelink_local.playbook.command import DEFAULT_SEED
from lifelink_local.playbook.population import make_population

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration
USERS = 30


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    state = tmp_path_factory.mktemp("lifelink-demo-state")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AWS_ENDPOINT_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "lifelink_local.cli", "demo", "--users", str(USERS), "--speed", "4",
         "--state-dir", str(state)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return {"out": done.stdout, "err": done.stderr, "state": state}


def _line(out: str, label: str) -> str:
    found = re.search(rf"^  {label} +(.*)$", out, re.MULTILINE)
    assert found, f"no {label!r} line in:\n{out[-3000:]}"
    return found.group(1)


def _n(text: str, pattern: str) -> int:
    found = re.search(pattern, text)
    assert found, (pattern, text)
    return int(found.group(1))


def test_the_campaign_goes_through_its_phases_in_order_on_time(demo):
    err = str(demo["err"])
    states = re.findall(r"^  \[\d\d:\d\d:\d\d\] campaign demo-playbook: (\w+)$", err, re.MULTILINE)
    assert states == ["preheat", "burst", "settle", "closed"]
    assert "INCOMPLETE" not in str(demo["out"])


def test_the_users_requests_are_what_the_seed_says(demo):
    out = str(demo["out"])
    people = make_population(USERS, DEFAULT_SEED)
    answers = json.loads((Path(str(demo["state"])) / "demo-summary.json").read_text())["requests"]
    assert _line(out, "reservations") == f"{sum(u.reserves for u in people)} (refused 0)", answers
    shares = _line(out, "shares")
    assert _n(shares, r"^(\d+);") == sum(u.shares for u in people), answers
    assert _n(shares, r"votes (\d+)") == sum(u.votes for u in people), answers
    assert shares.endswith("(refused 0)"), answers
    assert _line(out, "survey") == f"{sum(u.answers_survey for u in people)} answers (refused 0)", answers
    assert _n(_line(out, "orders"), r"^(\d+) paid") == sum(u.orders for u in people)
    assert _n(_line(out, "orders"), r"buyers (\d+)") == len({u.user_id for u in people if u.orders})
    article = _line(out, "article")
    readers = sum(u.reads for u in people)
    assert f"opened by {readers} (with its attribution token {readers})" in article


def test_messages_and_coupons_reconcile_with_the_simulator(demo):
    out = str(demo["out"])
    at_sim = _line(out, "at the simulator")
    assert _n(_line(out, "template sent"), r"^(\d+)") == _n(at_sim, r"^(\d+) template messages")
    assert _n(_line(out, "coupons sent"), r"^(\d+)") == _n(at_sim, r"(\d+) coupons")
    coupons = _line(out, "coupons sent")
    for source in ("preheat.early", "burst.share", "browse_no_order", "come_back"):
        assert source in coupons, coupons  # each way to a coupon happened at least once
    templates = _line(out, "template sent")
    for source in ("welcome_on_follow", "preheat.topic", "settle.survey", "first_order"):
        assert source in templates, templates
    winners = _line(out, "winners")
    assert 1 <= _n(winners, r"^(\d+) announced") <= 5
    assert _n(winners, r"(\d+) claimed") <= _n(winners, r"^(\d+) announced")


def test_progress_is_shown_as_lines_without_a_terminal_and_the_report_is_written(demo):
    err = str(demo["err"])
    bars = [line for line in err.splitlines() if line.startswith("[") and "%" in line]
    assert bars and "\r" not in err  # no carriage-return redraws in a pipe
    assert re.search(r"13/13 ", bars[-1])
    report = Path(_line(str(demo["out"]), "report"))
    assert report.is_file() and report.parent == Path(str(demo["state"])).resolve()
