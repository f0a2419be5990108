"""moto's server in a child process (make run, lifelink demo): real HTTP, atomic requests, gone after stop()."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from lifelink_local.motoserver import MotoServer
from tests.conftest import AWS_ENV

pytestmark = pytest.mark.integration


def test_a_child_process_serves_dynamodb_atomically_and_exits_on_stop() -> None:
    server = MotoServer(port=0, process=True)
    endpoint = server.start()
    child = server._child
    assert endpoint.startswith("http://127.0.0.1:") and child is not None
    try:
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=AWS_ENV["AWS_DEFAULT_REGION"],
                           aws_access_key_id="local", aws_secret_access_key="local")
        ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        ddb.put_item(TableName="t", Item={"pk": {"S": "stock"}, "n": {"N": "20"}})

        def take(_: int) -> bool:
            try:
                ddb.update_item(TableName="t", Key={"pk": {"S": "stock"}}, UpdateExpression="ADD n :m",
                                ConditionExpression="n > :z", ExpressionAttributeValues={":m": {"N": "-1"},
                                                                                         ":z": {"N": "0"}})
                return True
            except ddb.exceptions.ConditionalCheckFailedException:
                return False

        with ThreadPoolExecutor(8) as pool:
            taken = sum(pool.map(take, range(60)))
        assert taken == 20  # never below zero: each request atomic in the child too
        assert ddb.get_item(TableName="t", Key={"pk": {"S": "stock"}})["Item"]["n"] == {"N": "0"}
        with pytest.raises(RuntimeError):
            server.wrap_app(lambda app: app)
    finally:
        server.stop()
    assert child.wait(timeout=10) is not None  # the process is gone
