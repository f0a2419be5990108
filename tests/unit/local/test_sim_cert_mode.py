"""The Alipay simulator in certificate mode: it checks app_cert_sn and alipay_root_cert_sn as Alipay does and signs
its answers under its certificate (alipay_cert_sn)."""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink.alipay.errors import FatalApiError
from lifelink.alipay.openapi import OpenApiConfig, parse_response, prepare_request
from lifelink_local import sim_crypto
from lifelink_local.sim_gateway import OpenApiSimulator
from tests.pki import Pki, make_pki

APP = "2021000000000901"
METHOD = "alipay.open.public.user.follow.query"


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return tuple(rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def pki(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> Pki:
    return make_pki(*keys)


@pytest.fixture
def sim(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], pki: Pki) -> OpenApiSimulator:
    simulator = OpenApiSimulator(keys[1])
    simulator.set_certificates(pki.alipay_cert, pki.root_bundle)
    simulator.register_app(APP, app_cert=pki.app_cert)
    simulator.set_follower(APP, "2088000000000001")
    return simulator


def _config(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], pki: Pki) -> OpenApiConfig:
    return OpenApiConfig.from_certificates(
        APP, keys[0], pki.app_cert, pki.alipay_cert, pki.root_bundle, "http://127.0.0.1:9/gateway.do"
    )


def _call(sim: OpenApiSimulator, config: OpenApiConfig) -> tuple[dict[str, object], str]:
    request = prepare_request(config, METHOD, {"user_id": "2088000000000001"})
    answer = sim.handle(urlsplit(request.url).query.encode(), request.body, request.headers["Content-Type"])
    text = answer.body.decode()
    return json.loads(text), text


def test_a_certificate_request_is_served_and_the_answer_names_alipays_certificate(
    sim: OpenApiSimulator, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], pki: Pki
) -> None:
    config = _config(keys, pki)
    body, text = _call(sim, config)
    assert body["alipay_cert_sn"] == sim_crypto.certificate_sn(pki.alipay_cert)
    assert parse_response(config, METHOD, text)["is_follow"] == "T"


@pytest.mark.parametrize(
    ("change", "sub_code"),
    [
        ({"app_cert_sn": None, "alipay_root_cert_sn": None}, "isv.missing-app-cert-sn"),
        ({"app_cert_sn": "0" * 32}, "isv.app-cert-not-exist"),
        ({"alipay_root_cert_sn": "0" * 32}, "isv.invalid-signature"),
        ({"alipay_root_cert_sn": None}, "isv.invalid-signature"),
    ],
)
def test_a_wrong_or_missing_sn_is_refused_with_a_fatal_40002(
    sim: OpenApiSimulator,
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    pki: Pki,
    change: dict[str, str | None],
    sub_code: str,
) -> None:
    config = dataclasses.replace(_config(keys, pki), **change)
    body, text = _call(sim, config)
    assert body["error_response"]["sub_code"] == sub_code
    with pytest.raises(FatalApiError) as caught:
        parse_response(config, METHOD, text)
    assert (caught.value.code, caught.value.sub_code) == ("40002", sub_code)
    assert sim.call_log()[-1]["sub_code"] == sub_code


def test_an_app_certificate_needs_the_simulators_certificates_first(pki: Pki) -> None:
    fresh = OpenApiSimulator(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(ValueError, match="set_certificates"):
        fresh.register_app(APP, app_cert=pki.app_cert)
    with pytest.raises(ValueError, match="Alipay key"):
        fresh.set_certificates(pki.alipay_cert, pki.root_bundle)  # not this simulator's key
