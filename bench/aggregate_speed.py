"""Figure 6: the events aggregator: events folded per second per core and DynamoDB write requests per 1,000 events,
batched (the metrics consumer: one batch of SQS messages at a time) beside a one-update-per-event peer.

Runnable alone: ``.venv/bin/python bench/aggregate_speed.py [events]`` (default 20,000); runtime deps only.

- **demo mix** (fixed seed): 2,000 users; each visit is a session_start (25 % scene 1020, 10 % with a valid
  attribution token), 3 page views, an article open and two progress reports (one completes 40 % of the time),
  a like 30 %, a comment / share / favourite 10 % each, a product view 50 %, and an order_placed + order_paid
  5 %; 2 % of visits start with a follow. Visits are 30 minutes long and start every few seconds, so about 60
  visits run at once and their events interleave on the queue. Batches of 200 consecutive events (the
  template's BatchSize); 5 % of the events are delivered twice (SQS at-least-once) and a batch is shuffled.
- **ours**: ``Aggregator.fold_batch`` on each batch (parsed events): grouping, BatchGetItem of profiles and
  article items, the fold, counter deltas, TransactWriteItems building, on an in-memory DynamoDB that applies the
  requests and counts them (reads are free). CPU time (``process_time``) minus the fake's own time is the fold +
  request building; events/s per core = events ÷ that.
- **peer**: the same aggregator fed one event per batch: a write (transaction) per event that changes anything,
  as a consumer without batch pre-aggregation does (it still has exactly-once facts, so a duplicate writes
  nothing). Same events, same fake.
- **check**: both runs must end with identical counters (the sums per counter over shards).
- **targets** (issue 5): ≥ 5,000 events/s per core; ≤ 0.2 write requests per event (≤ 200 per 1,000).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from common import Row, heading

from lifelink.aggregation.aggregator import Aggregator, GroupInfo
from lifelink.aggregation.fold import GroupPolicy
from lifelink.domain.attribution import Attribution, issue
from lifelink.domain.events import DomainEvent, parse_event

GROUP = "2021000000000001"
MINI = "2021000000000002"
KEY = b"k" * 48
BATCH = 200


class CountingDynamoDB:
    """Just enough of DynamoDB's low-level client for the aggregator, over a dict, counting write requests."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.write_requests = 0
        self.items_written = 0
        self.seconds = 0.0  # time spent in here (subtracted from the aggregator's CPU)

    def batch_get_item(self, *, RequestItems: Mapping[str, Any]) -> dict[str, Any]:
        t = time.process_time()
        out: dict[str, list[dict[str, Any]]] = {}
        for table, req in RequestItems.items():
            got = [self.items[k] for key in req["Keys"] if (k := (table, key["pk"]["S"], key["sk"]["S"])) in self.items]
            out[table] = got
        self.seconds += time.process_time() - t
        return {"Responses": out}

    def _check(self, table: str, put: Mapping[str, Any]) -> bool:
        key = (table, put["Item"]["pk"]["S"], put["Item"]["sk"]["S"])
        cond = put.get("ConditionExpression")
        current = self.items.get(key)
        if cond == "attribute_not_exists(pk)":
            return current is None
        if cond == "v = :v":
            return current is not None and current["v"] == put["ExpressionAttributeValues"][":v"]
        return True

    def _apply(self, op: Mapping[str, Any]) -> None:
        if "Put" in op:
            p = op["Put"]
            item = p["Item"]
            self.items[(p["TableName"], item["pk"]["S"], item["sk"]["S"])] = item
        else:
            u = op["Update"]
            key = (u["TableName"], u["Key"]["pk"]["S"], u["Key"]["sk"]["S"])
            item = self.items.setdefault(key, {**u["Key"], "n": {"N": "0"}})
            item["n"] = {"N": str(float(item["n"]["N"]) + float(u["ExpressionAttributeValues"][":d"]["N"]))}

    def transact_write_items(self, *, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        t = time.process_time()
        self.write_requests += 1
        self.items_written += len(TransactItems)
        for op in TransactItems:
            if "Put" in op and not self._check(op["Put"]["TableName"], op["Put"]):
                raise AssertionError("no concurrent writer here: a version check cannot fail")
        for op in TransactItems:
            self._apply(op)
        self.seconds += time.process_time() - t
        return {}

    def put_item(self, **put: Any) -> dict[str, Any]:
        return self.transact_write_items(TransactItems=[{"Put": put}])

    def counters(self) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for (table, pk, sk), item in self.items.items():
            if table == "metrics":
                name = pk.rsplit("#", 1)[0]
                out[(name, sk)] = out.get((name, sk), 0.0) + float(item["n"]["N"])
        return {k: round(v, 3) for k, v in out.items() if round(v, 3)}


def demo_mix(n_events: int, seed: int = 7) -> list[dict[str, Any]]:
    """Events as the queue carries them (JSON-ready dicts), in queue order (see the module's notes)."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    events: list[tuple[datetime, dict[str, Any]]] = []
    n = 0
    visit = 0

    def ev(kind: str, at: datetime, user: str, app: str = MINI, source: str = "ingest", **f: Any) -> None:
        nonlocal n
        n += 1
        events.append((at, {"schema_version": 1, "event_id": f"e{n}", "type": kind, "app_id": app, "source": source,
                            "occurred_at": at.isoformat(), "received_at": at.isoformat(),
                            "user": {"open_id": user}, **f}))

    while n < n_events:
        visit += 1
        user = f"u{rng.randrange(2000):04d}"
        t0 = start + timedelta(seconds=visit * 30)
        if rng.random() < 0.02:
            ev("follow", t0, user, app=GROUP, source="life_gateway")
        query: dict[str, str] = {}
        if rng.random() < 0.10:
            query["ll"] = issue(Attribution(GROUP, f"c{rng.randrange(3)}", "push", "m", t0), KEY)
        ev("session_start", t0, user, scene="1020" if rng.random() < 0.25 else "1001", page="pages/index", query=query)
        for k in range(3):
            ev("page_view", t0 + timedelta(minutes=2 + 5 * k), user, page=f"pages/p{rng.randrange(8)}",
               foreground_s=rng.uniform(1, 600))
        art = f"a{rng.randrange(300)}"
        ev("article_open", t0 + timedelta(minutes=3), user, article_id=art, category=f"cat{rng.randrange(6)}")
        ev("article_progress", t0 + timedelta(minutes=5), user, article_id=art, depth=0.5, dwell_s=30.0)
        ev("article_progress", t0 + timedelta(minutes=9), user, article_id=art,
           depth=1.0 if rng.random() < 0.4 else 0.8, dwell_s=60.0)
        for kind, p in (("like", 0.3), ("comment", 0.1), ("share", 0.1), ("favourite", 0.1)):
            if rng.random() < p:
                ev(kind, t0 + timedelta(minutes=10), user, article_id=art)
        if rng.random() < 0.5:
            ev("product_view", t0 + timedelta(minutes=12), user, product_id=f"p{rng.randrange(50)}")
        if rng.random() < 0.05:
            no = f"T{visit}"
            ev("order_placed", t0 + timedelta(minutes=14), user, out_trade_no=no,
               amount_cents=rng.randrange(500, 50000), coupon_used=rng.random() < 0.3)
            ev("order_paid", t0 + timedelta(minutes=15), user, source="trade_notify", out_trade_no=no,
               trade_status="TRADE_SUCCESS", total_amount="99.00", notify_id=f"n{visit}")
    events.sort(key=lambda pair: pair[0])
    out = [e for _, e in events[:n_events]]
    dupes = [e for e in out if rng.random() < 0.05]
    for e in dupes:
        out.insert(min(len(out), out.index(e) + rng.randrange(1, 400)), e)
    return out


def _aggregator(ddb: CountingDynamoDB, now: datetime) -> Aggregator:
    info = GroupInfo(GROUP, frozenset({GROUP, MINI}), GroupPolicy())
    return Aggregator(ddb, "profiles", "metrics", lambda app: info, state_table="state",
                      attribution_keys=lambda: (KEY,), clock=lambda: now, rng=random.Random(1))


def run_mode(events: list[DomainEvent], batch: int, now: datetime) -> tuple[CountingDynamoDB, float, int]:
    ddb = CountingDynamoDB()
    agg = _aggregator(ddb, now)
    rng = random.Random(3)
    cpu = time.process_time()
    failed = 0
    for start in range(0, len(events), batch):
        chunk = [(f"m{start + i}", e) for i, e in enumerate(events[start:start + batch])]
        rng.shuffle(chunk)
        failed += len(agg.fold_batch(chunk).failed)
    return ddb, time.process_time() - cpu - ddb.seconds, failed


def run(n_events: int = 20_000) -> list[Row]:
    heading("6. Events folded per core and DynamoDB write requests per event (issue 5)")
    raw = demo_mix(n_events)
    now = datetime(2026, 11, 22, tzinfo=UTC)
    t = time.process_time()
    events = [parse_event(e) for e in raw]
    parse_s = time.process_time() - t
    ours, ours_s, failed = run_mode(events, BATCH, now)
    peer, peer_s, peer_failed = run_mode(events, 1, now)
    assert failed == 0 and peer_failed == 0
    if ours.counters() != peer.counters():
        raise SystemExit("batched and per-event runs disagree on the counters")
    n = len(events)
    print(f"demo mix: {n:,} events ({n - n_events:,} redelivered), {BATCH} per batch; "
          f"{len(ours.counters()):,} distinct counters")
    print(f"{'':34} {'ours (batched)':>16} {'peer (per event)':>18}  target")
    print(f"{'events/s per core (fold+requests)':34} {n / ours_s:>16,.0f} {n / peer_s:>18,.0f}  >= 5,000")
    print(f"{'  + parsing the message bodies':34} {n / (ours_s + parse_s):>16,.0f} {n / (peer_s + parse_s):>18,.0f}")
    print(f"{'write requests per 1,000 events':34} {1000 * ours.write_requests / n:>16,.1f} "
          f"{1000 * peer.write_requests / n:>18,.1f}  <= 200")
    print(f"{'items written per 1,000 events':34} {1000 * ours.items_written / n:>16,.1f} "
          f"{1000 * peer.items_written / n:>18,.1f}")
    met = n / ours_s >= 5000 and ours.write_requests / n <= 0.2
    print(f"targets met: {met}")
    return [
        Row("events folded/s per core", f"{n / ours_s:,.0f}", f"{n / peer_s:,.0f}", (n / ours_s) / (n / peer_s),
            "≥ 5,000", n / ours_s >= 5000),
        Row("write requests per event", f"{ours.write_requests / n:.3f}", f"{peer.write_requests / n:.3f}",
            (peer.write_requests / n) / (ours.write_requests / n) if ours.write_requests else None, "≤ 0.2",
            ours.write_requests / n <= 0.2),
    ]


if __name__ == "__main__":
    from common import print_summary

    print_summary(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
