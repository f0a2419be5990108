"""The reduced fault/load proof (issue 6) inside ``make test``: ``python -m lifelink_local.proof --scale reduced``
in its own process (its own local stack: moto's server, the HTTP front, pollers, the Alipay simulator, all on
ephemeral loopback ports), then every row of its table checked from the reconciled numbers it wrote:

- the counts reconcile: observed = expected - lost + duplicated;
- where an idempotency key exists: 0 lost, 0 duplicated;
- elsewhere every loss or duplicate is explained by a cause the proof counted (e.g. calls Alipay executed but
  answered 20000);
- each scenario did what it claims: callbacks delivered three times and late, the outage and the rate limiting
  hit the burst, consumers were killed (one just after its fold committed), writes were throttled.

``make proof`` runs the full scale (docs/proof.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("proof")
    done = subprocess.run(
        [sys.executable, "-m", "lifelink_local.proof", "--scale", "reduced", "--json", str(out / "rows.json"),
         "--log", str(out / "functions.log")],
        cwd=ROOT, capture_output=True, text=True, timeout=840, check=False,
    )
    print(done.stdout)
    assert (out / "rows.json").exists(), done.stderr[-4000:]
    result = json.loads((out / "rows.json").read_text())
    result["exit"] = done.returncode
    result["table"] = done.stdout
    return result


def rows_of(proof: dict[str, Any], scenario: str) -> dict[str, dict[str, Any]]:
    rows = {r["effect"].split(" (")[0]: r for r in proof["rows"] if r["scenario"].startswith(scenario)}
    assert rows, f"no rows for scenario {scenario}"
    return rows


def test_every_row_reconciles_and_keyed_effects_are_exactly_once(proof: dict[str, Any]) -> None:
    assert proof["scale"] == "reduced"
    for r in proof["rows"]:
        where = f"{r['scenario']} / {r['effect']}"
        assert r["expected"] > 0 or r["effect"].startswith("counter lost"), f"{where}: nothing to reconcile"
        assert r["observed"] == r["expected"] - r["lost"] + r["duplicated"], f"{where}: counts do not reconcile"
        if r["keyed"]:
            assert (r["lost"], r["duplicated"]) == (0, 0), f"{where}: lost {r['lost']}, duplicated {r['duplicated']}"
        else:
            assert r["lost"] + r["duplicated"] <= r["explained"], f"{where}: unexplained discrepancies"
    assert proof["exit"] == 0, proof["table"]


def test_callbacks_three_times_shuffled_and_a_day_late(proof: dict[str, Any]) -> None:
    rows = rows_of(proof, "a.")
    notify, gateway = rows["notify events on the queue"], rows["gateway events on the queue"]
    callbacks = notify["expected"] + gateway["expected"]
    accepted = notify["facts"]["accepted_answers"] + gateway["facts"]["accepted_answers"]
    refused = notify["facts"]["refused_answers"] + gateway["facts"]["refused_answers"]
    assert accepted + refused >= 3 * callbacks  # every callback answered at least three times
    assert notify["facts"]["dedupe_records_aged"] >= callbacks  # the late copies came after the clock moved 25 h
    assert notify["facts"]["dedupe_records_aged_h"] >= 25
    assert rows["counter gained"]["expected"] == rows["profiles"]["expected"]
    assert rows["counter lost"]["expected"] > 0 and rows["counter paid_orders"]["expected"] > 0


def test_outage_and_rate_limiting_hit_the_burst(proof: dict[str, Any]) -> None:
    rows = rows_of(proof, "b.")
    tally = rows["coupons issued"]["facts"]["fault_tally"]
    assert tally.get("unknown_error", 0) > 0 and tally.get("rate_limited", 0) > 0, tally
    jobs = rows["jobs ended"]
    assert sum(jobs["facts"]["ends"].values()) == jobs["expected"]
    assert rows["coupons issued"]["expected"] + rows["template messages delivered"]["expected"] > 0


def test_consumers_were_killed_mid_batch(proof: dict[str, Any]) -> None:
    rows = rows_of(proof, "c.")
    reports = rows["welcome messages"]["facts"]["crash_reports"]
    killed = [r for r in reports if r["killed"] and r["exit"] == 137]
    assert killed, reports
    assert any(r.get("kill_after_transactions") and r["transactions"] >= 1 for r in killed), reports  # after the fold
    assert any(r.get("kill_after") and r["writes"] >= 1 for r in killed), reports  # among the reactions' writes
    assert rows["welcome messages"]["expected"] == rows["counter gained"]["expected"]
    assert rows["welcome messages"]["facts"]["events_dlq"] == 0  # nothing dead-lettered on the way


def test_dynamodb_writes_were_throttled(proof: dict[str, Any]) -> None:
    rows = rows_of(proof, "d.")
    throttled = rows["coupons issued"]["facts"]["throttle"]["throttled"]
    assert sum(throttled.values()) > 0 and throttled.get("TransactWriteItems", 0) + throttled.get("UpdateItem", 0)
    assert rows["coupons issued"]["facts"]["events_dlq"] == 0


def test_throttled_writes_are_answered_as_dynamodb_does_and_write_nothing() -> None:
    import uuid

    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from lifelink_local.moto_faults import DynamoThrottle
    from lifelink_local.motoserver import MotoServer

    with MotoServer(0) as server:
        throttle = DynamoThrottle(share=1.0, seed=1)
        server.wrap_app(throttle)
        ddb = boto3.client("dynamodb", endpoint_url=server.endpoint_url, region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local",
                           config=Config(retries={"mode": "standard", "max_attempts": 2}))
        table = f"proof-{uuid.uuid4().hex[:8]}"
        ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        throttle.enable()
        with pytest.raises(ClientError) as put:
            ddb.put_item(TableName=table, Item={"pk": {"S": "a"}})
        assert put.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        assert put.value.response["ResponseMetadata"]["RetryAttempts"] >= 1  # the SDK saw a throttle and retried
        with pytest.raises(ClientError) as tx:
            ddb.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": {"pk": {"S": "b"}}}}])
        assert tx.value.response["Error"]["Code"] == "ThrottlingException"
        assert ddb.scan(TableName=table)["Count"] == 0  # reads pass; nothing was written
        throttle.enable(share=0.0)
        ddb.put_item(TableName=table, Item={"pk": {"S": "a"}})
        assert ddb.get_item(TableName=table, Key={"pk": {"S": "a"}})["Item"]
        assert throttle.tally()["throttled"]["PutItem"] >= 2 and throttle.tally()["seen"]["PutItem"] >= 3
