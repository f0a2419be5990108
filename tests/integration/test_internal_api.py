"""The internal API over real HTTP: the local front with template.yaml's routes, moto's server on loopback,
requests signed with SigV4 as a real client signs them (the front checks the signature's presence and shape,
API Gateway checks it for real)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.server import ThreadedMotoServer

from lifelink.domain.messages import parse_job
from lifelink.store import aws as aws_clients
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.ledger import Ledger, Status
from lifelink_local.front import Front
from lifelink_local.handlers import load_function, module_name_for
from lifelink_local.provision import Provisioned, provision
from tests.api_routes import INTERNAL_ROUTES
from tests.aws_env import use_moto_endpoint
from tests.conftest import KeyPair

pytestmark = pytest.mark.integration

LIFE_APP = "2021000000000011"
MINI_APP = "2021000000000012"
OPEN_ID = "074a1Z0hq0IxGtN0Yb0cUvlCpSkQHoKf0pX3Ur1w3N"
REGION = "us-east-1"


@dataclass
class Stack:
    url: str
    provisioned: Provisioned


@pytest.fixture(scope="module")
def stack(app_keys: KeyPair, alipay_keys: KeyPair) -> Iterator[Stack]:
    mp = pytest.MonkeyPatch()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    front: Front | None = None
    try:
        use_moto_endpoint(mp, f"http://{host}:{port}", REGION)
        provisioned = provision(prefix="internal-api")
        registry = AppRegistry(
            boto3.client("dynamodb"), provisioned.tables["StateTable"], boto3.client("secretsmanager")
        )
        secret = {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_keys.public_pem}
        registry.register(AppRecord(app_id=LIFE_APP, kind="life", secret_name=f"lifelink/apps/{LIFE_APP}"), secret)
        registry.register(
            AppRecord(app_id=MINI_APP, kind="mini", secret_name=f"lifelink/apps/{MINI_APP}", life_account=LIFE_APP),
            secret,
        )
        routes = []
        for route in provisioned.http_routes():
            if route.function_id != "InternalApiFunction":
                continue
            sys.modules.pop(module_name_for(route.handler_file), None)  # no container left from another test
            fn = load_function(
                route.handler_file,
                env=provisioned.function_environment(route.function_id),
                handler_name=route.handler_name,
                function_name=route.function_id,
            )
            routes.append((route.method, route.path, fn, route.auth))
        assert {(m, p) for m, p, _, _ in routes} == INTERNAL_ROUTES
        assert {auth for *_, auth in routes} == {"AWS_IAM"}
        front = Front(routes, port=0)
        front.start()
        yield Stack(front.url, provisioned)
    finally:
        if front is not None:
            front.stop()
        server.stop()
        aws_clients.client.cache_clear()
        mp.undo()


def signed(method: str, url: str, body: bytes = b"") -> dict[str, str]:
    """Headers of a SigV4-signed request (service execute-api), as an AWS SDK would send them."""
    request = AWSRequest(method=method, url=url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret-example"), "execute-api", REGION).add_auth(request)
    return dict(request.headers.items())


def send(method: str, url: str, payload: Any = None, *, sign: bool = True) -> httpx.Response:
    body = b"" if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    headers = signed(method, url, body) if sign else {"content-type": "application/json"}
    return httpx.request(method, url, content=body, headers=headers, timeout=30)


def job(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "app_id": LIFE_APP,
        "channel": "life_template",
        "recipient": {"open_id": OPEN_ID},
        "content": {"template_id": "TPL_WELCOME", "keywords": [{"value": "Welcome"}]},
        "campaign": "welcome",
        "kind": "transactional",
        "not_after": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }
    body.update(overrides)
    return body


def drain(queue_url: str) -> list[str]:
    sqs, out = boto3.client("sqs"), []
    while msgs := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
        "Messages", []
    ):
        out.extend(m["Body"] for m in msgs)
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in msgs]
        )
    return out


def test_unsigned_requests_are_forbidden_on_every_internal_route(stack: Stack) -> None:
    for method, path in sorted(INTERNAL_ROUTES):
        url = stack.url + path.replace("{ledger_key}", "x")
        response = send(method, url, {} if method == "POST" else None, sign=False)
        assert response.status_code == 403, (method, path)
        assert response.json() == {"message": "Forbidden"}
    assert drain(stack.provisioned.queues["OutboundQueue"]) == []


def test_a_signed_job_is_queued_and_its_ledger_entry_read_back(stack: Stack) -> None:
    response = send("POST", f"{stack.url}/messages", job())

    assert response.status_code == 202, response.text
    key = response.json()["ledger_key"]
    assert key == f"{LIFE_APP}|welcome|-|{OPEN_ID}|life_template"
    (body,) = drain(stack.provisioned.queues["OutboundQueue"])
    assert parse_job(body).ledger_key == key

    not_yet = send("GET", f"{stack.url}/messages/{quote(key, safe='')}")
    assert not_yet.status_code == 404

    ledger = Ledger(boto3.client("dynamodb"), stack.provisioned.tables["StateTable"])
    now = datetime.now(UTC)
    ledger.claim(parse_job(body), "gateway", now, lease=timedelta(seconds=30), idempotent=False)
    ledger.finish(key, "gateway", Status.sent, now)
    found = send("GET", f"{stack.url}/messages/{quote(key, safe='')}")
    assert found.status_code == 200
    assert found.json()["status"] == "sent"
    assert [h["status"] for h in found.json()["history"]] == ["sending", "sent"]


def test_invalid_jobs_get_every_error_over_http(stack: Stack) -> None:
    response = send("POST", f"{stack.url}/messages", job(channel="coupon", content={}, not_after="tomorrow"))

    assert response.status_code == 422
    locs = {tuple(e["loc"]) for e in response.json()["errors"]}
    assert ("body", "not_after") in locs
    assert any(loc[:2] == ("body", "content") and loc[-1] == "activity_id" for loc in locs)
    assert drain(stack.provisioned.queues["OutboundQueue"]) == []


def test_a_body_over_the_bound_is_413_over_http(stack: Stack) -> None:
    response = send("POST", f"{stack.url}/messages", b"{" + b" " * (256 * 1024) + b"}")
    assert response.status_code == 413
    assert drain(stack.provisioned.queues["OutboundQueue"]) == []


def test_subscription_grants_over_http(stack: Stack) -> None:
    report = {"app_id": MINI_APP, "user": {"open_id": OPEN_ID}, "template_ids": ["TPL_SHIPPED"], "count": 2}
    response = send("POST", f"{stack.url}/subscriptions", report)

    assert response.status_code == 200
    assert response.json() == {"app_id": MINI_APP, "remaining": {"TPL_SHIPPED": 2}}
    audience = Audience(boto3.client("dynamodb"), stack.provisioned.tables["StateTable"])
    assert audience.grants(MINI_APP, OPEN_ID, "TPL_SHIPPED") == 2

    too_many = send("POST", f"{stack.url}/subscriptions", {**report, "template_ids": ["A", "B", "C", "D"]})
    assert too_many.status_code == 422
