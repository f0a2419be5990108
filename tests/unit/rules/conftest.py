"""A rule engine over the real rule state (moto in-process), an in-memory app registry and profiles."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest

from lifelink.domain.events import (
    FollowEvent,
    OrderPaidEvent,
    ProductViewEvent,
    UnfollowEvent,
    UserRef,
)
from lifelink.rules.engine import AppDirectory, RuleEngine
from lifelink.store.apps import AppRecord
from lifelink.store.profiles import Profile, ProfileRead
from lifelink.store.rule_state import RuleState

# 12:00 in Shanghai today: the rules compare event times with the real clock (event age, due windows), so a fixed date
# goes stale a day later.
NOW = datetime.now(UTC).replace(hour=4, minute=0, second=0, microsecond=0)
MINI, LIFE = "2021004100000002", "2021004100000001"
U1, U2 = "2088000000000001", "2088000000000002"
COUPON = "ACT_BROWSE"
GUIDE = {"channel": "mini_subscription", "content": {"user_template_id": "TPL_GUIDE", "page": "pages/member/guide",
                                                      "data": {"thing1": "会员指南"}}}


class Registry:
    def __init__(self) -> None:
        self.records: dict[str, AppRecord] = {}

    def add(self, app_id: str, kind: str = "mini", policy: dict[str, Any] | None = None,
            life_account: str | None = None) -> None:
        self.records[app_id] = AppRecord(app_id=app_id, kind=kind, secret_name=f"s/{app_id}", policy=policy,
                                         life_account=life_account)

    def get(self, app_id: str) -> AppRecord | None:
        return self.records.get(app_id)

    def list(self) -> list[AppRecord]:
        return sorted(self.records.values(), key=lambda r: r.app_id)


@dataclass
class Profiles:
    """Profiles by (group, user), as the aggregator would have stored them."""

    by_key: dict[tuple[str, str], Profile] = field(default_factory=dict)

    def read_many(self, users: Iterable[tuple[str, str]]) -> ProfileRead:
        return ProfileRead({k: self.by_key.get(k) or Profile(*k) for k in users}, {})

    def scan_group(self, group: str) -> Iterator[Profile]:
        return iter([p for (g, _), p in sorted(self.by_key.items()) if g == group])


class FollowCheck:
    def __init__(self) -> None:
        self.following: set[str] = set()
        self.calls: list[str] = []

    def __call__(self, app_id: str, user: UserRef) -> bool:
        self.calls.append(user.key or "")
        return (user.key or "") in self.following


@dataclass
class World:
    engine: RuleEngine
    state: RuleState
    registry: Registry
    profiles: Profiles
    follow: FollowCheck

    def policy(self, app_id: str, rules: dict[str, Any], kind: str = "mini", **extra: Any) -> None:
        self.registry.add(app_id, kind, {"rules": rules, **extra})
        self.engine = RuleEngine(self.state, AppDirectory(self.registry, ttl=0), profiles=self.profiles,
                                 follow_check=self.follow)


@pytest.fixture
def world(aws: Any) -> World:
    state = RuleState(boto3.client("dynamodb"), aws.tables["StateTable"])
    registry, profiles, follow = Registry(), Profiles(), FollowCheck()
    engine = RuleEngine(state, AppDirectory(registry, ttl=0), profiles=profiles, follow_check=follow)
    return World(engine, state, registry, profiles, follow)


def _id(*parts: object) -> str:
    return "-".join(str(p) for p in parts)


def view(at: datetime, user: str = U1, app: str = MINI, product: str = "P1") -> ProductViewEvent:
    return ProductViewEvent(event_id=_id("pv", app, user, at.timestamp(), product), app_id=app, occurred_at=at,
                            received_at=at, user=UserRef(user_id=user), product_id=product)


def paid(at: datetime, no: str = "T1", user: str = U1, app: str = MINI, amount: str = "10.00") -> OrderPaidEvent:
    return OrderPaidEvent(event_id=_id("paid", no), app_id=app, source="trade_notify", occurred_at=at,
                          received_at=at, user=UserRef(user_id=user), out_trade_no=no, trade_status="TRADE_SUCCESS",
                          total_amount=Decimal(amount), notify_id=_id("n", no))


def follow(at: datetime, user: str = U1, app: str = LIFE) -> FollowEvent:
    return FollowEvent(event_id=_id("f", app, user, at.timestamp()), app_id=app, source="life_gateway",
                       occurred_at=at, received_at=at, user=UserRef(user_id=user))


def unfollow(at: datetime, user: str = U1, app: str = LIFE) -> UnfollowEvent:
    return UnfollowEvent(event_id=_id("u", app, user, at.timestamp()), app_id=app, source="life_gateway",
                         occurred_at=at, received_at=at, user=UserRef(user_id=user))


def at_utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)
