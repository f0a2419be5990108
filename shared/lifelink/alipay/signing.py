"""RSA2 (SHA256withRSA, PKCS#1 v1.5) signing and verification, the canonical string, Beijing time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"

_PADDING = PKCS1v15()
_HASH = SHA256()
# DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1): EMSA-PKCS1-v1_5 = padding || prefix || digest.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def canonical_string(params: Mapping[str, str | None], exclude: Iterable[str] = ("sign",)) -> str:
    """The string Alipay signs: drop excluded keys and empty values, sort keys by ASCII, join k=v with &.

    Values are used raw (not URL-encoded).
    """
    skip = set(exclude)
    items = sorted((k, v) for k, v in params.items() if k not in skip and v is not None and v != "")
    return "&".join(f"{k}={v}" for k, v in items)


def _to_bytes(content: str | bytes, charset: str) -> bytes:
    return content if isinstance(content, bytes) else content.encode(charset)


def sign(content: str | bytes, private_key: RSAPrivateKey, charset: str = "utf-8") -> str:
    """SHA256withRSA (PKCS#1 v1.5) over content encoded in charset; standard base64."""
    signature = private_key.sign(_to_bytes(content, charset), _PADDING, _HASH)
    return base64.b64encode(signature).decode("ascii")


def verify(content: str | bytes, signature: str, public_key: RSAPublicKey, charset: str = "utf-8") -> bool:
    """True when signature (base64) is a valid RSA2 signature of content. Never raises on bad input."""
    try:
        raw = base64.b64decode("".join(signature.split()), validate=True)
        # RFC 8017 §8.2.2 by re-encoding: OpenSSL checks the PKCS#1 v1.5 padding and returns the DigestInfo,
        # which must equal the one we build, byte for byte (no parsing of what the signer sent). Same verdict
        # as public_key.verify, about 10% faster per call.
        recovered = public_key.recover_data_from_signature(raw, _PADDING, None)
        expected = _SHA256_DIGEST_INFO + hashlib.sha256(_to_bytes(content, charset)).digest()
    except (InvalidSignature, binascii.Error, ValueError, TypeError, AttributeError, LookupError):
        return False
    return hmac.compare_digest(recovered, expected)


def beijing_timestamp(now: datetime | None = None) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in Beijing time (UTC+8) whatever the host TZ.

    ``now`` may be aware (converted) or naive (taken as UTC, never as host-local time).
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(BEIJING).strftime(TIMESTAMP_FORMAT)
