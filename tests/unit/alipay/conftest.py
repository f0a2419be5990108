"""Fixtures for the Alipay protocol core tests: throwaway RSA keys and the design's test vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

# <repo>/tests/unit/alipay/conftest.py -> parents[3] is the repo, its parent holds shared/design.
VECTORS_PATH = Path(__file__).resolve().parents[4] / "shared" / "design" / "vectors.json"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def app_rsa() -> rsa.RSAPrivateKey:
    """The merchant app's private key."""
    return _rsa()


@pytest.fixture(scope="session")
def alipay_rsa() -> rsa.RSAPrivateKey:
    """Plays Alipay's private key (its public half is 'the Alipay public key')."""
    return _rsa()


@pytest.fixture(scope="session")
def forger_rsa() -> rsa.RSAPrivateKey:
    """Somebody else's key: signatures made with it must never verify."""
    return _rsa()


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    if not VECTORS_PATH.is_file():
        pytest.skip(f"design test vectors not found at {VECTORS_PATH} (expected <repo>/../shared/design)")
    return json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def make_cert(
    subject_key: Any,
    *,
    issuer_key: Any,
    cn: str,
    serial: int,
    issuer_names: list[tuple[Any, str]] | None = None,
    hash_alg: Any = None,
) -> bytes:
    """A PEM certificate for subject_key's public half, signed by issuer_key."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    issuer = x509.Name(
        [x509.NameAttribute(oid, value) for oid, value in (issuer_names or [(NameOID.COMMON_NAME, "Test CA")])]
    )
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(issuer_key, hash_alg or hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def cert_factory() -> Any:
    return make_cert
