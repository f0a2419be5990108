"""The automation rules: decisions over domain events, profiles and the rules' state, with jobs as the result.

- **browse_no_order**: a ``product_view`` arms a pending marker due at view + ``hours`` (unless the user's window
  already has one pending or fired); a paid order cancels pending markers armed before it; :meth:`RuleEngine.due`
  turns markers whose time has come, with no paid order since the view, into a coupon job.
- **first_order**: the user's first paid order (no earlier paid order in the profile, and the once-ever marker)
  → the member-guide message.
- **come_back**: :meth:`RuleEngine.silence_scan` finds users silent for ``silent_days`` (no open, read or order:
  :func:`lifelink.domain.tags.silent` over the profile) → a gift once per silence.
- **member tiers**: follow / unfollow set the tier per the app's settings (optionally confirmed with Alipay) and,
  with a card template, queue a member-card update.

Every job is attributed to its rule: ``rule = <name>``, ``campaign = rule-<name>``, ``phase = <window id>``, so the
ledger key (app|campaign|phase|user|channel) makes a repeat a no-op in the message gateway. Markers are written
with conditions (lifelink.store.rule_state), so a rule fires at most once per user and window. A marker is set
``sent`` only after its job is on the queue (:meth:`RuleEngine.acknowledge`): a crash in between sends the job
again on the next run, and the ledger drops the repeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from lifelink.domain.events import DomainEvent, UserRef
from lifelink.domain.messages import OutboundJob
from lifelink.domain.metrics import DEFAULT_TZ, zone_of
from lifelink.domain.tags import TagPolicy, silent
from lifelink.privacy import hash_id
from lifelink.rules.config import MemberTiers, RuleMessage, RulesConfig, rules_config
from lifelink.store.apps import AppRecord
from lifelink.store.profiles import Profile
from lifelink.store.rule_state import CANCELLED, FIRED, DueEntry, Marker, RuleState, TierRecord, hour_of, hour_start

BROWSE = "browse_no_order"
FIRST_ORDER = "first_order"
COME_BACK = "come_back"
MEMBER_TIER = "member_tier"
DUE_LOOKBACK = timedelta(hours=48)  # first run without a cursor: how far back the index is read
CURSOR_OVERLAP = timedelta(hours=2)  # always re-read this much before the cursor (entries written late)
MARKER_KEEP = timedelta(days=30)  # markers outlive their window by this much (TTL)
CARD_VALID_FOR = timedelta(days=3)
# A marker fired but not yet marked sent is sent again by a scheduled run only when it was fired this long ago
# (the run that fired it had time to publish; if it had not, the ledger drops the repeat anyway).
RESEND_AFTER = timedelta(minutes=5)

_log = logging.getLogger("lifelink.rules")


# ---- collaborators -----------------------------------------------------------------------------------------


class Registry(Protocol):
    def get(self, app_id: str) -> AppRecord | None: ...


class Profiles(Protocol):
    def read_many(self, users: Iterable[tuple[str, str]]) -> Any: ...  # ProfileRead (lifelink.store.profiles)

    def scan_group(self, group: str) -> Iterator[Profile]: ...


class FollowCheck(Protocol):
    """Whether ``user`` follows the life account ``app_id`` now (raises when Alipay cannot say)."""

    def __call__(self, app_id: str, user: UserRef) -> bool: ...


@dataclass(frozen=True)
class AppRules:
    """What the rules need to know about one app: its group (life account, or itself), zone and settings."""

    app_id: str
    group: str
    tz: ZoneInfo
    rules: RulesConfig
    inherited: bool = False  # a mini program using its life account's rules (group-wide scans skip it)


DISABLED = RulesConfig.model_validate({"tiers": {"tier_on_follow": None}})


class AppDirectory:
    """``app_id`` → :class:`AppRules` from the registry, cached for ``ttl`` seconds. A mini program without a
    ``rules`` section uses its life account's; a policy that does not validate disables every rule (logged)."""

    def __init__(self, registry: Registry, ttl: float = 300.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._ttl = ttl
        self._now = monotonic
        self._cache: dict[str, tuple[float, AppRules | None]] = {}

    def __call__(self, app_id: str) -> AppRules | None:
        hit = self._cache.get(app_id)
        if hit is not None and self._now() - hit[0] < self._ttl:
            return hit[1]
        found = self._load(app_id)
        self._cache[app_id] = (self._now(), found)
        return found

    def _load(self, app_id: str) -> AppRules | None:
        record = self._registry.get(app_id)
        if record is None:
            return None
        group = record.life_account or app_id
        policy = record.policy or {}
        inherited = False
        if "rules" not in policy and group != app_id:
            owner = self._registry.get(group)
            if owner is not None and owner.policy and "rules" in owner.policy:
                policy = {**owner.policy, "timezone": policy.get("timezone", owner.policy.get("timezone"))}
                inherited = True
        try:
            config = rules_config(policy)
        except ValueError:
            _log.exception("invalid rules settings: every rule is off for this app", extra={"app_id": app_id})
            config = DISABLED
        return AppRules(app_id, group, zone_of(str(policy.get("timezone") or DEFAULT_TZ)), config, inherited)


# ---- windows -----------------------------------------------------------------------------------------------


def browse_window(at: datetime, tz: ZoneInfo, days: int) -> str:
    """The calendar window of ``days`` days (in the app's zone) ``at`` falls in, named by its first day."""
    ordinal = at.astimezone(tz).date().toordinal()
    start = date.fromordinal(((ordinal - 1) // days) * days + 1)
    return f"w{start:%Y%m%d}"


def silence_window(since: datetime, tz: ZoneInfo) -> str:
    """One silence, named by the day it started (the last open, read or order; or when we first knew the user)."""
    return f"since{since.astimezone(tz):%Y%m%d}"


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


# ---- the engine --------------------------------------------------------------------------------------------


class RuleEngine:
    def __init__(
        self,
        state: RuleState,
        apps: Callable[[str], AppRules | None],
        *,
        profiles: Profiles | None = None,
        follow_check: FollowCheck | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,  # type: ignore[type-arg]
    ) -> None:
        self.state = state
        self._apps = apps
        self._profiles = profiles
        self._follow_check = follow_check
        self._log = logger or _log
        self._acks: list[Callable[[], None]] = []
        self.failed_events: list[str] = []  # event ids the last on_events could not handle (redeliver them)

    # ---- event-driven rules --------------------------------------------------------------------------------

    def on_events(self, events: Sequence[DomainEvent], now: datetime) -> list[OutboundJob]:
        """Arm, cancel and fire the event-driven rules for ``events``; the jobs to publish. Events whose handling
        raised are listed in :attr:`failed_events` (everything here is idempotent: redeliver them)."""
        self.failed_events = []
        jobs: list[OutboundJob] = []
        armed: set[tuple[str, str, str]] = set()
        for e in sorted(events, key=lambda ev: ev.occurred_at):
            if e.type not in ("product_view", "order_paid", "follow", "unfollow"):
                continue
            user = e.user.key if e.user else None
            if not user or e.user is None:
                continue
            try:
                rules = self._apps(e.app_id)
                if rules is None:
                    continue
                if e.type == "product_view":
                    self._on_view(rules, e, e.user, user, now, armed)
                elif e.type == "order_paid":
                    jobs += self._on_paid(rules, e, e.user, user, now)
                else:
                    jobs += self._on_follow(rules, e, e.user, user, now)
            except Exception:
                self._log.exception("rule failed", extra={"event_type": e.type, "app_id": e.app_id,
                                                          "user": hash_id(user)})
                self.failed_events.append(e.event_id)
        return jobs

    def _on_view(self, rules: AppRules, e: DomainEvent, ref: UserRef, user: str, now: datetime,
                 armed: set[tuple[str, str, str]]) -> None:
        cfg = rules.rules.browse_no_order
        if not cfg.enabled:
            return
        view_at = e.occurred_at
        due = view_at + timedelta(hours=cfg.hours)
        if now > due + timedelta(hours=cfg.valid_hours):
            return  # a view reported so late that the coupon would be stale
        window = browse_window(view_at, rules.tz, cfg.window_days)
        sk = f"{BROWSE}#{window}"
        if (e.app_id, user, sk) in armed:
            return
        armed.add((e.app_id, user, sk))
        marker, last_paid = self.state.view_facts(e.app_id, user, sk)
        if marker is not None and marker.state != CANCELLED:
            return  # the window already has a pending or fired marker: a second view does not re-arm
        if last_paid is not None and last_paid >= view_at:
            return  # already ordered after this view
        data = {"uid": ref.user_id, "oid": ref.open_id, "product": getattr(e, "product_id", None)}
        ttl = due + timedelta(days=cfg.window_days) + MARKER_KEEP
        if self.state.arm(e.app_id, user, sk, view_at, due, hour_of(max(due, now)), data, ttl):
            self._log.info("browse rule armed", extra={"app_id": e.app_id, "user": hash_id(user), "window": window})

    def _on_paid(self, rules: AppRules, e: DomainEvent, ref: UserRef, user: str, now: datetime) -> list[OutboundJob]:
        paid_at = e.occurred_at
        if rules.rules.browse_no_order.enabled:
            self.state.record_paid(e.app_id, user, paid_at)
            for marker in self.state.pending(e.app_id, user, BROWSE):
                if marker.at is not None and marker.at <= paid_at:
                    self.state.cancel(marker, "ordered")
        cfg = rules.rules.first_order
        if not cfg.enabled or cfg.message is None:
            return []
        out_trade_no = str(getattr(e, "out_trade_no", ""))
        if self._paid_before(rules.group, user, out_trade_no, paid_at):
            return []
        sk = f"{FIRST_ORDER}#ever"
        claimed, marker = self.state.claim(e.app_id, user, sk, paid_at,
                                           {"order": out_trade_no, "uid": ref.user_id, "oid": ref.open_id}, now)
        if not claimed and (marker.data.get("order") != out_trade_no or marker.sent):
            return []  # an earlier first order, or this one's job already went out
        job = self._job(rules, FIRST_ORDER, "ever", ref.user_id, ref.open_id, cfg.message, cfg.kind, cfg.send_via,
                        now + timedelta(hours=cfg.valid_hours), now)
        if job is None:
            return []
        self._acks.append(lambda: self.state.mark_sent(e.app_id, user, sk))
        return [job]

    def _paid_before(self, group: str, user: str, out_trade_no: str, paid_at: datetime) -> bool:
        """The profile knows an earlier paid order of the user (orders from before the rule, or out of order)."""
        if self._profiles is None:
            return False
        profile = self._profiles.read_many([(group, user)]).profiles.get((group, user))
        if profile is None:
            return False
        return any(o.paid and o.paid_at is not None and o.out_trade_no != out_trade_no and o.paid_at < paid_at
                   for o in profile.orders.values())

    # ---- member tiers ----------------------------------------------------------------------------------------

    def _on_follow(self, rules: AppRules, e: DomainEvent, ref: UserRef, user: str, now: datetime,
                   attempts: int = 4) -> list[OutboundJob]:
        cfg = rules.rules.tiers
        at = e.occurred_at
        following = e.type == "follow"
        for _ in range(attempts):
            old = self.state.tier(e.app_id, user)
            if old.at is not None and at < old.at:
                return []  # an older transition than the one applied: changes nothing
            if old.at is not None and at == old.at:  # this very event again: its card job again (a ledger no-op)
                if following and old.tier and old.granted == at:
                    return self._card_jobs(rules, cfg, ref, old.tier, at, now)
                return []
            new = self._next_tier(rules.app_id, cfg, old, following, at, ref)
            if self.state.put_tier(e.app_id, user, new, old):
                if new.tier and new.tier != old.tier:
                    self._log.info("tier granted", extra={"app_id": e.app_id, "user": hash_id(user),
                                                          "tier": new.tier})
                    return self._card_jobs(rules, cfg, ref, new.tier, at, now)
                return []
        raise RuntimeError("member tier kept changing under us")

    def _next_tier(self, app_id: str, cfg: MemberTiers, old: TierRecord, following: bool, at: datetime,
                   ref: UserRef) -> TierRecord:
        if following:
            tier = old.tier
            granted = old.granted
            if not tier and cfg.tier_on_follow:
                if cfg.confirm_follow and self._follow_check is not None and not self._follow_check(app_id, ref):
                    return TierRecord(old.tier, False, at, old.granted)  # Alipay says not (or no longer) following
                tier, granted = cfg.tier_on_follow, at
            return TierRecord(tier, True, at, granted)
        if cfg.on_unfollow == "keep":
            return TierRecord(old.tier, False, at, old.granted)
        if cfg.on_unfollow == "drop":
            return TierRecord(None, False, at, None)
        changed = cfg.on_unfollow != old.tier
        return TierRecord(cfg.on_unfollow, False, at, at if changed else old.granted)

    def _card_jobs(self, rules: AppRules, cfg: MemberTiers, ref: UserRef, tier: str, at: datetime,
                   now: datetime) -> list[OutboundJob]:
        if not cfg.card_template_id:
            return []
        kind = cfg.card_no_type or ("D_ALIPAY_UID" if ref.user_id else "D_OPEN_ID")
        card_no = ref.user_id if kind == "D_ALIPAY_UID" else ref.open_id
        if not card_no:
            return []
        job = OutboundJob.model_validate({
            "app_id": rules.app_id,
            "channel": "member_card",
            "recipient": {"user_id": ref.user_id, "open_id": ref.open_id},
            "content": {"type": "member_card", "target_card_no": card_no, "target_card_no_type": kind,
                        "level": tier},
            "campaign": f"rule-{MEMBER_TIER}",
            "phase": f"{tier}-{_epoch(at)}",
            "rule": MEMBER_TIER,
            "kind": "transactional",
            "not_after": now + CARD_VALID_FOR,
            "created_at": now,
        })
        return [job]

    # ---- due markers -----------------------------------------------------------------------------------------

    def due(self, now: datetime, limit: int = 5000) -> list[OutboundJob]:
        """Coupon jobs for browse markers whose time has come with no paid order since the view. Reads the due
        index hour by hour from the cursor (never a scan); call :meth:`acknowledge` once the jobs are queued."""
        current = hour_start(hour_of(now))
        cursor = self.state.cursor()
        start = current - DUE_LOOKBACK if cursor is None else min(hour_start(cursor), current - CURSOR_OVERLAP)
        jobs: list[OutboundJob] = []
        left: datetime | None = None  # the earliest hour still holding entries for a later run
        hour = start
        while hour <= current:
            name = hour_of(hour)
            for entry in self.state.due_entries(name):
                if entry.due > now or len(jobs) >= limit:
                    left = left or hour
                    continue
                try:
                    job = self._due_entry(entry, now)
                except _NotYet:
                    left = left or hour
                    continue
                except Exception:
                    self._log.exception("due rule failed", extra={"app_id": entry.app_id,
                                                                  "user": hash_id(entry.user)})
                    left = left or hour
                    continue
                if job is None:
                    self.state.remove_due(entry)
                else:
                    jobs.append(job)
                    self._acks.append(self._sent_and_removed(entry))
            hour += timedelta(hours=1)
        next_cursor = hour_of(left or current)
        self._acks.append(lambda: self.state.set_cursor(next_cursor))
        return jobs

    def _sent_and_removed(self, entry: DueEntry) -> Callable[[], None]:
        def ack() -> None:
            self.state.mark_sent(entry.app_id, entry.user, entry.marker_sk)
            self.state.remove_due(entry)
        return ack

    def _due_entry(self, entry: DueEntry, now: datetime) -> OutboundJob | None:
        marker = self.state.marker(entry.app_id, entry.user, entry.marker_sk)
        if marker is None or marker.state == CANCELLED or (marker.state == FIRED and marker.sent):
            return None
        if marker.state == FIRED and not _resend_due(marker, now):
            raise _NotYet
        rules = self._apps(entry.app_id)
        cfg = rules.rules.browse_no_order if rules is not None else None
        if rules is None or cfg is None or not cfg.enabled or not cfg.activity_id:
            self.state.cancel(marker, "disabled")
            return None
        due = marker.due or entry.due
        not_after = due + timedelta(hours=cfg.valid_hours)
        if marker.state != FIRED:
            if self._ordered_since(rules, marker):
                self.state.cancel(marker, "ordered")
                return None
            if now > not_after:
                self.state.cancel(marker, "expired")
                return None
            if not self.state.fire(marker, now):
                return None  # cancelled meanwhile, or another run fired it (and sends it)
        message = RuleMessage(channel="coupon", content={"activity_id": cfg.activity_id})
        return self._job(rules, BROWSE, marker.window, marker.data.get("uid"), marker.data.get("oid"), message,
                         "marketing", cfg.send_via, not_after, now)

    def _ordered_since(self, rules: AppRules, marker: Marker) -> bool:
        view_at = marker.at
        if view_at is None:
            return False
        last = self.state.last_paid(marker.app_id, marker.user)
        if last is not None and last >= view_at:
            return True
        if self._profiles is None:
            return False
        profile = self._profiles.read_many([(rules.group, marker.user)]).profiles.get((rules.group, marker.user))
        return profile is not None and any(o.paid and o.paid_at is not None and o.paid_at >= view_at
                                           for o in profile.orders.values())

    # ---- silence ---------------------------------------------------------------------------------------------

    def silence_scan(self, app_id: str, now: datetime) -> list[OutboundJob]:
        """Come-back gifts for the app group's users silent for ``silent_days`` (once per silence). Reads every
        profile of the group (a daily job)."""
        rules = self._apps(app_id)
        if rules is None or rules.inherited or self._profiles is None:
            return []
        cfg = rules.rules.come_back
        if not cfg.enabled:
            return []
        policy = TagPolicy(silent_after=timedelta(days=cfg.silent_days))
        message = cfg.message or RuleMessage(channel="coupon", content={"activity_id": cfg.activity_id})
        jobs: list[OutboundJob] = []
        for p in self._profiles.scan_group(rules.group):
            since = self._silent_since(p, now, policy)
            if since is None or not (p.user_id or p.open_id):
                continue
            window = silence_window(since, rules.tz)
            sk = f"{COME_BACK}#{window}"
            try:
                claimed, marker = self.state.claim(app_id, p.user, sk, since, {"uid": p.user_id, "oid": p.open_id},
                                                   now, ttl=now + timedelta(days=cfg.silent_days) + MARKER_KEEP)
                if not claimed and (marker.sent or not _resend_due(marker, now)):
                    continue
                job = self._job(rules, COME_BACK, window, p.user_id, p.open_id, message,
                                "marketing", cfg.send_via, now + timedelta(hours=cfg.valid_hours), now)
            except Exception:
                self._log.exception("come-back rule failed", extra={"app_id": app_id, "user": hash_id(p.user)})
                continue
            if job is not None:
                jobs.append(job)
                self._acks.append(self._sent(app_id, p.user, sk))
        return jobs

    def _sent(self, app_id: str, user: str, sk: str) -> Callable[[], None]:
        return lambda: self.state.mark_sent(app_id, user, sk)

    @staticmethod
    def _silent_since(p: Profile, now: datetime, policy: TagPolicy) -> datetime | None:
        if p.known_since is None:
            return None
        reads = [t for r in p.reads.values() for t in (r.completed_at, r.favourited_at) if t is not None]
        orders = [o.paid_at for o in p.orders.values() if o.paid and o.paid_at is not None]
        tag = silent(p.last_open_at, max(reads, default=None), max(orders, default=None), p.known_since, now,
                     policy)
        if tag is None:
            return None
        return datetime.fromisoformat(tag.evidence["last_engaged_at"] or tag.evidence["known_since"])

    # ---- jobs ------------------------------------------------------------------------------------------------

    def _job(self, rules: AppRules, rule: str, window: str, user_id: str | None, open_id: str | None,
             message: RuleMessage, kind: str, send_via: str, not_after: datetime,
             now: datetime) -> OutboundJob | None:
        app_id = rules.app_id
        recipient: dict[str, str | None] = {"user_id": user_id, "open_id": open_id}
        if send_via == "life_account" and rules.group != rules.app_id:
            if not user_id:  # an open_id belongs to one app: only the shared user_id reaches the life account
                self._log.info("rule skipped: no user_id for the life account", extra={"rule": rule})
                return None
            app_id, recipient = rules.group, {"user_id": user_id}
        return OutboundJob.model_validate({
            "app_id": app_id,
            "channel": message.channel,
            "recipient": recipient,
            "content": {**message.content, "type": message.channel},
            "campaign": f"rule-{rule}",
            "phase": window,
            "rule": rule,
            "kind": kind,
            "not_after": not_after,
            "created_at": now,
        })

    def acknowledge(self) -> None:
        """The jobs returned so far are on the outbound queue: mark their markers sent, drop their index entries,
        move the due cursor."""
        acks, self._acks = self._acks, []
        for ack in acks:
            ack()

    def forget(self) -> None:
        """Publishing failed: keep every marker unsent (the next run or redelivery sends again)."""
        self._acks = []


class _NotYet(Exception):
    """A marker another run fired moments ago (it is publishing the job): look again next run."""


def _resend_due(marker: Marker, now: datetime) -> bool:
    return marker.made is None or now - marker.made >= RESEND_AFTER


def utc_now() -> datetime:
    return datetime.now(UTC)
