"""Outbound jobs: validation per channel, ledger key and out_biz_no."""

from __future__ import annotations

import pytest
from outbound_helpers import APP, CONTENT, USER, job

from lifelink.domain.messages import Channel, InvalidJob, LifeGroupContent, parse_job


@pytest.mark.parametrize("channel", [c.value for c in Channel])
def test_every_channel_round_trips_through_the_queue_body(channel: str) -> None:
    j = job(channel)
    again = parse_job(j.to_body())
    assert again == j
    assert again.channel.value == channel


def test_ledger_key_names_app_campaign_phase_user_channel() -> None:
    assert job("life_template").ledger_key == f"{APP}|spring|p1|{USER}|life_template"
    assert job("life_broadcast").ledger_key == f"{APP}|spring|p1|*|life_broadcast"
    assert job("life_label").ledger_key == f"{APP}|spring|p1|label:L9|life_label"
    by_open_id = job("coupon", recipient={"open_id": "074abc", "user_id": USER})
    assert by_open_id.ledger_key.split("|")[3] == "074abc"


def test_out_biz_no_is_short_alphanumeric_and_follows_the_ledger_key() -> None:
    a, b = job("coupon"), job("coupon", phase="p2")
    assert a.out_biz_no.isalnum() and len(a.out_biz_no) <= 64
    assert a.out_biz_no == job("coupon").out_biz_no
    assert a.out_biz_no != b.out_biz_no


def errors_of(**kw: object) -> list[tuple[str, ...]]:
    with pytest.raises(InvalidJob) as info:
        job(**kw)  # type: ignore[arg-type]
    return [tuple(str(p) for p in e["loc"]) for e in info.value.errors]


def test_mini_subscription_values_over_50_characters_are_refused() -> None:
    content = {**CONTENT["mini_subscription"], "data": {"keyword1": "x" * 51}}
    assert ("content", "mini_subscription", "data") in errors_of(channel="mini_subscription", content=content)
    ok = {**CONTENT["mini_subscription"], "data": {"keyword1": "x" * 50}}
    assert job("mini_subscription", content=ok).content.data["keyword1"] == "x" * 50  # type: ignore[union-attr]


def test_required_fields_per_channel_are_reported_with_their_path() -> None:
    locs = errors_of(channel="life_template", content={"url": "https://x"})
    assert ("content", "life_template", "template_id") in locs
    assert ("content", "life_template", "keywords") in locs
    assert ("content", "coupon", "activity_id") in errors_of(channel="coupon", content={})
    text_without_body = {"msg_type": "text", "articles": CONTENT["life_broadcast"]["articles"]}
    assert errors_of(channel="life_custom", content=text_without_body)


def test_recipient_must_fit_the_channel() -> None:
    assert errors_of(channel="life_template", recipient={})
    assert errors_of(channel="life_broadcast", recipient={"user_id": USER})
    assert errors_of(channel="life_label", recipient={"user_id": USER})


def test_naive_deadline_and_unknown_channel_are_refused() -> None:
    assert ("not_after",) in errors_of(not_after="2030-01-01T00:00:00")
    assert ("channel",) in errors_of(channel="fax", content={})  # type: ignore[arg-type]


def test_label_content_is_tagged_with_its_channel() -> None:
    j = job("life_label")
    assert isinstance(j.content, LifeGroupContent) and j.content.type == "life_label"
    with pytest.raises(InvalidJob):
        job("life_label", content={**CONTENT["life_label"], "type": "life_broadcast"})


def test_garbage_is_an_invalid_job() -> None:
    for body in ("not json", "[]", '{"app_id": "x"}', b"\xff"):
        with pytest.raises(InvalidJob):
            parse_job(body)
