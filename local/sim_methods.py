"""The simulator's outbound methods: what Alipay does when we send messages, coupons and card updates.

Each method checks what Alipay checks, answers like Alipay (``BusinessError`` -> ``40004`` + sub_code) and, on
success, records one delivery per recipient (``delivered()`` counts them, ``outbound()`` lists them).
State lives in ``OutboundMethods`` under the gateway's lock, held briefly (no sleeping inside).

Limits and the sub_codes chosen (sources; "unconfirmed" = Alipay publishes no table we could find, the name
follows Alipay's style and lives in ``SubCode`` so it is changed in one place):

- ``alipay.open.public.message.single.send`` (template message): the template must be registered for the
  app (``MSG_TEMPLATE_NOT_EXIST``, issue 3 / ALIPAY.md); the recipient must follow the life account
  (``PUB.MSG_SD_NOFOLLOW`` "没有关注者,发送消息失败", Alipay support answer developer.aliyun.com/ask/285647).
- ``alipay.open.public.message.custom.send``: follower (``PUB.MSG_SD_NOFOLLOW``); the user's last
  interaction (follow, enter, menu click, message — learnt from the gateway pushes, or
  ``record_interaction``) within 48 h, else ``PUB.MSG_SD_OVER_TIME`` ("超过规定时间,发送消息失败", Alipay
  support answer developer.aliyun.com/ask/285645; the PUB. prefix is by analogy); at most 100 per user per
  calendar day (Asia/Shanghai), else ``PUB.MSG_SD_OVER_LIMIT`` (unconfirmed).
- ``alipay.open.public.message.total.send`` / ``.label.send``: a user gets at most one such message in any
  7 × 24 h window (rolling, the strict reading of "per week"): recipients who already had one are skipped,
  not failed. A ``total.send`` goes to every follower, so a second one within 7 days is refused; a
  ``label.send`` is refused after 5 calls in 7 days. Both refusals are ``PUB.MSG_BATCH_SD_OVER`` (ALIPAY.md).
- ``alipay.open.app.mini.templatemessage.send``: ``user_template_id`` registered for the app, else
  ``USER_TEMPLATE_ILLEGAL`` (unconfirmed); a grant for (user, template) is needed, one consumed per message,
  else ``USER_NOT_SUBSCRIBED`` (unconfirmed); ``data`` must be a JSON object string whose values are at most
  50 characters, else ``INVALID_PARAMETER``.
- ``alipay.marketing.activity.voucher.send``: idempotent on (app, activity_id, out_biz_no): a replay returns
  the first ``voucher_id`` and issues nothing; unknown activity ``ACTIVITY_NOT_EXIST`` (unconfirmed); no stock
  left ``BUDGET_NOT_ENOUGH_ERROR`` (Alipay support answer on coupon sends, developer.aliyun.com/ask/285812).
- ``alipay.marketing.card.update``: records ``card_info.level`` for ``target_card_no``.
Missing or malformed fields answer ``INVALID_PARAMETER`` (as the simulator already did for custom.send).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from lifelink_local import sim_crypto
from lifelink_local.sim_gateway import BusinessError

SINGLE_SEND = "alipay.open.public.message.single.send"
CUSTOM_SEND = "alipay.open.public.message.custom.send"
TOTAL_SEND = "alipay.open.public.message.total.send"
LABEL_SEND = "alipay.open.public.message.label.send"
MINI_TEMPLATE_SEND = "alipay.open.app.mini.templatemessage.send"
VOUCHER_SEND = "alipay.marketing.activity.voucher.send"
CARD_UPDATE = "alipay.marketing.card.update"
OUTBOUND_METHODS: tuple[str, ...] = (
    SINGLE_SEND,
    CUSTOM_SEND,
    TOTAL_SEND,
    LABEL_SEND,
    MINI_TEMPLATE_SEND,
    VOUCHER_SEND,
    CARD_UPDATE,
)

CUSTOM_WINDOW = timedelta(hours=48)
CUSTOM_PER_USER_PER_DAY = 100
BATCH_WINDOW = timedelta(days=7)
LABEL_CALLS_PER_WINDOW = 5
MINI_DATA_VALUE_MAX = 50


class SubCode:
    INVALID_PARAMETER = "INVALID_PARAMETER"
    TEMPLATE_NOT_EXIST = "MSG_TEMPLATE_NOT_EXIST"
    NOT_FOLLOWER = "PUB.MSG_SD_NOFOLLOW"
    CUSTOM_WINDOW_CLOSED = "PUB.MSG_SD_OVER_TIME"
    CUSTOM_DAILY_CAP = "PUB.MSG_SD_OVER_LIMIT"
    BATCH_TOO_FREQUENT = "PUB.MSG_BATCH_SD_OVER"
    MINI_TEMPLATE_ILLEGAL = "USER_TEMPLATE_ILLEGAL"
    MINI_NO_GRANT = "USER_NOT_SUBSCRIBED"
    ACTIVITY_NOT_EXIST = "ACTIVITY_NOT_EXIST"
    OUT_OF_STOCK = "BUDGET_NOT_ENOUGH_ERROR"


def _invalid(message: str) -> BusinessError:
    return BusinessError(SubCode.INVALID_PARAMETER, message)


def _recipient(biz: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = biz.get(key)
        if isinstance(value, str) and value:
            return value
    raise _invalid(f"{' / '.join(keys)} 不能同时为空")


def _required(biz: dict[str, Any], key: str) -> str:
    value = biz.get(key)
    if not isinstance(value, str) or not value:
        raise _invalid(f"缺少必选参数 {key}")
    return value


def _label_id(biz: dict[str, Any]) -> str:
    """The label of a label.send: ``filter{template, context{x: {column_name: label_id_list, op, values}}}``
    (Alipay's shape, used by lifelink.domain.channels), ``filter.exprs[].label_id`` or a plain ``label_id``."""
    if isinstance(biz.get("label_id"), str | int) and str(biz["label_id"]):
        return str(biz["label_id"])
    flt = biz.get("filter")
    if isinstance(flt, dict):
        context = flt.get("context")
        conditions = list(context.values()) if isinstance(context, dict) else []
        for cond in conditions:
            values = cond.get("values") if isinstance(cond, dict) else None
            if cond.get("column_name") == "label_id_list" and isinstance(values, list) and values and values[0]:
                return str(values[0])
        for expr in flt.get("exprs") or []:
            if isinstance(expr, dict) and expr.get("label_id"):
                return str(expr["label_id"])
    raise _invalid("缺少必选参数 label_id")


def _msg_type(biz: dict[str, Any]) -> str:
    """``msg_type`` at the top level (custom.send, total.send) or inside ``material`` (label.send)."""
    material = biz.get("material")
    msg_type = material.get("msg_type") if isinstance(material, dict) else biz.get("msg_type")
    if msg_type not in ("text", "image-text"):
        raise _invalid("msg_type 不合法")
    return str(msg_type)


class OutboundMethods:
    """Outbound-method state and logic. ``lock`` is the gateway's (re-entrant) lock; ``is_follower`` and
    ``followers_of`` read the gateway's follower registry."""

    def __init__(
        self,
        lock: threading.RLock,
        is_follower: Callable[[str, str], bool],
        followers_of: Callable[[str], set[str]],
    ) -> None:
        self._lock = lock
        self._is_follower = is_follower
        self._followers_of = followers_of
        self._offset = timedelta(0)
        self.templates: dict[str, set[str]] = {}
        self.interactions: dict[tuple[str, str], datetime] = {}
        self.custom_counts: Counter[tuple[str, str, date]] = Counter()
        self.batch_received: dict[tuple[str, str], datetime] = {}
        self.total_sends: dict[str, list[datetime]] = {}
        self.label_calls: dict[str, list[datetime]] = {}
        self.labels: dict[tuple[str, str], set[str]] = {}
        self.grants: Counter[tuple[str, str, str]] = Counter()
        self.stock: dict[tuple[str, str], int] = {}
        self.vouchers: dict[tuple[str, str, str], str] = {}
        self.voucher_replays: Counter[tuple[str, str, str]] = Counter()
        self.cards: dict[tuple[str, str], dict[str, Any]] = {}
        self.log: list[dict[str, Any]] = []

    def methods(self) -> dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]]:
        return {
            SINGLE_SEND: self.single_send,
            CUSTOM_SEND: self.custom_send,
            TOTAL_SEND: self.total_send,
            LABEL_SEND: self.label_send,
            MINI_TEMPLATE_SEND: self.mini_template_send,
            VOUCHER_SEND: self.voucher_send,
            CARD_UPDATE: self.card_update,
        }

    # -- clock ------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        """Beijing time as the simulator's business rules see it (real time plus ``advance_clock``)."""
        with self._lock:
            return sim_crypto.beijing_now() + self._offset

    def advance_clock(self, delta: timedelta) -> None:
        """Move the business clock (48 h window, day and week limits) forward; request timestamps are still
        checked against real time."""
        with self._lock:
            self._offset += delta

    # -- setup ------------------------------------------------------------------------------------------
    def register_template(self, app_id: str, template_id: str) -> None:
        with self._lock:
            self.templates.setdefault(app_id, set()).add(template_id)

    def record_interaction(self, app_id: str, user_id: str, at: datetime | None = None) -> None:
        with self._lock:
            when = at or self.now()
            if when.tzinfo is None:
                raise ValueError("interaction time must be timezone-aware")
            previous = self.interactions.get((app_id, user_id))
            if previous is None or when > previous:
                self.interactions[(app_id, user_id)] = when

    def set_label(self, app_id: str, label_id: str, user_ids: list[str] | set[str]) -> None:
        with self._lock:
            self.labels[(app_id, label_id)] = set(user_ids)

    def grant(self, app_id: str, user_id: str, template_id: str, count: int = 1) -> int:
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self.grants[(app_id, user_id, template_id)] += count
            return self.grants[(app_id, user_id, template_id)]

    def register_activity(self, app_id: str, activity_id: str, stock: int) -> None:
        if stock < 0:
            raise ValueError("stock must be >= 0")
        with self._lock:
            self.stock[(app_id, activity_id)] = stock

    # -- inspection -------------------------------------------------------------------------------------
    def delivered(self, method: str | None = None, app_id: str | None = None) -> list[dict[str, Any]]:
        """Deliveries counted per (app, method, recipient), sorted."""
        with self._lock:
            counts = Counter(
                (d["app_id"], d["method"], d["recipient"])
                for d in self.log
                if (method is None or d["method"] == method) and (app_id is None or d["app_id"] == app_id)
            )
        return [{"app_id": a, "method": m, "recipient": r, "count": n} for (a, m, r), n in sorted(counts.items())]

    def outbound(self, method: str | None = None, app_id: str | None = None) -> list[dict[str, Any]]:
        """Every delivery in order: seq, at, app_id, method, recipient, ref (msg_id / voucher_id / card), detail."""
        with self._lock:
            return [
                dict(d)
                for d in self.log
                if (method is None or d["method"] == method) and (app_id is None or d["app_id"] == app_id)
            ]

    def grants_left(self, app_id: str, user_id: str, template_id: str) -> int:
        with self._lock:
            return self.grants[(app_id, user_id, template_id)]

    def stock_left(self, app_id: str, activity_id: str) -> int | None:
        with self._lock:
            return self.stock.get((app_id, activity_id))

    def card(self, app_id: str, card_no: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.cards.get((app_id, card_no))
            return dict(found) if found is not None else None

    # -- helpers (callers hold the lock) ----------------------------------------------------------------
    def _deliver(self, app_id: str, method: str, recipient: str, ref: str, detail: Any = None) -> None:
        self.log.append(
            {
                "seq": len(self.log) + 1,
                "at": self.now().isoformat(),
                "app_id": app_id,
                "method": method,
                "recipient": recipient,
                "ref": ref,
                "detail": detail,
            }
        )

    def _require_follower(self, app_id: str, user: str) -> None:
        if not self._is_follower(app_id, user):
            raise BusinessError(SubCode.NOT_FOLLOWER, "没有关注者,发送消息失败")

    def _batch_recipients(self, app_id: str, candidates: set[str], now: datetime) -> list[str]:
        fresh = []
        for user in sorted(candidates):
            last = self.batch_received.get((app_id, user))
            if last is None or now - last >= BATCH_WINDOW:
                fresh.append(user)
        return fresh

    @staticmethod
    def _recent(times: list[datetime], now: datetime) -> list[datetime]:
        return [t for t in times if now - t < BATCH_WINDOW]

    # -- methods ----------------------------------------------------------------------------------------
    def single_send(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        user = _recipient(biz, "to_user_id", "to_open_id")
        template = biz.get("template")
        if not isinstance(template, dict) or not template.get("template_id"):
            raise _invalid("缺少必选参数 template.template_id")
        template_id = str(template["template_id"])
        with self._lock:
            if template_id not in self.templates.get(app_id, set()):
                raise BusinessError(SubCode.TEMPLATE_NOT_EXIST, "模板不存在")
            self._require_follower(app_id, user)
            msg_id = uuid.uuid4().hex
            self._deliver(app_id, SINGLE_SEND, user, msg_id, {"template_id": template_id})
        return {"msg_id": msg_id}

    def custom_send(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        user = _recipient(biz, "to_user_id", "to_open_id", "open_id")
        msg_type = _msg_type(biz)
        with self._lock:
            self._require_follower(app_id, user)
            now = self.now()
            last = self.interactions.get((app_id, user))
            if last is None or now - last > CUSTOM_WINDOW:
                raise BusinessError(SubCode.CUSTOM_WINDOW_CLOSED, "超过规定时间,发送消息失败")
            day_key = (app_id, user, now.date())
            if self.custom_counts[day_key] >= CUSTOM_PER_USER_PER_DAY:
                raise BusinessError(SubCode.CUSTOM_DAILY_CAP, "超过每日发送上限,发送消息失败")
            self.custom_counts[day_key] += 1
            msg_id = uuid.uuid4().hex
            self._deliver(app_id, CUSTOM_SEND, user, msg_id, {"msg_type": msg_type})
        return {"msg_id": msg_id}

    def total_send(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        msg_type = _msg_type(biz)
        with self._lock:
            now = self.now()
            recent = self._recent(self.total_sends.get(app_id, []), now)
            if recent:
                raise BusinessError(SubCode.BATCH_TOO_FREQUENT, "群发消息过于频繁")
            self.total_sends[app_id] = [*recent, now]
            msg_id = uuid.uuid4().hex
            for user in self._batch_recipients(app_id, set(self._followers_of(app_id)), now):
                self.batch_received[(app_id, user)] = now
                self._deliver(app_id, TOTAL_SEND, user, msg_id, {"msg_type": msg_type})
        return {"msg_id": msg_id}

    def label_send(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        label = _label_id(biz)
        msg_type = _msg_type(biz)
        with self._lock:
            now = self.now()
            recent = self._recent(self.label_calls.get(app_id, []), now)
            if len(recent) >= LABEL_CALLS_PER_WINDOW:
                raise BusinessError(SubCode.BATCH_TOO_FREQUENT, "标签群发消息过于频繁")
            self.label_calls[app_id] = [*recent, now]
            members = self.labels.get((app_id, label), set()) & set(self._followers_of(app_id))
            msg_id = uuid.uuid4().hex
            for user in self._batch_recipients(app_id, members, now):
                self.batch_received[(app_id, user)] = now
                self._deliver(app_id, LABEL_SEND, user, msg_id, {"label_id": label, "msg_type": msg_type})
        return {"msg_id": msg_id}

    def mini_template_send(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        user = _recipient(biz, "to_user_id", "to_open_id")
        template_id = _required(biz, "user_template_id")
        data_text = biz.get("data")
        if not isinstance(data_text, str):
            raise _invalid("data 必须是JSON字符串")
        try:
            data = json.loads(data_text)
        except json.JSONDecodeError:
            raise _invalid("data 不是合法的JSON") from None
        if not isinstance(data, dict):
            raise _invalid("data 必须是JSON对象")
        for key, entry in data.items():
            value = entry.get("value") if isinstance(entry, dict) else entry
            if not isinstance(value, str):
                raise _invalid(f"data.{key}.value 必须是字符串")
            if len(value) > MINI_DATA_VALUE_MAX:
                raise _invalid(f"data.{key}.value 超过{MINI_DATA_VALUE_MAX}个字符")
        with self._lock:
            if template_id not in self.templates.get(app_id, set()):
                raise BusinessError(SubCode.MINI_TEMPLATE_ILLEGAL, "模板不合法")
            key = (app_id, user, template_id)
            if self.grants[key] < 1:
                raise BusinessError(SubCode.MINI_NO_GRANT, "用户未订阅该模板消息")
            self.grants[key] -= 1
            msg_id = uuid.uuid4().hex
            self._deliver(
                app_id, MINI_TEMPLATE_SEND, user, msg_id, {"user_template_id": template_id, "page": biz.get("page")}
            )
        return {"msg_id": msg_id}

    def voucher_send(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        activity_id = _required(biz, "activity_id")
        out_biz_no = _required(biz, "out_biz_no")
        user = _recipient(biz, "user_id", "open_id")
        with self._lock:
            key = (app_id, activity_id, out_biz_no)
            existing = self.vouchers.get(key)
            if existing is not None:
                self.voucher_replays[key] += 1
                return {"voucher_id": existing}
            stock_key = (app_id, activity_id)
            if stock_key not in self.stock:
                raise BusinessError(SubCode.ACTIVITY_NOT_EXIST, "活动不存在")
            if self.stock[stock_key] < 1:
                raise BusinessError(SubCode.OUT_OF_STOCK, "预算不足，券已发完")
            self.stock[stock_key] -= 1
            voucher_id = uuid.uuid4().hex
            self.vouchers[key] = voucher_id
            self._deliver(
                app_id, VOUCHER_SEND, user, voucher_id, {"activity_id": activity_id, "out_biz_no": out_biz_no}
            )
        return {"voucher_id": voucher_id}

    def card_update(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        card_no = _required(biz, "target_card_no")
        info = biz.get("card_info")
        if not isinstance(info, dict):
            raise _invalid("缺少必选参数 card_info")
        with self._lock:
            card = self.cards.setdefault((app_id, card_no), {})
            if "level" in info:
                card["level"] = info["level"]
            card["card_info"] = info
            card["updated_at"] = self.now().isoformat()
            self._deliver(app_id, CARD_UPDATE, card_no, card_no, {"level": info.get("level")})
        return {}
