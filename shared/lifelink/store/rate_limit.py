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
LATE_SLOT_S = 0.01  # a slot this far in the past when the write returns is not used as is
LATE_RETRIES = 4
MAX_LEAD_S = 1.0
LEAD_S = 0.02  # slots are handed out this far ahead, so a store write slower than the interval is not late


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
        self._latency = 0.0  # recent store write latency (seconds)

    def reserve(self, app_id: str, rate_per_second: float, max_wait: float) -> float | None:
        """Reserve the next send slot: seconds to wait until it (0.0: now), or None when it is beyond max_wait.

        Slots are handed out ``lead`` ahead of now, and the lead follows the store's write latency (twice its
        recent value, at least ``lead_s``), so a slot is normally still ahead when the write returns. A slot that
        is nevertheless in the past is abandoned (a gap in the schedule) and a new one taken with the longer
        lead; after a few tries the late slot is used and the schedule pushed back by its lateness, so the next
        slot still starts a full interval after this send.
        """
        if rate_per_second <= 0:
            raise ValueError("rate must be positive")
        interval = 1.0 / rate_per_second
        for _ in range(LATE_RETRIES):
            started = self._clock()
            slot = self._reserve_once(app_id, interval, max_wait, started + self.lead)
            returned = self._clock()
            took = max(0.0, returned - started)
            self._latency = took if took > self._latency else 0.8 * self._latency + 0.2 * took
            if slot is None:
                return None
            wait = slot - returned
            if wait >= -LATE_SLOT_S:
                return max(0.0, wait)
        self._ddb.update_item(
            TableName=self._table,
            Key={"pk": {"S": f"RATE#{app_id}"}, "sk": {"S": "NEXT"}},
            UpdateExpression="ADD tat :late",
            ExpressionAttributeValues={":late": _n(-wait)},
        )
        return 0.0

    @property
    def lead(self) -> float:
        return min(MAX_LEAD_S, max(self._lead, 2 * self._latency))

    def _reserve_once(self, app_id: str, interval: float, max_wait: float, now: float) -> float | None:
        """One reservation at ``now`` (clock + lead): the slot's time, or None when the next free slot is too far."""
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

    async def wait(self, seconds: float) -> None:
        """Sleep until a reserved slot (``reserve``'s answer), on the limiter's clock."""
        if seconds > 0:
            await self._sleep(seconds)

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
