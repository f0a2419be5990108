"""Figure 5: return_rate_7d for every cohort day and repeat_buyer_rate_30d over 1,000,000 synthetic users × 30
days, time and peak memory, beside a naive per-event computation with plain Python sets (1 % sample, scaled).

Runnable alone: ``.venv/bin/python bench/metrics_speed.py`` (or ``.bench-venv/bin/python``); runtime deps only.

- **data**: a fixed seed generates, per user, the first active day (uniform over the 30 days) and a bitmap of
  the days they came back (each user has a return propensity of 1/2, 1/4, 1/8 or 1/16 a day), kept as two
  ``array`` columns; and the trade notifications of about a quarter of the users (1–5 orders each over the 30
  days; 8 % notified twice, 4 % fully refunded by a TRADE_CLOSED notification, 4 % partly refunded).
- **ours**: (1) load: the columns become ``ActivityFacts`` (what the profiles table holds); the notifications
  are folded into per-user ``OrderFacts`` keyed by out_trade_no (the aggregator's work, shown apart);
  (2) compute: ``return_rates_7d`` (every cohort day in one pass) and ``repeat_buyer_rate_30d``.
  The target is on load + compute of the metrics (the fold is the aggregator's per-event work, not a query).
- **peer**: from raw events (one per active day at a random minute, plus the notifications) with plain sets:
  local dates per event, a dict of sets per user, then each cohort day in turn checks D+1…D+7; paid orders
  deduped with a set of out_trade_no, full refunds subtracted. On a 1 % sample of the users, ×100. Our
  functions run on the same sample first and must give the same figures as the peer.
- **memory**: the process's peak resident set (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, Linux KiB),
  read after ours and before the peer; it includes the interpreter and the generated columns. Not tracemalloc
  (it slows allocation several-fold and misses non-Python memory).
"""

from __future__ import annotations

import random
import resource
import sys
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from common import Row, heading, print_table

from lifelink.domain.metrics import (
    ActivityFacts,
    OrderFacts,
    Rate,
    repeat_buyer_rate_30d,
    return_rates_7d,
)

SEED = 20261125
N_USERS = 1_000_000
DAYS = 30
BASE = date(2026, 10, 1)
SAMPLE_EVERY = 100  # the peer's 1 % sample: users whose index is a multiple of this
TARGET_S = 60.0
TARGET_BYTES = 1 << 30
SH = ZoneInfo("Asia/Shanghai")
TODAY = BASE + timedelta(days=DAYS + 10)  # every cohort complete
AS_OF = BASE + timedelta(days=DAYS - 1)  # the 30-day window is the 30 generated days
DAY = [BASE + timedelta(days=i) for i in range(DAYS + 1)]
FULL_MASK = (1 << DAYS) - 1


@dataclass
class Columns:
    first: array  # 'b': first active day offset
    bits: array  # 'I': bit k = active on first + k
    n_user: array  # 'I': notification columns: user index
    n_order: array  # 'I': order serial (out_trade_no = "T" + serial)
    n_kind: array  # 'b': 0 paid, 1 closed (full refund), 2 paid with partial refund
    n_minute: array  # 'I': minutes since BASE 00:00 Shanghai
    n_amount: array  # 'I': cents
    n_refund: array  # 'I': cents


def generate(n_users: int = N_USERS, seed: int = SEED) -> Columns:
    rng = random.Random(seed)
    getbits, rand, randrange = rng.getrandbits, rng.random, rng.randrange
    first, bits = array("b"), array("I")
    cols = [array("I"), array("I"), array("b"), array("I"), array("I"), array("I")]
    n_user, n_order, n_kind, n_minute, n_amount, n_refund = cols
    serial = 0
    for u in range(n_users):
        f = randrange(DAYS)
        r = getbits(DAYS)
        for _ in range(randrange(4)):  # propensity 1/2 … 1/16 a day
            r &= getbits(DAYS)
        first.append(f)
        bits.append(((r << 1) | 1) & (FULL_MASK >> f))
        if rand() < 0.25:
            for _ in range(1 + int(rand() ** 2 * 5)):
                minute = randrange(DAYS * 1440)
                amount = 500 + randrange(30_000)
                fate = rand()
                rows = [(0, minute, 0)]
                if fate < 0.08:
                    rows.append((0, minute, 0))  # notified twice
                elif fate < 0.12:
                    rows.append((1, minute + 60, amount))  # full refund: TRADE_CLOSED
                elif fate < 0.16:
                    rows.append((2, minute + 90, amount // 3))  # partial refund
                for kind, m, refund in rows:
                    n_user.append(u)
                    n_order.append(serial)
                    n_kind.append(kind)
                    n_minute.append(m)
                    n_amount.append(amount)
                    n_refund.append(refund)
                serial += 1
    return Columns(first, bits, *cols)


_EPOCH = datetime(BASE.year, BASE.month, BASE.day, tzinfo=SH).astimezone(UTC)
_STATUS = ("TRADE_SUCCESS", "TRADE_CLOSED", "TRADE_SUCCESS")


def _at(minute: int) -> datetime:
    return _EPOCH + timedelta(minutes=minute)


def load_activity(c: Columns, users: Iterable[int]) -> list[ActivityFacts]:
    first, bits = c.first, c.bits
    return [ActivityFacts(DAY[first[u]], bits[u]) for u in users]


def fold_orders(c: Columns, keep: set[int] | None = None) -> dict[int, dict[str, OrderFacts]]:
    out: dict[int, dict[str, OrderFacts]] = {}
    for i in range(len(c.n_user)):
        u = c.n_user[i]
        if keep is not None and u not in keep:
            continue
        mine = out.get(u)
        if mine is None:
            mine = out[u] = {}
        no = f"T{c.n_order[i]}"
        fact = mine.get(no) or OrderFacts(no)
        mine[no] = fact.observe_trade(_STATUS[c.n_kind[i]], _at(c.n_minute[i]), c.n_amount[i], c.n_refund[i] or None)
    return out


class _Clock:
    """Wall and CPU seconds of each step (the CPU figure is what counts on a busy shared machine)."""

    def __init__(self) -> None:
        self.steps: dict[str, tuple[float, float]] = {}
        self._t = (time.perf_counter(), time.process_time())

    def lap(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.steps[name] = (now[0] - self._t[0], now[1] - self._t[1])
        self.reset()

    def reset(self) -> None:
        self._t = (time.perf_counter(), time.process_time())


def ours(c: Columns, users: Sequence[int] | range) -> tuple[dict[date, Rate], Rate, dict[str, tuple[float, float]]]:
    clock = _Clock()
    activity = load_activity(c, users)
    clock.lap(LOAD)
    rates = return_rates_7d(activity, TODAY)
    clock.lap(RETURN)
    del activity
    keep = None if isinstance(users, range) and len(users) == len(c.first) else set(users)
    clock.reset()
    orders = fold_orders(c, keep)
    clock.lap(FOLD)
    repeat = repeat_buyer_rate_30d(orders.values(), AS_OF, TODAY)
    clock.lap(REPEAT)
    return rates, repeat, clock.steps


LOAD, RETURN, FOLD, REPEAT = ("load activity facts", "return_rate_7d, every cohort",
                              "fold notifications (aggregator)", "repeat_buyer_rate_30d")


def peer(c: Columns, users: Sequence[int]) -> tuple[dict[date, tuple[int, int]], tuple[int, int],
                                                   tuple[float, float]]:
    """Per-event, plain sets. The events are built first (not timed): what a raw events table would hold."""
    rng = random.Random(SEED + 1)
    events: list[tuple[int, datetime]] = []
    for u in users:
        f, b, k = c.first[u], c.bits[u], 0
        while b:
            if b & 1:
                events.append((u, _at((f + k) * 1440 + rng.randrange(1440))))
            b >>= 1
            k += 1
    wanted = set(users)
    notes = [(c.n_user[i], f"T{c.n_order[i]}", _STATUS[c.n_kind[i]], _at(c.n_minute[i]), c.n_amount[i],
              c.n_refund[i]) for i in range(len(c.n_user)) if c.n_user[i] in wanted]
    rng.shuffle(events)
    rng.shuffle(notes)

    t0 = time.perf_counter(), time.process_time()
    days: dict[int, set[date]] = {}
    for u, at in events:
        days.setdefault(u, set()).add(at.astimezone(SH).date())
    cohorts: dict[date, tuple[int, int]] = {}
    for d in sorted({min(s) for s in days.values()}):
        size = back = 0
        for s in days.values():
            if min(s) == d:
                size += 1
                if any(d + timedelta(days=k) in s for k in range(1, 8)):
                    back += 1
        cohorts[d] = (back, size)
    paid: dict[str, tuple[int, date]] = {}
    refunded: set[str] = set()
    first_day, last_day = AS_OF - timedelta(days=29), AS_OF
    for u, no, status, at, amount, refund in notes:
        if status == "TRADE_CLOSED" or (refund and refund >= amount):
            refunded.add(no)
        elif status in ("TRADE_SUCCESS", "TRADE_FINISHED") and not refund:
            paid[no] = (u, at.astimezone(SH).date())
    per_user: dict[int, int] = {}
    for no, (u, day) in paid.items():
        if no not in refunded and first_day <= day <= last_day:
            per_user[u] = per_user.get(u, 0) + 1
    repeat = (sum(1 for n in per_user.values() if n >= 2), len(per_user))
    return cohorts, repeat, (time.perf_counter() - t0[0], time.process_time() - t0[1])


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run(n_users: int = N_USERS) -> list[Row]:
    heading(f"5. Metrics over {n_users:,} synthetic users × {DAYS} days (return_rate_7d, repeat_buyer_rate_30d)")
    t0 = time.perf_counter()
    cols = generate(n_users)
    gen_s = time.perf_counter() - t0
    print(f"generated in {gen_s:.1f} s (seed {SEED}): {len(cols.n_user):,} trade notifications; "
          f"columns {sum(a.itemsize * len(a) for a in vars(cols).values()) / 2**20:.0f} MiB")

    sample = range(0, n_users, SAMPLE_EVERY)
    s_rates, s_repeat, _ = ours(cols, list(sample))
    p_cohorts, p_repeat, p_s = peer(cols, list(sample))
    same = ({d: (int(r.numerator), r.denominator) for d, r in s_rates.items()} == p_cohorts
            and (int(s_repeat.numerator), s_repeat.denominator) == p_repeat)
    if not same:
        raise SystemExit("ours and the peer disagree on the 1 % sample")
    print(f"1 % sample ({len(sample):,} users): ours and the per-event peer agree on every cohort and on "
          f"repeat buyers ({p_repeat[0]:,}/{p_repeat[1]:,})")

    rss_before = _maxrss_bytes()
    rates, repeat, times = ours(cols, range(n_users))
    rss = _maxrss_bytes()
    query = [sum(times[k][i] for k in (LOAD, RETURN, REPEAT)) for i in (0, 1)]
    total = [query[i] + times[FOLD][i] for i in (0, 1)]
    peer_wall, peer_cpu = p_s[0] * SAMPLE_EVERY, p_s[1] * SAMPLE_EVERY
    print_table(("step (ours, all users)", "wall s", "CPU s"),
                [(k, f"{w:.2f}", f"{c:.2f}") for k, (w, c) in times.items()])
    print()
    comp = [r for r in rates.values() if r.value is not None]
    avg = sum(r.value or 0.0 for r in comp) / len(comp)
    done = all(r.complete for r in rates.values())
    print(f"return_rate_7d: {len(rates)} cohorts, mean {avg:.3f}, all complete: {done}; "
          f"repeat_buyer_rate_30d {repeat.value:.4f} ({int(repeat.numerator):,}/{repeat.denominator:,})")
    print(f"peak RSS (ru_maxrss) {rss / 2**20:,.0f} MiB (before the full run: {rss_before / 2**20:,.0f} MiB)")
    print(f"peer (per-event, plain sets) on the 1 % sample: {p_s[0]:.2f} s wall, {p_s[1]:.2f} s CPU "
          f"→ ×{SAMPLE_EVERY} = {peer_wall:.0f} s wall, {peer_cpu:.0f} s CPU")
    size = f"{n_users / 1e6:g}M×{DAYS}d"
    return [
        Row(f"metrics {size}: query CPU s (load+compute)", f"{query[1]:.1f} s", f"{peer_cpu:.0f} s (1 %, ×100)",
            peer_cpu / query[1] if query[1] else None, f"≤ {TARGET_S:.0f} s", query[1] <= TARGET_S),
        Row(f"metrics {size}: query wall s", f"{query[0]:.1f} s", f"{peer_wall:.0f} s (1 %, ×100)",
            peer_wall / query[0] if query[0] else None, f"≤ {TARGET_S:.0f} s", query[0] <= TARGET_S),
        Row(f"metrics {size}: wall s incl. order fold", f"{total[0]:.1f} s", "—", None, f"≤ {TARGET_S:.0f} s",
            total[0] <= TARGET_S),
        Row(f"metrics {size}: peak RSS", f"{rss / 2**20:,.0f} MiB", "—", None, "≤ 1,024 MiB",
            rss <= TARGET_BYTES),
    ]


if __name__ == "__main__":
    from common import print_summary

    n = int(sys.argv[1]) if len(sys.argv) > 1 else N_USERS
    print_summary(run(n))
