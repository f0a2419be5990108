"""Everything the message gateway reads before it decides on a send, in one DynamoDB request.

A send decision needs the job's ledger entry, the recipient's facts (follow state, last interaction), a
subscription grant for mini-program messages and the cap counters of the job's plan. All of them live in the
state table, so one strongly consistent ``BatchGetItem`` reads them together: one round trip and one request
instead of three. The item formats stay with their owners (:mod:`lifelink.store.ledger`,
:mod:`lifelink.store.audience`, :mod:`lifelink.store.counters`); this module only knows their keys.

:class:`ComposedStateReader` reads the same through the stores' own methods (three calls); it serves tests and
benchmarks that give the gateway stores that are not DynamoDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from lifelink.domain.policy import SendFacts, UserState
from lifelink.store.counters import CapPlan, Counters, Slot
from lifelink.store.ledger import Ledger, LedgerEntry, ledger_item_key

Key = tuple[str, str]


@dataclass(frozen=True)
class SendState:
    entry: LedgerEntry | None
    facts: SendFacts


class StateReader(Protocol):
    def read(
        self, app_id: str, ledger_key: str, plan: CapPlan, user_key: str | None, *, facts: bool,
        template_id: str | None,
    ) -> SendState: ...


def _plan_roles(plan: CapPlan) -> tuple[Slot | None, ...]:
    return (plan.day, plan.group, plan.total, plan.label)


def _send_facts(user: UserState, grants: int, counts: Sequence[int]) -> SendFacts:
    day, group, total, label = counts
    return SendFacts(
        user=user, grants=grants, sent_today=day, group_this_week=group, total_this_week=total, label_this_week=label
    )


def _user_state(item: dict[str, Any] | None) -> UserState:
    if not item:
        return UserState()
    following = item["following"]["BOOL"] if "following" in item else None
    last = datetime.fromisoformat(item["last_interaction_at"]["S"]) if "last_interaction_at" in item else None
    return UserState(following, last)


class SendStateReader:
    """The batch read over the state table."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    def read(
        self, app_id: str, ledger_key: str, plan: CapPlan, user_key: str | None, *, facts: bool,
        template_id: str | None,
    ) -> SendState:
        ledger = ledger_item_key(ledger_key)
        user_pk = f"USER#{app_id}#{user_key}"
        wanted: list[Key] = [(ledger["pk"]["S"], ledger["sk"]["S"])]
        if facts and user_key:
            wanted.append((user_pk, "FACTS"))
        if template_id and user_key:
            wanted.append((user_pk, f"GRANT#{template_id}"))
        roles = _plan_roles(plan)
        wanted += [(s.pk, s.sk) for s in roles if s is not None]
        items = self._get(wanted)

        entry_item = items.get(wanted[0])
        grant_item = items.get((user_pk, f"GRANT#{template_id}")) if template_id and user_key else None
        grants = int(grant_item["remaining"]["N"]) if grant_item and "remaining" in grant_item else 0
        counts = [
            int(items.get((s.pk, s.sk), {}).get("n", {}).get("N", "0")) if s is not None else 0 for s in roles
        ]
        user = _user_state(items.get((user_pk, "FACTS"))) if facts and user_key else UserState()
        return SendState(
            LedgerEntry.from_item(entry_item) if entry_item else None, _send_facts(user, grants, counts)
        )

    def _get(self, wanted: Sequence[Key]) -> dict[Key, dict[str, Any]]:
        unique = list(dict.fromkeys(wanted))
        request: dict[str, Any] = {
            self._table: {"Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in unique], "ConsistentRead": True}
        }
        found: dict[Key, dict[str, Any]] = {}
        while request:
            page = self._ddb.batch_get_item(RequestItems=request)
            for item in page.get("Responses", {}).get(self._table, []):
                found[(item["pk"]["S"], item["sk"]["S"])] = item
            request = page.get("UnprocessedKeys") or {}
        return found


class ComposedStateReader:
    """The same answer through the stores' own reads (ledger, audience, counters)."""

    def __init__(self, ledger: Ledger, audience: Any, counters: Counters) -> None:
        self._ledger = ledger
        self._audience = audience
        self._counters = counters

    def read(
        self, app_id: str, ledger_key: str, plan: CapPlan, user_key: str | None, *, facts: bool,
        template_id: str | None,
    ) -> SendState:
        entry = self._ledger.get(ledger_key)
        user = UserState()
        if facts and user_key:
            got = self._audience.facts(app_id, user_key)
            user = UserState(got.following, got.last_interaction_at)
        grants = self._audience.grants(app_id, user_key, template_id) if template_id and user_key else 0
        return SendState(entry, self._counters.facts(plan, user, grants))
