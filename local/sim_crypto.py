"""The simulator's own RSA2 signing, written independently of lifelink.alipay on purpose: the simulator plays
Alipay, so a mistake shared by both sides must not cancel out. Only ``cryptography`` is used."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def _der_from_text(text: str | bytes) -> tuple[bytes | None, bytes | None]:
    raw = text.decode("ascii") if isinstance(text, bytes) else text
    raw = raw.strip()
    if raw.startswith("-----BEGIN"):
        return raw.encode("ascii"), None
    try:
        return None, base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("key is neither PEM nor one-line base64") from exc


def _armour(der: bytes, label: bytes) -> bytes:
    return b"-----BEGIN " + label + b"-----\n" + base64.encodebytes(der) + b"-----END " + label + b"-----\n"


def load_private(text: str | bytes) -> rsa.RSAPrivateKey:
    pem, der = _der_from_text(text)
    if pem is not None:
        key = serialization.load_pem_private_key(pem, password=None)
    else:
        assert der is not None
        try:
            key = serialization.load_der_private_key(der, password=None)
        except ValueError:
            key = serialization.load_pem_private_key(_armour(der, b"RSA PRIVATE KEY"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def load_public(text: str | bytes) -> rsa.RSAPublicKey:
    pem, der = _der_from_text(text)
    if pem is not None:
        key = serialization.load_pem_public_key(pem)
    else:
        assert der is not None
        try:
            key = serialization.load_der_public_key(der)
        except ValueError:
            key = serialization.load_pem_public_key(_armour(der, b"RSA PUBLIC KEY"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def public_one_line(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def canonical(params: Mapping[str, str | None], exclude: Iterable[str]) -> str:
    skip = set(exclude)
    items = sorted((k, v) for k, v in params.items() if k not in skip and v is not None and v != "")
    return "&".join(f"{k}={v}" for k, v in items)


def rsa2_sign(content: str, key: rsa.RSAPrivateKey, charset: str = "utf-8") -> str:
    sig = key.sign(content.encode(charset), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode("ascii")


def rsa2_verify(content: str, signature: str, key: rsa.RSAPublicKey, charset: str = "utf-8") -> bool:
    try:
        sig = base64.b64decode(signature, validate=True)
        key.verify(sig, content.encode(charset), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError, LookupError):
        return False
    return True


def beijing_now() -> datetime:
    return datetime.now(BEIJING)


def beijing_timestamp(now: datetime | None = None) -> str:
    return (now or beijing_now()).astimezone(BEIJING).strftime(TIMESTAMP_FORMAT)


def parse_beijing_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=BEIJING)


# ---- certificate mode: SNs as Alipay's gateway computes them (written apart from lifelink.alipay.certs) ---------

_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.11": "OU",
    "2.5.4.10": "O",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "1.2.840.113549.1.9.1": "EMAILADDRESS",
}
_RSA_SIGNATURES = "1.2.840.113549.1.1."


def _certificates(pem: str | bytes) -> list[bytes]:
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    blocks: list[bytes] = []
    for part in text.split("-----BEGIN CERTIFICATE-----")[1:]:
        body = part.split("-----END CERTIFICATE-----", 1)[0]
        blocks.append(base64.b64decode("".join(body.split())))
    if not blocks:
        raise ValueError("no PEM certificate")
    return blocks


def _issuer_sn(der: bytes) -> str:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    # Java's X500Principal.getName(): the RDNs from last to first, "CN=…,OU=…,O=…,C=…"
    parts = [
        "+".join(f"{_SHORT_NAMES.get(a.oid.dotted_string, a.oid.dotted_string)}={a.value}" for a in rdn)
        for rdn in reversed(cert.issuer.rdns)
    ]
    return hashlib.md5((",".join(parts) + str(cert.serial_number)).encode(), usedforsecurity=False).hexdigest()


def certificate_sn(pem: str | bytes) -> str:
    """SN of the first certificate: md5 hex of the reversed issuer DN followed by the serial in decimal."""
    return _issuer_sn(_certificates(pem)[0])


def root_certificate_sn(bundle: str | bytes) -> str:
    """The RSA-signed certificates' SNs in the bundle, in file order, joined with '_' (others are skipped)."""
    from cryptography import x509

    sns: list[str] = []
    for der in _certificates(bundle):
        try:
            oid = x509.load_der_x509_certificate(der).signature_algorithm_oid.dotted_string
        except ValueError:  # e.g. an SM2 root this library cannot read: not RSA either
            continue
        if oid.startswith(_RSA_SIGNATURES):
            sns.append(_issuer_sn(der))
    return "_".join(sns)


def certificate_key(pem: str | bytes) -> rsa.RSAPublicKey:
    from cryptography import x509

    key = x509.load_der_x509_certificate(_certificates(pem)[0]).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA certificate")
    return key
