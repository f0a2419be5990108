"""schemathesis over every operation of the internal API's OpenAPI document, on the local stack: moto's server
on loopback, the HTTP front with template.yaml's routes and SigV4-signed requests.

For each operation: schema-valid and schema-invalid requests (derandomized, a bounded number of each), and
valid ones aimed at things that exist (a registered life account and mini program, an applied campaign, a
profile's path). Every answer must be no 5xx, with a documented status, content type and body schema.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto.server import ThreadedMotoServer
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from lifelink.api import openapi_spec
from lifelink.store import aws as aws_clients
from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.audience import Audience
from lifelink_local.front import Front
from lifelink_local.handlers import load_function, module_name_for
from lifelink_local.provision import provision
from tests.api_routes import INTERNAL_ROUTES
from tests.aws_env import use_moto_endpoint
from tests.conftest import KeyPair

pytestmark = pytest.mark.integration

LIFE_APP = "2021000000000031"
MINI_APP = "2021000000000032"
CAMPAIGN = "fuzz-spring"
OPEN_ID = "074a1Z0hq0IxGtN0Yb0cUvlCpSkQHoKf0pX3Ur1w3N"
USER_ID = "2088000000000031"
REGION = "us-east-1"
EXAMPLES = 12  # per generation mode and operation: 23 operations x 3 strategies x 12, about a minute
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

SCHEMA = schemathesis.openapi.from_dict(openapi_spec())
# Cancelling the campaign is final: that operation goes last, so the others meet it live.
OPERATIONS = sorted(
    ((op.method.upper(), op.path) for op in (r.ok() for r in SCHEMA.get_all_operations())),
    key=lambda route: (route[1].endswith("/cancel"), route),
)


class SigV4(requests.auth.AuthBase):
    """Signs each prepared request as an AWS SDK does (service execute-api); the front checks its shape."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        signed = AWSRequest(method=request.method, url=request.url, data=body, headers=dict(request.headers))
        SigV4Auth(Credentials("AKIDEXAMPLE", "secret-example"), "execute-api", REGION).add_auth(signed)
        request.headers.update(dict(signed.headers.items()))
        return request


@dataclass
class Stack:
    url: str
    session: requests.Session


def _campaign() -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(days=2)
    at = [(start + timedelta(days=i)).isoformat() for i in range(4)]
    return {
        "id": CAMPAIGN, "name": "Fuzz spring", "life_account": LIFE_APP, "mini_programs": [MINI_APP],
        "phases": {"preheat": {"start": at[0], "end": at[1]}, "burst": {"start": at[1], "end": at[2]},
                   "settle": {"start": at[2], "end": at[3]}},
    }


@pytest.fixture(scope="module")
def stack(app_keys: KeyPair, alipay_keys: KeyPair) -> Iterator[Stack]:
    mp = pytest.MonkeyPatch()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    front: Front | None = None
    session = requests.Session()
    session.auth = SigV4()
    try:
        use_moto_endpoint(mp, f"http://{host}:{port}", REGION)
        provisioned = provision(prefix="schemathesis")
        registry = AppRegistry(
            boto3.client("dynamodb"), provisioned.tables["StateTable"], boto3.client("secretsmanager")
        )
        secret = {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_keys.public_pem}
        registry.register(AppRecord(app_id=LIFE_APP, kind="life", secret_name=f"lifelink/apps/{LIFE_APP}"), secret)
        registry.register(
            AppRecord(app_id=MINI_APP, kind="mini", secret_name=f"lifelink/apps/{MINI_APP}", life_account=LIFE_APP),
            secret,
        )
        audience = Audience(boto3.client("dynamodb"), provisioned.tables["StateTable"])
        audience.set_following(LIFE_APP, USER_ID, True, datetime.now(UTC))
        routes = []
        for route in provisioned.http_routes():
            if route.function_id != "InternalApiFunction":
                continue
            sys.modules.pop(module_name_for(route.handler_file), None)
            fn = load_function(
                route.handler_file,
                env=provisioned.function_environment(route.function_id),
                handler_name=route.handler_name,
                function_name=route.function_id,
            )
            routes.append((route.method, route.path, fn, route.auth))
        front = Front(routes, port=0)
        front.start()
        applied = session.post(f"{front.url}/campaigns", json=_campaign(), timeout=30)
        assert applied.status_code == 201, applied.text
        yield Stack(front.url, session)
    finally:
        session.close()
        if front is not None:
            front.stop()
        server.stop()
        aws_clients.client.cache_clear()
        mp.undo()


def test_the_fuzzed_document_has_every_internal_route() -> None:
    assert set(OPERATIONS) == INTERNAL_ROUTES


def _registered_app(case: schemathesis.Case, app_id: str) -> schemathesis.Case:
    """The case with its body's ``app_id`` (when it has one) naming a registered app."""
    if isinstance(case.body, dict) and "app_id" in case.body:
        case.body = {**case.body, "app_id": app_id}
    return case


def _known_path(path: str) -> dict[str, str]:
    """Path parameters naming things that exist, so valid requests get past the 404s."""
    known = {"campaign_id": CAMPAIGN, "app": LIFE_APP, "user": OPEN_ID, "ledger_key": f"{LIFE_APP}|x|-|y|coupon"}
    return {name: value for name, value in known.items() if "{" + name + "}" in path}


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_answer_is_documented_and_none_is_a_server_error(stack: Stack, method: str, path: str) -> None:
    operation = SCHEMA[path][method]
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
        st.builds(
            _registered_app,
            operation.as_strategy(
                GenerationMode.POSITIVE,
                path_parameters=_known_path(path),
                query={"app": LIFE_APP} if path == "/metrics" else None,
            ),
            st.sampled_from([LIFE_APP, MINI_APP]),
        ),
    ]
    statuses: dict[int, int] = {}

    @settings(max_examples=EXAMPLES * len(strategies), derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=st.one_of(strategies))
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=stack.url, session=stack.session, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    fuzz()
    print(method, path, sorted(statuses.items()))
    assert statuses, "no request was sent"
