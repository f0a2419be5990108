"""`lifelink followers import`: followers from before the deployment into the audience store campaigns select from.

The file lists user ids (2088… user ids or open ids, as the app's events carry them): CSV (the first column, one
user a line, an optional header such as ``user_id``) or JSON (a list of ids, a list of objects with ``user_id`` or
``open_id``, or an object with ``user_id_list`` as ``alipay.open.public.follow.batchquery`` pages have it).

Each user is recorded as following at ``as_of`` (the time the list was taken; by default the file's modification
time) with the same conditional write the events consumer uses, so the import is idempotent and never overrides
what lifelink recorded later: a user who unfollowed (or followed) after ``as_of`` keeps that. It neither opens the
48-hour custom-message window nor sends anything (no welcome message), and follower counts in the metrics are not
changed (they count follow events).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lifelink.store.audience import Audience

USER_ID = re.compile(r"^(?:2088\d{12}|(?!\d+$)[A-Za-z0-9_-]{16,128})$")  # a 2088… user id or an open id
HEADERS = {"user_id", "open_id", "userid", "openid", "id", "user"}


@dataclass
class ParsedList:
    users: list[str] = field(default_factory=list)  # distinct, in file order
    invalid: list[int] = field(default_factory=list)  # line (CSV) or entry (JSON) numbers, 1-based
    duplicates: int = 0


def _collect(entries: Iterable[tuple[int, Any]]) -> ParsedList:
    parsed, seen = ParsedList(), set()
    for number, value in entries:
        if isinstance(value, dict):
            value = value.get("user_id") or value.get("open_id")
        text = value.strip() if isinstance(value, str) else ""
        if not USER_ID.match(text):
            parsed.invalid.append(number)
        elif text in seen:
            parsed.duplicates += 1
        else:
            seen.add(text)
            parsed.users.append(text)
    return parsed


def _csv_entries(text: str) -> Iterator[tuple[int, Any]]:
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        first = row[0].strip().lstrip("\ufeff")
        if number == 1 and first.lower() in HEADERS:
            continue
        yield number, first


def parse_user_list(text: str) -> ParsedList:
    """The user ids of a CSV or JSON list (format by content: JSON starts with ``[`` or ``{``)."""
    body = text.lstrip("\ufeff").strip()
    if body[:1] in ("[", "{"):
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if isinstance(data, dict):
            data = data.get("user_id_list", data.get("users"))
        if not isinstance(data, list):
            raise ValueError("JSON must be a list of user ids, or an object with user_id_list")
        return _collect(enumerate(data, start=1))
    return _collect(_csv_entries(body))


@dataclass(frozen=True)
class ImportSummary:
    app_id: str
    as_of: str
    recorded: int  # now following in the store
    unchanged: int  # already recorded at as_of, or a later follow/unfollow is on record
    invalid: list[int]
    duplicates: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "as_of": self.as_of,
            "recorded": self.recorded,
            "unchanged": self.unchanged,
            "invalid_entries": self.invalid,
            "duplicates": self.duplicates,
        }


def import_followers(
    audience: Audience, app_id: str, parsed: ParsedList, as_of: datetime, *, workers: int = 8
) -> ImportSummary:
    """Record every listed user as following at ``as_of`` (conditional writes, ``workers`` at a time)."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must carry a timezone")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        changed = list(pool.map(lambda user: audience.set_following(app_id, user, True, as_of), parsed.users))
    recorded = sum(changed)
    return ImportSummary(
        app_id=app_id,
        as_of=as_of.astimezone(UTC).isoformat(),
        recorded=recorded,
        unchanged=len(changed) - recorded,
        invalid=parsed.invalid,
        duplicates=parsed.duplicates,
    )


def file_time(path: Path) -> datetime:
    """When the list was written (the default ``as_of``)."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)
