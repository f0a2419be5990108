"""Certificate SNs (certificate mode), checked against the documented rule computed here independently."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from lifelink.alipay.certs import cert_sn, public_key_from_cert, root_cert_sn
from lifelink.alipay.errors import KeyFormatError

ISSUER = [
    (NameOID.COUNTRY_NAME, "CN"),
    (NameOID.ORGANIZATION_NAME, "Test Financial"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "Certification Authority"),
    (NameOID.COMMON_NAME, "Test Financial Certification Authority R1"),
]


def documented_sn(issuer: list[tuple[Any, str]], serial: int) -> str:
    """ALIPAY.md: md5 hex of (issuer DN with RDNs in reverse order as CN=…,OU=…,O=…,C=…) + decimal serial."""
    short = {
        NameOID.COUNTRY_NAME: "C",
        NameOID.ORGANIZATION_NAME: "O",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
        NameOID.COMMON_NAME: "CN",
    }
    dn = ",".join(f"{short[oid]}={value}" for oid, value in reversed(issuer))
    return hashlib.md5(f"{dn}{serial}".encode(), usedforsecurity=False).hexdigest()


def test_cert_sn_follows_the_documented_rule(
    app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey, cert_factory: Any
) -> None:
    serial = 0x2020051462034E4CA7A2C9CB03E13D63  # large serials are printed in decimal
    pem = cert_factory(
        app_rsa, issuer_key=alipay_rsa, cn="2088000000000000-2021000000000000", serial=serial, issuer_names=ISSUER
    )
    assert cert_sn(pem) == documented_sn(ISSUER, serial)
    assert cert_sn(pem.decode()) == documented_sn(ISSUER, serial)
    assert x509.load_pem_x509_certificate(pem).issuer.rdns[0].rfc4514_string() == "C=CN"  # stored order


def test_root_sn_joins_rsa_certs_in_file_order_and_skips_others(
    alipay_rsa: rsa.RSAPrivateKey, cert_factory: Any
) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_root = cert_factory(
        ec_key, issuer_key=ec_key, cn="EC root", serial=1, issuer_names=[(NameOID.COMMON_NAME, "EC root")]
    )
    rsa_issuer_a = [(NameOID.COUNTRY_NAME, "CN"), (NameOID.COMMON_NAME, "Root A")]
    rsa_issuer_b = [(NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "B"), (NameOID.COMMON_NAME, "Root B")]
    root_a = cert_factory(alipay_rsa, issuer_key=alipay_rsa, cn="Root A", serial=11, issuer_names=rsa_issuer_a)
    root_b = cert_factory(alipay_rsa, issuer_key=alipay_rsa, cn="Root B", serial=22, issuer_names=rsa_issuer_b)
    bundle = ec_root + root_b + ec_root + root_a
    expected = documented_sn(rsa_issuer_b, 22) + "_" + documented_sn(rsa_issuer_a, 11)
    assert root_cert_sn(bundle) == expected
    assert root_cert_sn(bundle.decode()) == expected


def test_root_bundle_without_rsa_cert_is_refused(cert_factory: Any) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(KeyFormatError):
        root_cert_sn(cert_factory(ec_key, issuer_key=ec_key, cn="EC", serial=3))


def test_not_a_certificate_is_refused() -> None:
    with pytest.raises(KeyFormatError):
        cert_sn("MIIBIjANBgkq")
    with pytest.raises(KeyFormatError):
        root_cert_sn(b"")


def test_public_key_from_cert(app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey, cert_factory: Any) -> None:
    pem = cert_factory(app_rsa, issuer_key=alipay_rsa, cn="app", serial=5)
    assert public_key_from_cert(pem).public_numbers() == app_rsa.public_key().public_numbers()
