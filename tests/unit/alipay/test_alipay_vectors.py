"""Every vector of shared/design/vectors.json, plus Alipay's public SDK certificate fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lifelink.alipay.aes import aes_decrypt, aes_encrypt
from lifelink.alipay.callbacks import CallbackFamily, detect_family, signed_content, verify_callback
from lifelink.alipay.certs import cert_sn, public_key_from_cert, root_cert_sn
from lifelink.alipay.errors import SignatureError
from lifelink.alipay.keys import load_private_key, load_public_key, public_key_one_line
from lifelink.alipay.signing import canonical_string, sign, verify

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("key_field", ["app_private_key_pkcs1_pem", "app_private_key_pkcs8_single_line"])
def test_request_signing_vector(vectors: dict[str, Any], key_field: str) -> None:
    vec = vectors["request_signing"]
    key = load_private_key(vec[key_field])
    content = canonical_string(vec["params"])
    assert content == vec["canonical_string"]
    assert sign(content, key) == vec["sign"]
    assert public_key_one_line(key) == vec["app_public_key_single_line"]
    assert verify(content, vec["sign"], load_public_key(vec["app_public_key_single_line"]))


def test_request_signing_vector_both_formats_are_the_same_key(vectors: dict[str, Any]) -> None:
    vec = vectors["request_signing"]
    pem = load_private_key(vec["app_private_key_pkcs1_pem"])
    one_line = load_private_key(vec["app_private_key_pkcs8_single_line"])
    assert pem.private_numbers() == one_line.private_numbers()


def test_service_market_notify_vector_is_valid(vectors: dict[str, Any]) -> None:
    vec = vectors["service_market_notify"]
    assert vec["expect"] == "valid"
    params = dict(vec["params"])
    key = load_public_key(vec["alipay_public_key_pem"])
    assert detect_family(params) is CallbackFamily.GATEWAY  # has `method`: gateway rule, sign_type kept
    assert "sign_type=RSA2" in signed_content(params, CallbackFamily.GATEWAY)
    assert verify_callback(params, params["charset"], key) is CallbackFamily.GATEWAY


def test_service_market_notify_vector_fails_under_the_trade_rule(vectors: dict[str, Any]) -> None:
    vec = vectors["service_market_notify"]
    params = vec["params"]
    key = load_public_key(vec["alipay_public_key_pem"])
    assert not verify(signed_content(params, CallbackFamily.TRADE), params["sign"], key)


def test_service_market_notify_vector_tampered_is_invalid(vectors: dict[str, Any]) -> None:
    vec = vectors["service_market_notify"]
    assert vec["tampered_expect"] == "invalid"
    params = {**vec["params"], **vec["tampered"]}
    key = load_public_key(vec["alipay_public_key_pem"])
    with pytest.raises(SignatureError):
        verify_callback(params, params["charset"], key)


def test_aes_vectors(vectors: dict[str, Any]) -> None:
    assert len(vectors["aes"]) >= 2
    for vec in vectors["aes"]:
        assert aes_encrypt(vec["plaintext"], vec["key"]) == vec["ciphertext"]
        assert aes_decrypt(vec["ciphertext"], vec["key"]) == vec["plaintext"]


def test_cert_sn_vector_on_alipay_sdk_fixtures(vectors: dict[str, Any]) -> None:
    note = vectors["cert_sn"]["note"]
    app_sn = cert_sn((FIXTURES / "appCertPublicKey_2021001161683774.crt").read_bytes())
    alipay_sn = cert_sn((FIXTURES / "alipayCertPublicKey_RSA2.crt").read_text())
    root_sn = root_cert_sn((FIXTURES / "alipayRootCert.crt").read_bytes())
    assert app_sn == "866efef280dec9137a87d047ac446315"
    assert alipay_sn == "7513daaaa48aa3ba2e4018d84402479c"
    assert root_sn == "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
    for sn in (app_sn, alipay_sn, root_sn):
        assert sn in note


def test_alipay_cert_fixture_public_key() -> None:
    # The Node SDK's fixture states this certificate's public key as one line of base64.
    key = public_key_from_cert((FIXTURES / "alipayCertPublicKey_RSA2.crt").read_text())
    assert public_key_one_line(key).startswith("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAhoVesfcG")
    assert public_key_one_line(key).endswith("r5nre7SNywIDAQAB")
