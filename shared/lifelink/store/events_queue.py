"""The `events` queue: domain events out, as JSON bodies with the type as a message attribute."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class EventPublisher:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def publish(self, event: BaseModel) -> str:
        kind = str(getattr(event, "type", type(event).__name__))
        sent = self._sqs.send_message(
            QueueUrl=self._url,
            MessageBody=event.model_dump_json(),
            MessageAttributes={"type": {"DataType": "String", "StringValue": kind}},
        )
        return str(sent["MessageId"])
