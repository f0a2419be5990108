"""In-memory stand-ins for the webhook's I/O (DynamoDB, Secrets Manager, SQS, the idempotency table), so
the service layer can be timed without any network. Only the I/O is faked: the real AppRegistry,
AppKeyring and EventPublisher run on top of these, and only the deduper is replaced as a whole."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class FakeDynamoDB:
    """``get_item`` over a dict of items keyed by (pk, sk), shaped like boto3's low-level client."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self._items = {(i["pk"]["S"], i["sk"]["S"]): i for i in items}

    def get_item(self, *, TableName: str, Key: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        item = self._items.get((Key["pk"]["S"], Key["sk"]["S"]))
        return {"Item": item} if item is not None else {}


class FakeSecrets:
    """What Powertools' get_secret(..., transform="json") would return, from a dict."""

    def __init__(self, secrets: Mapping[str, Mapping[str, Any]]) -> None:
        self._secrets = secrets

    def __call__(self, name: str, max_age: int) -> Mapping[str, Any]:
        return self._secrets[name]


class FakeSQS:
    """``send_message`` that keeps the bodies (the JSON serialisation still happens in EventPublisher)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_message(self, *, QueueUrl: str, MessageBody: str, **_: Any) -> dict[str, str]:
        self.sent.append(MessageBody)
        return {"MessageId": f"m-{len(self.sent)}"}


class FakeOnce:
    """The deduper's contract (run ``action`` the first time a key is seen) on a set instead of DynamoDB."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def once(self, key: str, action: Callable[[], str]) -> bool:
        if key in self.seen:
            return False
        action()
        self.seen.add(key)
        return True
