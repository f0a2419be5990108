"""Campaign administration routes through InternalApi.handle (payload-2.0 events) against moto: DynamoDB and
EventBridge Scheduler in-process."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from aws_lambda_powertools.logging import Logger

from lifelink.api import ApiDeps, InternalApi
from lifelink.scheduling import CampaignSchedules, group_name
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.campaigns import CampaignStore
from lifelink.store.ledger import Ledger
from lifelink_local.handlers import LambdaContext
from tests.unit.api.conftest import Answer, iam_event

LIFE_APP = "2021000000000001"
MINI_APP = "2021000000000002"
OTHER_LIFE = "2021000000000003"
TARGET = "arn:aws:lambda:us-east-1:123456789012:function:lifelink-campaign-scheduler"
ROLE = "arn:aws:iam::123456789012:role/lifelink-scheduler-invoke"
SHANGHAI = ZoneInfo("Asia/Shanghai")
FOLLOWERS = [f"20880000000000{i:02d}" for i in range(5)]


def definition(campaign_id: str = "spring-sale", *, days_ahead: int = 2, **overrides: Any) -> dict[str, Any]:
    """A valid campaign starting ``days_ahead`` days from now (wall-clock Asia/Shanghai, as merchants write it)."""
    start = (datetime.now(SHANGHAI) + timedelta(days=days_ahead)).replace(minute=0, second=0, microsecond=0)

    def at(hours: int) -> str:
        return (start + timedelta(hours=hours)).replace(tzinfo=None).isoformat()

    body: dict[str, Any] = {
        "id": campaign_id,
        "name": "Spring sale",
        "life_account": LIFE_APP,
        "mini_programs": [MINI_APP],
        "holdout_share": 0.1,
        "coupons": {"early": {"activity_id": "ACT1", "stock": 100}, "prize": {"activity_id": "ACT2", "stock": 3}},
        "phases": {
            "preheat": {
                "start": at(0),
                "end": at(24),
                "actions": [
                    {"id": "topic", "type": "topic_push",
                     "message": {"template_id": "TPL_TOPIC", "keywords": ["Spring sale"]},
                     "link": {"page": "pages/topic/index"}},
                    {"id": "reserve", "type": "early_bird", "coupon": "early", "at": at(2)},
                ],
            },
            "burst": {"start": at(24), "end": at(48), "actions": []},
            "settle": {
                "start": at(48),
                "end": at(72),
                "actions": [
                    {"id": "draw", "type": "winners", "pool": "reservations", "count": 2, "prize": "prize",
                     "message": {"template_id": "TPL_WIN", "keywords": ["You won"]},
                     "claim_link": {"page": "pages/claim/index"}},
                ],
            },
        },
    }
    body.update(overrides)
    return body


Call = Callable[..., Answer]


def register_world(dynamodb: Any, table: str) -> None:
    registry = AppRegistry(dynamodb, table, boto3.client("secretsmanager"))
    secret = {"app_private_key": "unused", "alipay_public_key": "unused"}
    registry.register(AppRecord(app_id=LIFE_APP, kind="life", secret_name=f"lifelink/apps/{LIFE_APP}"), secret)
    registry.register(AppRecord(app_id=OTHER_LIFE, kind="life", secret_name=f"lifelink/apps/{OTHER_LIFE}"), secret)
    registry.register(
        AppRecord(app_id=MINI_APP, kind="mini", secret_name=f"lifelink/apps/{MINI_APP}", life_account=LIFE_APP),
        secret,
    )
    registry.configure(LIFE_APP, templates=["TPL_TOPIC", "TPL_WIN"])
    audience = Audience(dynamodb, table)
    for user in FOLLOWERS:
        audience.set_following(LIFE_APP, user, True, datetime.now(UTC) - timedelta(days=1))


def api_deps(provisioned: Any) -> ApiDeps:
    dynamodb, table = boto3.client("dynamodb"), provisioned.tables["StateTable"]
    return ApiDeps(
        registry=AppRegistry(dynamodb, table),
        audience=Audience(dynamodb, table),
        sqs=boto3.client("sqs"),
        outbound_queue_url=provisioned.queues["OutboundQueue"],
        ledger=Ledger(dynamodb, table),
        logger=Logger(service="test_campaign_admin"),
        dynamodb=dynamodb,
        state_table=table,
        scheduler=boto3.client("scheduler"),
        scheduler_target_arn=TARGET,
        scheduler_role_arn=ROLE,
    )


@pytest.fixture
def deps(aws: Any) -> ApiDeps:
    d = api_deps(aws)
    register_world(d.dynamodb, d.state_table)
    return d


@pytest.fixture
def store(deps: ApiDeps) -> CampaignStore:
    return CampaignStore(deps.dynamodb, deps.state_table)


@pytest.fixture
def schedules(deps: ApiDeps) -> CampaignSchedules:
    return CampaignSchedules(deps.scheduler, TARGET, ROLE)


@pytest.fixture
def call(deps: ApiDeps) -> Call:
    api = InternalApi(deps)

    def invoke(method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Answer:
        if body is not None and not isinstance(body, str | bytes):
            body = json.dumps(body)
        event = iam_event(method, path, body)
        if query:
            event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
            event["queryStringParameters"] = dict(query)
        result = api.handle(event, LambdaContext(function_name="internal_api"))
        raw = result.get("body") or ""
        return Answer(result["statusCode"], json.loads(raw) if raw else None, dict(result.get("headers") or {}))

    return invoke


def schedule_names(deps: ApiDeps, campaign_id: str) -> set[str]:
    try:
        page = deps.scheduler.list_schedules(GroupName=group_name(campaign_id))
    except deps.scheduler.exceptions.ResourceNotFoundException:
        return set()
    return {s["Name"] for s in page["Schedules"]}


def group_exists(deps: ApiDeps, campaign_id: str) -> bool:
    try:
        deps.scheduler.get_schedule_group(Name=group_name(campaign_id))
    except deps.scheduler.exceptions.ResourceNotFoundException:
        return False
    return True


# ---- apply -------------------------------------------------------------------------------------------------


def test_a_valid_definition_is_stored_scheduled_and_its_boundaries_get_schedules(
    call: Call, deps: ApiDeps, store: CampaignStore
) -> None:
    answer = call("POST", "/campaigns", definition())

    assert answer.status == 201, answer.body
    assert answer.body["id"] == "spring-sale"
    assert (answer.body["result"], answer.body["state"]) == ("created", "scheduled")
    expected = {"preheat_start", "action-reserve", "burst_start", "settle_start", "settle_end"}
    assert set(answer.body["schedules"]) == expected
    assert schedule_names(deps, "spring-sale") == expected
    assert answer.body["next_boundary"]["name"] == "preheat_start"
    assert answer.body["next_boundary"]["at"].endswith("+08:00")
    stored = store.get("spring-sale")
    assert stored is not None and stored.state.value == "scheduled"
    assert stored.campaign.phases.settle.actions[0].id == "draw"
    assert answer.body["definition_hash"] == stored.definition_hash


def test_the_same_definition_again_is_unchanged_and_writes_nothing(
    call: Call, deps: ApiDeps, store: CampaignStore
) -> None:
    first = call("POST", "/campaigns", definition())
    version = store.get("spring-sale").version

    again = call("POST", "/campaigns", definition())

    assert (first.status, again.status) == (201, 200)
    assert (again.body["result"], again.body["state"]) == ("unchanged", "scheduled")
    assert again.body["definition_hash"] == first.body["definition_hash"]
    assert store.get("spring-sale").version == version


def test_a_changed_definition_of_a_scheduled_campaign_replaces_it_and_its_schedules(
    call: Call, deps: ApiDeps, store: CampaignStore
) -> None:
    call("POST", "/campaigns", definition())
    changed = definition()
    changed["phases"]["preheat"]["actions"][1].pop("at")  # the reservation opens with the phase now

    answer = call("POST", "/campaigns", changed)

    assert answer.status == 200
    assert (answer.body["result"], answer.body["state"]) == ("updated", "scheduled")
    assert schedule_names(deps, "spring-sale") == {"preheat_start", "burst_start", "settle_start", "settle_end"}
    assert store.get("spring-sale").campaign.phases.preheat.actions[1].at is None


def test_reapplying_the_same_definition_restores_a_missing_schedule(
    call: Call, deps: ApiDeps, store: CampaignStore
) -> None:
    call("POST", "/campaigns", definition())
    deps.scheduler.delete_schedule(Name="burst_start", GroupName=group_name("spring-sale"))
    version = store.get("spring-sale").version

    again = call("POST", "/campaigns", definition())

    assert (again.status, again.body["result"]) == (200, "unchanged")
    assert "burst_start" in schedule_names(deps, "spring-sale")
    assert store.get("spring-sale").version == version


def test_a_changed_definition_of_a_running_campaign_is_409(call: Call, store: CampaignStore) -> None:
    call("POST", "/campaigns", definition())
    assert store.transition("spring-sale", "scheduled", "preheat")
    before = store.get("spring-sale")

    answer = call("POST", "/campaigns", definition(name="Spring sale, renamed"))

    assert answer.status == 409
    (error,) = answer.body["errors"]
    assert error["loc"] == ["body", "id"]
    assert "preheat" in error["msg"] and "draft or scheduled" in error["msg"]
    after = store.get("spring-sale")
    assert (after.campaign.name, after.version) == ("Spring sale", before.version)
    # The same definition is still fine to re-apply: nothing changes.
    assert call("POST", "/campaigns", definition()).body["result"] == "unchanged"


def test_an_apply_that_stopped_before_scheduling_is_finished_by_applying_again(
    call: Call, deps: ApiDeps, store: CampaignStore
) -> None:
    from lifelink.domain.campaigns import Campaign

    store.put(Campaign.model_validate(definition()))  # stored as a draft, no schedules yet
    assert schedule_names(deps, "spring-sale") == set()

    answer = call("POST", "/campaigns", definition())

    assert (answer.status, answer.body["result"], answer.body["state"]) == (201, "created", "scheduled")
    assert "preheat_start" in schedule_names(deps, "spring-sale")


def test_every_problem_of_an_invalid_definition_comes_back_at_once(
    call: Call, deps: ApiDeps, store: CampaignStore
) -> None:
    bad = definition(holdout_share=0.9, mini_programs=[MINI_APP, "2021000000000099"], life_account=OTHER_LIFE)
    bad["phases"]["burst"]["actions"] = [{"id": "flash", "type": "flash_sale"}]  # no windows, no live link

    answer = call("POST", "/campaigns", bad)

    assert answer.status == 422
    errors = answer.body["errors"]
    locs = {tuple(e["loc"]) for e in errors}
    assert ("body", "holdout_share") in locs  # the definition's own fields (pydantic)
    assert ("body", "phases", "burst", "actions", 0, "windows") in locs
    assert ("body", "phases", "burst", "actions", 0, "live_link") in locs
    assert ("body", "mini_programs", 0) in locs  # bound to another life account (the world)
    assert ("body", "mini_programs", 1) in locs  # not registered
    assert all(set(e) == {"loc", "msg", "type"} and e["msg"] for e in errors)
    by_loc = {tuple(e["loc"]): e for e in errors}
    assert "2021000000000099 is not registered" in by_loc[("body", "mini_programs", 1)]["msg"]
    assert store.get("spring-sale") is None
    assert not group_exists(deps, "spring-sale")


def test_checks_that_need_the_world_report_together(call: Call, deps: ApiDeps, store: CampaignStore) -> None:
    bad = definition(audience={"expression": "tag:nobody_has_this"})
    bad["phases"]["burst"]["start"] = bad["phases"]["preheat"]["start"]  # overlaps preheat
    bad["phases"]["preheat"]["actions"][0]["message"]["template_id"] = "TPL_UNKNOWN"
    bad["phases"]["settle"]["actions"][0]["prize"] = "missing"

    answer = call("POST", "/campaigns", bad)

    assert answer.status == 422
    by_type = {e["type"]: e for e in answer.body["errors"]}
    assert by_type["phase_overlap"]["loc"] == ["body", "phases", "burst", "start"]
    assert by_type["unknown_template"]["loc"] == ["body", "phases", "preheat", "actions", 0, "message", "template_id"]
    assert "TPL_UNKNOWN" in by_type["unknown_template"]["msg"]
    assert by_type["unknown_coupon"]["loc"] == ["body", "phases", "settle", "actions", 0, "prize"]
    assert by_type["audience_empty"]["loc"] == ["body", "audience"]
    assert store.get("spring-sale") is None


@pytest.mark.parametrize("body", ["[1, 2]", "{not json", '"a string"'])
def test_a_body_that_is_not_a_json_object_is_422(call: Call, store: CampaignStore, body: str) -> None:
    answer = call("POST", "/campaigns", body)
    assert answer.status == 422
    assert answer.body["errors"][0]["loc"][0] == "body"
    assert store.list() == []


# ---- read --------------------------------------------------------------------------------------------------


def test_list_shows_every_campaign_with_its_state_and_span(call: Call, store: CampaignStore) -> None:
    assert call("GET", "/campaigns").body == {"campaigns": []}
    call("POST", "/campaigns", definition("late", days_ahead=5))
    call("POST", "/campaigns", definition("early", days_ahead=2))
    store.transition("early", "scheduled", "paused")

    answer = call("GET", "/campaigns")

    assert answer.status == 200
    rows = answer.body["campaigns"]
    assert [(r["id"], r["state"]) for r in rows] == [("early", "paused"), ("late", "scheduled")]
    assert rows[0]["starts_at"] == definition("early")["phases"]["preheat"]["start"] + "+08:00"
    assert rows[0]["ends_at"] == definition("early")["phases"]["settle"]["end"] + "+08:00"


def test_status_shows_phase_windows_next_boundary_and_counts_per_action(call: Call, store: CampaignStore) -> None:
    call("POST", "/campaigns", definition())
    store.claim("spring-sale", "preheat", "topic", datetime.now(UTC))
    store.mark_fired("spring-sale", "preheat", "topic", {"queued": 4, "held_out": 1, "note": "x"})
    store.claim("spring-sale", "preheat", "reserve", datetime.now(UTC))

    answer = call("GET", "/campaigns/spring-sale")

    assert answer.status == 200
    body = answer.body
    assert (body["state"], body["paused_from"], body["timezone"]) == ("scheduled", None, "Asia/Shanghai")
    spec = definition()["phases"]
    assert [(w["phase"], w["start"], w["end"], w["status"]) for w in body["phases"]] == [
        (name, spec[name]["start"] + "+08:00", spec[name]["end"] + "+08:00", "upcoming")
        for name in ("preheat", "burst", "settle")
    ]
    assert body["next_boundary"] == {"name": "preheat_start", "at": spec["preheat"]["start"] + "+08:00"}
    actions = {a["id"]: a for a in body["actions"]}
    assert list(actions) == ["topic", "reserve", "draw"]
    assert (actions["topic"]["status"], actions["topic"]["counts"]) == ("fired", {"queued": 4, "held_out": 1})
    assert (actions["reserve"]["status"], actions["reserve"]["counts"]) == ("firing", {})
    assert (actions["draw"]["status"], actions["draw"]["draw"]) == ("pending", None)
    assert actions["reserve"]["fire_at"] == spec["preheat"]["actions"][1]["at"] + "+08:00"
    assert actions["draw"]["fire_at"] == spec["settle"]["start"] + "+08:00"


def test_status_of_a_running_campaign_marks_the_current_phase(call: Call, store: CampaignStore) -> None:
    body = definition(days_ahead=-1)  # preheat started a day ago, burst starts now
    body["phases"]["preheat"]["actions"][1].pop("at")
    from lifelink.domain.campaigns import Campaign

    store.put(Campaign.model_validate(body))
    store.transition("spring-sale", "draft", "scheduled")
    store.transition("spring-sale", "scheduled", "preheat")

    answer = call("GET", "/campaigns/spring-sale")

    statuses = [w["status"] for w in answer.body["phases"]]
    assert statuses in (["done", "current", "upcoming"], ["current", "upcoming", "upcoming"])
    assert answer.body["state"] == "preheat"
    assert answer.body["next_boundary"]["name"] in ("burst_start", "settle_start")


def test_unknown_campaigns_are_404(call: Call) -> None:
    for method, path in [("GET", "/campaigns/nope"), ("GET", "/campaigns/nope/preview"),
                         ("POST", "/campaigns/nope/pause"), ("POST", "/campaigns/NOT_A_SLUG/cancel")]:
        answer = call(method, path)
        assert answer.status == 404, (method, path)
        assert answer.body["errors"][0]["loc"] == ["path", "campaign_id"]


# ---- transitions -------------------------------------------------------------------------------------------


def test_pause_and_resume_return_to_the_state_paused_in(call: Call, store: CampaignStore) -> None:
    call("POST", "/campaigns", definition())
    store.transition("spring-sale", "scheduled", "preheat")

    paused = call("POST", "/campaigns/spring-sale/pause")
    again = call("POST", "/campaigns/spring-sale/pause")
    status = call("GET", "/campaigns/spring-sale")
    resumed = call("POST", "/campaigns/spring-sale/resume")

    assert paused.status == 200
    assert paused.body == {"id": "spring-sale", "state": "paused", "previous_state": "preheat",
                           "schedules_removed": False}
    assert again.status == 409
    assert "already paused" in again.body["errors"][0]["msg"]
    assert (status.body["state"], status.body["paused_from"]) == ("paused", "preheat")
    assert resumed.status == 200
    assert (resumed.body["state"], resumed.body["previous_state"]) == ("preheat", "paused")
    assert store.get("spring-sale").state.value == "preheat"


def test_resume_of_a_campaign_that_is_not_paused_is_409_with_why(call: Call) -> None:
    call("POST", "/campaigns", definition())
    answer = call("POST", "/campaigns/spring-sale/resume")
    assert answer.status == 409
    (error,) = answer.body["errors"]
    assert error["type"] == "transition_not_allowed"
    assert "scheduled, not paused" in error["msg"]


def test_a_draft_cannot_be_paused(call: Call, store: CampaignStore) -> None:
    from lifelink.domain.campaigns import Campaign

    store.put(Campaign.model_validate(definition()))
    answer = call("POST", "/campaigns/spring-sale/pause")
    assert answer.status == 409
    assert "draft" in answer.body["errors"][0]["msg"]
    assert store.get("spring-sale").state.value == "draft"


def test_cancel_deletes_the_schedules_and_is_final(call: Call, deps: ApiDeps, store: CampaignStore) -> None:
    call("POST", "/campaigns", definition())
    call("POST", "/campaigns/spring-sale/pause")

    cancelled = call("POST", "/campaigns/spring-sale/cancel")

    assert cancelled.status == 200
    assert cancelled.body == {"id": "spring-sale", "state": "cancelled", "previous_state": "paused",
                              "schedules_removed": True}
    assert not group_exists(deps, "spring-sale")
    for verb in ("cancel", "pause", "resume"):
        refused = call("POST", f"/campaigns/spring-sale/{verb}")
        assert refused.status == 409, verb
        assert "cancelled" in refused.body["errors"][0]["msg"]
    changed = call("POST", "/campaigns", definition(name="Again"))
    assert changed.status == 409
    assert store.get("spring-sale").state.value == "cancelled"


def test_status_shows_a_stored_draw(call: Call, store: CampaignStore) -> None:
    from lifelink.store.campaigns import Draw

    call("POST", "/campaigns", definition())
    store.put_draw("spring-sale", "draw", Draw("seed-1", "ab" * 32, 5, FOLLOWERS[:2]))

    draw = {a["id"]: a for a in call("GET", "/campaigns/spring-sale").body["actions"]}["draw"]["draw"]

    assert draw == {"seed": "seed-1", "eligible_hash": "ab" * 32, "eligible_count": 5, "winners": 2}


# ---- preview -----------------------------------------------------------------------------------------------


def table_items(deps: ApiDeps) -> list[dict[str, Any]]:
    return deps.dynamodb.scan(TableName=deps.state_table, ConsistentRead=True)["Items"]


def test_preview_of_a_phase_counts_the_audience_and_messages_and_writes_nothing(
    call: Call, deps: ApiDeps, aws: Any
) -> None:
    from lifelink.domain.campaigns import in_holdout

    call("POST", "/campaigns", definition())
    before = table_items(deps)

    answer = call("GET", "/campaigns/spring-sale/preview", query={"phase": "preheat"})

    assert answer.status == 200, answer.body
    body = answer.body
    assert (body["campaign_id"], body["phase"], body["state"]) == ("spring-sale", "preheat", "scheduled")
    held_out = sum(in_holdout(LIFE_APP, "spring-sale", u, 0.1) for u in FOLLOWERS)
    assert (body["audience"]["size"], body["audience"]["holdout"]) == (len(FOLLOWERS), held_out)
    assert [a["action"] for a in body["actions"]] == ["preheat.topic", "preheat.reserve"]
    assert body["totals"]["messages"] == {"life_template": len(FOLLOWERS) - held_out}
    assert body["coupons"]["early"]["stock"] == 100
    # A dry run: no item written or changed, nothing queued.
    assert table_items(deps) == before
    assert deps.sqs.receive_message(QueueUrl=aws.queues["OutboundQueue"]).get("Messages", []) == []


def test_preview_without_a_phase_covers_every_action_not_fired(call: Call, store: CampaignStore) -> None:
    call("POST", "/campaigns", definition())
    store.claim("spring-sale", "preheat", "topic", datetime.now(UTC))
    store.mark_fired("spring-sale", "preheat", "topic", {"queued": 4})

    answer = call("GET", "/campaigns/spring-sale/preview")

    assert answer.status == 200
    assert answer.body["phase"] is None
    assert [a["action"] for a in answer.body["actions"]] == ["preheat.reserve", "settle.draw"]


def test_preview_rejects_an_unknown_phase(call: Call) -> None:
    call("POST", "/campaigns", definition())
    answer = call("GET", "/campaigns/spring-sale/preview", query={"phase": "later"})
    assert answer.status == 422
    assert answer.body["errors"][0]["loc"] == ["query", "phase"]
