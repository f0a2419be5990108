from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from lifelink.domain.attribution import (
    Attribution,
    InvalidToken,
    issue,
    message_ref,
    tag_link,
    token_from_query,
    verify_token,
)

KEY, OLD, OTHER = b"k" * 32, b"o" * 32, b"x" * 32
ATT = Attribution("2021004100000002", "spring26", "preheat", message_ref("a|c|p|u|ch"),
                  datetime(2026, 11, 24, 12, 34, tzinfo=UTC))


def test_token_round_trips_and_is_compact():
    token = issue(ATT, KEY)
    assert len(token) <= 96  # Alipay link fields take 256+
    assert verify_token(token, KEY) == ATT


def test_rotation_accepts_old_keys_and_rejects_others():
    token = issue(ATT, OLD)
    assert verify_token(token, [KEY, OLD]) == ATT
    with pytest.raises(InvalidToken):
        verify_token(token, [KEY, OTHER])


@pytest.mark.parametrize("mangle", [lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
                                    lambda t: t.replace(".", ""), lambda t: "2" + t[1:], lambda t: "", lambda t: t * 9])
def test_tampered_or_malformed_tokens_are_refused(mangle):
    with pytest.raises(InvalidToken):
        verify_token(mangle(issue(ATT, KEY)), KEY)


def test_forged_payload_with_old_mac_is_refused():
    token = issue(ATT, KEY)
    other = issue(Attribution("2021004100000002", "spring26", "burst", ATT.message, ATT.issued_at), KEY)
    forged = other.split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(InvalidToken):
        verify_token(forged, KEY)


def test_alipays_link_gets_the_token_inside_its_query():
    link = "alipays://platformapi/startapp?appId=2021004100000002&page=pages%2Ftopic%2Findex&query=id%3D7"
    tagged = tag_link(link, "TOKEN")
    outer = parse_qs(urlsplit(tagged).query)
    assert outer["appId"] == ["2021004100000002"] and outer["page"] == ["pages/topic/index"]
    assert parse_qs(outer["query"][0]) == {"id": ["7"], "ll": ["TOKEN"]}
    assert token_from_query(outer["query"][0]) == "TOKEN"


def test_page_paths_and_https_links_and_retagging():
    assert tag_link("pages/order/detail?id=9", "T1") == "pages/order/detail?id=9&ll=T1"
    assert tag_link("pages/home/index", "T1") == "pages/home/index?ll=T1"
    assert tag_link(tag_link("https://m.example.com/a?x=1", "T1"), "T2") == "https://m.example.com/a?x=1&ll=T2"
    assert token_from_query({"ll": "T3", "x": "1"}) == "T3"
