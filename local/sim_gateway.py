"""The OpenAPI side of the Alipay simulator: what ``/gateway.do`` does with a request.

System parameters come from the query string and the form body (the query wins, as on Alipay's gateway);
percent-decoding uses the request's ``charset``. Checks, in order: required parameters (40001), the app
(40002 isv.invalid-app-id), sign_type, timestamp within ±15 min of Beijing time (isv.invalid-timestamp),
the signature over every parameter but ``sign`` with the registered app public key (isv.invalid-signature,
whose sub_msg quotes the string the gateway verified), then the method (isv.invalid-method). Gateway errors
answer ``error_response``; business errors (``BusinessError`` raised by a method) answer 40004 inside the
method's node. Every answer is signed with the simulator's Alipay private key over the exact node text.

Certificate mode (``set_certificates`` gives the simulator an Alipay certificate and a root bundle; an app
registered with ``app_cert`` is in certificate mode): after the timestamp, a request must carry the SN of the
app's registered certificate in ``app_cert_sn`` (missing: 40002 ``isv.missing-app-cert-sn``; another SN: 40002
``isv.app-cert-not-exist``, the codes Alipay answers other SDKs' users) and the root bundle's SN in
``alipay_root_cert_sn`` (missing or another: 40002 ``isv.invalid-signature``, fatal like every 40002; ALIPAY.md
names no finer code). The signature is verified with the certificate's key, and every answer to the app carries
``alipay_cert_sn``, the SN of the certificate whose key signed it. SNs are computed by ``sim_crypto``.

Adding a method is one function: ``register_method("alipay.x.y", fn)`` with ``fn(app_id, biz) -> dict``.
The outbound methods (messages, coupons, cards) live in ``sim_methods`` (``self.outbound``); fault injection
(latency, 20000, rate errors, timeouts, fatal errors) in ``sim_faults`` (``self.faults``): after the checks
above, a method in the faults' scope gets its ``FaultDecision``. Latency and timeouts are sleeps taken outside
every lock; state changes happen under one re-entrant lock, held briefly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink_local import sim_crypto
from lifelink_local.sim_faults import Fault, FaultDecision, FaultInjector

MethodFn = Callable[[str, dict[str, Any]], dict[str, Any]]

TIMESTAMP_TOLERANCE = timedelta(minutes=15)
SIGN_ERROR_PREFIX = "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："

REQUIRED = (
    ("method", "isv.missing-method", "缺少方法名参数"),
    ("sign", "isv.missing-signature", "缺少签名参数"),
    ("sign_type", "isv.missing-signature-type", "缺少签名类型参数"),
    ("app_id", "isv.missing-app-id", "缺少AppID参数"),
    ("timestamp", "isv.missing-timestamp", "缺少时间戳参数"),
    ("version", "isv.missing-version", "缺少版本参数"),
)


class BusinessError(Exception):
    """Raised by a simulated method: answered as code 40004 (Business Failed) with this sub_code."""

    def __init__(self, sub_code: str, sub_msg: str) -> None:
        super().__init__(f"{sub_code}: {sub_msg}")
        self.sub_code = sub_code
        self.sub_msg = sub_msg


@dataclass
class ApiCall:
    seq: int
    time: float
    app_id: str | None
    method: str | None
    biz: dict[str, Any] | None
    code: str
    sub_code: str | None = None
    fault: str | None = None  # the injected fault, if any
    executed: bool | None = None  # with a fault: whether the method still ran (delivered)
    app_cert_sn: str | None = None  # certificate mode's SNs and third-party mode's token, as the request sent them
    alipay_root_cert_sn: str | None = None
    app_auth_token: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SimApp:
    app_id: str
    public_key: rsa.RSAPublicKey
    public_key_text: str
    cert_sn: str | None = None  # certificate mode: the SN of the app's registered certificate


@dataclass
class GatewayAnswer:
    status: int
    body: bytes
    content_type: str
    node_name: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


def node_name_for(method: str) -> str:
    return method.replace(".", "_") + "_response"


class OpenApiSimulator:
    """Registry of apps, methods and followers, the call log, and the ``/gateway.do`` logic."""

    def __init__(self, alipay_private_key: rsa.RSAPrivateKey, clock: Callable[[], datetime] | None = None) -> None:
        self.alipay_private_key = alipay_private_key
        self.clock = clock or sim_crypto.beijing_now
        self._lock = threading.RLock()
        self.apps: dict[str, SimApp] = {}
        self.methods: dict[str, MethodFn] = {}
        self.calls: list[ApiCall] = []
        self.followers: dict[str, set[str]] = {}
        self.register_method("alipay.open.public.user.follow.query", self._follow_query)
        from lifelink_local.sim_methods import OUTBOUND_METHODS, OutboundMethods  # imports BusinessError from here

        self.outbound = OutboundMethods(self._lock, self.is_follower, self.followers_of)
        for method, fn in self.outbound.methods().items():
            self.register_method(method, fn)
        self.faults = FaultInjector(OUTBOUND_METHODS)
        self.alipay_cert_sn: str | None = None
        self.root_cert_sn: str | None = None

    # -- registries -------------------------------------------------------------------------------------
    def set_certificates(self, alipay_cert_pem: str, root_cert_pem: str) -> None:
        """Certificate mode: Alipay's certificate (of the key this simulator signs with) and the root bundle."""
        key = sim_crypto.certificate_key(alipay_cert_pem)
        if key.public_numbers() != self.alipay_private_key.public_key().public_numbers():
            raise ValueError("the Alipay certificate does not hold the simulator's Alipay key")
        root_sn = sim_crypto.root_certificate_sn(root_cert_pem)
        if not root_sn:
            raise ValueError("the root bundle holds no RSA certificate")
        with self._lock:
            self.alipay_cert_sn = sim_crypto.certificate_sn(alipay_cert_pem)
            self.root_cert_sn = root_sn

    def register_app(self, app_id: str, app_public_key: str | None = None, *, app_cert: str | None = None) -> None:
        """An app in public-key mode (its public key), or in certificate mode (its public-key certificate)."""
        if app_cert is not None:
            if self.root_cert_sn is None:
                raise ValueError("certificate mode: set_certificates() first")
            key = sim_crypto.certificate_key(app_cert)
            app = SimApp(app_id, key, sim_crypto.public_one_line(key), sim_crypto.certificate_sn(app_cert))
        elif app_public_key is not None:
            app = SimApp(app_id, sim_crypto.load_public(app_public_key), app_public_key)
        else:
            raise ValueError("give the app's public key or its certificate")
        with self._lock:
            self.apps[app_id] = app

    def register_method(self, method: str, fn: MethodFn) -> None:
        with self._lock:
            self.methods[method] = fn

    def set_follower(self, app_id: str, user_id: str, following: bool = True) -> None:
        with self._lock:
            users = self.followers.setdefault(app_id, set())
            if following:
                users.add(user_id)
            else:
                users.discard(user_id)

    def is_follower(self, app_id: str, user_id: str) -> bool:
        with self._lock:
            return user_id in self.followers.get(app_id, set())

    def followers_of(self, app_id: str) -> set[str]:
        with self._lock:
            return set(self.followers.get(app_id, set()))

    def call_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.to_dict() for c in self.calls]

    # -- built-in methods -------------------------------------------------------------------------------
    def _follow_query(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        user = biz.get("user_id") or biz.get("open_id")
        if not user:
            raise BusinessError("INVALID_PARAMETER", "user_id 和 open_id 不能同时为空")
        return {"is_follow": "T" if self.is_follower(app_id, str(user)) else "F"}

    # -- request handling -------------------------------------------------------------------------------
    def _record(
        self,
        params: dict[str, str],
        biz: dict[str, Any] | None,
        code: str,
        sub: str | None,
        fault: Fault | None = None,
        executed: bool | None = None,
    ) -> None:
        with self._lock:
            self.calls.append(
                ApiCall(
                    len(self.calls) + 1,
                    time.time(),
                    params.get("app_id"),
                    params.get("method"),
                    biz,
                    code,
                    sub,
                    None if fault is None else fault.value,
                    executed,
                    params.get("app_cert_sn"),
                    params.get("alipay_root_cert_sn"),
                    params.get("app_auth_token"),
                )
            )

    def _answer(self, node_name: str, payload: dict[str, Any], charset: str, cert: bool = False) -> GatewayAnswer:
        node_text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        sign = sim_crypto.rsa2_sign(node_text, self.alipay_private_key, charset)
        text = "{" + json.dumps(node_name) + ":" + node_text + ',"sign":' + json.dumps(sign)
        if cert and self.alipay_cert_sn:
            text += ',"alipay_cert_sn":' + json.dumps(self.alipay_cert_sn)
        text += "}"
        return GatewayAnswer(200, text.encode(charset), f"text/html;charset={charset}", node_name, payload)

    def _error(
        self,
        params: dict[str, str],
        charset: str,
        code: str,
        msg: str,
        sub_code: str,
        sub_msg: str,
        cert: bool = False,
    ) -> GatewayAnswer:
        self._record(params, None, code, sub_code)
        payload = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        return self._answer("error_response", payload, charset, cert)

    def _certificate_error(self, app: SimApp, params: dict[str, str], charset: str) -> GatewayAnswer | None:
        """Certificate mode's checks of app_cert_sn and alipay_root_cert_sn (None when both are right)."""
        bad = "40002", "Invalid Arguments"
        app_sn = params.get("app_cert_sn")
        if not app_sn:
            return self._error(params, charset, *bad, "isv.missing-app-cert-sn", "缺少应用公钥证书序列号", True)
        if app_sn != app.cert_sn:
            return self._error(params, charset, *bad, "isv.app-cert-not-exist", "应用公钥证书不存在", True)
        if params.get("alipay_root_cert_sn") != self.root_cert_sn:
            sub_msg = "支付宝根证书序列号不匹配 alipay_root_cert_sn=" + (params.get("alipay_root_cert_sn") or "")
            return self._error(params, charset, *bad, "isv.invalid-signature", sub_msg, True)
        return None

    @staticmethod
    def _charset_of(query: bytes) -> str:
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if key == "charset" and value:
                return value.lower()
        return "utf-8"

    def parse(self, query: bytes, body: bytes, content_type: str | None) -> tuple[dict[str, str], str]:
        """System and business parameters of a request, decoded once in its charset."""
        charset = self._charset_of(query)
        if charset == "utf-8" and content_type and "charset=" in content_type.lower():
            charset = content_type.lower().split("charset=", 1)[1].split(";", 1)[0].strip() or "utf-8"
        try:
            "".encode(charset)
        except LookupError:
            charset = "utf-8"
        params: dict[str, str] = {}
        form = body.decode("latin-1") if body else ""
        if content_type is None or "x-www-form-urlencoded" in content_type.lower():
            for key, value in parse_qsl(form, keep_blank_values=True, encoding=charset, errors="strict"):
                params[key] = value
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding=charset):
            params[key] = value
        return params, charset

    def handle(self, query: bytes, body: bytes, content_type: str | None) -> GatewayAnswer:
        try:
            params, charset = self.parse(query, body, content_type)
        except UnicodeDecodeError:
            return self._error({}, "utf-8", "40002", "Invalid Arguments", "isv.invalid-charset", "字符集错误")
        for name, sub_code, sub_msg in REQUIRED:
            if not params.get(name):
                return self._error(params, charset, "40001", "Missing Required Arguments", sub_code, sub_msg)
        app = self.apps.get(params["app_id"])
        if app is None:
            return self._error(params, charset, "40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数")
        if params["sign_type"] != "RSA2":
            return self._error(
                params, charset, "40002", "Invalid Arguments", "isv.invalid-signature-type", "无效的签名类型"
            )
        if params.get("encrypt_type"):
            return self._error(
                params, charset, "40002", "Invalid Arguments", "isv.invalid-encrypt-type", "无效的加密类型"
            )
        try:
            sent_at = sim_crypto.parse_beijing_timestamp(params["timestamp"])
        except ValueError:
            sent_at = None
        if sent_at is None or abs(self.clock() - sent_at) > TIMESTAMP_TOLERANCE:
            return self._error(
                params, charset, "40002", "Invalid Arguments", "isv.invalid-timestamp", "非法的时间戳参数"
            )
        cert = app.cert_sn is not None
        if cert:
            refused = self._certificate_error(app, params, charset)
            if refused is not None:
                return refused
        signed = sim_crypto.canonical(params, exclude=("sign",))
        if not sim_crypto.rsa2_verify(signed, params["sign"], app.public_key, charset):
            return self._error(
                params,
                charset,
                "40002",
                "Invalid Arguments",
                "isv.invalid-signature",
                SIGN_ERROR_PREFIX + signed,
                cert,
            )
        method = params["method"]
        fn = self.methods.get(method)
        if fn is None:
            return self._error(
                params, charset, "40002", "Invalid Arguments", "isv.invalid-method", "不存在的方法名", cert
            )
        biz: dict[str, Any] = {}
        if params.get("biz_content"):
            try:
                loaded = json.loads(params["biz_content"])
            except json.JSONDecodeError:
                loaded = None
            if not isinstance(loaded, dict):
                return self._error(
                    params,
                    charset,
                    "40002",
                    "Invalid Arguments",
                    "isv.invalid-parameter",
                    "biz_content 不是合法的JSON",
                    cert,
                )
            biz = loaded
        node = node_name_for(method)
        decision = self.faults.decide(params["app_id"], method, params.get("biz_content") or "")
        if decision.latency_s > 0:
            time.sleep(decision.latency_s)
        if decision.fault is None:
            payload = self._run(fn, params, biz)
            self._record(params, biz, payload["code"], payload.get("sub_code"))
            return self._answer(node, payload, charset, cert)
        return self._faulty(decision, fn, params, biz, node, charset, cert)

    @staticmethod
    def _run(fn: MethodFn, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        """Run a method: the answer node's payload (10000, 40004 for BusinessError, 20000 if it crashed)."""
        try:
            result = fn(params["app_id"], biz)
        except BusinessError as exc:
            return {"code": "40004", "msg": "Business Failed", "sub_code": exc.sub_code, "sub_msg": exc.sub_msg}
        except Exception:
            return {
                "code": "20000",
                "msg": "Service Currently Unavailable",
                "sub_code": "isp.unknow-error",
                "sub_msg": "系统繁忙",
            }
        return {"code": "10000", "msg": "Success", **result}

    def _faulty(
        self,
        decision: FaultDecision,
        fn: MethodFn,
        params: dict[str, str],
        biz: dict[str, Any],
        node: str,
        charset: str,
        cert: bool = False,
    ) -> GatewayAnswer:
        injected = {
            "code": decision.code,
            "msg": decision.msg,
            "sub_code": decision.sub_code,
            "sub_msg": decision.sub_msg,
        }
        executed = self._run(fn, params, biz) if decision.execute else None
        if decision.fault is Fault.TIMEOUT:
            # the answer to an executed call is the real one, sent after the client has given up
            payload = executed if executed is not None else injected
            self._record(params, biz, str(payload["code"]), payload.get("sub_code"), decision.fault, decision.execute)
            self.faults.sleep(decision.sleep_after_s)
            return self._answer(node, payload, charset, cert)
        self._record(params, biz, str(decision.code), decision.sub_code, decision.fault, decision.execute)
        return self._answer(node, injected, charset, cert)
