"""Uplift (treated vs holdout by the campaign hash), interest tags with evidence, and the daily rollup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from lifelink.aggregation.groups import GroupDirectory
from lifelink.aggregation.queries import campaign_uplift
from lifelink.aggregation.rollup import roll_up_yesterday
from lifelink.domain.campaigns import in_holdout
from lifelink.store.apps import AppRegistry
from lifelink.store.metrics_store import MetricsStore
from lifelink.store.profiles import ProfileStore
from tests.unit.aggregation.conftest import World
from tests.unit.aggregation.helpers import LIFE_APP, api_get, at, behaviour, session, today, trade

CAMPAIGN = "c-autumn"


def sent(when: datetime, user: str) -> dict[str, Any]:
    return {"schema_version": 1, "event_id": f"out-{user}", "type": "message_outcome", "app_id": LIFE_APP,
            "source": "message_gateway", "occurred_at": when.isoformat(), "received_at": when.isoformat(),
            "user": {"open_id": user}, "ledger_key": f"{LIFE_APP}|{CAMPAIGN}|push|{user}|life_template",
            "channel": "life_template", "status": "sent", "campaign": CAMPAIGN, "phase": "push",
            "message_ref": "abcd1234"}


def test_uplift_is_treated_conversion_minus_holdout_conversion(world: World) -> None:
    names = [f"user{i}" for i in range(60)]
    held = [u for u in names if in_holdout(LIFE_APP, CAMPAIGN, u, 0.5)][:2]
    treated = [u for u in names if not in_holdout(LIFE_APP, CAMPAIGN, u, 0.5)][:4]
    d = today() - timedelta(days=10)
    events = [sent(at(d, 10, i), u) for i, u in enumerate(treated)]
    events += [trade(at(d + timedelta(days=2), 12), treated[0], "U1"),
               trade(at(d + timedelta(days=3), 12), treated[1], "U2"),
               trade(at(d + timedelta(days=6), 12), treated[2], "U5"),
               trade(at(d + timedelta(days=1), 12), held[0], "U3"),
               trade(at(d + timedelta(days=9), 12), held[1], "U4")]  # after the 7-day window
    assert world.consume(events) == []

    store = ProfileStore(boto3.client("dynamodb"), world.stack.tables["ProfilesTable"])
    answer = campaign_uplift(store, treated + held, LIFE_APP, CAMPAIGN, LIFE_APP, 0.5, datetime.now(UTC))

    assert (answer["treated"]["numerator"], answer["treated"]["denominator"]) == (3, 4)
    assert (answer["holdout"]["numerator"], answer["holdout"]["denominator"]) == (1, 2)
    assert answer["value"] == 0.25 and answer["complete"] is True


def test_three_completed_reads_in_a_category_make_an_interest_tag_with_evidence(world: World) -> None:
    d = today() - timedelta(days=2)
    events = []
    for i, art in enumerate(("t1", "t2", "t3")):
        events += [behaviour("article_open", at(d, 9 + i), "reader", article_id=art, category="tea"),
                   behaviour("article_progress", at(d, 9 + i, 5), "reader", article_id=art, depth=0.97, dwell_s=45.0)]
    events.append(behaviour("article_progress", at(d, 15), "reader", article_id="t4", depth=0.97, dwell_s=3.0,
                            category="tea"))  # too quick: not a completed read
    world.consume(events[:4])
    _, before = api_get(world.api, f"/profiles/{LIFE_APP}/reader")
    assert before["tags"] == []

    world.consume(events[4:])
    _, after = api_get(world.api, f"/profiles/{LIFE_APP}/reader")
    (tag,) = after["tags"]
    assert tag["name"] == "interest:tea"
    assert tag["evidence"]["completed_reads"] == ["t1", "t2", "t3"]
    expected_expiry = at(d, 9, 5) + timedelta(days=30)  # when the oldest of the three leaves the 30 days
    assert datetime.fromisoformat(tag["expires_at"]) == expected_expiry
    state = boto3.client("dynamodb").get_item(TableName=world.stack.tables["StateTable"],
                                              Key={"pk": {"S": f"USER#{LIFE_APP}#reader"}, "sk": {"S": "PROFILE"}})
    assert state["Item"]["tags"]["SS"] == ["interest:tea"]  # what campaign audiences select on


def test_the_rollup_sums_yesterdays_shards_into_one_item(world: World) -> None:
    yesterday = today() - timedelta(days=1)
    world.consume([session(at(yesterday, 9 + k), f"s{k}", scene="1020" if k < 2 else "1001") for k in range(5)])
    ddb = boto3.client("dynamodb")
    store = MetricsStore(ddb, world.stack.tables["MetricsTable"])
    directory = GroupDirectory(AppRegistry(ddb, world.stack.tables["StateTable"]))

    done = roll_up_yesterday(store, [LIFE_APP], directory)

    assert done[LIFE_APP][0] == yesterday
    (day,) = store.rollups(LIFE_APP, yesterday, yesterday).values()
    assert day[f"sessions#{yesterday.isoformat()}"] == 5
    assert day[f"life_sessions#{yesterday.isoformat()}"] == 2
    assert day[f"cohort#{yesterday.isoformat()}"] == 5
