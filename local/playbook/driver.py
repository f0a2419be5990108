"""The seed playbook, played on the local stack by synthetic users (see :mod:`lifelink_local.playbook`).

Everything a user or Alipay does goes in the way it would in production: follows and unfollows as life-account
gateway callbacks and paid orders as trade notifications, both signed by the simulator with its Alipay key and
posted to the webhook; what users do in the mini programs as behaviour events through ``POST /events``; the
campaign through ``POST /campaigns`` and its participation routes (SigV4-signed, via the HTTP front). The
campaign's boundaries are fired by the local Scheduler ticker; the rules' scheduled runs (``rules_due`` every
15 minutes and the daily ``silence_scan``) are delivered to the metrics function as the ticker would, at the
moment the demo needs them.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import boto3
import httpx
from botocore.credentials import Credentials

from lifelink.domain.campaigns import Campaign
from lifelink.store.apps import AppRegistry
from lifelink_local.api_client import ApiClient, ApiUnavailable, path_part
from lifelink_local.campaign_demo import template_ids
from lifelink_local.playbook.population import User
from lifelink_local.playbook.progress import Progress
from lifelink_local.playbook.timeline import Timeline

if TYPE_CHECKING:
    from lifelink_local.stack import LocalStack

LIFE = "2021004100000001"
MINI_SHOP = "2021004100000002"  # the store's mini program: articles, reservations, regular orders
MINI_LIVE = "2021004100000003"  # the live-stream mini program: product pages, the flash sale
SELLER = "2088000000000001"
ARTICLE_ID = "guide-1111"
ARTICLE_URL = (f"alipays://platformapi/startapp?appId={MINI_SHOP}&page=pages%2Farticle%2Findex"
               f"&query={quote(f'id={ARTICLE_ID}', safe='')}")
MEMBER_GUIDE = "TM_MEMBER_GUIDE"
WINNER_TEMPLATE = "TM_DEMO_WINNER"
BROWSE_COUPON = "DEMO_BROWSE_COUPON"
COME_BACK_GIFT = "DEMO_COME_BACK_GIFT"
RULE_STOCK = 100_000
SILENT_DAYS = 2
LAPSED_DAYS_AGO = 3
PRODUCT = ("SKU-DEMO-1", 29900)
FLASH_PRICE_CENTS = 9900
THREADS = 4  # more only queues work faster than one process's CPU does it
EVENTS_PER_POST = 500


def demo_policy(browse_after_s: float) -> dict[str, Any]:
    """The life account's policy for the demo: its rules on (the mini programs inherit them), quiet hours off so
    the run gives the same numbers at any hour, and a send rate the simulator takes."""
    guide_url = f"alipays://platformapi/startapp?appId={MINI_SHOP}&page=pages%2Fmember%2Fguide"
    return {
        "rate_per_second": 100,
        "quiet_hours": {"enabled": False},
        "rules": {
            "browse_no_order": {"enabled": True, "hours": browse_after_s / 3600, "activity_id": BROWSE_COUPON,
                                "send_via": "life_account"},
            "first_order": {"enabled": True, "send_via": "life_account", "message": {
                "channel": "life_template",
                "content": {"template_id": MEMBER_GUIDE, "first": {"value": "感谢您的首单！"},
                            "keywords": [{"value": "会员指南"}, {"value": "银卡权益"}],
                            "url": guide_url, "action_name": "查看指南"}}},
            "come_back": {"enabled": True, "silent_days": SILENT_DAYS, "activity_id": COME_BACK_GIFT},
        },
    }


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass
class Tally:
    """What the users' requests got back (thread-safe counts, by step and answer)."""

    counts: Counter[str] = field(default_factory=Counter)
    revenue_cents: int = 0
    entries: list[str] = field(default_factory=list)
    winners: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def paid(self, cents: int) -> None:
        with self._lock:
            self.revenue_cents += cents


class PlaybookError(RuntimeError):
    """The demo could not go on (the stack refused a step it depends on)."""


class Playbook:
    def __init__(self, stack: LocalStack, users: Sequence[User], timeline: Timeline, progress: Progress,
                 seed: int, say: Callable[[str], None] | None = None) -> None:
        assert stack.front is not None and stack.sim is not None and stack.provisioned is not None
        self.stack = stack
        self.sim = stack.sim
        self.users = list(users)
        self.timeline = timeline
        self.progress = progress
        self.rng = random.Random(seed * 7919 + 1)
        self.say = say or progress.log
        self.api = ApiClient(stack.front.url, Credentials("local", "local"), stack.provisioned.region)
        self.tally = Tally()
        self.campaign: Campaign | None = None
        self.article_token: str | None = None
        self.views_done_at: datetime | None = None
        self.gateway_url = stack.conf["webhook"]["gateway_url"]
        self.notify_url = stack.conf["webhook"]["notify_url"]
        self.rule_runs: dict[str, Any] = {}
        self._flash_takers: set[str] = set()
        self.follows_started = time.monotonic()

    STEPS = 13

    # ---- the story ---------------------------------------------------------------------------------------------
    def run(self) -> Tally:
        try:
            self.setup()
            self.follow()
            self.lapsed_sessions()
            self.article()
            self.apply_campaign()
            self.preheat()
            self.burst()
            self.settle()
            self.rules()
            self.close()
        finally:
            self.api.close()
        return self.tally

    def setup(self) -> None:
        self.progress.step("setting up the apps, templates and coupon activities")
        ddb = boto3.client("dynamodb")
        registry = AppRegistry(ddb, self.stack.conf["state_table"])
        registry.configure(LIFE, policy=demo_policy(self.browse_after_s))
        for template in (MEMBER_GUIDE,):
            self.sim.register_template(LIFE, template)
        for activity in (BROWSE_COUPON, COME_BACK_GIFT):
            self.sim.register_activity(LIFE, activity, RULE_STOCK)
        bound = sorted(registry.bindings().get(LIFE, []))
        self.say(f"  life account {LIFE} with mini programs {', '.join(bound)} bound to it; its automation rules on "
                 f"(browsed-not-ordered after {self.browse_after_s:.0f} s, first order, silent {SILENT_DAYS} days)")

    @property
    def browse_after_s(self) -> float:
        """How long a product view waits for an order before the coupon: a fifth of a phase."""
        return max(5.0, self.timeline.phase_s / 5)

    # ---- follows -------------------------------------------------------------------------------------------------
    def follow(self) -> None:
        self.progress.step("follows through the signed life-account gateway", total=len(self.users))
        self.follows_started = time.monotonic()

        def one(user: User) -> None:
            scene = json.dumps({"scene": {"sceneId": user.scene}})
            self.tally.add("follow " + self._push(
                {"MsgType": "event", "EventType": "follow", "FromAlipayUserId": user.user_id, "ActionParam": scene,
                 "MsgId": f"demo-follow-{user.index}"}))
            self.progress.advance()

        self._each(self.users, one)
        leaving = [u for u in self.users if u.unfollows]
        for user in leaving:
            self.tally.add("unfollow " + self._push(
                {"MsgType": "event", "EventType": "unfollow", "FromAlipayUserId": user.user_id,
                 "MsgId": f"demo-unfollow-{user.index}"}))
        self.say(f"  {self.tally.counts['follow 200']} follows acknowledged by the webhook "
                 f"({len(leaving)} unfollowed again)")

    def lapsed_sessions(self) -> None:
        """Users whose last visit to the live-stream mini program was days ago: the come-back rule's audience."""
        lapsed = [u for u in self.users if u.lapsed]
        self.progress.step("lapsed users' last visits (days ago) through POST /events", total=len(lapsed))
        then = datetime.now(UTC) - timedelta(days=LAPSED_DAYS_AGO)
        items = [{"type": "session_start", "occurred_at": _iso(then), "user": {"user_id": u.user_id},
                  "scene": "1001", "page": "pages/index/index"} for u in lapsed]
        self.post_events(MINI_LIVE, items, "lapsed")

    # ---- the article --------------------------------------------------------------------------------------------
    def article(self) -> None:
        self.progress.step("an article with a tracked link, broadcast by the life account")
        job = {
            "app_id": LIFE, "channel": "life_broadcast", "campaign": "article-guide", "phase": "-",
            "not_after": _iso(datetime.now(UTC) + timedelta(hours=6)),
            "content": {"msg_type": "image-text", "articles": [{
                "title": "双11攻略：三步拿满优惠", "desc": "预约、直播、分享：一篇看懂", "url": ARTICLE_URL,
                "action_name": "阅读全文"}]},
        }
        answer = self.api.request("POST", "/messages", job)
        if answer.status != 202:
            raise PlaybookError(f"POST /messages (the article) answered {answer.status}: {answer.body}")
        self.article_token = self._wait_for_token()
        readers = [u for u in self.users if u.reads]
        self.say(f"  article broadcast (alipay.open.public.message.total.send); its link carries the attribution "
                 f"token {'…' + self.article_token[-6:] if self.article_token else '(none: the send did not go out)'}")
        self.progress.step("readers open the article in the mini program (POST /events)", total=len(readers))
        now = datetime.now(UTC)
        items: list[dict[str, Any]] = []
        for u in readers:
            query = {"id": ARTICLE_ID, **({"ll": self.article_token} if self.article_token else {})}
            items += [
                {"type": "session_start", "occurred_at": _iso(now), "user": {"user_id": u.user_id}, "scene": "1074",
                 "page": "pages/article/index", "query": query},
                {"type": "article_open", "occurred_at": _iso(now), "user": {"user_id": u.user_id},
                 "article_id": ARTICLE_ID, "category": "攻略"},
                {"type": "article_progress", "occurred_at": _iso(now + timedelta(seconds=40)),
                 "user": {"user_id": u.user_id}, "article_id": ARTICLE_ID, "category": "攻略",
                 "depth": 1.0 if u.reads_to_end else 0.35, "dwell_s": 40.0 if u.reads_to_end else 8.0},
            ]
        self.post_events(MINI_SHOP, items, "reader", per_user=3)

    def _wait_for_token(self, timeout_s: float = 60) -> str | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for call in self.sim.calls():
                if call.get("method") == "alipay.open.public.message.total.send" and call.get("code") == "10000":
                    token = _token_of(call.get("biz"))
                    if token:
                        return token
            time.sleep(0.3)
        return None

    # ---- the campaign -------------------------------------------------------------------------------------------
    def apply_campaign(self) -> None:
        self.progress.step("the three-phase campaign applied (POST /campaigns)")
        self.progress.note("waiting for the follows to be folded")
        self.drain(timeout_s=120 + 2.0 * len(self.users))
        self.timeline = self.timeline.fitted(time.monotonic() - self.follows_started)
        definition = self.timeline.definition(datetime.now(UTC))
        campaign = Campaign.model_validate(definition)
        for template in template_ids(definition):
            self.sim.register_template(LIFE, template)
        for coupon in campaign.coupons.values():
            for app in (LIFE, *campaign.mini_programs):
                self.sim.register_activity(app, coupon.activity_id, coupon.stock)
        answer = self.api.request("POST", "/campaigns", definition)
        if answer.status not in (200, 201):
            raise PlaybookError(f"POST /campaigns answered {answer.status}: {answer.body}")
        self.campaign = campaign
        zone = campaign.zone
        self.say(f"  phases of {self.timeline.phase_s:.0f} s: the follows and the article took "
                 f"{self.timeline.measured_s:.0f} s to be folded and sent on this machine")
        self.say("  campaign " + campaign.id + ": " + ", ".join(
            f"{name} {spec.start.astimezone(zone):%H:%M:%S}–{spec.end.astimezone(zone):%H:%M:%S}"
            for name, spec in campaign.phases.items()) + f" ({campaign.timezone})")

    def preheat(self) -> None:
        self.wait_for_state("preheat")
        reservers = [u for u in self.users if u.reserves]
        self.progress.step("preheat: early-bird reservations (POST …/reservations)", total=len(reservers))
        self._each(reservers, lambda u: self._participate("reservation", "reservations",
                                                          {"action": "early", "app_id": MINI_SHOP}, u))

    def burst(self) -> None:
        self.wait_for_state("burst")
        assert self.campaign is not None
        viewers = [u for u in self.users if u.views_product]
        sharers = [u for u in self.users if u.shares]
        entrants = [u for u in self.users if u.enters_ugc]
        self.progress.step("burst: live-stream product views, shares, UGC entries",
                           total=len(viewers) + len(sharers) + len(entrants))
        now = datetime.now(UTC)
        items = [{"type": "product_view", "occurred_at": _iso(now), "user": {"user_id": u.user_id},
                  "product_id": PRODUCT[0], "price_cents": PRODUCT[1]} for u in viewers]
        self.post_events(MINI_LIVE, items, "viewer")
        self.views_done_at = datetime.now(UTC)
        self._each(sharers, lambda u: self._participate("share", "shares", {"action": "share", "app_id": MINI_SHOP}, u))
        self._each(entrants, self._enter)
        window = self.campaign.phases.burst.actions[0].windows[0]  # type: ignore[union-attr]
        self.wait_until(window.start, "the flash-sale window")
        flash = [u for u in self.users if u.flash]
        buyers = [u for u in self.users if u.orders]
        voters = [u for u in self.users if u.votes] if self.tally.entries else []
        self.progress.step("burst: flash sale, orders paid by trade notification, votes",
                           total=len(flash) + len(buyers) + len(voters))
        self._each(flash, self._flash)
        self._each(buyers, self._order)
        self._each(voters, self._vote)

    def rules(self) -> None:
        """The scheduled rules, delivered to the metrics function as the ticker's schedules would be."""
        self.progress.step("automation rules: rules_due and the silence scan")
        due = (self.views_done_at or datetime.now(UTC)) + timedelta(seconds=self.browse_after_s + 1)
        self.wait_until(due, "browsed-not-ordered coupons to come due")
        self.progress.note("waiting for the orders to be folded")
        self.drain(timeout_s=60 + 0.1 * len(self.users))
        for kind in ("rules_due", "silence_scan"):
            self.rule_runs[kind] = self.stack.invoke("MetricsFunction", {"kind": kind})
        self.say(f"  rules_due → {_jobs(self.rule_runs['rules_due'])} coupon job(s); silence_scan → "
                 f"{_jobs(self.rule_runs['silence_scan'])} come-back gift(s)")

    def settle(self) -> None:
        self.wait_for_state("settle")
        self.progress.step("settle: the draw and the winners' claims")
        self.tally.winners = self._winners()
        by_id = {u.user_id: u for u in self.users}
        claimants = [by_id[w] for w in self.tally.winners if w in by_id and by_id[w].claims]
        self._each(claimants, lambda u: self._participate("claim", "claims", {"action": "draw"}, u))
        answering = [u for u in self.users if u.answers_survey]
        self.progress.step("settle: survey answers (POST …/survey)", total=len(answering))
        self._each(answering, lambda u: self._participate(
            "survey", "survey", {"action": "survey", "answers": {"q1": u.rating}}, u))

    def _winners(self) -> list[str]:
        """The users the winners' announcement reached at the simulator, once the gateway decided every job the
        draw queued (each winner then opens the claim link from the message)."""
        assert self.campaign is not None
        self.progress.note("waiting for the draw's announcements")
        deadline = time.monotonic() + self.timeline.phase_s / 2
        while time.monotonic() < deadline:
            queued = self._action_counts("draw").get("queued")
            if queued is not None:
                decided = {json.loads(b).get("ledger_key") for b in self.stack.tap.bodies("EventsQueue")
                           if '"settle.draw"' in b and '"message_outcome"' in b}
                if len(decided) >= queued:
                    break
            time.sleep(0.5)
        return sorted({r["recipient"] for r in self.sim.outbound("alipay.open.public.message.single.send", LIFE)
                       if (r.get("detail") or {}).get("template_id") == WINNER_TEMPLATE})

    def _action_counts(self, action_id: str) -> dict[str, int]:
        assert self.campaign is not None
        answer = self.api.request("GET", f"/campaigns/{path_part(self.campaign.id)}")
        if not answer.ok or not isinstance(answer.body, dict):
            return {}
        for action in answer.body.get("actions", []):
            if action.get("id") == action_id and action.get("status") == "fired":
                return dict(action.get("counts") or {})
        return {}

    def close(self) -> None:
        self.wait_for_state("closed")
        self.progress.step("waiting for the last messages to be decided")
        self.drain(timeout_s=120 + 0.3 * len(self.users))

    def _push(self, fields: dict[str, Any], attempts: int = 3) -> str:
        """A signed gateway push; one that got no answer in time is pushed again with the same MsgId (the webhook
        drops the repeat if the first one went through). Returns the HTTP status, or "timeout"."""
        for _ in range(attempts):
            try:
                return str(self.sim.push_gateway(self.gateway_url, LIFE, fields).status_code)
            except httpx.HTTPError:
                continue
        return "timeout"

    # ---- user actions --------------------------------------------------------------------------------------------
    def _participate(self, what: str, route: str, body: dict[str, Any], user: User) -> int:
        assert self.campaign is not None
        path = f"/campaigns/{path_part(self.campaign.id)}/{route}"
        try:
            for attempt in range(4):  # 503 (contended stock, queue unavailable) says: send the same request again
                answer = self.api.request("POST", path, {**body, "user": {"user_id": user.user_id}})
                if answer.status != 503:
                    break
                self.tally.add(f"{what} 503 retried")
                time.sleep(0.2 * (attempt + 1) + self.rng.random() * 0.2)
        except ApiUnavailable:
            self.tally.add(f"{what} timeout")
            self.progress.advance()
            return 0
        status = answer.status
        if status == 200 and attempt > 0:  # the first attempt recorded it before its 503: this user's one grant
            status = 201
        reason = "" if answer.ok else " " + ",".join(str(e.get("type")) for e in answer.errors())
        self.tally.add(f"{what} {status}{reason}")
        self.progress.advance()
        return status

    def _enter(self, user: User) -> None:
        assert self.campaign is not None
        answer = self.api.request("POST", f"/campaigns/{path_part(self.campaign.id)}/entries", {
            "action": "ugc", "user": {"user_id": user.user_id}, "title": f"我的双11清单 #{user.index}",
            "content_url": f"https://example.com/ugc/{user.index}"})
        self.tally.add(f"entry {answer.status}")
        self.progress.advance()
        if answer.ok and isinstance(answer.body, dict):
            with self.tally._lock:
                self.tally.entries.append(str(answer.body["entry_id"]))

    def _vote(self, user: User) -> None:
        assert self.campaign is not None
        entries = sorted(self.tally.entries)
        entry = entries[(user.index * 7 + user.index // 3) % len(entries)]  # deterministic, uneven favourites
        if user.index % 3 == 0:
            entry = entries[0]
        self._participate("vote", "votes", {"action": "ugc", "entry_id": entry, "app_id": MINI_SHOP}, user)

    def _flash(self, user: User) -> None:
        if self._participate("flash", "flash-sales", {"action": "live", "window": "w1"}, user) in (200, 201):
            with self.tally._lock:
                self._flash_takers.add(user.user_id)

    def _order(self, user: User) -> None:
        flash = user.flash and self._took_flash(user)
        app, cents = (MINI_LIVE, FLASH_PRICE_CENTS) if flash else (MINI_SHOP, PRODUCT[1])
        trade_no = f"DEMO{user.index:06d}"
        now = datetime.now(UTC)
        placed = {"type": "order_placed", "occurred_at": _iso(now), "user": {"user_id": user.user_id},
                  "out_trade_no": trade_no, "amount_cents": cents}
        try:
            self.api.request("POST", "/events", {"app_id": app, "events": [placed]})
        except ApiUnavailable:
            self.tally.add("events order timeout")
        beijing = now.astimezone(_BEIJING)
        delivery = self.sim.push_notify(self.notify_url, {
            "app_id": app, "out_trade_no": trade_no, "trade_no": f"2026111122001{user.index:012d}",
            "trade_status": "TRADE_SUCCESS", "total_amount": f"{cents / 100:.2f}", "seller_id": SELLER,
            "buyer_id": user.user_id, "gmt_payment": f"{beijing:%Y-%m-%d %H:%M:%S}",
            "subject": "双11直播秒杀" if flash else "双11预售套餐"})
        ok = delivery.last_response is not None and delivery.last_response.text.strip() == "success"
        self.tally.add("order notified" if ok else "order notification retried")
        self.tally.add("order flash" if flash else "order regular")
        self.tally.paid(cents)
        self.progress.advance()

    def _took_flash(self, user: User) -> bool:
        with self.tally._lock:
            return user.user_id in self._flash_takers

    # ---- plumbing ------------------------------------------------------------------------------------------------
    def post_events(self, app: str, items: list[dict[str, Any]], what: str, per_user: int = 1) -> None:
        for i in range(0, len(items), EVENTS_PER_POST):
            chunk = items[i : i + EVENTS_PER_POST]
            try:
                answer = self.api.request("POST", "/events", {"app_id": app, "events": chunk})
            except ApiUnavailable:
                self.tally.add(f"events {what} timeout", len(chunk))
                continue
            body = answer.body if isinstance(answer.body, dict) else {}
            self.tally.add(f"events {what} accepted", int(body.get("accepted", 0)))
            self.tally.add(f"events {what} rejected", len(body.get("rejected", [])) if answer.ok else len(chunk))
            self.progress.advance(len(chunk) // per_user)

    def _each(self, users: Iterable[User], fn: Callable[[User], object]) -> None:
        with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="demo-user") as pool:
            for future in [pool.submit(fn, u) for u in users]:
                try:
                    future.result()
                except Exception as exc:  # one user's failure is counted, not the end of the demo
                    self.tally.add(f"error {type(exc).__name__}")

    def state(self) -> str:
        assert self.campaign is not None
        answer = self.api.request("GET", f"/campaigns/{path_part(self.campaign.id)}")
        return str(answer.body.get("state")) if answer.ok and isinstance(answer.body, dict) else "?"

    def wait_for_state(self, wanted: str) -> None:
        assert self.campaign is not None
        order = ["scheduled", "preheat", "burst", "settle", "closed"]
        boundary = {"preheat": self.campaign.phases.preheat.start, "burst": self.campaign.phases.burst.start,
                    "settle": self.campaign.phases.settle.start, "closed": self.campaign.phases.settle.end}[wanted]
        deadline = time.monotonic() + max(0.0, (boundary - datetime.now(UTC)).total_seconds()) + 120
        while True:
            state = self.state()
            if state in order and order.index(state) >= order.index(wanted):
                if state != wanted:
                    self.tally.add(f"late for {wanted}")
                self.say(f"  [{datetime.now(self.campaign.zone):%H:%M:%S}] campaign {self.campaign.id}: {state}")
                return
            if state in ("cancelled", "paused") or time.monotonic() > deadline:
                raise PlaybookError(f"the campaign is {state}, waiting for {wanted}")
            left = (boundary - datetime.now(UTC)).total_seconds()
            self.progress.note(f"{wanted} in {left:.0f} s" if left > 0 else f"waiting for {wanted}")
            time.sleep(min(max(left, 1.0), 2.0))  # each look is an API call: sleep until the boundary is near

    def wait_until(self, at: datetime, what: str) -> None:
        while (left := (at - datetime.now(UTC)).total_seconds()) > 0:
            self.progress.note(f"{what} in {left:.0f} s")
            time.sleep(min(left, 0.5))

    def drain(self, timeout_s: float) -> bool:
        """Wait until the events and outbound queues are empty (nothing visible or in flight) twice in a row."""
        assert self.stack.provisioned is not None
        sqs = boto3.client("sqs")
        queues = [self.stack.provisioned.queues[q] for q in ("EventsQueue", "OutboundQueue")]
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while time.monotonic() < deadline:
            depth = 0
            for url in queues:
                attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
                depth += int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
            quiet = quiet + 1 if depth == 0 else 0
            if quiet >= 2:
                return True
            self.progress.note(f"{depth} message(s) on the queues")
            time.sleep(1.0)
        return False


_BEIJING = __import__("zoneinfo").ZoneInfo("Asia/Shanghai")


def _jobs(result: Any) -> int:
    if not isinstance(result, dict):
        return 0
    if "jobs" in result:
        return int(result["jobs"])
    per_app = result.get("per_app") or result.get("apps") or {}
    return sum(int(v) for v in per_app.values()) if isinstance(per_app, dict) else 0


def _token_of(biz: Any) -> str | None:
    """The ``ll`` attribution token inside the first article link of a total.send biz_content."""
    if isinstance(biz, str):
        try:
            biz = json.loads(biz)
        except ValueError:
            return None
    if not isinstance(biz, dict):
        return None
    articles = biz.get("articles") or (biz.get("image_text") or {}).get("articles") or []
    for article in articles:
        url = str(article.get("url") or article.get("action_url") or "")
        outer = parse_qs(urlsplit(url).query)
        for inner in outer.get("query", []):
            token = parse_qs(inner).get("ll")
            if token:
                return token[0]
        if outer.get("ll"):
            return outer["ll"][0]
    return None
