from __future__ import annotations

import base64
import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink_local import sim_crypto
from lifelink_local.sim_gateway import OpenApiSimulator
from lifelink_local.sim_push import gateway_xml


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_keys_load_in_every_alipay_format(key: rsa.RSAPrivateKey) -> None:
    nums = key.private_numbers()
    forms = [
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
    ]
    one_line = [
        base64.b64encode(key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())).decode()
        for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL)
    ]
    for text in [*forms, *one_line]:
        assert sim_crypto.load_private(text).private_numbers() == nums
    pub = key.public_key()
    pkcs1 = base64.b64encode(pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)).decode()
    for text in (sim_crypto.public_one_line(key), pkcs1):
        assert sim_crypto.load_public(text).public_numbers() == pub.public_numbers()
    with pytest.raises(ValueError):
        sim_crypto.load_public("not a key!")


def test_canonical_string_drops_empty_and_sorts() -> None:
    assert sim_crypto.canonical({"b": "2", "a": "1", "sign": "x", "c": "", "d": None}, ("sign",)) == "a=1&b=2"


def test_timestamp_window_is_fifteen_minutes_either_side(key: rsa.RSAPrivateKey) -> None:
    now = sim_crypto.parse_beijing_timestamp("2026-01-01 12:00:00")
    sim = OpenApiSimulator(key, clock=lambda: now)
    sim.register_app("app", sim_crypto.public_one_line(key))

    def ask(ts: str) -> dict:
        params = {
            "app_id": "app",
            "method": "alipay.open.public.user.follow.query",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": ts,
            "version": "1.0",
            "biz_content": '{"user_id":"u"}',
        }
        params["sign"] = sim_crypto.rsa2_sign(sim_crypto.canonical(params, ("sign",)), key)
        answer = sim.handle(urlencode(params).encode(), b"", "application/x-www-form-urlencoded")
        node = json.loads(answer.body)
        return next(v for k, v in node.items() if k.endswith("_response"))

    for delta, ok in ((15, True), (-15, True), (16, False), (-16, False)):
        ts = sim_crypto.beijing_timestamp(now + timedelta(minutes=delta))
        assert (ask(ts)["code"] == "10000") is ok, delta
    assert ask("2026/01/01 12:00:00")["sub_code"] == "isv.invalid-timestamp"


def test_query_parameters_win_over_body(key: rsa.RSAPrivateKey) -> None:
    sim = OpenApiSimulator(key)
    params, charset = sim.parse(b"method=from.query&charset=GBK", b"method=from.body&x=%C4%E3", None)
    assert charset == "gbk"
    assert params["method"] == "from.query"
    assert params["x"] == "你"


def test_gateway_xml_nests_dicts_and_leaves_create_time_bare() -> None:
    xml = gateway_xml({"AppId": "a", "CreateTime": "1", "Text": {"Content": "hi"}})
    assert xml == (
        "<XML><AppId><![CDATA[a]]></AppId><CreateTime>1</CreateTime>"
        "<Text><Content><![CDATA[hi]]></Content></Text></XML>"
    )
