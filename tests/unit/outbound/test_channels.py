"""Each channel's Alipay method and biz_content, with attribution tokens in every link into the mini program."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest
from outbound_helpers import APP, NOW, USER, job

from lifelink.domain.attribution import message_ref, token_from_query, verify_token
from lifelink.domain.channels import METHODS, build_call, link_tagger
from lifelink.domain.messages import Channel

KEY = b"k" * 32


def call(channel: str, **kw: object):  # type: ignore[no-untyped-def]
    j = job(channel, **kw)  # type: ignore[arg-type]
    return j, build_call(j, link_tagger(j, KEY, NOW), NOW)


def token_in(link: str) -> str:
    parts = urlsplit(link)
    if parts.scheme == "alipays":
        inner = dict(parse_qsl(parts.query))["query"]
        token = token_from_query(inner)
    else:
        token = token_from_query(link.partition("?")[2])
    assert token, link
    return token


def assert_attributed(link: str, ledger_key: str) -> None:
    att = verify_token(token_in(link), KEY)
    assert (att.app_id, att.campaign, att.phase) == (APP, "spring", "p1")
    assert att.message == message_ref(ledger_key)


def test_every_channel_has_its_documented_method() -> None:
    assert {c: METHODS[c] for c in Channel} == {
        Channel.life_template: "alipay.open.public.message.single.send",
        Channel.life_custom: "alipay.open.public.message.custom.send",
        Channel.life_broadcast: "alipay.open.public.message.total.send",
        Channel.life_label: "alipay.open.public.message.label.send",
        Channel.mini_subscription: "alipay.open.app.mini.templatemessage.send",
        Channel.coupon: "alipay.marketing.activity.voucher.send",
        Channel.member_card: "alipay.marketing.card.update",
    }


def test_template_message_shape_and_tracked_url() -> None:
    j, c = call("life_template")
    assert c.method == "alipay.open.public.message.single.send"
    assert c.biz_content["to_user_id"] == USER
    template = c.biz_content["template"]
    assert template["template_id"] == "TPL1"
    ctx = template["context"]
    assert ctx["head_color"] == "#000000"
    assert ctx["action_name"] == "查看"
    assert ctx["first"] == {"value": "欢迎", "color": "#FF0000"}
    assert ctx["keyword1"] == {"value": "银卡会员"}
    assert ctx["keyword2"] == {"value": "2025-03-05", "color": "#000000"}
    assert "keyword3" not in ctx
    assert ctx["remark"] == {"value": "谢谢"}
    assert ctx["url"].startswith("alipays://platformapi/startapp?appId=2021000000000002")
    inner = dict(parse_qsl(dict(parse_qsl(urlsplit(ctx["url"]).query))["query"]))
    assert inner["a"] == "1"  # the link's own query survives
    assert_attributed(ctx["url"], j.ledger_key)


def test_open_id_recipients_use_the_open_id_fields() -> None:
    _, c = call("life_template", recipient={"open_id": "074abc"})
    assert c.biz_content["to_open_id"] == "074abc" and "to_user_id" not in c.biz_content
    _, c = call("mini_subscription", recipient={"open_id": "074abc"})
    assert c.biz_content["to_open_id"] == "074abc"
    _, c = call("coupon", recipient={"open_id": "074abc"})
    assert c.biz_content["open_id"] == "074abc" and "user_id" not in c.biz_content
    _, c = call("life_custom", recipient={"open_id": "074abc"})
    assert c.biz_content["open_id"] == "074abc"


def test_custom_text_and_image_text() -> None:
    _, c = call("life_custom")
    assert c.biz_content == {"to_user_id": USER, "msg_type": "text", "text": {"title": "hi", "content": "你好"}}
    articles = [{"title": "t", "url": "https://shop.example/p?id=1", "action_name": "go"}]
    j, c = call("life_custom", content={"msg_type": "image-text", "articles": articles})
    assert c.biz_content["msg_type"] == "image-text"
    article = c.biz_content["articles"][0]
    assert article["title"] == "t" and article["action_name"] == "go"
    assert dict(parse_qsl(urlsplit(article["url"]).query))["id"] == "1"
    assert_attributed(article["url"], j.ledger_key)


def test_broadcast_and_label_send() -> None:
    j, c = call("life_broadcast")
    assert c.method == "alipay.open.public.message.total.send"
    assert c.biz_content["msg_type"] == "image-text"
    a = c.biz_content["articles"][0]
    assert (a["title"], a["desc"], a["image_url"]) == ("新品", "d", "https://img/x.png")
    assert_attributed(a["url"], j.ledger_key)
    _, c = call("life_label")
    assert c.biz_content == {
        "filter": {
            "template": "${a}",
            "context": {"a": {"column_name": "label_id_list", "op": "=", "values": ["L9"]}},
        },
        "material": {"msg_type": "text", "text": {"content": "label news"}},
    }


def test_subscription_message_page_is_tracked_and_data_is_a_json_string() -> None:
    j, c = call("mini_subscription")
    biz = c.biz_content
    assert biz["to_user_id"] == USER and biz["user_template_id"] == "UT1"
    assert isinstance(biz["data"], str)
    assert json.loads(biz["data"]) == {"keyword1": {"value": "已发货"}}
    assert biz["page"].startswith("pages/order/detail?id=7&")
    assert_attributed(biz["page"], j.ledger_key)
    assert len(biz["page"]) < 128


def test_coupon_carries_out_biz_no_from_the_ledger_key() -> None:
    j, c = call("coupon")
    assert c.biz_content == {"activity_id": "ACT1", "user_id": USER, "out_biz_no": j.out_biz_no}
    _, again = call("coupon")
    assert again.biz_content["out_biz_no"] == c.biz_content["out_biz_no"]


def test_member_card_update() -> None:
    _, c = call("member_card")
    assert c.biz_content == {
        "target_card_no": "C001",
        "target_card_no_type": "BIZ_CARD",
        "occur_time": "2025-03-05 12:00:00",  # Beijing time
        "card_info": {"level": "silver"},
    }


@pytest.mark.parametrize("other_key", [b"o" * 32])
def test_tokens_from_another_key_do_not_verify(other_key: bytes) -> None:
    from lifelink.domain.attribution import InvalidToken

    _, c = call("life_template")
    with pytest.raises(InvalidToken):
        verify_token(token_in(c.biz_content["template"]["context"]["url"]), other_key)
