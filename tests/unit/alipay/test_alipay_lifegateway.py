"""Life-account gateway: hardened XML parsing, the message-kind registry, signed XML replies."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink.alipay import lifegateway
from lifelink.alipay.errors import CallbackFormatError
from lifelink.alipay.keys import public_key_one_line
from lifelink.alipay.lifegateway import (
    MESSAGE_KINDS,
    ack_reply,
    check_reply,
    parse_gateway_xml,
    register_kind,
    reply_inner,
    reply_signature,
)
from lifelink.alipay.signing import verify


def event_xml(msg_type: str, event_type: str | None = None, extra: str = "") -> str:
    event = f"<EventType><![CDATA[{event_type}]]></EventType>" if event_type else ""
    return (
        '<?xml version="1.0" encoding="GBK"?><XML>'
        "<AppId><![CDATA[2021000000000000]]></AppId>"
        "<FromUserId><![CDATA[legacyUserId==]]></FromUserId>"
        "<FromAlipayUserId><![CDATA[2088102122458832]]></FromAlipayUserId>"
        f"<CreateTime>1764000000000</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{event}{extra}</XML>"
    )


@pytest.mark.parametrize(
    ("msg_type", "event_type", "kind"),
    [
        ("event", "verifygw", "gateway_check"),
        ("event", "follow", "follow"),
        ("event", "unfollow", "unfollow"),
        ("event", "enter", "enter"),
        ("event", "click", "menu_click"),
        ("text", None, "text"),
        ("image", None, "image"),
        ("event", "somethingnew", "unknown"),
        ("video", None, "unknown"),
    ],
)
def test_kinds(msg_type: str, event_type: str | None, kind: str) -> None:
    message = parse_gateway_xml(event_xml(msg_type, event_type))
    assert message.kind == kind
    assert message.msg_type == msg_type
    assert message.event_type == event_type
    assert message.app_id == "2021000000000000"
    assert message.from_alipay_user_id == "2088102122458832"
    assert message.from_user_id == "legacyUserId=="
    assert message.create_time_ms == 1764000000000


def test_follow_from_qr_code_carries_the_scene() -> None:
    extra = (
        '<ActionParam><![CDATA[{"scene":{"sceneId":"campaign-42"}}]]></ActionParam>'
        "<AgreementId><![CDATA[20261124000000000001]]></AgreementId><AccountNo><![CDATA[acc-1]]></AccountNo>"
        '<UserInfo><![CDATA[{"logon_id":"138******00","user_name":"*三"}]]></UserInfo>'
    )
    message = parse_gateway_xml(event_xml("event", "follow", extra))
    assert message.scene_id == "campaign-42"
    assert message.action_param == '{"scene":{"sceneId":"campaign-42"}}'
    assert message.agreement_id == "20261124000000000001"
    assert message.account_no == "acc-1"
    assert message.user_info == '{"logon_id":"138******00","user_name":"*三"}'
    assert message.fields["AccountNo"] == "acc-1"


def test_menu_click_action_param_is_not_a_scene() -> None:
    message = parse_gateway_xml(event_xml("event", "click", "<ActionParam><![CDATA[menu_key_1]]></ActionParam>"))
    assert message.action_param == "menu_key_1"
    assert message.scene_id is None


@pytest.mark.parametrize("action", ['{"scene":"x"}', '{"scene":{"sceneId":{"a":1}}}', "{broken", "[1]"])
def test_odd_action_params_give_no_scene(action: str) -> None:
    xml = event_xml("event", "enter", f"<ActionParam><![CDATA[{action}]]></ActionParam>")
    assert parse_gateway_xml(xml).scene_id is None


def test_text_and_image_messages() -> None:
    text = parse_gateway_xml(
        event_xml("text", None, "<MsgId><![CDATA[m-1]]></MsgId><Text><Content><![CDATA[你好 <b>&]]></Content></Text>")
    )
    assert (text.kind, text.text, text.msg_id) == ("text", "你好 <b>&", "m-1")
    image = parse_gateway_xml(event_xml("image", None, "<Image><MediaId><![CDATA[media-9]]></MediaId></Image>"))
    assert (image.kind, image.media_id) == ("image", "media-9")


def test_register_kind() -> None:
    saved = dict(MESSAGE_KINDS)
    try:
        register_kind("event", "SCAN", "scan")
        assert parse_gateway_xml(event_xml("event", "scan")).kind == "scan"
    finally:
        MESSAGE_KINDS.clear()
        MESSAGE_KINDS.update(saved)
    assert parse_gateway_xml(event_xml("event", "scan")).kind == "unknown"


XXE = (
    '<?xml version="1.0"?><!DOCTYPE XML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<XML><MsgType>text</MsgType><Text><Content>&xxe;</Content></Text></XML>"
)
BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]><XML><MsgType>&lol9;</MsgType></XML>"
)
PARAMETER_ENTITY = '<?xml version="1.0"?><!DOCTYPE XML [<!ENTITY % ext SYSTEM "http://127.0.0.1:9/x.dtd"> %ext;]><XML/>'


@pytest.mark.parametrize(
    "xml",
    [
        XXE,
        BILLION_LAUGHS,
        PARAMETER_ENTITY,
        '<!DOCTYPE XML SYSTEM "http://127.0.0.1:9/x.dtd"><XML><MsgType>text</MsgType></XML>',
        "<!DOCTYPE XML><XML/>",
        "<XML><MsgType>&undeclared;</MsgType></XML>",
    ],
    ids=["xxe", "billion-laughs", "parameter-entity", "external-dtd", "bare-doctype", "undeclared-entity"],
)
def test_dangerous_xml_is_refused(xml: str) -> None:
    with pytest.raises(CallbackFormatError):
        parse_gateway_xml(xml)


def test_oversized_xml_is_refused() -> None:
    filler = "<Pad>" + "x" * (64 * 1024) + "</Pad>"
    with pytest.raises(CallbackFormatError, match="exceeds"):
        parse_gateway_xml(event_xml("text", None, filler))
    # Multi-byte text counts in bytes, not characters.
    with pytest.raises(CallbackFormatError, match="exceeds"):
        parse_gateway_xml(event_xml("text", None, "<Pad>" + "你" * 22000 + "</Pad>"))


def test_deep_nesting_is_refused() -> None:
    deep = "<a>" * 50 + "</a>" * 50
    with pytest.raises(CallbackFormatError, match="deep"):
        parse_gateway_xml(f"<XML>{deep}</XML>")


def test_too_many_elements_are_refused() -> None:
    with pytest.raises(CallbackFormatError):
        parse_gateway_xml("<XML><L>" + "<i/>" * 1000 + "</L></XML>")


@pytest.mark.parametrize(
    "xml",
    [
        "",
        "not xml",
        "<XML><MsgType>text</XML>",
        "<Other><MsgType>text</MsgType></Other>",
        "<XML><MsgType>text</MsgType><MsgType>event</MsgType></XML>",
    ],
    ids=["empty", "text", "unclosed", "wrong-root", "repeated-field"],
)
def test_malformed_xml_is_refused(xml: str) -> None:
    with pytest.raises(CallbackFormatError):
        parse_gateway_xml(xml)


def test_check_reply_success_is_signed_over_inner_in_gbk(app_rsa: rsa.RSAPrivateKey) -> None:
    one_line = public_key_one_line(app_rsa)
    document = check_reply(app_rsa, one_line, ok=True)
    inner = f"<success>true</success><biz_content>{one_line}</biz_content>"
    signature, sign_type = reply_signature(document)
    expected = (
        f'<?xml version="1.0" encoding="GBK"?><alipay><response>{inner}</response>'
        f"<sign>{signature}</sign><sign_type>RSA2</sign_type></alipay>"
    ).encode("gbk")
    assert document == expected
    assert reply_inner(document) == inner
    assert sign_type == "RSA2"
    assert verify(inner.encode("gbk"), signature, app_rsa.public_key())


def test_check_reply_failure(app_rsa: rsa.RSAPrivateKey, forger_rsa: rsa.RSAPrivateKey) -> None:
    one_line = public_key_one_line(app_rsa)
    document = check_reply(app_rsa, one_line, ok=False)
    inner = reply_inner(document)
    assert inner == (
        f"<success>false</success><error_code>VERIFY_FAILED</error_code><biz_content>{one_line}</biz_content>"
    )
    signature, _ = reply_signature(document)
    assert verify(inner, signature, app_rsa.public_key(), "gbk")
    assert not verify(inner, signature, forger_rsa.public_key(), "gbk")


def test_ack_reply(app_rsa: rsa.RSAPrivateKey) -> None:
    document = ack_reply(app_rsa, "2088102122458832", "2021000000000000", 1764000000123)
    inner = reply_inner(document)
    assert inner == (
        "<XML><ToUserId><![CDATA[2088102122458832]]></ToUserId><AppId><![CDATA[2021000000000000]]></AppId>"
        "<CreateTime>1764000000123</CreateTime><MsgType><![CDATA[ack]]></MsgType></XML>"
    )
    signature, _ = reply_signature(document)
    assert verify(inner.encode("gbk"), signature, app_rsa.public_key())
    assert document.startswith(b'<?xml version="1.0" encoding="GBK"?><alipay><response><XML>')


def test_ack_reply_cannot_be_broken_out_of_cdata(app_rsa: rsa.RSAPrivateKey) -> None:
    document = ack_reply(app_rsa, "x]]><Evil/><![CDATA[", "2021000000000000", 1)
    parsed = lifegateway._parse_tree(reply_inner(document))[1]
    assert parsed["ToUserId"] == "x]]><Evil/><![CDATA["
    assert "Evil" not in parsed


def test_reply_in_utf8_charset(app_rsa: rsa.RSAPrivateKey) -> None:
    document = ack_reply(app_rsa, "用户", "2021000000000000", 1, charset="UTF-8")
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    inner = reply_inner(document)
    assert "用户" in inner
    assert verify(inner.encode("utf-8"), reply_signature(document)[0], app_rsa.public_key())
