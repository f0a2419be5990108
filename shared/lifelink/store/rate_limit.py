"""A per-app send rate shared by every container, kept in DynamoDB: a reservation scheduler (GCRA).

One item per app, ``pk = RATE#<app_id>``, ``sk = NEXT``, holds ``tat``: the earliest time (epoch seconds) the
next send may start. A sender reserves the slot ``max(tat, now)`` and moves ``tat`` one interval (1/rate)
further, in at most two conditional writes and no read:

1. idle (``tat <= now``): ``SET tat = now + interval`` and send at ``now``;
2. busy: ``ADD tat :interval`` on condition ``tat <= now + max_wait``; the new value minus one interval is this
   sender's slot, and it sleeps until then. Beyond ``max_wait`` nothing is reserved and the job is retried later.

"now" is the clock plus a small lead (20 ms), so that a slot is still ahead when a slow write returns, even at
rates whose interval is shorter than a DynamoDB round trip. Sends are spaced one interval apart across every
container instead of bursting at the start of a window: any one-second span holds at most ``rate`` slots
(plus one when a slot falls on both edges), and a request that reaches Alipay a little late cannot pile onto
the next window's burst.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.exceptions import ClientError

IDLE_TTL_S = 300
LATE_SLOT_S = 0.01  # a reserved slot already this far in the past is abandoned and a fresh one taken
LEAD_S = 0.02  # slots are handed out this far ahead, so a store write slower than the interval is not late
MAX_ROUNDS = 20


class RateLimiter:
    def __init__(
        self,
        dynamodb: Any,
        table: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        lead_s: float = LEAD_S,
    ) -> None:
        self._ddb = dynamodb
        self._table = table
        self._clock = clock
        self._sleep = sleep
        self._lead = lead_s

    def reserve(self, app_id: str, rate_per_second: float, max_wait: float) -> float | None:
        """Reserve the next send slot: seconds to wait until it (0.0: now), or None when it is beyond max_wait.

        A slot that is already in the past when the write returns (the write was slow) is abandoned, not used:
        sending "now" instead would start less than one interval before the next sender's slot. An abandoned
        slot is just a gap in the schedule.
        """
        if rate_per_second <= 0:
            raise ValueError("rate must be positive")
        interval = 1.0 / rate_per_second
        for _ in range(MAX_ROUNDS):
            taken = self._reserve_once(app_id, interval, max_wait)
            if taken is None:
                return None
            wait = taken - self._clock()
            if wait >= -LATE_SLOT_S:
                return max(0.0, wait)
        return None

    def _reserve_once(self, app_id: str, interval: float, max_wait: float) -> float | None:
        """One reservation: the slot's time (epoch seconds), or None when the next free slot is too far."""
        now = self._clock() + self._lead
        key = {"pk": {"S": f"RATE#{app_id}"}, "sk": {"S": "NEXT"}}
        ttl = {"N": str(int(now + max_wait) + IDLE_TTL_S)}
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET tat = :next, #ttl = :ttl",
                ConditionExpression="attribute_not_exists(tat) OR tat <= :now",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":next": _n(now + interval), ":now": _n(now), ":ttl": ttl},
            )
            return now
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        try:
            got = self._ddb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="ADD tat :interval SET #ttl = :ttl",
                ConditionExpression="tat <= :latest",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":interval": _n(interval), ":latest": _n(now + max_wait), ":ttl": ttl},
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return float(got["Attributes"]["tat"]["N"]) - interval

    async def acquire(self, app_id: str, rate_per_second: float, max_wait: float = 20.0) -> bool:
        """Wait for this sender's slot; False when the next free slot is more than ``max_wait`` seconds away."""
        wait = await asyncio.to_thread(self.reserve, app_id, rate_per_second, max_wait)
        if wait is None:
            return False
        if wait > 0:
            await self._sleep(wait)
        return True


def _n(value: float) -> dict[str, str]:
    return {"N": f"{value:.6f}"}


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
