"""Exactly-once counting: redelivered batches, racing consumers, oversized users, partial batch failures."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3

from lifelink.aggregation.aggregator import Aggregator
from lifelink.aggregation.groups import GroupDirectory
from lifelink.domain.events import parse_event
from lifelink.store.apps import AppRegistry
from lifelink_local.handlers import LambdaContext
from tests.unit.aggregation.conftest import World
from tests.unit.aggregation.helpers import at, behaviour, metric, session, sqs_batch, today, trade


def _mixed(d: Any) -> list[dict[str, Any]]:
    events = []
    for i, user in enumerate(("p1", "p2", "p3")):
        events += [session(at(d, 9 + i), user),
                   behaviour("page_view", at(d, 9 + i, 1), user, page="pages/a", foreground_s=40.0),
                   behaviour("article_open", at(d, 9 + i, 2), user, article_id="art1", category="tea"),
                   behaviour("article_progress", at(d, 9 + i, 5), user, article_id="art1", depth=0.5 + 0.25 * i,
                             dwell_s=30.0),
                   behaviour("like", at(d, 9 + i, 6), user, article_id="art1")]
    events.append(trade(at(d, 20), "p1", "X1", amount="12.30"))
    return events


def test_the_same_batch_delivered_twice_changes_nothing(world: World) -> None:
    d = today() - timedelta(days=1)
    batch = _mixed(d)
    assert world.consume(batch) == []
    profiles, counters = world.items("ProfilesTable"), world.items("MetricsTable")

    assert world.consume(batch) == []
    assert world.consume(list(reversed(batch))) == []

    assert world.items("ProfilesTable") == profiles
    assert world.items("MetricsTable") == counters
    (stay,) = metric(world.api, "avg_page_stay_seconds", d, d)
    assert (stay["page"], stay["numerator"], stay["denominator"]) == ("pages/a", 120.0, 3)
    (reads,) = metric(world.api, "read_completion_rate", d, d)
    assert (reads["numerator"], reads["denominator"]) == (1, 3)  # only p3 reached 100 % with 30 s
    assert reads["exit_bands"] == [0, 0, 1, 1, 1]
    (inter,) = metric(world.api, "interaction_rate", d, d)
    assert (inter["numerator"], inter["denominator"], inter["likes"]) == (3, 3, 3)


def test_a_redelivered_like_counts_once_and_a_new_like_counts(world: World) -> None:
    d = today() - timedelta(days=1)
    like = behaviour("like", at(d, 9), "fan", article_id="a9")
    world.consume([like])
    world.consume([like, behaviour("like", at(d, 10), "fan", article_id="a9")])
    (inter,) = metric(world.api, "interaction_rate", d, d)
    assert (inter["likes"], inter["denominator"]) == (2, 0)  # liked from a list, never opened: not a reader


def _aggregator(world: World) -> Aggregator:
    ddb = boto3.client("dynamodb")
    tables = world.stack.tables
    return Aggregator(ddb, tables["ProfilesTable"], tables["MetricsTable"],
                      GroupDirectory(AppRegistry(ddb, tables["StateTable"])), state_table=tables["StateTable"])


def test_two_consumers_racing_on_one_user_count_exactly_once(world: World) -> None:
    d = today() - timedelta(days=2)
    first = [session(at(d, 9), "racer"), behaviour("page_view", at(d, 9, 1), "racer", page="p", foreground_s=10.0)]
    second = [session(at(d + timedelta(days=1), 9), "racer"),
              behaviour("page_view", at(d + timedelta(days=1), 9, 1), "racer", page="p", foreground_s=20.0)]
    a, b = _aggregator(world), _aggregator(world)
    fired = []

    def b_wins_the_race() -> None:  # B reads, folds and commits between A's read and A's write
        if not fired:
            fired.append(True)
            assert b.fold_batch([(e["event_id"], parse_event(e)) for e in second]).failed == set()

    a.before_write = b_wins_the_race
    result = a.fold_batch([(e["event_id"], parse_event(e)) for e in first])

    assert result.failed == set()
    assert result.stats.conflicts == 1  # A's version check failed once, A re-read and folded again
    views = metric(world.api, "avg_page_stay_seconds", d, d + timedelta(days=1))
    assert [(p["numerator"], p["denominator"]) for p in views] == [(10.0, 1), (20.0, 1)]
    (rate,) = metric(world.api, "return_rate_7d", d, d)
    assert (rate["numerator"], rate["denominator"]) == (1, 1)
    sessions = metric(world.api, "life_traffic_share", d, d + timedelta(days=1))
    assert [p["denominator"] for p in sessions] == [1, 1]


def test_a_user_whose_write_exceeds_one_transaction_is_journalled_and_still_exact(world: World) -> None:
    start = today() - timedelta(days=200)
    orders = [trade(at(start + timedelta(days=40 * k), 12), "whale", f"W{k}", amount="10.00") for k in range(5)]
    assert world.consume(orders) == []  # 5 windows of 30 days: 150 days of counters for one user

    points = metric(world.api, "purchase_frequency_30d", start, start + timedelta(days=200))
    assert len(points) == 150
    assert all((p["numerator"], p["denominator"]) == (1, 1) for p in points)
    profile = next(i for i in world.items("ProfilesTable") if i["sk"]["S"] == "P")
    assert '"pend"' not in profile["f"]["S"]  # the journal was applied


def test_an_unparseable_record_is_reported_and_the_rest_are_counted(world: World) -> None:
    d = today() - timedelta(days=1)
    good = session(at(d, 9), "ok")
    event = sqs_batch([good])
    event["Records"].append({**event["Records"][0], "messageId": "broken", "body": "{not json"})
    answer = world.module.handler(event, LambdaContext(function_name="metrics"))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "broken"}]}
    (share,) = metric(world.api, "life_traffic_share", d, d)
    assert share["denominator"] == 1


def test_a_batch_writes_each_user_and_counter_once(world: World) -> None:
    d = today() - timedelta(days=1)
    events = [session(at(d, 8, k), f"u{k % 10}") for k in range(50)]
    events += [behaviour("page_view", at(d, 9, k), f"u{k % 10}", page="pages/a", foreground_s=5.0) for k in range(50)]
    result = _aggregator(world).fold_batch([(e["event_id"], parse_event(e)) for e in events])
    assert result.failed == set()
    assert result.stats.write_requests == 1  # 10 profiles + a handful of counters: one transaction
    assert result.stats.write_requests / len(events) <= 0.2


def test_a_user_whose_event_cannot_fold_is_redelivered_and_the_others_are_counted(world: World) -> None:
    d = today() - timedelta(days=1)
    bad = trade(at(d, 9), "odd", "FRACTION", amount="0.001")  # not a whole number of cents
    good = session(at(d, 9), "fine")
    assert world.consume([bad, good]) == [f"m-{bad['event_id']}"]
    (share,) = metric(world.api, "life_traffic_share", d, d)
    assert share["denominator"] == 1
