"""The demo's closing numbers, each from where a user would look: the messages the message gateway decided (its
``message_outcome`` events, the last one per ledger key), what the simulator received as Alipay, and what the
users' requests got back."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lifelink_local.playbook.driver import Tally
    from lifelink_local.playbook.population import User
    from lifelink_local.stack import LocalStack

from lifelink_local.sim_methods import SINGLE_SEND, TOTAL_SEND, VOUCHER_SEND

STATUSES = ("sent", "capped", "held", "skipped", "failed", "expired")


@dataclass
class Summary:
    users: int
    seed: int
    speed: float
    wall_s: float
    follows: int
    unfollows: int
    scenes: Counter[str]
    outcomes: Counter[tuple[str, str, str]]  # (status, channel, source) of the last outcome per ledger key
    reasons: Counter[str]  # why capped / skipped / held
    sim: Counter[str]  # deliveries at the simulator by method
    answers: Counter[str]
    readers: int
    attributed: int
    revenue_cents: int
    buyers: int
    report: Path | None = None
    lines: list[str] = field(default_factory=list)

    def status_total(self, status: str, channel: str | None = None) -> int:
        return sum(n for (s, c, _), n in self.outcomes.items() if s == status and (channel is None or c == channel))

    def by_source(self, status: str, channel: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for (s, c, source), n in self.outcomes.items():
            if s == status and c == channel:
                out[source] += n
        return out

    def as_json(self) -> dict[str, Any]:
        """Everything the summary is made of (demo-summary.json beside the report)."""
        return {
            "users": self.users, "seed": self.seed, "speed": self.speed, "wall_s": round(self.wall_s, 1),
            "follows": self.follows, "unfollows": self.unfollows, "scenes": dict(self.scenes),
            "outcomes": [{"status": s, "channel": c, "source": src, "count": n}
                         for (s, c, src), n in sorted(self.outcomes.items())],
            "not_sent": dict(self.reasons), "simulator": dict(self.sim), "requests": dict(sorted(self.answers.items())),
            "readers": self.readers, "attributed": self.attributed, "revenue_cents": self.revenue_cents,
            "buyers": self.buyers, "report": str(self.report) if self.report else None,
        }

    def render(self) -> list[str]:
        a = self.answers
        scenes = ", ".join(f"{k} {v}" for k, v in self.scenes.most_common())
        messages = ", ".join(f"{s} {self.status_total(s)}" for s in STATUSES)
        templates = _sources(self.by_source("sent", "life_template"))
        coupons = _sources(self.by_source("sent", "coupon"))
        reasons = ", ".join(f"{k} {v}" for k, v in self.reasons.most_common()) or "none"
        paid = a["order notified"] + a["order notification retried"]
        followers = max(1, self.follows - self.unfollows)
        flash_sold_out = sum(n for k, n in a.items() if k.startswith("flash 409"))
        lines = [
            f"Playbook summary: {self.users} users, seed {self.seed}, speed {self.speed:g}, {_duration(self.wall_s)}",
            f"  follows          {self.follows} (scenes: {scenes}); unfollowed {self.unfollows}",
            f"  article          broadcast to {self.sim[TOTAL_SEND]} followers; opened by {self.readers} "
            f"(with its attribution token {self.attributed})",
            f"  messages         {messages}",
            f"  template sent    {self.status_total('sent', 'life_template')} ({templates})",
            f"  coupons sent     {self.status_total('sent', 'coupon')} ({coupons})",
            f"  not sent, why    {reasons}",
            f"  at the simulator {self.sim[SINGLE_SEND]} template messages, {self.sim[TOTAL_SEND]} broadcast "
            f"deliveries, {self.sim[VOUCHER_SEND]} coupons",
            f"  reservations     {_done(a, 'reservation')} (refused {_refused(a, 'reservation')})",
            f"  flash sale       {a['flash 201']} taken, {flash_sold_out} sold out",
            f"  shares           {_done(a, 'share')}; UGC entries {_done(a, 'entry')}, votes {_done(a, 'vote')} "
            f"(refused {_refused(a, 'share') + _refused(a, 'entry') + _refused(a, 'vote')})",
            f"  winners          {a['winners']} announced, {_done(a, 'claim')} claimed",
            f"  survey           {_done(a, 'survey')} answers (refused {_refused(a, 'survey')})",
            f"  orders           {paid} paid by trade notification (¥{self.revenue_cents / 100:,.2f}); "
            f"buyers {self.buyers}",
            f"  conversion       {self.buyers / followers * 100:.1f} % of followers paid an order",
            f"  report           {self.report or 'not written'}",
        ]
        if _repeats(a):
            repeats = _repeats(a)
            lines.insert(-1, f"  repeated         {repeats} request(s) reached the stack twice; it kept one of each")
        trouble = {k: n for k, n in a.items() if k.startswith("error ") or "timeout" in k or k.startswith("late ")}
        if trouble:  # requests the stack did not answer in time (an overloaded machine): said, not hidden
            lines.insert(-1, "  not answered     " + ", ".join(f"{k} {n}" for k, n in sorted(trouble.items())))
        return lines


def _sources(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


# Each synthetic user makes each request once: an answer that it was already done (200 on a create, a vote already
# counted today) means the request reached the stack twice (a retried connection) and the stack kept one.
ALREADY = ("200", "409 already_voted")


def _done(answers: Counter[str], what: str) -> int:
    return answers[f"{what} 201"] + sum(answers[f"{what} {tail}"] for tail in ALREADY)


def _repeats(answers: Counter[str]) -> int:
    return sum(n for k, n in answers.items() if k.split(" ", 1)[-1] in ALREADY and not k.startswith(("follow", "unf")))


def _refused(answers: Counter[str], what: str) -> int:
    return sum(n for k, n in answers.items()
               if k.startswith(f"{what} ") and not k.startswith(f"{what} 20") and not k.endswith(" retried")
               and k.split(" ", 1)[-1] not in ALREADY)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def source_of(event: dict[str, Any]) -> str:
    """Who queued the job: the welcome, a rule, the article or a campaign action."""
    campaign = str(event.get("campaign") or "-")
    if event.get("rule"):
        return str(event["rule"])
    if campaign.startswith("rule-"):
        return campaign.removeprefix("rule-")
    if campaign in ("welcome", "article-guide"):
        return campaign.removesuffix("-guide")
    phase = str(event.get("phase") or "-")
    return phase if phase != "-" else campaign


def last_outcomes(bodies: list[str]) -> dict[str, dict[str, Any]]:
    """The latest ``message_outcome`` per ledger key (a held job is decided again later)."""
    latest: dict[str, dict[str, Any]] = {}
    for body in bodies:
        try:
            event = json.loads(body)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("type") != "message_outcome":
            continue
        key = str(event.get("ledger_key"))
        seen = latest.get(key)
        if seen is None or (str(event.get("occurred_at")), int(event.get("attempts") or 0)) >= (
                str(seen.get("occurred_at")), int(seen.get("attempts") or 0)):
            latest[key] = event
    return latest


def summarise(stack: LocalStack, users: list[User], tally: Tally, *, seed: int, speed: float,
              wall_s: float) -> Summary:
    assert stack.sim is not None
    outcomes: Counter[tuple[str, str, str]] = Counter()
    reasons: Counter[str] = Counter()
    for event in last_outcomes(stack.tap.bodies("EventsQueue")).values():
        status = str(event.get("status"))
        outcomes[(status, str(event.get("channel")), source_of(event))] += 1
        if status != "sent" and event.get("reason"):
            why = event["reason"] + (f" {event['sub_code']}" if event.get("sub_code") else "")
            reasons[f"{status} ({why}: {source_of(event)} {event.get('channel')})"] += 1
    sim: Counter[str] = Counter(str(r.get("method")) for r in stack.sim.outbound())
    answers = Counter(tally.counts)
    answers["winners"] = len(tally.winners)
    inbound = [json.loads(b) for b in stack.tap.bodies("EventsQueue")]
    attributed = {e["user"].get("user_id") for e in inbound
                  if e.get("type") == "session_start" and e.get("attribution_token")}
    buyers = {e["user"].get("user_id") for e in inbound if e.get("type") == "order_paid"}
    follows = {e["user"].get("user_id") for e in inbound if e.get("type") == "follow"}
    unfollows = {e["user"].get("user_id") for e in inbound if e.get("type") == "unfollow"}
    return Summary(
        users=len(users), seed=seed, speed=speed, wall_s=wall_s, follows=len(follows), unfollows=len(unfollows),
        scenes=Counter(u.scene for u in users), outcomes=outcomes, reasons=reasons, sim=sim, answers=answers,
        readers=sum(1 for u in users if u.reads), attributed=len(attributed), revenue_cents=tally.revenue_cents,
        buyers=len(buyers),
    )
