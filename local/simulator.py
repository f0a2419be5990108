"""The Alipay sandbox simulator on loopback (default 127.0.0.1:3001, env ``LIFELINK_ALIPAY_PORT``).

HTTP:
  POST /gateway.do          OpenAPI gateway (see sim_gateway)
  POST /sim/apps            {"app_id": ..., "app_public_key": ...} registers an app
  POST /sim/followers       {"app_id": ..., "user_id": ..., "following": true}
  POST /sim/templates       {"app_id", "template_id"}: a life template / mini-program subscription template
  POST /sim/interactions    {"app_id", "user_id", "at"?: ISO time}: opens the 48 h custom-message window
  POST /sim/grants          {"app_id", "user_id", "template_id", "count"?: 1}: subscription-message grants
  POST /sim/activities      {"app_id", "activity_id", "stock"}: a coupon activity
  POST /sim/labels          {"app_id", "label_id", "user_ids": [...]}: label members for label.send
  POST /sim/faults          fault settings (see sim_faults.FaultConfig), {"reset": true} starts from none;
                            answers the settings in force; GET /sim/faults also gives the tally
  GET  /sim/calls           every /gateway.do call: app, method, biz, time, code, sub_code, fault, executed
  GET  /sim/delivered       deliveries counted per app, method, recipient (?method=&app_id= filter)
  GET  /sim/outbound        every delivery (message, coupon, card update) in order (same filters)
  GET  /sim/deliveries      every push and each of its attempts (status, answer)
  GET  /sim/alipay_public_key   the simulator's Alipay public key, one line of base64

Python: ``AlipaySimulator(alipay_private_key, port=None, time_scale=1.0)``, ``start()`` -> URL, ``stop()``,
``register_app``, ``register_method``, ``set_follower``, ``calls()``, ``push_gateway``, ``push_notify``,
``push_message``, ``redeliver``, ``deliveries()``, ``wait_idle``; outbound methods (see sim_methods):
``register_template``, ``record_interaction``, ``grant``, ``register_activity``, ``set_label``,
``advance_clock``, ``delivered()``, ``outbound()``, ``grants_left``, ``stock_left``, ``card``; faults (see
sim_faults): ``set_faults(**settings)``, ``clear_faults()``, ``fault_config``, ``fault_tally()``.

A gateway push of a follow, enter, menu click or user message (text, image) records an interaction for the
48 h custom-message window; follow/unfollow also update the follower registry.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink_local import sim_crypto
from lifelink_local.serving import BackgroundServer
from lifelink_local.sim_faults import FaultConfig
from lifelink_local.sim_gateway import MethodFn, OpenApiSimulator
from lifelink_local.sim_http import LeanRequestHandler
from lifelink_local.sim_push import Delivery, Pusher

log = logging.getLogger(__name__)

DEFAULT_PORT = 3001
PORT_ENV = "LIFELINK_ALIPAY_PORT"
MAX_BODY = 10 * 1024 * 1024
LOCAL_TIME_SCALE = 1 / 600
INTERACTION_EVENTS = frozenset({"follow", "enter", "click"})
INTERACTION_MESSAGES = frozenset({"text", "image"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the bench keeps ~50 connections opening at once; the default backlog is 5

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on its request (its timeout) resets the connection: an everyday event for a
        # platform, not a traceback on stderr. Anything else is still printed.
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class AlipaySimulator(BackgroundServer):
    thread_name = "alipay-sim"

    def __init__(
        self,
        alipay_private_key: rsa.RSAPrivateKey | str,
        port: int | None = None,
        host: str = "127.0.0.1",
        time_scale: float = 1.0,
    ) -> None:
        key = sim_crypto.load_private(alipay_private_key) if isinstance(alipay_private_key, str) else alipay_private_key
        if port is None:
            port = int(os.environ.get(PORT_ENV, DEFAULT_PORT))
        self.alipay_private_key = key
        self.alipay_public_key_one_line = sim_crypto.public_one_line(key)
        self.openapi = OpenApiSimulator(key)
        self.pusher = Pusher(key, time_scale=time_scale)
        self._server = _Server((host, port), self._handler_class())

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        return f"{self.url}/gateway.do"

    def stop(self) -> None:
        self.openapi.faults.stop()  # wakes requests sleeping out an injected timeout
        super().stop()
        self.pusher.close()

    # -- OpenAPI side ------------------------------------------------------------------------------------
    def register_app(self, app_id: str, app_public_key: str) -> None:
        self.openapi.register_app(app_id, app_public_key)

    def register_method(self, method: str, fn: MethodFn) -> None:
        self.openapi.register_method(method, fn)

    def set_follower(self, app_id: str, user_id: str, following: bool = True) -> None:
        self.openapi.set_follower(app_id, user_id, following)

    def calls(self) -> list[dict[str, Any]]:
        return self.openapi.call_log()

    # -- outbound methods (sim_methods) -------------------------------------------------------------------
    def register_template(self, app_id: str, template_id: str) -> None:
        """A life-account template (single.send) or mini-program subscription template for the app."""
        self.openapi.outbound.register_template(app_id, template_id)

    def record_interaction(self, app_id: str, user_id: str, at: datetime | None = None) -> None:
        self.openapi.outbound.record_interaction(app_id, user_id, at)

    def grant(self, app_id: str, user_id: str, template_id: str, count: int = 1) -> int:
        """One-time subscription grants (one consumed per message); returns the grants now held."""
        return self.openapi.outbound.grant(app_id, user_id, template_id, count)

    def register_activity(self, app_id: str, activity_id: str, stock: int) -> None:
        self.openapi.outbound.register_activity(app_id, activity_id, stock)

    def set_label(self, app_id: str, label_id: str, user_ids: list[str] | set[str]) -> None:
        self.openapi.outbound.set_label(app_id, label_id, user_ids)

    def advance_clock(self, delta: timedelta) -> None:
        self.openapi.outbound.advance_clock(delta)

    def delivered(self, method: str | None = None, app_id: str | None = None) -> list[dict[str, Any]]:
        """Deliveries counted per app, method and recipient: [{app_id, method, recipient, count}]."""
        return self.openapi.outbound.delivered(method, app_id)

    def outbound(self, method: str | None = None, app_id: str | None = None) -> list[dict[str, Any]]:
        return self.openapi.outbound.outbound(method, app_id)

    def grants_left(self, app_id: str, user_id: str, template_id: str) -> int:
        return self.openapi.outbound.grants_left(app_id, user_id, template_id)

    def stock_left(self, app_id: str, activity_id: str) -> int | None:
        return self.openapi.outbound.stock_left(app_id, activity_id)

    def card(self, app_id: str, card_no: str) -> dict[str, Any] | None:
        return self.openapi.outbound.card(app_id, card_no)

    # -- faults (sim_faults) ------------------------------------------------------------------------------
    def set_faults(self, *, reset: bool = False, **settings: Any) -> FaultConfig:
        """Change fault settings, e.g. ``set_faults(latency_ms=20, unknown_error_rate=0.1, seed=7)``."""
        return self.openapi.faults.configure(reset=reset, **settings)

    def clear_faults(self) -> FaultConfig:
        return self.openapi.faults.clear()

    @property
    def fault_config(self) -> FaultConfig:
        return self.openapi.faults.config

    def fault_tally(self) -> dict[str, int]:
        return self.openapi.faults.tally()

    # -- push side ---------------------------------------------------------------------------------------
    def push_gateway(
        self, webhook_url: str, app_id: str, fields: Mapping[str, Any], charset: str = "GBK"
    ) -> httpx.Response:
        """Send one life-account gateway event; returns the webhook's HTTP response (raises if unreachable).
        A follow/unfollow also updates the simulator's follower state for ``follow.query``."""
        delivery = self.pusher.push_gateway(webhook_url, app_id, fields, charset)
        event_type = str(fields.get("EventType", ""))
        user = fields.get("FromAlipayUserId") or fields.get("FromUserId")
        if user and event_type in ("follow", "unfollow"):
            self.set_follower(app_id, str(user), event_type == "follow")
        msg_type = str(fields.get("MsgType", ""))
        if user and ((msg_type == "event" and event_type in INTERACTION_EVENTS) or msg_type in INTERACTION_MESSAGES):
            self.record_interaction(app_id, str(user))
        if delivery.last_response is None:
            raise httpx.ConnectError(delivery.attempts[-1].error or "no response")
        return delivery.last_response

    def push_notify(self, notify_url: str, params: Mapping[str, str], charset: str = "utf-8") -> Delivery:
        """Send a trade notification; retried on Alipay's (scaled) schedule until the answer is ``success``."""
        return self.pusher.push_notify(notify_url, params, charset)

    def push_message(
        self,
        webhook_url: str,
        app_id: str,
        msg_method: str,
        biz_content: Mapping[str, Any] | str,
        charset: str = "utf-8",
    ) -> Delivery:
        """Send a message-service push (``msg_method``, version 1.1); retried like notifications."""
        return self.pusher.push_message(webhook_url, app_id, msg_method, biz_content, charset)

    def redeliver(self, delivery_id: str) -> httpx.Response | None:
        return self.pusher.redeliver(delivery_id)

    def deliveries(self) -> list[dict[str, Any]]:
        return self.pusher.delivery_log()

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self.pusher.wait_idle(timeout)

    # -- HTTP --------------------------------------------------------------------------------------------
    def _handler_class(self) -> type[LeanRequestHandler]:
        sim = self

        class Handler(LeanRequestHandler):
            server_version = "alipay-sim"

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                # a client that gave up first (its timeout) gets nothing, as on Alipay's side
                self.respond(status, body, content_type)

            def _json(self, status: int, payload: Any) -> None:
                self._send(status, json.dumps(payload, ensure_ascii=False).encode(), "application/json;charset=utf-8")

            def _body(self) -> bytes | None:
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY:
                    self.close_connection = True
                    self._json(413, {"error": "body too large"})
                    return None
                return self.rfile.read(length) if length else b""

            def do_GET(self) -> None:
                split = urlsplit(self.path)
                path = split.path
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                if path == "/sim/calls":
                    self._json(200, sim.calls())
                elif path == "/sim/delivered":
                    self._json(200, sim.delivered(query.get("method"), query.get("app_id")))
                elif path == "/sim/outbound":
                    self._json(200, sim.outbound(query.get("method"), query.get("app_id")))
                elif path == "/sim/faults":
                    self._json(200, {"config": sim.fault_config.to_dict(), "tally": sim.fault_tally()})
                elif path == "/sim/deliveries":
                    self._json(200, sim.deliveries())
                elif path == "/sim/alipay_public_key":
                    self._json(200, {"alipay_public_key": sim.alipay_public_key_one_line})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                split = urlsplit(self.path)
                body = self._body()
                if body is None:
                    return
                if split.path == "/gateway.do":
                    answer = sim.openapi.handle(split.query.encode("latin-1"), body, self.headers.get("content-type"))
                    self._send(answer.status, answer.body, answer.content_type)
                    return
                try:
                    data = json.loads(body or b"{}")
                    if split.path == "/sim/apps":
                        sim.register_app(str(data["app_id"]), str(data["app_public_key"]))
                        self._json(200, {"ok": True})
                    elif split.path == "/sim/followers":
                        sim.set_follower(str(data["app_id"]), str(data["user_id"]), bool(data.get("following", True)))
                        self._json(200, {"ok": True})
                    elif split.path == "/sim/faults":
                        if not isinstance(data, dict):
                            raise ValueError("expected a JSON object")
                        reset = bool(data.pop("reset", False))
                        self._json(200, sim.set_faults(reset=reset, **data).to_dict())
                    elif split.path in ADMIN_ROUTES:
                        ADMIN_ROUTES[split.path](sim, data)
                        self._json(200, {"ok": True})
                    else:
                        self._json(404, {"error": "not found"})
                except (ValueError, KeyError, TypeError) as exc:
                    self._json(400, {"error": f"bad request: {exc}"})

        return Handler


def _admin_interaction(sim: AlipaySimulator, data: dict[str, Any]) -> None:
    at = datetime.fromisoformat(str(data["at"])) if data.get("at") else None
    sim.record_interaction(str(data["app_id"]), str(data["user_id"]), at)


ADMIN_ROUTES: dict[str, Any] = {
    "/sim/templates": lambda sim, d: sim.register_template(str(d["app_id"]), str(d["template_id"])),
    "/sim/interactions": _admin_interaction,
    "/sim/grants": lambda sim, d: sim.grant(
        str(d["app_id"]), str(d["user_id"]), str(d["template_id"]), int(d.get("count", 1))
    ),
    "/sim/activities": lambda sim, d: sim.register_activity(str(d["app_id"]), str(d["activity_id"]), int(d["stock"])),
    "/sim/labels": lambda sim, d: sim.set_label(str(d["app_id"]), str(d["label_id"]), [str(u) for u in d["user_ids"]]),
}


def start_simulator(
    alipay_private_key: rsa.RSAPrivateKey | str, port: int | None = None, time_scale: float = LOCAL_TIME_SCALE
) -> AlipaySimulator:
    sim = AlipaySimulator(alipay_private_key, port=port, time_scale=time_scale)
    sim.start()
    return sim
