"""Outcome events as a consumer keeps them: at-least-once on the queue, one per ``event_id``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def distinct_outcomes(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first copy of each event id, in order; every later copy must be the same event (apart from when it was
    received), or the ids are not doing their job."""
    kept: dict[str, dict[str, Any]] = {}
    for event in events:
        first = kept.setdefault(event["event_id"], event)
        if first is not event:
            same = {k: v for k, v in event.items() if k != "received_at"} == {
                k: v for k, v in first.items() if k != "received_at"
            }
            assert same, ("two different events share an id", first, event)
    return list(kept.values())
