"""Alipay's sub_msg as lifelink keeps and logs it: no tokens, user ids or key material; long texts cut sensibly."""

from __future__ import annotations

from lifelink.alipay.errors import SUB_MSG_LIMIT, api_error, redact_sub_msg

PREFIX = "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："
KEY_B64 = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAk6DCsBIUhWriFohzRV8Fic6oQWNnLKKILNk97VU5qcHEuxYzCujKoyva5gy1170m"


def signed_string(biz: str) -> str:
    return (
        f"{PREFIX}app_auth_token=202501BB1cf8a2b5e3&app_id=2021000000000001&biz_content={biz}"
        "&charset=utf-8&format=JSON&method=alipay.open.public.message.single.send&sign_type=RSA2"
        "&timestamp=2025-01-01 10:00:00&version=1.0"
    )


def test_tokens_and_user_ids_are_masked_and_the_rest_is_kept() -> None:
    text = signed_string('{"to_user_id":"2088102122524333","open_id":"074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsN","x":"y"}')
    kept = redact_sub_msg(text)
    assert kept is not None
    for secret in ("202501BB1cf8a2b5e3", "2088102122524333", "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsN"):
        assert secret not in kept
    assert kept.startswith(PREFIX + "app_auth_token=***&app_id=2021000000000001")
    assert '"to_user_id":"***"' in kept and '"open_id":"***"' in kept and '"x":"y"' in kept
    assert kept.endswith("sign_type=RSA2&timestamp=2025-01-01 10:00:00&version=1.0")


def test_a_user_id_anywhere_and_key_material_are_replaced() -> None:
    kept = redact_sub_msg(f"user 2088000011112222 has no grant; key {KEY_B64}; user_id=abc&open_id=def")
    assert kept is not None
    assert "2088000011112222" not in kept and KEY_B64[:40] not in kept
    assert f"[{len(KEY_B64)} base64 chars]" in kept
    assert "user_id=***&open_id=***" in kept


def test_a_long_text_keeps_its_start_and_end_within_the_limit() -> None:
    text = signed_string('{"text":"' + "内容" * 1000 + '"}')
    kept = redact_sub_msg(text)
    assert kept is not None and len(kept) <= SUB_MSG_LIMIT
    assert kept.startswith(PREFIX) and kept.endswith("&version=1.0") and " … " in kept
    assert redact_sub_msg("short") == "short" and redact_sub_msg("") is None and redact_sub_msg(None) is None


def test_the_errors_message_carries_the_redacted_sub_msg_and_the_attribute_the_raw_one() -> None:
    raw = signed_string('{"to_user_id":"2088102122524333"}')
    error = api_error("40002", "Invalid Arguments", "isv.invalid-signature", raw, "alipay.x")
    assert "2088102122524333" not in str(error) and "202501BB1cf8a2b5e3" not in str(error)
    assert "isv.invalid-signature" in str(error)
    assert error.sub_msg == raw


def test_an_attribution_token_in_a_quoted_link_is_masked() -> None:
    from lifelink.alipay.errors import redact_sub_msg

    quoted = ('biz_content={"template":{"context":{"url":'
              '"pages/welcome/index?from=follow&ll=1MjAyMTAwMDAwMDAwMDg4MQIb"}}}')
    kept = redact_sub_msg(quoted)
    assert kept is not None and "1MjAyMTAw" not in kept and "&ll=***" in kept and "from=follow" in kept
