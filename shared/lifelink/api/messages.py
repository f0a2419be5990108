"""``POST /messages`` (enqueue a validated outbound job) and ``GET /messages/{ledger_key}`` (its ledger entry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body

from lifelink.api.errors import ApiError, field_error
from lifelink.api.ledger_view import MAX_LEDGER_KEY_LENGTH, read_entry
from lifelink.api.models import ErrorBody, MessageState, Queued
from lifelink.domain.messages import LIFE_CHANNELS, Channel, OutboundJob
from lifelink.privacy import hash_id

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from lifelink.api.resolver import ApiDeps


def channel_kind_error(job: OutboundJob, app_kind: str) -> str | None:
    """Why this app cannot send on this channel (life-account methods need a life account's keys, etc.)."""
    if job.channel in LIFE_CHANNELS and app_kind != "life":
        return f"channel {job.channel.value} sends as a life account; app {job.app_id} is a {app_kind} app"
    if job.channel is Channel.mini_subscription and app_kind != "mini":
        return f"channel {job.channel.value} sends as a mini program; app {job.app_id} is a {app_kind} app"
    return None


def register(app: APIGatewayHttpResolver, deps: Callable[[], ApiDeps]) -> None:
    @app.post(
        "/messages",
        summary="Enqueue an outbound message job",
        description=(
            "Validates the job (every field error at once), checks that its app is registered and may send on "
            "its channel, and puts it on the outbound queue. The message gateway then applies the app's "
            "policies and records the outcome in the send ledger under `ledger_key`."
        ),
        responses={
            202: {"description": "Queued", "content": {"application/json": {"model": Queued}}},
            413: {"description": "Body too large", "content": {"application/json": {"model": ErrorBody}}},
            422: {"description": "Invalid job", "content": {"application/json": {"model": ErrorBody}}},
        },
        tags=["messages"],
    )
    def post_message(job: Annotated[OutboundJob, Body()]) -> Response[Queued]:
        d = deps()
        record = d.registry.get(job.app_id)
        if record is None:
            raise ApiError(422, [field_error(("body", "app_id"), f"app {job.app_id} is not registered", "unknown_app")])
        problem = channel_kind_error(job, record.kind)
        if problem:
            raise ApiError(422, [field_error(("body", "channel"), problem, "channel_not_allowed")])
        sent = d.sqs.send_message(QueueUrl=d.outbound_queue_url, MessageBody=job.model_dump_json())
        d.logger.info(
            "job queued",
            extra={
                "app_id": job.app_id,
                "channel": job.channel.value,
                "campaign": job.campaign,
                "phase": job.phase,
                "user": hash_id(job.user_key),
                "message_id": sent["MessageId"],
            },
        )
        body = Queued(ledger_key=job.ledger_key, message_id=sent["MessageId"])
        return Response(202, content_types.APPLICATION_JSON, body.model_dump())

    @app.get(
        "/messages/<ledger_key>",
        summary="Read a job's send-ledger entry",
        description=(
            "The entry's status (planned, held, sending, sent, capped, skipped, failed) and history. `ledger_key` is "
            "the value `POST /messages` answered, percent-encoded in the path (`|` is `%7C`)."
        ),
        responses={
            200: {"description": "The ledger entry", "content": {"application/json": {"model": MessageState}}},
            404: {"description": "No such ledger entry", "content": {"application/json": {"model": ErrorBody}}},
        },
        tags=["messages"],
    )
    def get_message(ledger_key: str) -> MessageState:
        key = unquote(ledger_key)  # rawPath keeps the client's percent-encoding: decode exactly once
        if not key or len(key) > MAX_LEDGER_KEY_LENGTH:
            raise ApiError(404, [field_error(("path", "ledger_key"), "no such ledger entry", "not_found")])
        d = deps()
        state = read_entry(d.ledger, key)
        if state is None:
            raise ApiError(404, [field_error(("path", "ledger_key"), "no such ledger entry", "not_found")])
        return state
