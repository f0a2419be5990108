"""The push side of the Alipay simulator: Alipay-signed gateway events and notifications to our webhook.

- ``push_gateway``: the life-account application gateway form (``service``, ``charset``, ``sign_type``,
  ``biz_content`` XML), signed over every field but ``sign`` (``sign_type`` stays), in GBK by default.
  Gateway retries are off by default on Alipay: one attempt.
- ``push_notify``: trade / notify_url notifications, signed over all but ``sign`` and ``sign_type``, with a
  fresh ``notify_id`` and ``notify_time``.
- ``push_message``: message-service pushes (``msg_method``, ``utc_timestamp``, ``version`` 1.1,
  ``notify_id``), the trade-style rule.
Notifications are retried while the answer is not exactly ``success``: after 4m, 10m, 10m, 1h, 2h, 6h and
15h (8 attempts in all), each delay multiplied by ``time_scale``. ``redeliver`` sends the identical body
again (same ``notify_id`` and signature), as Alipay's retries do.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink_local import sim_crypto

RETRY_DELAYS_S: tuple[float, ...] = (4 * 60, 10 * 60, 10 * 60, 3600, 2 * 3600, 6 * 3600, 15 * 3600)
GATEWAY_SERVICE = "alipay.mobile.public.message.notify"
CHECK_SERVICE = "alipay.service.check"


@dataclass
class Attempt:
    number: int
    at: float
    scheduled_delay_s: float
    status: int | None
    answer: str | None
    error: str | None = None
    redelivery: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Delivery:
    delivery_id: str
    kind: str  # "gateway", "notify", "message"
    url: str
    params: dict[str, str]
    body: bytes
    content_type: str
    retries: bool
    attempts: list[Attempt] = field(default_factory=list)
    state: str = "pending"  # pending, retrying, delivered, failed, sent (gateway: no retries)
    last_response: httpx.Response | None = None

    @property
    def notify_id(self) -> str | None:
        return self.params.get("notify_id")

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "kind": self.kind,
            "url": self.url,
            "notify_id": self.notify_id,
            "state": self.state,
            "params": {k: v for k, v in self.params.items() if k != "sign"},
            "attempts": [a.to_dict() for a in self.attempts],
        }


def gateway_xml(fields: Mapping[str, Any]) -> str:
    """``<XML>`` with CDATA text; a dict value becomes a nested element (``{"Text": {"Content": "hi"}}``);
    ``CreateTime`` is written bare, as Alipay does."""

    def element(name: str, value: Any) -> str:
        if isinstance(value, Mapping):
            return f"<{name}>" + "".join(element(k, v) for k, v in value.items()) + f"</{name}>"
        text = str(value)
        if name == "CreateTime":
            return f"<{name}>{text}</{name}>"
        return f"<{name}><![CDATA[{text}]]></{name}>"

    return "<XML>" + "".join(element(k, v) for k, v in fields.items()) + "</XML>"


def form_encode(params: Mapping[str, str], charset: str) -> bytes:
    return "&".join(
        f"{quote_plus(k, encoding=charset)}={quote_plus(v, encoding=charset)}" for k, v in params.items()
    ).encode("ascii")


class Pusher:
    """Builds, signs and sends pushes; keeps the delivery log and the retry schedule."""

    def __init__(
        self,
        alipay_private_key: rsa.RSAPrivateKey,
        time_scale: float = 1.0,
        timeout_s: float = 10.0,
        retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
    ) -> None:
        self.alipay_private_key = alipay_private_key
        self.time_scale = time_scale
        self.retry_delays_s = retry_delays_s
        self.http = httpx.Client(timeout=timeout_s, trust_env=False)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.deliveries: dict[str, Delivery] = {}
        self._queue: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._inflight = 0
        self._thread = threading.Thread(target=self._run, name="sim-retries", daemon=True)
        self._thread.start()

    # -- building -------------------------------------------------------------------------------------
    def _sign(self, params: dict[str, str], exclude: tuple[str, ...], charset: str) -> dict[str, str]:
        params["sign"] = sim_crypto.rsa2_sign(sim_crypto.canonical(params, exclude), self.alipay_private_key, charset)
        return params

    def build_gateway(self, app_id: str, fields: Mapping[str, Any], charset: str = "GBK") -> dict[str, str]:
        xml_fields: dict[str, Any] = {"AppId": app_id}
        xml_fields.update(fields)
        xml_fields.setdefault("CreateTime", str(int(time.time() * 1000)))
        service = CHECK_SERVICE if str(xml_fields.get("EventType", "")) == "verifygw" else GATEWAY_SERVICE
        params = {
            "service": service,
            "charset": charset,
            "sign_type": "RSA2",
            "biz_content": gateway_xml(xml_fields),
        }
        return self._sign(params, ("sign",), charset)

    def build_notify(self, params: Mapping[str, str], charset: str = "utf-8") -> dict[str, str]:
        out = {k: str(v) for k, v in params.items()}
        out.setdefault("notify_type", "trade_status_sync")
        out.setdefault("notify_id", uuid.uuid4().hex)
        out.setdefault("notify_time", sim_crypto.beijing_timestamp())
        out["charset"] = charset
        out["version"] = out.get("version", "1.0")
        out["sign_type"] = "RSA2"
        out.pop("sign", None)
        return self._sign(out, ("sign", "sign_type"), charset)

    def build_message(
        self, app_id: str, msg_method: str, biz_content: Mapping[str, Any] | str, charset: str = "utf-8"
    ) -> dict[str, str]:
        biz = biz_content if isinstance(biz_content, str) else json.dumps(biz_content, ensure_ascii=False)
        out = {
            "app_id": app_id,
            "msg_method": msg_method,
            "utc_timestamp": str(int(time.time() * 1000)),
            "version": "1.1",
            "notify_id": uuid.uuid4().hex,
            "biz_content": biz,
            "charset": charset,
            "sign_type": "RSA2",
        }
        return self._sign(out, ("sign", "sign_type"), charset)

    # -- sending ----------------------------------------------------------------------------------------
    def _new_delivery(self, kind: str, url: str, params: dict[str, str], charset: str, retries: bool) -> Delivery:
        delivery = Delivery(
            delivery_id=uuid.uuid4().hex[:16],
            kind=kind,
            url=url,
            params=params,
            body=form_encode(params, charset),
            content_type=f"application/x-www-form-urlencoded; charset={charset}",
            retries=retries,
        )
        with self._lock:
            self.deliveries[delivery.delivery_id] = delivery
        return delivery

    def _attempt(self, delivery: Delivery, delay: float, redelivery: bool = False) -> httpx.Response | None:
        status: int | None = None
        answer: str | None = None
        error: str | None = None
        response: httpx.Response | None = None
        try:
            response = self.http.post(
                delivery.url, content=delivery.body, headers={"content-type": delivery.content_type}
            )
            status = response.status_code
            answer = response.text[:500]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            delivery.attempts.append(
                Attempt(len(delivery.attempts) + 1, time.time(), delay, status, answer, error, redelivery)
            )
            delivery.last_response = response
            if redelivery:
                return response
            ok = status == 200 and answer is not None and answer.strip() == "success"
            if not delivery.retries:
                delivery.state = "sent"
            elif ok:
                delivery.state = "delivered"
            else:
                retry_number = sum(1 for a in delivery.attempts if not a.redelivery)
                if retry_number <= len(self.retry_delays_s):
                    next_delay = self.retry_delays_s[retry_number - 1] * self.time_scale
                    delivery.state = "retrying"
                    heapq.heappush(self._queue, (time.monotonic() + next_delay, next(self._seq), delivery.delivery_id))
                    self._cond.notify_all()
                else:
                    delivery.state = "failed"
        return response

    def push_gateway(self, url: str, app_id: str, fields: Mapping[str, Any], charset: str = "GBK") -> Delivery:
        delivery = self._new_delivery("gateway", url, self.build_gateway(app_id, fields, charset), charset, False)
        self._attempt(delivery, 0.0)
        return delivery

    def push_notify(self, url: str, params: Mapping[str, str], charset: str = "utf-8") -> Delivery:
        delivery = self._new_delivery("notify", url, self.build_notify(params, charset), charset, True)
        self._attempt(delivery, 0.0)
        return delivery

    def push_message(
        self,
        url: str,
        app_id: str,
        msg_method: str,
        biz_content: Mapping[str, Any] | str,
        charset: str = "utf-8",
    ) -> Delivery:
        params = self.build_message(app_id, msg_method, biz_content, charset)
        delivery = self._new_delivery("message", url, params, charset, True)
        self._attempt(delivery, 0.0)
        return delivery

    def redeliver(self, delivery_id: str) -> httpx.Response | None:
        """Send the identical body again (same notify_id and sign); does not change the retry schedule."""
        delivery = self.deliveries[delivery_id]
        return self._attempt(delivery, 0.0, redelivery=True)

    def delivery_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d.to_dict() for d in self.deliveries.values()]

    # -- retry scheduler ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.monotonic()):
                    timeout = None if not self._queue else max(0.0, self._queue[0][0] - time.monotonic())
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, delivery_id = heapq.heappop(self._queue)
                delivery = self.deliveries[delivery_id]
                done = sum(1 for a in delivery.attempts if not a.redelivery)
                delay = self.retry_delays_s[done - 1] * self.time_scale
                self._inflight += 1
            try:
                self._attempt(delivery, delay)
            finally:
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no retry is scheduled or running; True if idle (False on timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is None else min(remaining, 0.5))
            return True

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(5)
        self.http.close()
