"""POST /subscriptions: grants reported by the mini program's backend land in the audience store."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from lifelink.store.audience import Audience
from tests.unit.api.conftest import LIFE_APP, MINI_APP, OPEN_ID, Call


def _audience(stack: Any) -> Audience:
    return Audience(boto3.client("dynamodb"), stack.tables["StateTable"])


def test_accepted_templates_become_grants_for_that_user(call: Call, stack: Any) -> None:
    answer = call(
        "POST", "/subscriptions", {"app_id": MINI_APP, "user": {"open_id": OPEN_ID}, "template_ids": ["TPL_A", "TPL_B"]}
    )

    assert answer.status == 200
    assert answer.body == {"app_id": MINI_APP, "remaining": {"TPL_A": 1, "TPL_B": 1}}
    audience = _audience(stack)
    assert audience.grants(MINI_APP, OPEN_ID, "TPL_A") == 1
    assert audience.grants(MINI_APP, OPEN_ID, "TPL_B") == 1
    assert audience.grants(MINI_APP, OPEN_ID, "TPL_C") == 0
    assert audience.grants(MINI_APP, "another-user", "TPL_A") == 0


def test_reports_add_up_and_count_sets_how_many(call: Call, stack: Any) -> None:
    report = {"app_id": MINI_APP, "user": {"user_id": "2088102122458832"}, "template_ids": ["TPL_A"]}
    assert call("POST", "/subscriptions", report).body["remaining"] == {"TPL_A": 1}
    answer = call("POST", "/subscriptions", {**report, "count": 3})
    assert answer.body["remaining"] == {"TPL_A": 4}
    audience = _audience(stack)
    assert audience.grants(MINI_APP, "2088102122458832", "TPL_A") == 4
    assert audience.consume_grant(MINI_APP, "2088102122458832", "TPL_A")
    assert audience.grants(MINI_APP, "2088102122458832", "TPL_A") == 3


@pytest.mark.parametrize(
    ("report", "loc"),
    [
        ({"user": {"open_id": OPEN_ID}, "template_ids": ["T1"]}, ["body", "app_id"]),
        ({"app_id": MINI_APP, "user": {"open_id": OPEN_ID}, "template_ids": ["T1", "T2", "T3", "T4"]}, None),
        ({"app_id": MINI_APP, "user": {"open_id": OPEN_ID}, "template_ids": []}, ["body", "template_ids"]),
        ({"app_id": MINI_APP, "user": {"open_id": OPEN_ID}, "template_ids": ["T1", "T1"]}, ["body", "template_ids"]),
        ({"app_id": MINI_APP, "user": {}, "template_ids": ["T1"]}, ["body", "user"]),
        (
            {"app_id": MINI_APP, "user": {"open_id": OPEN_ID, "user_id": "2088"}, "template_ids": ["T1"]},
            ["body", "user"],
        ),
        ({"app_id": MINI_APP, "user": {"open_id": OPEN_ID}, "template_ids": ["T1"], "count": 0}, ["body", "count"]),
    ],
)
def test_bad_reports_are_422_and_grant_nothing(
    call: Call, stack: Any, report: dict[str, Any], loc: list[str] | None
) -> None:
    answer = call("POST", "/subscriptions", report)

    assert answer.status == 422
    locs = [e["loc"] for e in answer.body["errors"]]
    assert locs == [loc or ["body", "template_ids"]]
    for template_id in ("T1", "T2", "T3", "T4"):
        assert _audience(stack).grants(MINI_APP, OPEN_ID, template_id) == 0


def test_every_error_of_a_report_at_once(call: Call) -> None:
    answer = call("POST", "/subscriptions", {"app_id": "", "user": {}, "template_ids": [], "count": -1})
    assert answer.status == 422
    assert sorted(e["loc"][1] for e in answer.body["errors"]) == ["app_id", "count", "template_ids", "user"]


def test_only_registered_mini_programs_take_grants(call: Call, stack: Any) -> None:
    for app_id, kind in (("2021999999999999", "unknown_app"), (LIFE_APP, "not_a_mini_program")):
        report = {"app_id": app_id, "user": {"open_id": OPEN_ID}, "template_ids": ["T1"]}
        answer = call("POST", "/subscriptions", report)
        assert answer.status == 422
        assert [(e["loc"], e["type"]) for e in answer.body["errors"]] == [(["body", "app_id"], kind)]
        assert _audience(stack).grants(app_id, OPEN_ID, "T1") == 0
