"""Counters in the metrics table: per (app group, counter name, day, dimension), sharded, updated by ``ADD``.

A counter key of :mod:`lifelink.domain.metrics` is a tuple ``(name, *dims)`` (e.g. ``("on", "2025-01-01", "1")``
or ``("page_views", "pages/a", "2025-01-01")``). It is stored as
- ``pk = M#<group>#<name>#<shard>`` (shard 0 … SHARDS-1: one hot counter is spread over SHARDS partitions, and
  two consumers adding to "today's sessions" at once rarely touch the same item, so their transactions do not
  conflict);
- ``sk = <dims joined by '#'>`` with the ISO day moved first when the key has one (a day-range query is a
  ``BETWEEN`` on ``sk``); ``n`` (N) holds the value (counts; seconds may have decimals).
A counter's value is the sum over its shards (:meth:`MetricsStore.counters`).

Daily rollups: ``pk = R#<group>``, ``sk = <day>``, ``c`` (M: "<name>#<sk>" → N): every counter of that day
summed over its shards, written by :meth:`MetricsStore.roll_up` once the day has ended.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

SHARDS = 8
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HIGH = "\uffff"

CounterKey = tuple[str, ...]


def split_key(key: CounterKey) -> tuple[str, str]:
    """(name, sk) of a counter key: its day (if any) first, then the other dimensions in order."""
    name, dims = key[0], key[1:]
    day = next((d for d in dims if _DAY.match(d)), None)
    if day is None:
        return name, "#".join(dims)
    rest = [d for d in dims if d is not day]
    return name, "#".join((day, *rest))


def counter_pk(group: str, name: str, shard: int) -> str:
    return f"M#{group}#{name}#{shard}"


def _number(value: float | int | Decimal) -> str:
    if isinstance(value, int):
        return str(value)
    d = Decimal(str(value)).normalize()
    return format(d, "f")


def add_ops(table: str, group: str, deltas: Mapping[CounterKey, float], shard: int) -> list[dict[str, Any]]:
    """One ``Update`` (for TransactWriteItems) per non-zero counter of ``deltas`` on ``shard``."""
    ops = []
    for key, value in deltas.items():
        if not value:
            continue
        name, sk = split_key(key)
        ops.append({"Update": {
            "TableName": table,
            "Key": {"pk": {"S": counter_pk(group, name, shard)}, "sk": {"S": sk}},
            "UpdateExpression": "ADD n :d",
            "ExpressionAttributeValues": {":d": {"N": _number(value)}},
        }})
    return ops


def _value(text: str) -> float | int:
    return int(text) if text.lstrip("-").isdigit() else float(text)


class MetricsStore:
    def __init__(self, dynamodb: Any, table: str, shards: int = SHARDS) -> None:
        self._ddb = dynamodb
        self.table = table
        self.shards = shards

    def counters(self, group: str, name: str, first: str | None = None,
                 last: str | None = None) -> dict[str, float | int]:
        """``sk`` → value (summed over shards) of counter ``name``; ``first``/``last`` bound the ``sk`` (for
        day-first keys: ISO days, inclusive)."""
        out: dict[str, float | int] = {}
        for shard in range(self.shards):
            values: dict[str, Any] = {":pk": {"S": counter_pk(group, name, shard)}}
            cond = "pk = :pk"
            if first is not None or last is not None:
                cond += " AND sk BETWEEN :a AND :b"
                values[":a"] = {"S": first or ""}
                values[":b"] = {"S": (last or _HIGH) + _HIGH}
            kwargs: dict[str, Any] = {"TableName": self.table, "KeyConditionExpression": cond,
                                      "ExpressionAttributeValues": values}
            while True:
                page = self._ddb.query(**kwargs)
                for item in page.get("Items", []):
                    sk = item["sk"]["S"]
                    out[sk] = out.get(sk, 0) + _value(item["n"]["N"])
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return {k: v for k, v in out.items() if v}

    def roll_up(self, group: str, day: date, names: Sequence[str], now: datetime | None = None) -> int:
        """Sum every counter of ``day`` (day-first names) over its shards into one rollup item; returns how many
        counters it holds. Running it again overwrites the item (late events since are included)."""
        d = day.isoformat()
        summed: dict[str, str] = {}
        for name in names:
            for sk, value in self.counters(group, name, d, d).items():
                summed[f"{name}#{sk}"] = _number(value)
        self._ddb.put_item(TableName=self.table, Item={
            "pk": {"S": f"R#{group}"},
            "sk": {"S": d},
            "c": {"M": {k: {"N": v} for k, v in summed.items()}},
            "rolled_at": {"S": (now or datetime.now(UTC)).isoformat()},
        })
        return len(summed)

    def rollups(self, group: str, first: date, last: date) -> dict[str, dict[str, float | int]]:
        """day → {"<name>#<sk>": value} for the rolled-up days in [first, last]."""
        out: dict[str, dict[str, float | int]] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": {":pk": {"S": f"R#{group}"}, ":a": {"S": first.isoformat()},
                                          ":b": {"S": last.isoformat()}},
        }
        while True:
            page = self._ddb.query(**kwargs)
            for item in page.get("Items", []):
                out[item["sk"]["S"]] = {k: _value(v["N"]) for k, v in item.get("c", {}).get("M", {}).items()}
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def merge_deltas(into: dict[CounterKey, float], more: Iterable[tuple[CounterKey, float]]) -> None:
    for key, value in more:
        into[key] = into.get(key, 0) + value
