"""What the events consumer does with each domain event before metrics exist (issue 5 adds those):
keep the audience facts the message gateway relies on, and welcome new followers.

Every step is idempotent and order-insensitive: facts move only forward in event time, and the welcome
job's ledger key (app, "welcome", "-", user, life_template) makes the gateway send it at most once. A
redelivered follow that is still the fact on record queues its welcome job again: the consumer may have died
after recording the follow and before queueing the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from lifelink.domain.events import DomainEvent
from lifelink.privacy import hash_id
from lifelink.store.apps import AppRecord
from lifelink.store.audience import Audience

INTERACTIONS = frozenset({"follow", "enter", "menu_click", "user_message"})
WELCOME_CAMPAIGN = "welcome"
WELCOME_VALID_FOR = timedelta(hours=24)


class Registry(Protocol):
    def get(self, app_id: str) -> AppRecord | None: ...


class JobSink(Protocol):
    def publish(self, job: object) -> str: ...  # type: ignore[override]


class Reactions:
    def __init__(
        self,
        audience: Audience,
        registry: Registry,
        outbound: JobSink,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        logger: logging.Logger | logging.LoggerAdapter | None = None,  # type: ignore[type-arg]
    ) -> None:
        self._audience = audience
        self._registry = registry
        self._outbound = outbound
        self._clock = clock
        self._log = logger or logging.getLogger("lifelink.reactions")

    def handle(self, event: DomainEvent) -> None:
        user = event.user.key if event.user else None
        if not user:
            return
        if event.type == "follow":
            changed = self._audience.set_following(event.app_id, user, True, event.occurred_at)
            self._audience.touch(event.app_id, user, event.occurred_at)
            if changed or self._follow_recorded(event.app_id, user, event.occurred_at):
                self._welcome(event, user)
        elif event.type == "unfollow":
            self._audience.set_following(event.app_id, user, False, event.occurred_at)
        elif event.type in INTERACTIONS:
            self._audience.touch(event.app_id, user, event.occurred_at)

    def _follow_recorded(self, app_id: str, user: str, at: datetime) -> bool:
        """This very follow is the fact on record: a redelivery after a consumer died between recording it and
        queueing the welcome. The welcome is queued again (its ledger key lets the gateway send it once)."""
        facts = self._audience.facts(app_id, user)
        return (facts.following is True and facts.follow_changed_at is not None
                and abs(facts.follow_changed_at - at) < timedelta(milliseconds=1))

    def _welcome(self, event: DomainEvent, user: str) -> None:
        app = self._registry.get(event.app_id)
        welcome = app.welcome if app else None
        if not welcome:
            return
        if self._clock() - event.occurred_at > WELCOME_VALID_FOR:
            return  # a follow replayed long after the fact gets no welcome
        from lifelink.domain.messages import OutboundJob

        job = OutboundJob.model_validate(
            {
                "app_id": event.app_id,
                "channel": "life_template",
                "recipient": {"user_id": event.user.user_id, "open_id": event.user.open_id} if event.user else {},
                "content": {"type": "life_template", **welcome},
                "campaign": WELCOME_CAMPAIGN,
                "kind": "transactional",
                "rule": "welcome_on_follow",
                "not_after": event.occurred_at + WELCOME_VALID_FOR,
                "created_at": self._clock(),
            }
        )
        self._outbound.publish(job)
        self._log.info("welcome queued", extra={"app_id": event.app_id, "user": hash_id(user)})
