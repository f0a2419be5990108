"""The playbook demo's pure parts: the population a seed makes, the timeline, the progress display, and how the
summary reads the gateway's outcomes."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest

from lifelink.domain.campaigns import Campaign
from lifelink_local.playbook.driver import ARTICLE_URL, _token_of, demo_policy
from lifelink_local.playbook.population import make_population
from lifelink_local.playbook.progress import Progress
from lifelink_local.playbook.summary import last_outcomes, source_of
from lifelink_local.playbook.timeline import Timeline


def test_a_seed_makes_the_same_people_and_another_seed_others():
    assert make_population(200, 11) == make_population(200, 11)
    assert make_population(200, 11) != make_population(200, 12)


def test_the_population_has_every_behaviour_and_lapsed_users_do_nothing_else():
    people = make_population(1000, 11)
    assert len({u.user_id for u in people}) == 1000
    assert all(u.user_id.startswith("2088") and len(u.user_id) == 16 for u in people)
    for flag in ("unfollows", "lapsed", "reads", "reserves", "views_product", "flash", "orders", "shares",
                 "enters_ugc", "votes", "answers_survey"):
        assert any(getattr(u, flag) for u in people), flag
    for u in people:
        if u.lapsed or u.unfollows:  # the come-back rule needs them silent; unfollowers take no part
            assert not (u.reads or u.reserves or u.views_product or u.orders or u.shares or u.votes)
        assert not u.flash or u.orders  # every flash-sale taker pays
    assert 250 < sum(u.reserves for u in people) < 350  # about 30 %


def test_a_tiny_population_still_has_an_entry_to_vote_for():
    for n in (1, 2, 5):
        people = make_population(n, 3)
        assert any(u.enters_ugc for u in people) or all(u.unfollows or u.lapsed for u in people)


def test_the_timeline_gives_phases_time_for_the_users_and_keeps_the_files_shape():
    small, big = Timeline(30, 4), Timeline(1000, 4)
    assert big.phase_s > small.phase_s
    assert Timeline(30, 8).phase_s < small.phase_s
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    campaign = Campaign.model_validate(small.definition(now))
    phases = campaign.phases
    assert phases.preheat.end == phases.burst.start and phases.burst.end == phases.settle.start
    length = (phases.burst.end - phases.burst.start).total_seconds()
    assert abs(length - small.phase_s) <= 1  # whole seconds
    window = phases.burst.actions[0].windows[0]  # type: ignore[union-attr]
    assert phases.burst.start <= window.start < window.end <= phases.burst.end
    assert set(campaign.mini_programs) == {"2021004100000002", "2021004100000003"}


def test_the_demo_policy_is_accepted_by_the_rules_settings():
    from lifelink.domain.policy import MessagePolicy
    from lifelink.rules.config import rules_config

    policy = demo_policy(12.0)
    rules = rules_config(policy)
    assert rules.browse_no_order.enabled and rules.first_order.enabled and rules.come_back.enabled
    assert rules.browse_no_order.hours * 3600 == 12.0
    assert MessagePolicy.parse(policy).quiet_hours.enabled is False


def test_progress_on_a_terminal_redraws_one_line():
    out = io.StringIO()
    progress = Progress(2, stream=out, tty=True)
    progress.step("follows", total=4)
    progress.advance(2)
    progress.log("a line")
    progress.close()
    text = out.getvalue()
    assert "\r\033[K" in text and "follows 2/4" in text
    assert "a line\n" in text
    assert "[" + "#" * 7 in text  # half of the first of two steps: a quarter of the bar


def test_progress_without_a_terminal_prints_whole_lines_now_and_then():
    out = io.StringIO()
    progress = Progress(2, stream=out, tty=False, line_every_s=3600)
    progress.step("follows", total=100)
    for _ in range(100):
        progress.advance()
    progress.step("campaign")
    progress.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 2  # one per step, none per unit within the hour
    assert "1/2 follows 0/100" in lines[0] and "2/2 campaign" in lines[1]


def test_the_summary_counts_the_last_outcome_of_each_job():
    def outcome(key: str, status: str, at: str, **extra: object) -> str:
        return json.dumps({"type": "message_outcome", "ledger_key": key, "status": status, "occurred_at": at,
                           "channel": "life_template", **extra})

    bodies = [outcome("a", "held", "2026-11-25T01:00:00Z"), outcome("a", "sent", "2026-11-25T02:00:00Z"),
              outcome("b", "capped", "2026-11-25T01:00:00Z"), json.dumps({"type": "follow"}), "not json"]
    latest = last_outcomes(bodies)
    assert {k: v["status"] for k, v in latest.items()} == {"a": "sent", "b": "capped"}
    assert source_of({"campaign": "demo-playbook", "phase": "preheat.topic"}) == "preheat.topic"
    assert source_of({"campaign": "rule-first_order", "phase": "ever", "rule": "first_order"}) == "first_order"
    assert source_of({"campaign": "article-guide", "phase": "-"}) == "article"


def test_the_article_token_is_read_from_the_broadcast_link():
    url = ARTICLE_URL.replace("&query=id%3Dguide-1111", "&query=id%3Dguide-1111%26ll%3D1abc.def")
    assert _token_of({"msg_type": "image-text", "articles": [{"title": "t", "url": url}]}) == "1abc.def"
    assert _token_of(json.dumps({"articles": [{"url": ARTICLE_URL}]})) is None


def test_a_slow_machine_gets_phases_as_long_as_its_follows_took(monkeypatch):
    monkeypatch.delenv("LIFELINK_DEMO_TIME_SCALE", raising=False)
    planned = Timeline(100, 1)
    assert planned.fitted(5.0).phase_s == planned.phase_s  # a fast machine keeps the plan
    assert planned.fitted(1000.0).phase_s == 800.0  # a slow one: 0.8 x what the follows took
    monkeypatch.setenv("LIFELINK_DEMO_TIME_SCALE", "2")
    assert planned.fitted(1000.0).phase_s == 1600.0


def test_a_request_answered_as_already_done_counts_once_and_is_reported():
    from collections import Counter

    from lifelink_local.playbook.summary import Summary

    answers = Counter({"share 201": 3, "share 200": 1, "vote 201": 5, "vote 409 already_voted": 1,
                       "vote 409 closed": 2, "reservation 201": 7, "reservation 503 retried": 2})
    summary = Summary(users=30, seed=11, speed=4, wall_s=75, follows=30, unfollows=1, scenes=Counter({"menu": 30}),
                      outcomes=Counter(), reasons=Counter(), sim=Counter(), answers=answers, readers=0,
                      attributed=0, revenue_cents=0, buyers=0)
    lines = summary.render()
    assert "  shares           4; UGC entries 0, votes 6 (refused 2)" in lines
    assert "  reservations     7 (refused 0)" in lines
    assert any(line.startswith("  repeated         2 request(s)") for line in lines)


def test_lifelink_demo_is_a_command_with_users_speed_and_seed():
    from lifelink_local import cli
    from lifelink_local.playbook import command

    args = cli._parser().parse_args(["demo", "--users", "5", "--speed", "2.5", "--seed", "3"])
    assert (args.users, args.speed, args.seed) == (5, 2.5, 3)
    assert args.run is command._cli_run
    for bad in (["demo", "--users", "0"], ["demo", "--speed", "-1"]):
        with pytest.raises(SystemExit):
            cli._parser().parse_args(bad)
