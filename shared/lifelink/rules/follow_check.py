"""``alipay.open.public.user.follow.query``: does this user follow the life account now? (``is_follow`` T / F)

One synchronous :class:`~lifelink.alipay.openapi.AlipayClient` per app, built from the app's secret (keys in
Secrets Manager) and rebuilt when the secret changes; all share one pooled ``httpx.Client``. Imported only when
an app turns ``confirm_follow`` on, so the events consumer's cold start pays for no cryptography otherwise.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from lifelink.domain.events import UserRef
from lifelink.rules.engine import Registry

FOLLOW_QUERY = "alipay.open.public.user.follow.query"

SecretReader = Callable[[str], Mapping[str, Any]]


class AlipayFollowCheck:
    def __init__(self, registry: Registry, secrets: SecretReader, default_gateway_url: str,
                 http: Any | None = None, timeout: float = 5.0) -> None:
        import httpx

        self._registry = registry
        self._secrets = secrets
        self._default_gateway_url = default_gateway_url
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._clients: dict[str, tuple[str, Any]] = {}
        self._lock = threading.Lock()

    def _client(self, app_id: str) -> Any:
        from lifelink.alipay.openapi import AlipayClient, OpenApiConfig

        record = self._registry.get(app_id)
        if record is None:
            raise LookupError(f"app {app_id} is not registered")
        secret = self._secrets(record.secret_name)
        gateway_url = record.gateway_url or self._default_gateway_url
        fingerprint = hashlib.sha256((gateway_url + "\x1f" + json.dumps(dict(secret), sort_keys=True)).encode())
        digest = fingerprint.hexdigest()
        with self._lock:
            cached = self._clients.get(app_id)
            if cached is not None and cached[0] == digest:
                return cached[1]
        client = AlipayClient(OpenApiConfig.from_secret(app_id, secret, gateway_url), http=self._http)
        with self._lock:
            self._clients[app_id] = (digest, client)
        return client

    def __call__(self, app_id: str, user: UserRef) -> bool:
        """True when Alipay answers ``is_follow = T``; Alipay's errors (lifelink.alipay.errors) propagate."""
        biz = {"open_id": user.open_id} if user.open_id else {"user_id": user.user_id}
        answer = self._client(app_id).execute(FOLLOW_QUERY, biz)
        return str(answer.get("is_follow", "")).upper() == "T"


def powertools_secrets(max_age: int = 300) -> SecretReader:
    """App secrets through Powertools' cached Secrets Manager provider (JSON)."""

    def read(name: str) -> Mapping[str, Any]:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_secret(name, transform="json", max_age=max_age)
        if not isinstance(value, Mapping):
            raise ValueError(f"secret {name} is not a JSON object")
        return value

    return read
