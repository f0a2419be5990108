"""App keys from Secrets Manager through Powertools parameters, parsed once per container.

Secrets are cached by Powertools for ``max_age`` seconds; parsed keys are cached by a fingerprint of the
secret text, so a rotated secret is picked up within ``max_age`` without re-parsing keys per request.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from lifelink.alipay.keys import AppKeys

SecretFetcher = Callable[[str, int], Mapping[str, Any]]


def _powertools_fetch(name: str, max_age: int) -> Mapping[str, Any]:
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(name, transform="json", max_age=max_age)
    if not isinstance(value, Mapping):
        raise ValueError(f"secret {name} is not a JSON object")
    return value


class AppKeyring:
    def __init__(self, *, max_age: int = 300, fetch: SecretFetcher | None = None) -> None:
        self._max_age = max_age
        self._fetch = fetch or _powertools_fetch
        self._parsed: dict[str, tuple[str, AppKeys, Mapping[str, Any]]] = {}
        self._lock = threading.Lock()

    def secret(self, secret_name: str) -> Mapping[str, Any]:
        return self._fetch(secret_name, self._max_age)

    def keys(self, secret_name: str) -> AppKeys:
        """The app's parsed keys (raises KeyFormatError / KeyMismatchError on a bad secret)."""
        raw = self.secret(secret_name)
        private, alipay_public = str(raw.get("app_private_key", "")), str(raw.get("alipay_public_key", ""))
        fingerprint = hashlib.sha256(f"{private}\x1f{alipay_public}".encode()).hexdigest()
        cached = self._parsed.get(secret_name)
        if cached and cached[0] == fingerprint:
            return cached[1]
        keys = AppKeys.from_texts(private, alipay_public)
        with self._lock:
            self._parsed[secret_name] = (fingerprint, keys, raw)
        return keys
