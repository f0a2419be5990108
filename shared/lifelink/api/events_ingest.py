"""``POST /events``: behaviour events from the mini program's backend, validated item by item, onto the events
queue.

Body: ``{"app_id": "...", "events": [item, ...]}`` with 1 to 500 items. ``app_id`` is given once, for the whole
batch (the app must be registered); an item is a behaviour event (:data:`lifelink.domain.events.BehaviourEvent`)
without ``app_id``, ``received_at`` and ``source``, which the API sets. Each item is validated on its own: valid
ones go onto the events queue (one event per message, ``SendMessageBatch`` of up to 10), invalid ones come back
with their index and every problem. An entry the queue refuses is retried once; if it is refused again it is
reported as rejected (type ``queue``), so nothing is lost silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, get_args

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, TypeAdapter, ValidationError, create_model

from lifelink.api.errors import ApiError, field_error
from lifelink.api.models import AppId, ErrorBody, EventsAccepted, RejectedEvent
from lifelink.domain.behaviour import EventId, timing_error
from lifelink.domain.events import BehaviourEvent

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from lifelink.api.resolver import ApiDeps

MAX_EVENTS = 500
SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 256 * 1024  # SendMessageBatch: the bodies of one call together
PUBLISH_THREADS = 8
SET_BY_API = ("app_id", "received_at", "source")  # an item may not carry these
_JSON = "application/json"


# ---- the request ------------------------------------------------------------------------------------------------


_EVENT_ID_DOC = (
    "The caller's id of the event. When absent (or null) it is derived: 32 hex characters of SHA-256 over the app, "
    "the user key, the type, occurred_at as an instant and the type's fields, so a retried batch has the same ids."
)


@cache
def _behaviour_adapter() -> TypeAdapter[BehaviourEvent]:
    return TypeAdapter(BehaviourEvent)


def _item_model(event_cls: type[BaseModel]) -> type[BaseModel]:
    """The schema of an item of this type as a caller sends it: the event's fields less those the API sets;
    ``type`` is required, ``event_id`` optional (derived when absent). For the OpenAPI document."""
    fields: dict[str, Any] = {}
    for name, info in event_cls.model_fields.items():
        if name in SET_BY_API:
            continue
        if name == "type":
            fields[name] = (info.annotation, ...)
        elif name == "event_id":
            fields[name] = (EventId | None, Field(default=None, description=_EVENT_ID_DOC))
        else:
            fields[name] = (info.annotation, info)
    name = event_cls.__name__.removesuffix("Event") + "Item"
    doc = next((c.__doc__ for c in event_cls.__mro__ if c.__name__.endswith("Fields") and c.__doc__), None)
    return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields)


@cache
def _items_schema_adapter() -> TypeAdapter[Any]:
    items = [_item_model(cls) for cls in get_args(get_args(BehaviourEvent)[0])]  # Annotated[A | B …, Field]
    return TypeAdapter(Annotated[_union_of(items), Field(discriminator="type")])


def _union_of(types: Sequence[type[BaseModel]]) -> Any:
    out: Any = types[0]
    for t in types[1:]:
        out = out | t
    return out


@dataclass(frozen=True)
class _DocumentedAsItem:
    """Annotated metadata: an item is taken as any JSON value (so one bad item never fails the batch) and
    documented as the behaviour item union."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return handler(_items_schema_adapter().core_schema)


EventItem = Annotated[Any, _DocumentedAsItem()]


class EventBatch(BaseModel):
    """A batch of behaviour events of one app."""

    model_config = ConfigDict(extra="forbid")
    app_id: AppId = Field(description="The registered app (mini program) the events come from.")
    events: list[EventItem] = Field(
        min_length=1,
        max_length=MAX_EVENTS,
        description="1 to 500 behaviour events, each with `type`, `occurred_at` (with a zone), `user` "
        "(`open_id` and/or `user_id`), optional `event_id`, and its type's fields. Validated one by one.",
    )


# ---- validating the items -----------------------------------------------------------------------------------


def _item_loc(loc: Iterable[Any], tag: Any) -> list[str | int]:
    """A pydantic location within the union (``('page_view', 'foreground_s')``) as one within the item."""
    parts = list(loc)
    if parts and isinstance(tag, str) and parts[0] == tag:
        parts = parts[1:]
    return [p if isinstance(p, int) else str(p) for p in parts]


def _item_errors(errors: Iterable[Mapping[str, Any]], tag: Any) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        kind = str(e.get("type", "value_error"))
        loc = ["type"] if kind in ("union_tag_invalid", "union_tag_not_found") else _item_loc(e.get("loc", ()), tag)
        out.append(field_error(loc, str(e.get("msg", "")), kind))
    return out


def check_item(raw: Any, app_id: str, received_at: datetime) -> tuple[BaseModel | None, list[dict[str, Any]]]:
    """The event an item makes, or every problem with it (locations within the item)."""
    if not isinstance(raw, dict):
        return None, [field_error([], "an event must be a JSON object", "dict_type")]
    errors = [
        field_error([k], f"{k} is set by the API: leave it out", "extra_forbidden") for k in SET_BY_API if k in raw
    ]
    event: BaseModel | None = None
    try:
        item = {k: v for k, v in raw.items() if not (k == "event_id" and v is None)}
        event = _behaviour_adapter().validate_python(
            {**item, "app_id": app_id, "received_at": received_at, "source": "ingest"}
        )
    except ValidationError as exc:
        errors.extend(_item_errors(exc.errors(include_url=False, include_input=False), raw.get("type")))
    if event is not None:
        late = timing_error(event.occurred_at, received_at)  # type: ignore[attr-defined]
        if late:
            errors.append(field_error(["occurred_at"], late, "out_of_window"))
    return (None, errors) if errors else (event, [])


# ---- publishing -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    index: int
    body: str


def _chunks(entries: Sequence[_Entry]) -> Iterator[list[_Entry]]:
    """Up to 10 entries per call, their bodies at most 256 KiB together."""
    chunk: list[_Entry] = []
    size = 0
    for entry in entries:
        length = len(entry.body.encode("utf-8"))
        if chunk and (len(chunk) == SQS_BATCH_ENTRIES or size + length > SQS_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += length
    if chunk:
        yield chunk


def _send(sqs: Any, queue_url: str, chunk: list[_Entry]) -> dict[int, str]:
    """One SendMessageBatch call: the entries it did not take, index → error code."""
    try:
        answer = sqs.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(e.index), "MessageBody": e.body} for e in chunk]
        )
    except Exception as exc:  # the call as a whole failed (throttled, network): every entry is unsent
        response = getattr(exc, "response", None)  # botocore's HTTP errors (a read timeout) carry response=None
        error = response.get("Error") if isinstance(response, dict) else None
        code = (error.get("Code") if isinstance(error, dict) else None) or type(exc).__name__
        return {e.index: str(code) for e in chunk}
    return {int(f["Id"]): str(f.get("Code", "Failed")) for f in answer.get("Failed", [])}


def _send_with_retry(sqs: Any, queue_url: str, chunk: list[_Entry]) -> dict[int, str]:
    failed = _send(sqs, queue_url, chunk)
    if not failed:
        return {}
    return _send(sqs, queue_url, [e for e in chunk if e.index in failed])


def publish(sqs: Any, queue_url: str, entries: Sequence[_Entry]) -> dict[int, str]:
    """Every entry onto the queue, each refused one retried once; the ones still refused, index → code."""
    chunks = list(_chunks(entries))
    if not chunks:
        return {}
    failed: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=min(PUBLISH_THREADS, len(chunks))) as pool:
        for result in pool.map(lambda c: _send_with_retry(sqs, queue_url, c), chunks):
            failed.update(result)
    return failed


# ---- the route -------------------------------------------------------------------------------------------------


def ingest(d: ApiDeps, batch: EventBatch, received_at: datetime) -> EventsAccepted:
    if d.registry.get(batch.app_id) is None:
        raise ApiError(422, [field_error(("body", "app_id"), f"app {batch.app_id} is not registered", "unknown_app")])
    if not d.events_queue_url:
        raise RuntimeError("EVENTS_QUEUE_URL is not set (template.yaml sets it on AWS)")
    rejected: dict[int, list[dict[str, Any]]] = {}
    entries: list[_Entry] = []
    types: Counter[str] = Counter()
    for index, raw in enumerate(batch.events):
        event, errors = check_item(raw, batch.app_id, received_at)
        if event is None:
            rejected[index] = errors
            continue
        entries.append(_Entry(index, event.model_dump_json()))
        types[event.type] += 1  # type: ignore[attr-defined]
    failed = publish(d.sqs, d.events_queue_url, entries)
    for index, code in failed.items():
        msg = f"valid, but the events queue refused it twice ({code}): send it again"
        rejected[index] = [field_error([], msg, "queue")]
    accepted = len(entries) - len(failed)
    d.logger.info(
        "events ingested",
        extra={
            "app_id": batch.app_id,
            "items": len(batch.events),
            "accepted": accepted,
            "invalid": len(rejected) - len(failed),
            "queue_refused": len(failed),
            "types": dict(types),
        },
    )
    return EventsAccepted.model_validate(
        {
            "accepted": accepted,
            "rejected": [RejectedEvent.model_validate({"index": i, "errors": rejected[i]}) for i in sorted(rejected)],
        }
    )


def _answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"model": model}}}


def register(app: APIGatewayHttpResolver, deps: Callable[[], ApiDeps]) -> None:
    """Adds ``POST /events`` to ``app``."""

    @app.post(
        "/events",
        summary="Ingest a batch of behaviour events",
        description=(
            "Up to 500 behaviour events of one registered app (session_start, page_view, article_open, "
            "article_progress, like, comment, share, favourite, product_view, order_placed). Each item is "
            "validated on its own: valid items go onto the events queue (one message each) and are counted in "
            "`accepted`; every other item is listed in `rejected` with its index and every problem. An item "
            "without `event_id` gets one derived from its content, so sending the same batch again yields the "
            "same ids (the metrics consumer counts each id once). 422 only when the batch itself is invalid: no "
            "items, more than 500, or an app that is not registered."
        ),
        responses={
            202: _answer(EventsAccepted, "Validated; the valid items are on the events queue"),
            413: _answer(ErrorBody, "Body too large"),
            422: _answer(ErrorBody, "Invalid batch (not its items: those are reported in the 202)"),
        },
        tags=["events"],
    )
    def post_events(batch: Annotated[EventBatch, Body()]) -> Response[EventsAccepted]:
        answer = ingest(deps(), batch, datetime.now(UTC))
        return Response(202, content_types.APPLICATION_JSON, answer.model_dump(mode="json"))


__all__ = ["MAX_EVENTS", "EventBatch", "check_item", "ingest", "publish", "register"]
