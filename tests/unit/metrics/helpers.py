"""Times for the metric scenarios: Shanghai wall-clock times made aware, and day 0 of every scenario."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

SH = ZoneInfo("Asia/Shanghai")
DAY0 = date(2026, 11, 2)


def sh(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """``day`` at hour:minute Shanghai time."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SH)


def d(n: int) -> date:
    """Day 0 + n."""
    return DAY0 + timedelta(days=n)
