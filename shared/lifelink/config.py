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
            app_secret_prefix=os.environ.get("APP_SECRET_PREFIX", "lifelink/apps/"),
            secret_max_age=int(os.environ.get("SECRET_MAX_AGE_SECONDS", "300")),
        )
