"""Callback parsing and verification: the three families, charsets, decode-once, refusals."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink.alipay.callbacks import (
    CallbackFamily,
    detect_family,
    parse_form,
    signed_content,
    verify_callback,
)
from lifelink.alipay.errors import CallbackFormatError, SignatureError
from lifelink.alipay.signing import canonical_string, sign


def trade_params(**extra: str) -> dict[str, str]:
    params = {
        "notify_type": "trade_status_sync",
        "notify_id": "2026112400222200000000000000000001",
        "notify_time": "2026-11-24 20:00:00",
        "app_id": "2021000000000000",
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "trade_no": "2026112422001400000000000001",
        "out_trade_no": "ORDER-1",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "9.90",
        "subject": "早鸟券",
    }
    params.update(extra)
    return params


def signed(params: dict[str, str], key: rsa.RSAPrivateKey, exclude: tuple[str, ...], charset: str) -> dict[str, str]:
    """Sign like Alipay: the family's canonical string, encoded in the body's charset."""
    out = dict(params)
    out["sign"] = sign(canonical_string(out, exclude).encode(charset), key)
    return out


def body(params: dict[str, str], charset: str = "utf-8") -> bytes:
    return urlencode(params, encoding=charset).encode("ascii")


def test_trade_notification_roundtrip(alipay_rsa: rsa.RSAPrivateKey) -> None:
    params = signed(trade_params(), alipay_rsa, ("sign", "sign_type"), "utf-8")
    decoded, charset = parse_form(body(params))
    assert decoded == params
    assert charset == "utf-8"
    assert verify_callback(decoded, charset, alipay_rsa.public_key()) is CallbackFamily.TRADE


def test_trade_rule_does_not_sign_sign_type(alipay_rsa: rsa.RSAPrivateKey) -> None:
    # Signed under the gateway rule (sign_type kept), it must not pass as a trade notification.
    params = signed(trade_params(), alipay_rsa, ("sign",), "utf-8")
    with pytest.raises(SignatureError):
        verify_callback(params, "utf-8", alipay_rsa.public_key())


def test_message_service_push(alipay_rsa: rsa.RSAPrivateKey) -> None:
    params = {
        "msg_method": "alipay.marketing.activity.message.received",
        "app_id": "2021000000000000",
        "utc_timestamp": "1764000000000",
        "version": "1.1",
        "charset": "UTF-8",
        "sign_type": "RSA2",
        "biz_content": '{"activity_id":"A1","voucher_code":"V1"}',
        "notify_id": "n-1",
    }
    params = signed(params, alipay_rsa, ("sign", "sign_type"), "utf-8")
    decoded, charset = parse_form(body(params))
    assert detect_family(decoded) is CallbackFamily.MESSAGE
    assert verify_callback(decoded, charset, alipay_rsa.public_key()) is CallbackFamily.MESSAGE


def gateway_params() -> dict[str, str]:
    xml = (
        "<XML><AppId><![CDATA[2021000000000000]]></AppId><FromAlipayUserId><![CDATA[2088102122458832]]>"
        "</FromAlipayUserId><CreateTime>1764000000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "<Text><Content><![CDATA[你好，生活号]]></Content></Text></XML>"
    )
    return {
        "service": "alipay.mobile.public.message.notify",
        "charset": "GBK",
        "sign_type": "RSA2",
        "biz_content": xml,
    }


def test_gbk_gateway_body_is_decoded_once_in_gbk(alipay_rsa: rsa.RSAPrivateKey) -> None:
    params = signed(gateway_params(), alipay_rsa, ("sign",), "gbk")
    raw = body(params, "gbk")
    assert "你好".encode("gbk") not in raw and quote("你".encode("gbk")).encode() in raw
    decoded, charset = parse_form(raw, "application/x-www-form-urlencoded; charset=GBK")
    assert charset == "GBK"
    assert "你好，生活号" in decoded["biz_content"]
    assert verify_callback(decoded, charset, alipay_rsa.public_key()) is CallbackFamily.GATEWAY


def test_gbk_charset_found_in_body_without_header(alipay_rsa: rsa.RSAPrivateKey) -> None:
    params = signed(gateway_params(), alipay_rsa, ("sign",), "gbk")
    decoded, charset = parse_form(body(params, "gbk"), "application/x-www-form-urlencoded")
    assert charset == "GBK"
    verify_callback(decoded, charset, alipay_rsa.public_key())


def test_gbk_signature_does_not_verify_as_utf8(alipay_rsa: rsa.RSAPrivateKey) -> None:
    params = signed(gateway_params(), alipay_rsa, ("sign",), "gbk")
    params["charset"] = "GBK"
    with pytest.raises(SignatureError):
        verify_callback(params, "utf-8", alipay_rsa.public_key())


def test_gbk_body_read_as_utf8_is_refused() -> None:
    raw = ("subject=" + quote("早鸟券".encode("gbk")) + "&notify_type=trade_status_sync").encode()
    with pytest.raises(CallbackFormatError, match="not valid"):
        parse_form(raw, "application/x-www-form-urlencoded; charset=utf-8")


def test_values_that_break_when_decoded_twice_survive(alipay_rsa: rsa.RSAPrivateKey) -> None:
    passback = "a%3Db%26c%3D100%25+off"  # the merchant's own URL-encoded text, with %25 and +
    params = signed(trade_params(passback_params=passback), alipay_rsa, ("sign", "sign_type"), "utf-8")
    decoded, charset = parse_form(body(params))
    assert decoded["passback_params"] == passback
    verify_callback(decoded, charset, alipay_rsa.public_key())


def test_repeated_form_keys_are_refused(alipay_rsa: rsa.RSAPrivateKey) -> None:
    params = signed(trade_params(), alipay_rsa, ("sign", "sign_type"), "utf-8")
    raw = body(params) + b"&total_amount=0.01"
    with pytest.raises(CallbackFormatError, match="repeats"):
        parse_form(raw)


@pytest.mark.parametrize("charset", ["ISO-8859-1", "rot13", "utf-16", "made-up"])
def test_unknown_charset_is_refused(charset: str) -> None:
    with pytest.raises(CallbackFormatError, match="charset"):
        parse_form(f"notify_type=x&charset={charset}".encode())
    with pytest.raises(CallbackFormatError, match="charset"):
        parse_form(b"notify_type=x", f"application/x-www-form-urlencoded; charset={charset}")


def test_charset_field_disguised_by_percent_encoding_is_refused() -> None:
    raw = b"notify_type=x&%63harset=GBK&subject=" + quote("券".encode()).encode()
    with pytest.raises(CallbackFormatError, match="charset"):
        parse_form(raw)


def test_oversized_and_empty_bodies_are_refused() -> None:
    with pytest.raises(CallbackFormatError, match="limit"):
        parse_form(b"a=" + b"x" * (64 * 1024))
    with pytest.raises(CallbackFormatError):
        parse_form(b"")
    with pytest.raises(CallbackFormatError):
        parse_form(b"=value")


def test_forged_signature_is_refused(alipay_rsa: rsa.RSAPrivateKey, forger_rsa: rsa.RSAPrivateKey) -> None:
    params = signed(trade_params(), forger_rsa, ("sign", "sign_type"), "utf-8")
    with pytest.raises(SignatureError):
        verify_callback(params, "utf-8", alipay_rsa.public_key())


def test_tampered_field_is_refused(alipay_rsa: rsa.RSAPrivateKey) -> None:
    params = signed(trade_params(), alipay_rsa, ("sign", "sign_type"), "utf-8")
    params["total_amount"] = "0.01"
    with pytest.raises(SignatureError):
        verify_callback(params, "utf-8", alipay_rsa.public_key())
    params = signed(trade_params(), alipay_rsa, ("sign", "sign_type"), "utf-8")
    params["seller_id"] = "2088000000000000"  # an added field is a tampering too
    with pytest.raises(SignatureError):
        verify_callback(params, "utf-8", alipay_rsa.public_key())


def test_wrong_key_is_refused(alipay_rsa: rsa.RSAPrivateKey, app_rsa: rsa.RSAPrivateKey) -> None:
    params = signed(trade_params(), alipay_rsa, ("sign", "sign_type"), "utf-8")
    with pytest.raises(SignatureError):
        verify_callback(params, "utf-8", app_rsa.public_key())


def test_missing_sign_and_bad_sign_type_are_refused(alipay_rsa: rsa.RSAPrivateKey) -> None:
    params = signed(trade_params(), alipay_rsa, ("sign", "sign_type"), "utf-8")
    with pytest.raises(SignatureError, match="no sign"):
        verify_callback({k: v for k, v in params.items() if k != "sign"}, "utf-8", alipay_rsa.public_key())
    for sign_type in ("RSA", "SM2", ""):
        with pytest.raises(SignatureError, match="sign_type"):
            verify_callback({**params, "sign_type": sign_type}, "utf-8", alipay_rsa.public_key())
    without = {k: v for k, v in params.items() if k != "sign_type"}
    with pytest.raises(SignatureError, match="sign_type"):
        verify_callback(without, "utf-8", alipay_rsa.public_key())


def test_unknown_family_is_refused() -> None:
    with pytest.raises(CallbackFormatError):
        detect_family({"foo": "bar"})


def test_family_detection_order() -> None:
    assert detect_family({"notify_type": "trade_status_sync"}) is CallbackFamily.TRADE
    assert detect_family({"notify_type": "servicemarket_order_notify", "method": "m"}) is CallbackFamily.GATEWAY
    assert detect_family({"service": "alipay.service.check"}) is CallbackFamily.GATEWAY
    assert detect_family({"msg_method": "x", "notify_type": "y"}) is CallbackFamily.MESSAGE
    assert signed_content({"sign": "s", "sign_type": "RSA2", "a": "1"}, CallbackFamily.GATEWAY) == "a=1&sign_type=RSA2"
    assert signed_content({"sign": "s", "sign_type": "RSA2", "a": "1"}, CallbackFamily.MESSAGE) == "a=1"
