"""functions/campaign_scheduler/app.py: the time it hands the runner, and how it routes Scheduler's raw input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lifelink_local.handlers import LambdaContext, load_module

APP = Path(__file__).resolve().parents[3] / "functions" / "campaign_scheduler" / "app.py"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Any:
    module = load_module(APP)
    monkeypatch.setattr(module, "_run", None)
    return module


class FakeRunner:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], datetime]] = []

    def handle(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        self.calls.append((event, now))
        return {"done": {event.get("campaign_id", "*"): []}}


def test_a_boundary_delivered_early_runs_at_its_scheduled_time(app: Any) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=30)).replace(microsecond=0)
    now = app.event_time({"kind": "boundary", "scheduled_at": soon.isoformat()})
    assert now == soon


def test_a_late_boundary_and_the_reconciler_run_at_the_clock(app: Any) -> None:
    before = datetime.now(UTC)
    late = app.event_time({"kind": "boundary", "scheduled_at": "2020-01-01T00:00:00+08:00"})
    reconcile = app.event_time({"kind": "reconcile", "scheduled_at": "2999-01-01T00:00:00+00:00"})
    garbage = app.event_time({"kind": "boundary", "scheduled_at": "not a time"})
    for value in (late, reconcile, garbage):
        assert value >= before and value.tzinfo is not None


def test_raw_input_goes_to_the_runner(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = FakeRunner()
    monkeypatch.setattr(app, "_run", (runner, None))  # no idempotency table: straight to the runner
    context = LambdaContext(function_name="CampaignSchedulerFunction")
    answer = app.handler({"kind": "reconcile"}, context)
    assert answer == {"done": {"*": []}}
    boundary = {"kind": "boundary", "campaign_id": "c1", "boundary": "burst_start",
                "scheduled_at": "2020-01-01T00:00:00+08:00"}
    assert app.handler(boundary, context) == {"done": {"c1": []}}
    assert [event for event, _ in runner.calls] == [{"kind": "reconcile"}, boundary]


def test_a_boundary_delivered_twice_reaches_the_runner_once(app: Any, aws: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With IDEMPOTENCY_TABLE set, a repeated delivery (same campaign, boundary, scheduled_at) gets the first
    answer back from the idempotency record; a different scheduled_at is a new delivery."""
    import lifelink.campaign_runner as campaign_runner

    runner = FakeRunner()
    monkeypatch.setattr(campaign_runner.CampaignRunner, "from_env", classmethod(lambda cls, **_: runner))
    monkeypatch.setenv("IDEMPOTENCY_TABLE", aws.tables["IdempotencyTable"])
    context = LambdaContext(function_name="CampaignSchedulerFunction")
    boundary = {"kind": "boundary", "campaign_id": "c1", "boundary": "burst_start",
                "scheduled_at": "2020-01-01T00:00:00+08:00"}
    first = app.handler(dict(boundary), context)
    again = app.handler(dict(boundary), context)
    moved = app.handler({**boundary, "scheduled_at": "2020-01-02T00:00:00+08:00"}, context)
    assert first == again == moved == {"done": {"c1": []}}
    assert [event["scheduled_at"] for event, _ in runner.calls] == ["2020-01-01T00:00:00+08:00",
                                                                  "2020-01-02T00:00:00+08:00"]
