"""Timing helpers and the summary table shared by every figure."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the final summary: our figure, the peer's, their ratio and the target for it."""

    figure: str
    ours: str
    peer: str
    ratio: float | None
    target: str
    met: bool | None  # None: no target, or the peer could not be measured


def rate(op: Callable[[], object], seconds: float, batch: int = 8) -> float:
    """Operations per second of ``op`` called back to back in this thread for about ``seconds``."""
    op()  # warm-up: first-call caches (key blinding, method lookups) are not what we measure
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            op()
        done += batch
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def time_each(items: Sequence[object], op: Callable[[object], object]) -> float:
    """Seconds to run ``op`` once over every item, in order."""
    start = time.perf_counter()
    for item in items:
        op(item)
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """'min–max' of a series, to show how noisy the rounds were."""
    return f"{min(values):,.0f}–{max(values):,.0f}"


def heading(text: str) -> None:
    print()
    print(text)
    print("=" * len(text))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def print_summary(rows: Sequence[Row]) -> None:
    def met(row: Row) -> str:
        return "n/a" if row.met is None else ("yes" if row.met else "NO")

    print_table(
        ("figure", "ours", "peer", "ratio", "target", "met?"),
        [
            (r.figure, r.ours, r.peer, "n/a" if r.ratio is None else f"{r.ratio:,.2f}", r.target, met(r))
            for r in rows
        ],
    )
