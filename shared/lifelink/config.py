"""Settings every function reads from its environment (set by template.yaml, or by the local stack)."""

from __future__ import annotations

import os
from dataclasses import dataclass


class ConfigError(RuntimeError):
    pass


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set (template.yaml sets it on AWS)")
    return value


def _app_secret_prefix() -> str:
    return os.environ.get("APP_SECRET_PREFIX", "lifelink/apps/")


def _secret_max_age() -> int:
    return int(os.environ.get("SECRET_MAX_AGE_SECONDS", "300"))


@dataclass(frozen=True)
class Settings:
    state_table: str
    idempotency_table: str
    events_queue_url: str
    app_secret_prefix: str
    secret_max_age: int

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            state_table=_required("STATE_TABLE"),
            idempotency_table=_required("IDEMPOTENCY_TABLE"),
            events_queue_url=_required("EVENTS_QUEUE_URL"),
            app_secret_prefix=_app_secret_prefix(),
            secret_max_age=_secret_max_age(),
        )


DEFAULT_ALIPAY_GATEWAY_URL = "https://openapi.alipay.com/gateway.do"
DEFAULT_ATTRIBUTION_SECRET_NAME = "lifelink/attribution-key"  # noqa: S105 - a secret's name, not a secret


@dataclass(frozen=True)
class GatewaySettings:
    """What the message gateway reads besides :class:`Settings` (it has no idempotency table)."""

    state_table: str
    events_queue_url: str
    outbound_queue_url: str
    app_secret_prefix: str
    secret_max_age: int
    alipay_gateway_url: str
    attribution_secret_name: str
    send_concurrency: int

    @classmethod
    def from_env(cls) -> GatewaySettings:
        return cls(
            state_table=_required("STATE_TABLE"),
            events_queue_url=_required("EVENTS_QUEUE_URL"),
            outbound_queue_url=_required("OUTBOUND_QUEUE_URL"),
            app_secret_prefix=_app_secret_prefix(),
            secret_max_age=_secret_max_age(),
            alipay_gateway_url=os.environ.get("ALIPAY_GATEWAY_URL") or DEFAULT_ALIPAY_GATEWAY_URL,
            attribution_secret_name=os.environ.get("ATTRIBUTION_SECRET_NAME") or DEFAULT_ATTRIBUTION_SECRET_NAME,
            send_concurrency=max(1, int(os.environ.get("SEND_CONCURRENCY", "10"))),
        )
