"""Read one send-ledger entry (state table item ``pk = LEDGER#<ledger_key>``, ``sk = LEDGER``) as plain JSON."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from lifelink.api.models import MessageState

MAX_LEDGER_KEY_LENGTH = 512
_deserializer = TypeDeserializer()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def _history(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, list):
        return [h if isinstance(h, dict) else {"value": h} for h in raw]
    return []


def read_entry(dynamodb: Any, table: str, ledger_key: str) -> MessageState | None:
    """The entry's state and history; None when the ledger has no such key."""
    got = dynamodb.get_item(
        TableName=table,
        Key={"pk": {"S": f"LEDGER#{ledger_key}"}, "sk": {"S": "LEDGER"}},
        ConsistentRead=True,
    )
    item = got.get("Item")
    if not item:
        return None
    plain = {k: _plain(_deserializer.deserialize(v)) for k, v in item.items() if k not in ("pk", "sk")}
    history = _history(plain.pop("history", None))
    status = plain.pop("status", None) or plain.pop("state", None) or "unknown"
    return MessageState(ledger_key=ledger_key, status=str(status), history=history, entry=plain)
