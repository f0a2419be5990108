"""Throwaway certificates for certificate-mode tests: a root bundle (an RSA root and an ECDSA root, as Alipay's
alipayRootCert.crt mixes RSA and SM2/ECC roots), and the app's and Alipay's public-key certificates under it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT_NAME = [
    (NameOID.COUNTRY_NAME, "CN"),
    (NameOID.ORGANIZATION_NAME, "Test Financial"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "Certification Authority"),
    (NameOID.COMMON_NAME, "Test Root CA R1"),
]


def _name(parts: list[tuple[x509.ObjectIdentifier, str]]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def certificate(subject_key: object, cn: str, issuer_key: object, issuer: x509.Name, serial: int) -> str:
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name([(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer)
        .public_key(subject_key.public_key())  # type: ignore[attr-defined]
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return _pem(cert)


@dataclass(frozen=True)
class Pki:
    root_bundle: str  # an ECDSA root first, then the RSA root
    app_cert: str
    alipay_cert: str
    root_key: rsa.RSAPrivateKey
    root_name: x509.Name


def make_pki(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey, *, app_serial: int = 0x2020051462) -> Pki:
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root_name = _name(ROOT_NAME)
    rsa_root = certificate(root_key, "Test Root CA R1", root_key, root_name, 0x623EF4AB)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_name = _name([(NameOID.COUNTRY_NAME, "CN"), (NameOID.COMMON_NAME, "Test Root CA E1")])
    ec_root = certificate(ec_key, "Test Root CA E1", ec_key, ec_name, 0x7E57)
    return Pki(
        root_bundle=ec_root + rsa_root,
        app_cert=certificate(app_key, "app", root_key, root_name, app_serial),
        alipay_cert=certificate(alipay_key, "alipay", root_key, root_name, 0x2019082200),
        root_key=root_key,
        root_name=root_name,
    )


def another_app_cert(pki: Pki, app_key: rsa.RSAPrivateKey, serial: int) -> str:
    """The same app key under another certificate (another serial): another SN."""
    return certificate(app_key, "app", pki.root_key, pki.root_name, serial)
