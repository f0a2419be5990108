"""Keys in every Alipay format, and the app-public-key-as-Alipay's mistake."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lifelink.alipay.errors import KeyFormatError, KeyMismatchError
from lifelink.alipay.keys import (
    AppKeys,
    check_alipay_public_key,
    load_private_key,
    load_public_key,
    public_key_one_line,
)

NO_ENC = serialization.NoEncryption()


def _one_line(der: bytes) -> str:
    return base64.b64encode(der).decode()


def _private_forms(key: rsa.RSAPrivateKey) -> dict[str, str]:
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, NO_ENC)
    pkcs1 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, NO_ENC)
    return {
        "pem_pkcs8": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, NO_ENC).decode(),
        "pem_pkcs1": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, NO_ENC
        ).decode(),
        "one_line_pkcs8_java": _one_line(pkcs8),
        "one_line_pkcs1_non_java": _one_line(pkcs1),
        "one_line_wrapped_with_spaces": "  " + "\n".join(_one_line(pkcs8)[i : i + 64] for i in range(0, 1700, 64)),
    }


def _public_forms(key: rsa.RSAPrivateKey) -> dict[str, str]:
    pub = key.public_key()
    spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs1 = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return {
        "pem_spki": pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "pem_pkcs1": pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode(),
        "one_line_spki": _one_line(spki),
        "one_line_pkcs1": _one_line(pkcs1),
    }


@pytest.mark.parametrize(
    "form",
    ["pem_pkcs8", "pem_pkcs1", "one_line_pkcs8_java", "one_line_pkcs1_non_java", "one_line_wrapped_with_spaces"],
)
def test_private_key_formats(app_rsa: rsa.RSAPrivateKey, form: str) -> None:
    text = _private_forms(app_rsa)[form]
    assert load_private_key(text).private_numbers() == app_rsa.private_numbers()
    assert load_private_key(text.encode()).private_numbers() == app_rsa.private_numbers()


@pytest.mark.parametrize("form", ["pem_spki", "pem_pkcs1", "one_line_spki", "one_line_pkcs1"])
def test_public_key_formats(alipay_rsa: rsa.RSAPrivateKey, form: str) -> None:
    text = _public_forms(alipay_rsa)[form]
    assert load_public_key(text).public_numbers() == alipay_rsa.public_key().public_numbers()


def test_public_key_from_certificate_pem(alipay_rsa: rsa.RSAPrivateKey, cert_factory: Any) -> None:
    cert = cert_factory(alipay_rsa, issuer_key=alipay_rsa, cn="Alipay", serial=7)
    assert load_public_key(cert).public_numbers() == alipay_rsa.public_key().public_numbers()
    assert load_public_key(cert.decode()).public_numbers() == alipay_rsa.public_key().public_numbers()


def test_keys_are_parsed_once(app_rsa: rsa.RSAPrivateKey) -> None:
    text = _private_forms(app_rsa)["one_line_pkcs8_java"]
    assert load_private_key(text) is load_private_key(text)


def test_public_key_one_line_is_spki_base64(app_rsa: rsa.RSAPrivateKey) -> None:
    expected = _public_forms(app_rsa)["one_line_spki"]
    assert public_key_one_line(app_rsa) == expected
    assert public_key_one_line(app_rsa.public_key()) == expected
    assert "\n" not in expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "not a key",
        "MIIB!!!!",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        base64.b64encode(b"\x30\x03\x02\x01\x00").decode(),
        "密钥",
    ],
)
def test_garbage_private_key_is_a_key_format_error(text: str) -> None:
    with pytest.raises(KeyFormatError):
        load_private_key(text)


def test_garbage_public_key_is_a_key_format_error() -> None:
    for text in ["", "hello", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "QUJD"]:
        with pytest.raises(KeyFormatError):
            load_public_key(text)


def test_public_key_in_private_slot_says_so(app_rsa: rsa.RSAPrivateKey) -> None:
    for text in _public_forms(app_rsa).values():
        if "PKCS1" in text:
            continue
        with pytest.raises(KeyFormatError, match="public key"):
            load_private_key(text)


def test_private_key_in_public_slot_says_so(app_rsa: rsa.RSAPrivateKey) -> None:
    forms = _private_forms(app_rsa)
    for name in ("pem_pkcs8", "pem_pkcs1", "one_line_pkcs8_java"):
        with pytest.raises(KeyFormatError, match="private key"):
            load_public_key(forms[name])


def test_non_rsa_keys_are_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, NO_ENC).decode()
    with pytest.raises(KeyFormatError, match="RSA"):
        load_private_key(pem)
    pub = ec_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(KeyFormatError, match="RSA"):
        load_public_key(pub)


def test_app_public_key_configured_as_alipays_names_the_mistake(app_rsa: rsa.RSAPrivateKey) -> None:
    app_public = _public_forms(app_rsa)["one_line_spki"]
    with pytest.raises(KeyMismatchError) as info:
        AppKeys.from_texts(_private_forms(app_rsa)["pem_pkcs1"], app_public)
    message = str(info.value)
    assert "your app's own public key" in message
    assert "支付宝公钥" in message
    assert isinstance(info.value, ValueError)


def test_check_alipay_public_key_accepts_the_right_key(
    app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey
) -> None:
    check_alipay_public_key(alipay_rsa.public_key(), app_rsa)  # no error
    with pytest.raises(KeyMismatchError):
        check_alipay_public_key(app_rsa.public_key(), app_rsa)


def test_app_keys_from_texts(app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey) -> None:
    keys = AppKeys.from_texts(
        _private_forms(app_rsa)["one_line_pkcs1_non_java"], _public_forms(alipay_rsa)["one_line_spki"]
    )
    assert keys.app_private_key.private_numbers() == app_rsa.private_numbers()
    assert keys.alipay_public_key.public_numbers() == alipay_rsa.public_key().public_numbers()
    assert keys.app_public_key_one_line == _public_forms(app_rsa)["one_line_spki"]
