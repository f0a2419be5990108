"""The proof's table: one row per (scenario, effect), reconciled against ground truth.

``expected`` is what the ground truth says must exist (one welcome per new follower, one coupon per issued job,
the counter's true total …); ``observed`` is what the system produced. ``lost`` counts expected effects missing,
``duplicated`` effects beyond the expected, so ``observed == expected - lost + duplicated`` always holds for
per-item effects. ``keyed`` says an idempotency key exists for the effect (target: 0 lost, 0 duplicated);
without one, every loss or duplicate must be ``explained`` (counted against a cause the proof observed, e.g.
calls Alipay executed but answered ``20000``), and the explanation says which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    scenario: str
    events_in: str
    effect: str
    expected: int
    observed: int
    lost: int
    duplicated: int
    keyed: bool
    explained: int = 0
    explanation: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        return self.observed == self.expected - self.lost + self.duplicated

    @property
    def ok(self) -> bool:
        if not self.reconciles:
            return False
        if self.keyed:
            return self.lost == 0 and self.duplicated == 0
        return self.lost + self.duplicated <= self.explained

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciles": self.reconciles, "ok": self.ok}


def per_key(expected: Mapping[Hashable, int], observed: Mapping[Hashable, int]) -> tuple[int, int, int, int]:
    """(expected total, observed total, lost, duplicated) of per-key counts: a key observed less often than
    expected is lost that many times, more often duplicated; keys nobody expected count as duplicated."""
    lost = dup = 0
    for key in set(expected) | set(observed):
        e, o = expected.get(key, 0), observed.get(key, 0)
        lost += max(0, e - o)
        dup += max(0, o - e)
    return sum(expected.values()), sum(observed.values()), lost, dup


def counted(keys: Iterable[Hashable]) -> Counter[Hashable]:
    return Counter(keys)


def render(rows: list[Row], title: str = "") -> str:
    header = ("scenario", "events in", "effect out", "expected", "observed", "lost", "dup", "key", "explanation")
    cells = [header] + [
        (r.scenario, r.events_in, r.effect, str(r.expected), str(r.observed), str(r.lost), str(r.duplicated),
         "yes" if r.keyed else "no", (r.explanation or "-") + ("" if r.ok else "  << NOT OK"))
        for r in rows
    ]
    widths = [min(max(len(c[i]) for c in cells), 48 if i < 3 else 200) for i in range(len(header))]
    lines = [title] if title else []
    for n, c in enumerate(cells):
        lines.append(" | ".join(text.ljust(widths[i]) if i < len(header) - 1 else text for i, text in enumerate(c)))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[Row]) -> str:
    out = ["| scenario | events in | effect out | expected | observed | lost | duplicated | idempotency key | "
           "explanation |", "|---|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        out.append(f"| {r.scenario} | {r.events_in} | {r.effect} | {r.expected} | {r.observed} | {r.lost} | "
                   f"{r.duplicated} | {'yes' if r.keyed else 'no'} | {r.explanation or '-'} |")
    return "\n".join(out)
