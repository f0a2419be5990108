"""Behaviour event models: bounds, derived ids, and reading them back with parse_event (as the consumer does)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from lifelink.domain.attribution import Attribution, issue, verify_token
from lifelink.domain.behaviour import BEHAVIOUR_TYPES, derive_event_id, is_read_complete, timing_error
from lifelink.domain.events import (
    ArticleProgressEvent,
    FollowEvent,
    OrderPlacedEvent,
    PageViewEvent,
    SessionStartEvent,
    parse_event,
)

APP = "2021000000000002"
OPEN_ID = "074a1Z0hq0IxGtN0Yb0cUvlCpSkQHoKf0pX3Ur1w3N"
AT = "2026-11-24T20:15:00+08:00"
RECEIVED = "2026-11-24T12:16:00Z"

FIELDS: dict[str, dict[str, Any]] = {
    "session_start": {"scene": "1020", "page": "pages/index/index", "query": {"from": "menu"}},
    "page_view": {"page": "pages/goods/detail", "foreground_s": 42.5},
    "article_open": {"article_id": "a-17", "category": "tea"},
    "article_progress": {"article_id": "a-17", "depth": 0.96, "dwell_s": 31},
    "like": {"article_id": "a-17"},
    "comment": {"article_id": "a-17"},
    "share": {"product_id": "sku-9"},
    "favourite": {"article_id": "a-17", "category": "tea"},
    "product_view": {"product_id": "sku-9", "price_cents": 12900},
    "order_placed": {"out_trade_no": "T20261124001", "amount_cents": 25800, "coupon_used": True},
}


def event(type_: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type_,
        "app_id": APP,
        "occurred_at": AT,
        "received_at": RECEIVED,
        "user": {"open_id": OPEN_ID},
        **FIELDS[type_],
    }
    body.update(overrides)
    return body


def error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> set[tuple[Any, ...]]:
    return {tuple(e["loc"][1:]) for e in exc.value.errors()}  # loc[0] is the union's tag


def test_the_contract_lists_ten_types_and_each_parses_and_round_trips() -> None:
    assert set(BEHAVIOUR_TYPES) == set(FIELDS)
    for type_ in BEHAVIOUR_TYPES:
        parsed = parse_event(event(type_))
        assert parsed.type == type_
        assert parsed.source == "ingest"
        assert parsed.user is not None and parsed.user.key == OPEN_ID
        assert len(parsed.event_id) == 32
        again = parse_event(parsed.model_dump_json())
        assert again == parsed
        assert again.event_id == parsed.event_id


def test_field_lists_of_the_contract() -> None:
    common = {"schema_version", "event_id", "type", "app_id", "source", "occurred_at", "received_at", "user"}
    assert set(PageViewEvent.model_fields) == common | {"page", "foreground_s"}
    assert set(ArticleProgressEvent.model_fields) == common | {"article_id", "depth", "dwell_s", "category"}
    assert set(OrderPlacedEvent.model_fields) == common | {"out_trade_no", "amount_cents", "coupon_used"}
    assert set(SessionStartEvent.model_fields) == common | {"scene", "page", "query", "attribution_token"}


def test_derived_ids_are_stable_and_depend_on_the_content() -> None:
    first = parse_event(event("page_view"))
    # The same instant written in another zone, received later (a retry): the same id.
    retry = parse_event(event("page_view", occurred_at="2026-11-24T12:15:00Z", received_at="2026-11-24T13:00:00Z"))
    assert retry.event_id == first.event_id
    assert first.event_id == derive_event_id(
        APP,
        OPEN_ID,
        "page_view",
        datetime(2026, 11, 24, 12, 15, tzinfo=UTC),
        {"page": "pages/goods/detail", "foreground_s": 42.5},
    )
    others = {
        parse_event(event("page_view", foreground_s=43)).event_id,
        parse_event(event("page_view", page="pages/other")).event_id,
        parse_event(event("page_view", occurred_at="2026-11-24T20:15:01+08:00")).event_id,
        parse_event(event("page_view", user={"open_id": OPEN_ID + "x"})).event_id,
        parse_event(event("page_view", app_id="2021000000000003")).event_id,
        parse_event(event("like", article_id="a-17")).event_id,
        parse_event(event("comment", article_id="a-17")).event_id,
    }
    assert first.event_id not in others
    assert len(others) == 7


def test_a_given_event_id_is_kept() -> None:
    assert parse_event(event("like", event_id="mp-evt_0001")).event_id == "mp-evt_0001"
    with pytest.raises(ValidationError) as bad:
        parse_event(event("like", event_id="has space"))
    assert ("event_id",) in error_locs(bad)


def test_bounds_on_every_kind_of_field() -> None:
    cases: list[tuple[str, dict[str, Any], tuple[Any, ...]]] = [
        ("page_view", {"foreground_s": -0.1}, ("foreground_s",)),
        ("page_view", {"foreground_s": 86400.5}, ("foreground_s",)),
        ("page_view", {"foreground_s": "nan"}, ("foreground_s",)),
        ("page_view", {"page": "pages/a b"}, ("page",)),
        ("page_view", {"page": "p" * 257}, ("page",)),
        ("article_progress", {"depth": 1.01}, ("depth",)),
        ("article_progress", {"depth": -0.01}, ("depth",)),
        ("article_progress", {"dwell_s": 86401}, ("dwell_s",)),
        ("article_open", {"article_id": ""}, ("article_id",)),
        ("article_open", {"article_id": "x" * 65}, ("article_id",)),
        ("article_open", {"category": "c" * 33}, ("category",)),
        ("product_view", {"price_cents": -1}, ("price_cents",)),
        ("product_view", {"price_cents": 12.5}, ("price_cents",)),
        ("order_placed", {"amount_cents": -100}, ("amount_cents",)),
        ("order_placed", {"amount_cents": "258"}, ("amount_cents",)),
        ("order_placed", {"amount_cents": 10_000_000_001}, ("amount_cents",)),
        ("order_placed", {"out_trade_no": "T 1"}, ("out_trade_no",)),
        ("session_start", {"scene": ""}, ("scene",)),
        ("session_start", {"query": {f"k{i}": "v" for i in range(33)}}, ("query",)),
        ("session_start", {"query": {"k": "v" * 1025}}, ("query", "k")),
        ("session_start", {"attribution_token": "t" * 513}, ("attribution_token",)),
        ("like", {"surprise": 1}, ("surprise",)),
        ("like", {"occurred_at": "2026-11-24T20:15:00"}, ("occurred_at",)),
        ("like", {"occurred_at": "1999-12-31T23:59:59Z"}, ("occurred_at",)),
        ("like", {"user": {"open_id": "o" * 129}}, ("user",)),
        ("like", {"user": {"user_id": "2088 0000"}}, ("user",)),
    ]
    for type_, change, loc in cases:
        with pytest.raises(ValidationError) as bad:
            parse_event(event(type_, **change))
        assert loc in error_locs(bad), (type_, change, error_locs(bad))


def test_required_fields_and_rules_across_fields() -> None:
    body = event("like")
    del body["article_id"]
    with pytest.raises(ValidationError, match="give article_id or product_id"):
        parse_event(body)
    with pytest.raises(ValidationError) as no_user:
        parse_event({k: v for k, v in event("page_view").items() if k != "user"})
    assert ("user",) in error_locs(no_user)
    with pytest.raises(ValidationError, match=r"give user\.open_id or user\.user_id"):
        parse_event(event("page_view", user={}))
    order = event("order_placed")
    del order["amount_cents"]
    with pytest.raises(ValidationError) as missing:
        parse_event(order)
    assert ("amount_cents",) in error_locs(missing)


def test_zones_other_than_utc_are_kept_as_given() -> None:
    parsed = parse_event(event("article_open"))
    assert parsed.occurred_at == datetime(2026, 11, 24, 20, 15, tzinfo=timezone(timedelta(hours=8)))


def test_session_start_carries_the_raw_token_of_its_query() -> None:
    key = b"k" * 32
    att = Attribution(APP, "spring", "burst", "abcdefgh", datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    token = issue(att, key)
    parsed = parse_event(event("session_start", query={"ll": token, "from": "life"}))
    assert isinstance(parsed, SessionStartEvent)
    assert parsed.attribution_token == token
    assert verify_token(parse_event(parsed.model_dump_json()).attribution_token or "", key) == att  # the aggregator
    assert parse_event(event("session_start")).attribution_token is None  # no token in the query
    explicit = parse_event(event("session_start", query={"ll": token}, attribution_token="1other.token"))
    assert explicit.attribution_token == "1other.token"


def test_pages_are_relative_paths() -> None:
    assert parse_event(event("page_view", page="/pages/goods/detail")).page == "pages/goods/detail"  # type: ignore[union-attr]


def test_read_completion_threshold() -> None:
    assert is_read_complete(0.95, 10)
    assert not is_read_complete(0.949, 600)
    assert not is_read_complete(1.0, 9.9)


def test_arrival_window() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert timing_error(now - timedelta(days=1), now) is None  # a day late is fine
    assert timing_error(now + timedelta(minutes=9), now) is None  # clock skew
    assert timing_error(now + timedelta(minutes=11), now) is not None
    assert timing_error(now - timedelta(days=7, seconds=1), now) is not None


def test_existing_events_are_unchanged() -> None:
    follow = parse_event(
        {
            "type": "follow",
            "event_id": "e1",
            "app_id": APP,
            "source": "life_gateway",
            "occurred_at": "2026-11-24T12:00:00",  # webhook events keep their looser rules
            "received_at": RECEIVED,
        }
    )
    assert isinstance(follow, FollowEvent) and follow.user is None
