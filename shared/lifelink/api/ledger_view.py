"""Read one send-ledger entry through lifelink.store.ledger, as the internal API shows it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from lifelink.api.models import MessageState
from lifelink.store.ledger import Ledger

MAX_LEDGER_KEY_LENGTH = 512


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals and sets as JSON numbers and lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    return value


def read_entry(ledger: Ledger, ledger_key: str) -> MessageState | None:
    """The entry's state and history; None when the ledger has no such key."""
    entry = ledger.get(ledger_key)
    if entry is None:
        return None
    return MessageState.model_validate(_plain(entry.to_public()))
