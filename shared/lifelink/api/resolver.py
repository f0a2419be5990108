"""The internal API's resolver (Powertools' APIGatewayHttpResolver with request validation) and its wiring."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server, ServerVariable
from aws_lambda_powertools.logging import Logger

from lifelink.api import (
    campaign_admin,
    campaign_participation,
    events_ingest,
    messages,
    metrics_queries,
    subscriptions,
)
from lifelink.api.errors import ApiError, clean_errors, error_event_result, error_response, field_error
from lifelink.config import ConfigError
from lifelink.store.apps import AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.ledger import Ledger

MAX_BODY_BYTES = 256 * 1024  # an outbound job is a few KiB; SQS takes at most 256 KiB per message
API_TITLE = "lifelink internal API"
API_VERSION = "1"


@dataclass
class ApiDeps:
    """What the routes use: the app registry, audience grants, the outbound queue and the send ledger."""

    registry: AppRegistry
    audience: Audience
    sqs: Any
    outbound_queue_url: str
    ledger: Ledger
    logger: Logger
    # Campaigns (issue 4): the state table itself, and EventBridge Scheduler with the target the schedules invoke.
    dynamodb: Any = None
    state_table: str = ""
    scheduler: Any = None
    scheduler_target_arn: str = ""
    scheduler_role_arn: str = ""
    # Behaviour events (issue 5): POST /events publishes onto the events queue.
    events_queue_url: str = ""

    @classmethod
    def from_env(cls, logger: Logger | None = None) -> ApiDeps:
        """From STATE_TABLE and OUTBOUND_QUEUE_URL (set by template.yaml, or the local stack)."""
        from lifelink.store import aws

        missing = [name for name in ("STATE_TABLE", "OUTBOUND_QUEUE_URL") if not os.environ.get(name)]
        if missing:
            raise ConfigError(f"environment variables {missing} are not set (template.yaml sets them on AWS)")
        table, dynamodb = os.environ["STATE_TABLE"], aws.client("dynamodb")
        return cls(
            registry=AppRegistry(dynamodb, table),
            audience=Audience(dynamodb, table),
            sqs=aws.client("sqs"),
            outbound_queue_url=os.environ["OUTBOUND_QUEUE_URL"],
            ledger=Ledger(dynamodb, table),
            logger=logger or Logger(service="internal_api"),
            dynamodb=dynamodb,
            state_table=table,
            scheduler=aws.client("scheduler"),
            scheduler_target_arn=os.environ.get("SCHEDULER_TARGET_ARN", ""),
            scheduler_role_arn=os.environ.get("SCHEDULER_ROLE_ARN", ""),
            events_queue_url=os.environ.get("EVENTS_QUEUE_URL", ""),
        )


def build_resolver(deps: Callable[[], ApiDeps]) -> APIGatewayHttpResolver:
    """The routes, with ``deps`` called on each request (so the OpenAPI spec can be built without AWS)."""
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        return error_response(422, clean_errors(exc.errors()))

    @app.exception_handler(UnicodeDecodeError)
    def _not_text(_: UnicodeDecodeError) -> Response:
        # Powertools decodes a route's JSON body as UTF-8 before validating it: bytes that are not UTF-8 text
        # are an invalid body (422), not a server error.
        return error_response(422, [field_error(("body",), "the body is not UTF-8 text", "json_invalid")])

    @app.exception_handler(ApiError)
    def _refused(exc: ApiError) -> Response:
        return error_response(exc.status, exc.errors)

    messages.register(app, deps)
    subscriptions.register(app, deps)
    campaign_admin.register(app, deps)
    campaign_participation.register(app, deps)
    events_ingest.register(app, deps)
    metrics_queries.register(app, deps)
    return app


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(base64.b64decode(body, validate=False))
    return len(body.encode("utf-8"))


class InternalApi:
    """One per container: ``handle(event, context)`` answers a payload-2.0 event."""

    def __init__(self, deps: ApiDeps, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.deps = deps
        self.max_body_bytes = max_body_bytes
        self.resolver = build_resolver(lambda: deps)

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        size = _body_size(event)
        if size > self.max_body_bytes:
            msg = f"body is {size} bytes; the limit is {self.max_body_bytes}"
            return error_event_result(413, [field_error(("body",), msg, "too_large")])
        return self.resolver.resolve(event, context)


def _unavailable() -> ApiDeps:
    raise RuntimeError("this resolver only describes the API (openapi_spec); it cannot answer requests")


def openapi_spec(server_url: str = "https://{api-id}.execute-api.{region}.amazonaws.com") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the internal routes (requests are SigV4-signed: IAM auth)."""
    resolver = build_resolver(_unavailable)
    text = resolver.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description=(
            "Internal routes of the lifelink HTTP API. Every request is signed with AWS SigV4 (service "
            "`execute-api`); unsigned requests get 403 from API Gateway before reaching the function."
        ),
        servers=[Server(url=server_url, variables=_server_variables(server_url))],
        security_schemes={
            "sigv4": APIKey(
                name="Authorization",
                in_=APIKeyIn.header,
                description="AWS Signature Version 4 (IAM authorisation, service execute-api).",
            )
        },
        security=[{"sigv4": []}],
    )
    return _own_error_schema(json.loads(text))


_SERVER_VARIABLES = {
    "api-id": ServerVariable(default="api-id", description="The HttpApi's id (the stack's ApiUrl output)."),
    "region": ServerVariable(default="us-east-1", description="The region the stack is deployed in."),
}


def _server_variables(url: str) -> dict[str, ServerVariable] | None:
    """The ``{name}`` templates in ``url``, declared (OpenAPI requires every one to be defined with a default)."""
    found = {name: _SERVER_VARIABLES[name] for name in _SERVER_VARIABLES if "{" + name + "}" in url}
    return found or None


_POWERTOOLS_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def _own_error_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents its default 422 body; ours is ``ErrorBody``, and routes without a body never 422."""
    default = {"$ref": "#/components/schemas/HTTPValidationError"}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422")
            if answer is None or answer.get("content", {}).get("application/json", {}).get("schema") != default:
                continue
            if "requestBody" in operation:
                answer["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/ErrorBody"}
            else:
                del operation["responses"]["422"]
    schemas = spec.get("components", {}).get("schemas", {})
    text = json.dumps(spec.get("paths", {}))
    for name in _POWERTOOLS_ERROR_SCHEMAS:
        if f"#/components/schemas/{name}" not in text:
            schemas.pop(name, None)
    return spec
