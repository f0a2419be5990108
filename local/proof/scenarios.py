"""The four fault scenarios of the proof, each on its own life account of one running local stack.

a. every callback delivered three times, shuffled; a share of third copies "a day late" (after the webhook's
   dedupe records were aged 25 h: Alipay's retry horizon);
b. an Alipay outage (every call ``20000``) and then rate limiting (``40005``) while a campaign burst is sent;
c. the events consumer killed mid-batch (a subprocess that ``os._exit``s after some writes), then restarted;
d. DynamoDB throttling on a share of every write (webhook, consumer, message gateway) while callbacks arrive and
   a coupon burst is sent.

Each returns rows of :class:`~lifelink_local.proof.table.Row`, reconciled against ground truth: the callbacks
sent and the webhook's answers, the events handed to the consumer, the counters and profiles, the ledger and
what the Alipay simulator received and executed.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from lifelink.domain.messages import parse_job
from lifelink.store.ledger import Status
from lifelink_local.proof.harness import Answers, Callback, ProofStack, now
from lifelink_local.proof.table import Row, per_key
from lifelink_local.sim_methods import SINGLE_SEND, VOUCHER_SEND


@dataclass(frozen=True)
class Scale:
    name: str
    a_followers: int
    a_unfollowers: int
    a_orders: int
    b_jobs: int
    b_outage_s: float
    b_rate_limit_s: float
    c_followers: int
    c_orders: int
    c_crashes: int
    c_batch: int
    d_followers: int
    d_orders: int
    d_coupons: int
    d_share: float


SCALES = {
    "reduced": Scale("reduced", a_followers=20, a_unfollowers=6, a_orders=8, b_jobs=80, b_outage_s=3.0,
                     b_rate_limit_s=3.0, c_followers=40, c_orders=10, c_crashes=2, c_batch=20,
                     d_followers=20, d_orders=8, d_coupons=20, d_share=0.2),
    "full": Scale("full", a_followers=80, a_unfollowers=20, a_orders=40, b_jobs=400, b_outage_s=6.0,
                  b_rate_limit_s=6.0, c_followers=120, c_orders=40, c_crashes=4, c_batch=40,
                  d_followers=60, d_orders=25, d_coupons=60, d_share=0.2),
}

LATE_SHARE = 5  # every 5th callback: its third copy comes a day late
DAY_LATE_H = 25.0  # Alipay retries notifications for about 25 h
# The visibility timeout the killed consumers receive with (the queue's own is 180 s): what they held comes back
# within seconds, and after the next consumer or two took other messages (a message received five times without
# success would go to the DLQ, as SQS does with a batch that kills its consumer every time).
CRASH_VISIBILITY_S = 20
# While writes are throttled, a record whose write still failed after the SDK's retries comes back after the
# visibility timeout (deployed: 180 s events, 360 s outbound, 6x the functions' timeouts); shortened here to the
# functions' timeouts (30 s, 60 s), the least an event source mapping allows, so the run does not sit waiting.
THROTTLE_VISIBILITY_S = {"EventsQueue": 30, "OutboundQueue": 60}
TEMPLATE = "TPL-PROOF-BURST"
ACTIVITY = "ACT-PROOF"


# ---- a population of callbacks and what it must produce ------------------------------------------------


@dataclass
class Population:
    app: str
    callbacks: list[Callback] = field(default_factory=list)
    fresh_followers: list[str] = field(default_factory=list)  # followed now: one welcome each
    old_followers: list[str] = field(default_factory=list)  # followed two days ago, unfollow now: no welcome
    orders: dict[str, tuple[str, int]] = field(default_factory=dict)  # order -> (user, cents)

    @property
    def events_in(self) -> str:
        kinds = Counter(c.key[0] for c in self.callbacks)
        return f"{len(self.callbacks)} callbacks (" + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")"


def population(ps: ProofStack, app: str, prefix: int, followers: int, unfollowers: int, orders: int,
               rng: random.Random, with_visits: bool = True) -> Population:
    pop = Population(app)
    t0 = now()
    users = [f"2088{prefix:04d}{i:08d}" for i in range(followers + unfollowers)]
    for i, user in enumerate(users[:followers]):
        at = t0 - timedelta(seconds=rng.randint(1, 600))
        msg = f"P{prefix}-{i}" if i % 2 == 0 else None  # half without MsgId: the content hash dedupes them
        pop.callbacks.append(ps.follow(app, user, at, f"{msg}-f" if msg else None))
        pop.fresh_followers.append(user)
        if with_visits:
            pop.callbacks.append(ps.gateway_event(app, "enter", user, at + timedelta(seconds=5),
                                                  f"{msg}-e" if msg else None, '{"scene":{"sceneId":"proof"}}'))
            pop.callbacks.append(ps.gateway_event(app, "click", user, at + timedelta(seconds=9),
                                                  f"{msg}-c" if msg else None, "early-bird"))
    for i, user in enumerate(users[followers:]):
        at = t0 - timedelta(days=2, seconds=rng.randint(1, 600))
        pop.callbacks.append(ps.follow(app, user, at, f"P{prefix}-u{i}-f"))
        pop.callbacks.append(ps.gateway_event(app, "unfollow", user, t0 - timedelta(seconds=rng.randint(1, 60)),
                                              f"P{prefix}-u{i}-u"))
        pop.old_followers.append(user)
    for i in range(orders):
        user = users[i % followers]
        order, cents = f"PROOF{prefix:04d}{i:08d}", rng.randint(100, 99_900)
        pop.callbacks.append(ps.paid(app, user, order, cents, t0 - timedelta(seconds=rng.randint(1, 300))))
        pop.orders[order] = (user, cents)
    return pop


def event_key(event: dict[str, Any]) -> tuple[str, ...]:
    user = (event.get("user") or {}).get("user_id") or ""
    if event["type"] in ("order_paid", "order_closed"):
        return (event["type"], user, event["out_trade_no"])
    return (event["type"], user)


def event_rows(ps: ProofStack, pop: Population, scenario: str, answers: Answers,
               events_in: str) -> tuple[list[Row], set[tuple[str, ...]]]:
    """Webhook -> events queue: every accepted callback published once (distinct SQS messages handed to the
    consumer), split by family. Returns the rows and the keys published (the truth downstream)."""
    published = Counter(event_key(e) for e in ps.published_events(pop.app))
    rows = []
    for family, keyed_note in (("notify", "notify_id"), ("gateway", "MsgId, or a hash of the signed body")):
        keys = [c.key for c in pop.callbacks if c.family == family]
        refused_only = [k for k in keys if not answers.accepted[k]]
        expected = {k: 1 if answers.accepted[k] else min(1, published[k]) for k in keys}
        exp, obs, lost, dup = per_key(expected, {k: published[k] for k in keys})
        never = [k for k in refused_only if not published[k]]
        explanation = f"dedupe key: {keyed_note}"
        if never:
            explanation += (f"; {len(never)} never accepted (webhook answered non-success to every attempt; "
                            + ("Alipay does not retry gateway pushes)" if family == "gateway" else "retries ran out)"))
        rows.append(Row(scenario, events_in, f"{family} events on the queue", exp, obs, lost, dup, keyed=True,
                        explanation=explanation,
                        facts={"accepted_answers": sum(answers.accepted[k] for k in keys),
                               "refused_answers": sum(answers.refused[k] for k in keys),
                               "never_accepted": len(never)}))
    return rows, {k for k, n in published.items() if n}


def effect_rows(ps: ProofStack, pop: Population, scenario: str, events_in: str,
                truth: set[tuple[str, ...]] | None = None) -> list[Row]:
    """Consumer -> counters, profiles, welcome messages, reconciled with the events that were published
    (``truth``; every callback when None)."""
    keys = truth if truth is not None else {c.key for c in pop.callbacks}
    fresh = [u for u in pop.fresh_followers if ("follow", u) in keys]
    old = [u for u in pop.old_followers if ("follow", u) in keys and ("unfollow", u) in keys]
    orders = {o: v for o, v in pop.orders.items() if ("order_paid", v[0], o) in keys}
    rows = []

    def counter_row(effect: str, expected: int, name: str, note: str) -> None:
        observed = int(ps.counter_total(pop.app, name))
        rows.append(Row(scenario, events_in, effect, expected, observed, max(0, expected - observed),
                        max(0, observed - expected), keyed=True, explanation=note))

    counter_row("counter gained (follows)", len(fresh) + len(old), "gained", "profile follow transitions")
    counter_row("counter lost (unfollows)", len(old), "lost", "profile follow transitions")
    counter_row("counter paid_orders", len(orders), "paid_orders", "order facts by out_trade_no")
    counter_row("counter paid_cents", sum(c for _, c in orders.values()), "paid_cents", "order facts by out_trade_no")
    welcomes = ps.welcomes(pop.app)
    users = pop.fresh_followers + pop.old_followers
    expected = {u: 1 if u in fresh else 0 for u in users}
    exp, obs, lost, dup = per_key(expected, {u: welcomes[u] for u in users})
    rows.append(Row(scenario, events_in, "welcome messages", exp, obs, lost, dup, keyed=True,
                    explanation="ledger key (app, welcome, user); follows two days old get none"))
    want = {u: True for u in fresh} | {u: False for u in old}
    right = {}
    for u, following in want.items():
        p = ps.profile(pop.app, u)
        right[u] = int(p is not None and p.following is following
                       and all(o in p.orders for o, (ou, _) in orders.items() if ou == u))
    exp, obs, lost, dup = per_key(dict.fromkeys(want, 1), right)
    rows.append(Row(scenario, events_in, "profiles (follow state, orders)", exp, obs, lost, dup, keyed=True,
                    explanation="versioned profile write per user"))
    return rows


# ---- a. three deliveries, shuffled, some a day late ---------------------------------------------------------


def scenario_a(ps: ProofStack, scale: Scale, rng: random.Random) -> list[Row]:
    app = ps.new_life_app("2021009900000001")
    pop = population(ps, app, 1, scale.a_followers, scale.a_unfollowers, scale.a_orders, rng)
    now_copies, late_copies = [], []
    for i, cb in enumerate(pop.callbacks):
        now_copies += [cb, cb]
        (late_copies if i % LATE_SHARE == 0 else now_copies).append(cb)
    rng.shuffle(now_copies)
    answers = ps.deliver(now_copies)
    ps.wait_quiet()
    aged = ps.age_dedupe_records(DAY_LATE_H)
    late = ps.deliver(late_copies)
    answers.accepted.update(late.accepted)
    answers.refused.update(late.refused)
    ps.wait_quiet()
    events_in = (f"{len(pop.callbacks)} callbacks x3 = {len(now_copies) + len(late_copies)} deliveries, shuffled; "
                 f"{len(late_copies)} a day late")
    rows, _ = event_rows(ps, pop, "a. callbacks x3, shuffled, late", answers, events_in)
    for r in rows:
        r.facts["dedupe_records_aged_h"] = DAY_LATE_H
        r.facts["dedupe_records_aged"] = aged
        r.explanation += (f"; late copies came after the dedupe records were aged {DAY_LATE_H:g} h "
                          "(their TTL is 48 h)")
    return rows + effect_rows(ps, pop, "a. callbacks x3, shuffled, late", events_in)


# ---- b. Alipay outage and rate limiting during a campaign burst ----------------------------------------------


def _job(app: str, channel: str, user: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"app_id": app, "channel": channel, "recipient": {"user_id": user}, "content": content,
            "campaign": "proof-burst", "phase": "flash", "kind": "marketing",
            "not_after": (now() + timedelta(hours=6)).isoformat()}


def send_jobs(ps: ProofStack, bodies: list[dict[str, Any]]) -> None:
    url = ps.queue("OutboundQueue")
    for start in range(0, len(bodies), 10):
        chunk = bodies[start:start + 10]
        answer = ps.sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps(b, ensure_ascii=False)} for i, b in enumerate(chunk)])
        if answer.get("Failed"):
            raise RuntimeError(f"could not queue jobs: {answer['Failed']}")


def coupon_jobs(ps: ProofStack, app: str, prefix: int, n: int) -> list[dict[str, Any]]:
    ps.sim.register_activity(app, ACTIVITY, stock=n)
    return [_job(app, "coupon", f"2088{prefix:04d}9{i:07d}", {"activity_id": ACTIVITY}) for i in range(n)]


def outbound_rows(ps: ProofStack, app: str, scenario: str, events_in: str, jobs: list[dict[str, Any]],
                  fault_note: str) -> list[Row]:
    """Per job: the ledger's end state (sent, failed(fatal), or in the DLQ: anything else is lost), and what the
    simulator delivered, by idempotency: coupons by out_biz_no, template messages by recipient."""
    parsed = [parse_job(j) for j in jobs]
    entries = ps.ledger()
    dlq = ps.drain_dlq()
    calls = [c for c in ps.sim.calls() if c["app_id"] == app]
    outbound = [d for d in ps.sim.outbound(app_id=app)]
    ends: Counter[str] = Counter()
    vanished = 0
    sent: dict[str, bool] = {}
    for job in parsed:
        entry = entries.get(job.ledger_key)
        if entry is not None and entry.status is Status.sent:
            ends["sent"] += 1
        elif entry is not None and entry.status is Status.failed and entry.retryable is False:
            ends[f"failed(fatal {entry.reason})"] += 1
        elif dlq[job.ledger_key]:
            ends["DLQ"] += 1
        elif entry is not None and entry.status in (Status.skipped, Status.capped):
            ends[f"{entry.status.value}({entry.reason})"] += 1
        else:
            vanished += 1
        sent[job.ledger_key] = entry is not None and entry.status is Status.sent
    ends_text = ", ".join(f"{k} {n}" for k, n in sorted(ends.items()))
    rows = [Row(scenario, events_in, f"jobs ended ({ends_text})", len(parsed), len(parsed) - vanished, vanished, 0,
                keyed=True, explanation="ledger key; DLQ drained and counted", facts={"ends": dict(ends)})]
    for channel, method in (("coupon", VOUCHER_SEND), ("life_template", SINGLE_SEND)):
        mine = [j for j in parsed if j.channel == channel]
        if not mine:
            continue
        if channel == "coupon":
            def key_of(d: dict[str, Any]) -> str:
                return str((d.get("detail") or {}).get("out_biz_no"))
            job_key = {j.out_biz_no: j.ledger_key for j in mine}
            executed = Counter(job_key.get(str((c["biz"] or {}).get("out_biz_no"))) for c in calls
                               if c["method"] == method and c["fault"] and c["executed"])
        else:
            def key_of(d: dict[str, Any]) -> str:
                return str(d["recipient"])
            job_key = {j.recipient.user_id: j.ledger_key for j in mine}
            executed = Counter(job_key.get(str((c["biz"] or {}).get("to_user_id"))) for c in calls
                               if c["method"] == method and c["fault"] and c["executed"])
        got = Counter(job_key[key_of(d)] for d in outbound if d["method"] == method and key_of(d) in job_key
                      and (channel == "coupon" or (d.get("detail") or {}).get("template_id") == TEMPLATE))
        # sent: exactly one; not sent: none, or one when Alipay executed a call it answered 20000/timeout
        expected = {j.ledger_key: 1 if sent[j.ledger_key] else min(got[j.ledger_key], executed[j.ledger_key], 1)
                    for j in mine}
        exp, obs, lost, dup = per_key(expected, {j.ledger_key: got[j.ledger_key] for j in mine})
        unsent_delivered = sum(1 for j in mine if not sent[j.ledger_key] and got[j.ledger_key])
        if channel == "coupon":
            rows.append(Row(scenario, events_in, "coupons issued", exp, obs, lost, dup, keyed=True,
                            explanation=f"out_biz_no (Alipay dedupes); {unsent_delivered} issued for jobs not sent "
                                        f"(a call Alipay executed but answered 20000); {fault_note}",
                            facts={"executed_faults": executed.total(), "issued_though_unsent": unsent_delivered}))
        else:
            explained = sum(min(executed[j.ledger_key], max(0, got[j.ledger_key] - expected[j.ledger_key]))
                            for j in mine)
            rows.append(Row(scenario, events_in, "template messages delivered", exp, obs, lost, dup, keyed=False,
                            explained=explained,
                            explanation=f"no idempotency key: {dup} second deliveries, each after a call Alipay "
                                        f"executed but answered 20000 (retried, as the issue requires); "
                                        f"{unsent_delivered} delivered for jobs not sent; {fault_note}",
                            facts={"executed_faults": executed.total()}))
    return rows


def scenario_b(ps: ProofStack, scale: Scale, rng: random.Random) -> list[Row]:
    app = ps.new_life_app("2021009900000002")
    ps.sim.register_template(app, TEMPLATE)
    yesterday = now() - timedelta(days=1)
    n_coupons = scale.b_jobs // 2
    jobs = coupon_jobs(ps, app, 2, n_coupons)
    content = {"template_id": TEMPLATE, "url": "pages/flash/index", "keywords": [{"value": "限时秒杀"}]}
    for i in range(scale.b_jobs - n_coupons):
        user = f"20880002{i:08d}"
        ps.sim.set_follower(app, user)
        ps.audience.set_following(app, user, True, yesterday)
        jobs.append(_job(app, "life_template", user, content))
    rng.shuffle(jobs)
    sim = ps.sim
    sim.set_faults(reset=True, unknown_error_rate=1.0, unknown_error_delivered_share=0.25, seed=61)
    timeline: list[str] = []

    def phases() -> None:  # the outage starts with the first call of the burst (not while the gateway warms up)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(c["app_id"] == app for c in sim.calls()):
            time.sleep(0.05)
        timeline.append("outage")
        time.sleep(scale.b_outage_s)
        sim.set_faults(reset=True, rate_limit_rate=0.5, seed=62)
        timeline.append("rate limiting")
        time.sleep(scale.b_rate_limit_s)
        sim.clear_faults()
        timeline.append("clear")

    switcher = threading.Thread(target=phases, name="proof-faults", daemon=True)
    switcher.start()
    send_jobs(ps, jobs)
    switcher.join()
    ps.wait_quiet()
    tally = sim.fault_tally()
    note = (f"faults: {scale.b_outage_s:g} s all 20000, then {scale.b_rate_limit_s:g} s half 40005; tally "
            + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    events_in = f"{len(jobs)} jobs ({n_coupons} coupons, {len(jobs) - n_coupons} template messages)"
    rows = outbound_rows(ps, app, "b. Alipay outage + rate limit", events_in, jobs, note)
    for r in rows:
        r.facts.update(fault_tally=tally, phases=timeline)
    sim.clear_faults()
    return rows


# ---- c. the events consumer killed mid-batch ----------------------------------------------------------------


def run_crash_worker(ps: ProofStack, function_id: str, queue_id: str, batch: int, **kill: int) -> dict[str, Any]:
    """One consumer process that dies as ``kill`` says (``kill_after`` writes, or ``kill_after_transactions``)."""
    handler_file, handler_name = ps.provisioned.template.handler_location(function_id)
    spec = {"handler_file": str(handler_file), "handler_name": handler_name, "function_name": function_id,
            "env": ps.provisioned.function_environment(function_id), "queue_url": ps.queue(queue_id),
            "batch": batch, "visibility": CRASH_VISIBILITY_S, **kill}
    done = subprocess.run([sys.executable, "-m", "lifelink_local.proof.crash_worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=300, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    report = json.loads(lines[-1]) if lines else {"held": 0, "writes": 0, "killed": False}
    report["exit"] = done.returncode
    if done.returncode not in (0, 137):
        raise RuntimeError(f"crash worker failed ({done.returncode}): {done.stderr[-2000:]}")
    return report


def scenario_c(ps: ProofStack, scale: Scale, rng: random.Random) -> list[Row]:
    app = ps.new_life_app("2021009900000003")
    pop = population(ps, app, 3, scale.c_followers, 0, scale.c_orders, rng, with_visits=False)
    poller = ps.poller("MetricsFunction")
    poller.stop()
    try:
        answers = ps.deliver(pop.callbacks)
        reports = []
        for i in range(scale.c_crashes):  # alternately: among the reactions' writes, or just after the fold
            kill = {"kill_after": rng.randint(1, 2 * scale.c_batch)} if i % 2 == 0 else {"kill_after_transactions": 1}
            batch = scale.c_batch if i % 2 == 0 else min(scale.c_batch, 20)  # a small fold commits in time
            for _ in range(3):  # a batch that needed fewer writes, or a handler error, did not die: try again
                reports.append({**run_crash_worker(ps, "MetricsFunction", "EventsQueue", batch, **kill), **kill})
                if reports[-1]["killed"]:
                    break
    finally:
        poller.start()
    ps.wait_quiet()
    dead = ps.queue_depth("EventsDLQ")
    killed = [r for r in reports if r["killed"]]
    refused = sum(answers.refused.values())
    points = "/".join(f"{r['writes']}w" + ("+fold" if r.get("kill_after_transactions") else "") for r in killed)
    events_in = (f"{len(pop.callbacks)} events; {len(killed)} of {len(reports)} consumers killed (after "
                 f"{points or '-'} writes), holding {sum(r['held'] for r in killed)} messages")
    rows = effect_rows(ps, pop, "c. consumer killed mid-batch", events_in)
    for r in rows:
        r.facts.update(killed=len(killed), crash_reports=reports, refused_callbacks=refused, events_dlq=dead)
        r.explanation += f"; redelivered after the visibility timeout ({CRASH_VISIBILITY_S} s here)"
    return rows


# ---- d. DynamoDB throttling on a share of writes --------------------------------------------------------------


def scenario_d(ps: ProofStack, scale: Scale, rng: random.Random) -> list[Row]:
    app = ps.new_life_app("2021009900000004")
    pop = population(ps, app, 4, scale.d_followers, 0, scale.d_orders, rng)
    jobs = coupon_jobs(ps, app, 4, scale.d_coupons)
    visibility = {q: ps.set_visibility(q, s) for q, s in THROTTLE_VISIBILITY_S.items()}
    ps.throttle.enable(scale.d_share)
    try:
        send_jobs(ps, jobs)
        answers = ps.deliver(pop.callbacks)
        ps.wait_quiet()
    finally:
        ps.throttle.disable()
        for q, seconds in visibility.items():
            ps.set_visibility(q, seconds)
    tally = ps.throttle.tally()
    throttled, seen = sum(tally["throttled"].values()), sum(tally["seen"].values())
    note = f"{throttled} of {seen} DynamoDB writes throttled ({scale.d_share:.0%})"
    events_in = f"{len(pop.callbacks)} callbacks once each + {len(jobs)} coupon jobs; {note}"
    scenario = "d. DynamoDB throttling"
    rows, truth = event_rows(ps, pop, scenario, answers, events_in)
    rows += effect_rows(ps, pop, scenario, events_in, truth)
    rows += outbound_rows(ps, app, scenario, events_in, jobs, note)
    dead = ps.queue_depth("EventsDLQ")
    for r in rows:
        r.facts.update(throttle=tally, events_dlq=dead)
    return rows


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d}
