"""A per-app send rate shared by every container, kept in DynamoDB.

Fixed windows: ``pk = RATE#<app_id>``, ``sk = W#<window index>``, ``n`` = sends started in that window,
``ttl`` a couple of minutes later. A window is one second for rates of 1/s and more (limit ``floor(rate)``),
longer for slower rates (``ceil(1/rate)`` seconds, limit 1), so no window ever admits more than the
configured rate. Taking a token is one conditional ``ADD`` (``n < limit``); when the window is full the
caller sleeps until the next one (plus a little jitter, so containers do not stampede) and tries again, up to
``max_wait`` seconds.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.exceptions import ClientError

WINDOW_TTL_S = 120


def window_for(rate_per_second: float) -> tuple[int, int]:
    """(window seconds, sends allowed per window) for a rate."""
    if rate_per_second <= 0:
        raise ValueError("rate must be positive")
    window = 1 if rate_per_second >= 1 else math.ceil(1 / rate_per_second)
    return window, max(1, math.floor(rate_per_second * window))


class RateLimiter:
    def __init__(
        self,
        dynamodb: Any,
        table: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter_s: float = 0.02,
    ) -> None:
        self._ddb = dynamodb
        self._table = table
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter_s

    def try_take(self, app_id: str, rate_per_second: float) -> float:
        """Take a token now: 0.0 when taken, else the seconds until the next window opens."""
        window, limit = window_for(rate_per_second)
        now = self._clock()
        index = int(now // window)
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"RATE#{app_id}"}, "sk": {"S": f"W#{window}#{index}"}},
                UpdateExpression="ADD n :one SET #ttl = if_not_exists(#ttl, :ttl)",
                ConditionExpression="attribute_not_exists(n) OR n < :limit",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":ttl": {"N": str(int(now) + window + WINDOW_TTL_S)},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return max((index + 1) * window - now, 0.001)
        after = self._clock()
        if after >= (index + 1) * window:
            # The write was slow (throttling, retries, a busy thread pool): the window ended meanwhile, and a
            # send now would count in a window that is over, on top of the next one's limit. The slot is spent.
            return 0.001
        return 0.0

    async def acquire(self, app_id: str, rate_per_second: float, max_wait: float = 20.0) -> bool:
        """Wait for a token; False when none came within ``max_wait`` seconds."""
        deadline = self._clock() + max_wait
        while True:
            wait = await asyncio.to_thread(self.try_take, app_id, rate_per_second)
            if wait == 0.0:
                return True
            wait += random.uniform(0, self._jitter)  # noqa: S311 - spreading retries, not security
            if self._clock() + wait > deadline:
                return False
            await self._sleep(wait)
