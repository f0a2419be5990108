"""OpenApiConfig.from_secret: public-key mode, certificate mode (certificates in the app secret) and third-party
mode, as the deployed functions build their Alipay clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink.alipay.errors import KeyFormatError, KeyMismatchError
from lifelink.alipay.openapi import OpenApiConfig, prepare_request
from lifelink_local import sim_crypto
from tests.pki import Pki, another_app_cert, make_pki

FIXTURES = Path(__file__).resolve().parent / "fixtures"
URL = "http://127.0.0.1:9/gateway.do"


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="module")
def pki(app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey) -> Pki:
    return make_pki(app_rsa, alipay_rsa)


def cert_secret(app_rsa: rsa.RSAPrivateKey, pki: Pki, **extra: str) -> dict[str, Any]:
    return {
        "app_private_key": _pem(app_rsa),
        "alipay_public_key": pki.alipay_cert,
        "app_cert": pki.app_cert,
        "alipay_cert": pki.alipay_cert,
        "alipay_root_cert": pki.root_bundle,
        **extra,
    }


def test_a_secret_with_certificates_signs_requests_with_both_sns(app_rsa: rsa.RSAPrivateKey, pki: Pki) -> None:
    config = OpenApiConfig.from_secret("2021000000000001", cert_secret(app_rsa, pki), URL, mode="cert")
    # the SNs as the simulator (written apart from lifelink.alipay) computes them
    assert config.app_cert_sn == sim_crypto.certificate_sn(pki.app_cert)
    assert config.alipay_root_cert_sn == sim_crypto.root_certificate_sn(pki.root_bundle)
    assert "_" not in config.alipay_root_cert_sn  # the ECDSA root is not part of the RSA root SN
    request = prepare_request(config, "alipay.open.public.user.follow.query", {"user_id": "2088000000000001"})
    assert request.params["app_cert_sn"] == config.app_cert_sn
    assert request.params["alipay_root_cert_sn"] == config.alipay_root_cert_sn
    assert "app_cert_sn=" in request.query and "alipay_root_cert_sn=" in request.query
    assert list(config.alipay_public_keys_by_sn) == [sim_crypto.certificate_sn(pki.alipay_cert)]


def test_alipays_certificate_may_be_what_alipay_public_key_holds(app_rsa: rsa.RSAPrivateKey, pki: Pki) -> None:
    secret = cert_secret(app_rsa, pki)
    del secret["alipay_cert"]
    config = OpenApiConfig.from_secret("2021000000000001", secret, URL)
    assert list(config.alipay_public_keys_by_sn) == [sim_crypto.certificate_sn(pki.alipay_cert)]
    assert config.app_cert_sn == sim_crypto.certificate_sn(pki.app_cert)


def test_the_sns_of_alipays_published_certificates_match_its_sdk_fixtures(vectors: dict[str, Any]) -> None:
    from lifelink.alipay.certs import cert_sn, root_cert_sn

    note = vectors["cert_sn"]["note"]
    assert cert_sn((FIXTURES / "appCertPublicKey_2021001161683774.crt").read_text()) in note
    assert cert_sn((FIXTURES / "alipayCertPublicKey_RSA2.crt").read_text()) in note
    assert root_cert_sn((FIXTURES / "alipayRootCert.crt").read_text()) in note


def test_public_key_mode_sends_no_sn(app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey) -> None:
    secret = {"app_private_key": _pem(app_rsa), "alipay_public_key": _public_pem(alipay_rsa)}
    config = OpenApiConfig.from_secret("2021000000000001", secret, URL, mode="key")
    request = prepare_request(config, "alipay.x.y", {})
    assert "app_cert_sn" not in request.params and "alipay_root_cert_sn" not in request.params


def test_cert_mode_without_certificates_is_refused_naming_what_is_missing(
    app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey, pki: Pki
) -> None:
    keys_only = {"app_private_key": _pem(app_rsa), "alipay_public_key": _public_pem(alipay_rsa)}
    with pytest.raises(KeyFormatError, match="app_cert, alipay_cert, alipay_root_cert"):
        OpenApiConfig.from_secret("2021000000000001", keys_only, URL, mode="cert")
    partial = {**keys_only, "app_cert": pki.app_cert}
    with pytest.raises(KeyFormatError, match="alipay_cert, alipay_root_cert"):
        OpenApiConfig.from_secret("2021000000000001", partial, URL)


def test_an_app_certificate_of_another_key_is_refused(
    app_rsa: rsa.RSAPrivateKey, forger_rsa: rsa.RSAPrivateKey, pki: Pki
) -> None:
    secret = cert_secret(app_rsa, pki, app_cert=another_app_cert(pki, forger_rsa, 99))
    with pytest.raises(KeyMismatchError, match="app_cert"):
        OpenApiConfig.from_secret("2021000000000001", secret, URL)


def test_alipays_certificate_holding_the_apps_own_key_is_refused(app_rsa: rsa.RSAPrivateKey, pki: Pki) -> None:
    secret = cert_secret(app_rsa, pki, alipay_cert=pki.app_cert, alipay_public_key=pki.app_cert)
    with pytest.raises(KeyMismatchError):
        OpenApiConfig.from_secret("2021000000000001", secret, URL)


def test_third_party_mode_puts_the_token_on_each_request_and_requires_it(
    app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey, pki: Pki
) -> None:
    keys = {"app_private_key": _pem(app_rsa), "alipay_public_key": _public_pem(alipay_rsa)}
    with pytest.raises(KeyFormatError, match="app_auth_token"):
        OpenApiConfig.from_secret("2021000000000001", keys, URL, third_party=True)
    token = "202501BBtoken"
    for secret in ({**keys, "app_auth_token": token}, cert_secret(app_rsa, pki, app_auth_token=token)):
        config = OpenApiConfig.from_secret("2021000000000001", secret, URL, third_party=True)
        request = prepare_request(config, "alipay.x.y", {})
        assert request.params["app_auth_token"] == "202501BBtoken" and "app_auth_token=202501BBtoken" in request.query
