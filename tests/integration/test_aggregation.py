"""The metrics consumer on moto's server over real HTTP: the handler folds batches, GET /metrics and
GET /profiles answer through InternalApi.handle, and four consumers racing on the same users (threads, each with
its own clients) still count every event exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest

from lifelink.aggregation.aggregator import Aggregator
from lifelink.aggregation.groups import GroupDirectory
from lifelink.api import ApiDeps, InternalApi
from lifelink.domain.events import parse_event
from lifelink.store import aws as aws_clients
from lifelink.store.apps import AppRegistry
from lifelink_local.handlers import LambdaContext
from lifelink_local.motoserver import MotoServer
from lifelink_local.provision import Provisioned, provision
from tests.conftest import load_function
from tests.unit.aggregation.conftest import register_apps
from tests.unit.aggregation.helpers import api_get, at, behaviour, metric, session, sqs_batch, today, trade

REGION = "us-east-1"


@pytest.fixture
def server_stack() -> Iterator[Provisioned]:
    mp = pytest.MonkeyPatch()
    server = MotoServer(port=0)
    endpoint = server.start()
    try:
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}.items():
            mp.setenv(name, value)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        aws_clients.client.cache_clear()
        stack = provision(prefix="aggregation")
        for function_id in ("InternalApiFunction", "MetricsFunction"):
            for k, v in stack.function_environment(function_id).items():
                mp.setenv(k, v)
        register_apps(stack)
        yield stack
    finally:
        server.stop()
        aws_clients.client.cache_clear()
        from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

        DEFAULT_PROVIDERS.clear()
        mp.undo()


@pytest.mark.integration
def test_the_consumer_over_http_counts_and_the_api_answers(server_stack: Provisioned) -> None:
    module = load_function("metrics")
    d0 = today() - timedelta(days=9)
    events = [session(at(d0, 9), u) for u in ("h1", "h2", "h3")]
    events += [session(at(d0 + timedelta(days=1), 9), "h1"), session(at(d0 + timedelta(days=5), 9), "h2"),
               trade(at(d0 + timedelta(days=5), 10), "h2", "HT1", amount="25.00")]
    batch = sqs_batch(events)
    for _ in range(2):  # the second delivery changes nothing
        answer = module.handler(batch, LambdaContext(function_name="metrics"))
        assert answer == {"batchItemFailures": []}

    api = InternalApi(ApiDeps.from_env())
    (rate,) = metric(api, "return_rate_7d", d0, d0)
    assert (rate["numerator"], rate["denominator"], rate["complete"]) == (2, 3, True)
    (day1,) = metric(api, "day_n_retention", d0, d0, n=1)
    assert (day1["numerator"], day1["denominator"]) == (1, 3)
    status, profile = api_get(api, "/profiles/2021000000000002/h2")  # the mini program's user, in its group
    assert status == 200
    assert (profile["group"], profile["orders"]["paid"], profile["active_days"]) == ("2021000000000001", 1, 2)
    status, missing = api_get(api, "/profiles/2021000000000001/nobody")
    assert status == 404 and missing["errors"][0]["type"] == "not_found"
    status, bad = api_get(api, "/metrics", app="2021000000000001", metric="no_such_metric")
    assert status == 422 and bad["errors"][0]["loc"] == ["query", "metric"]


@pytest.mark.integration
def test_four_racing_consumers_count_exactly_once(server_stack: Provisioned) -> None:
    d = today() - timedelta(days=1)
    users = [f"r{i}" for i in range(4)]
    events = [behaviour("page_view", at(d, 8, k % 60), users[k % 4], page="pages/hot", foreground_s=float(k % 7))
              for k in range(160)]
    events += [session(at(d, 9, k), users[k % 4]) for k in range(40)]
    parsed = [(e["event_id"], parse_event(e)) for e in events]
    slices = [parsed[i::4] for i in range(4)]  # each consumer gets every user, so they collide
    failures: list[set[str]] = []
    barrier = threading.Barrier(4)

    def consume(part: list) -> None:  # type: ignore[type-arg]
        ddb = boto3.session.Session().client("dynamodb")
        tables = server_stack.tables
        agg = Aggregator(ddb, tables["ProfilesTable"], tables["MetricsTable"],
                         GroupDirectory(AppRegistry(ddb, tables["StateTable"])), max_attempts=12)
        barrier.wait()
        pending = part
        for _ in range(10):  # SQS would redeliver what failed; here the thread does
            result = agg.fold_batch(pending)
            pending = [p for p in pending if p[0] in result.failed]
            if not pending:
                break
        failures.append({p[0] for p in pending})

    threads = [threading.Thread(target=consume, args=(s,)) for s in slices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert failures == [set()] * 4
    api = InternalApi(ApiDeps.from_env())
    (stay,) = metric(api, "avg_page_stay_seconds", d, d)
    assert stay["denominator"] == 160
    assert stay["numerator"] == sum(float(k % 7) for k in range(160))
    (share,) = metric(api, "life_traffic_share", d, d)
    assert share["denominator"] == 40
