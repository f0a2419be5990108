"""Load RSA keys in every format Alipay's tools produce, and catch keys configured in the wrong place.

Formats: PEM (``PRIVATE KEY`` PKCS#8, ``RSA PRIVATE KEY`` PKCS#1, ``PUBLIC KEY``, ``RSA PUBLIC KEY``,
``CERTIFICATE``) and Alipay's one-line base64 without armour (PKCS#8 "Java" / PKCS#1 "non-Java" private
keys; SubjectPublicKeyInfo or PKCS#1 public keys). Keys are parsed once and cached by their text.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import UnsupportedAlgorithm as UnsupportedKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from .errors import KeyFormatError, KeyMismatchError

_MISMATCH_MESSAGE = (
    "the Alipay public key you configured is your app's own public key (it matches the app private "
    "key); copy 'Alipay public key' (支付宝公钥) from the Alipay open platform console instead"
)


def _as_text(text: str | bytes) -> str:
    if isinstance(text, bytes):
        try:
            return text.decode("ascii").strip()
        except UnicodeDecodeError:
            raise KeyFormatError("key text is not ASCII: expected PEM or one-line base64") from None
    if not isinstance(text, str):
        raise KeyFormatError(f"key must be str or bytes, not {type(text).__name__}")
    return text.strip()


def _b64_der(text: str, what: str) -> bytes:
    compact = "".join(text.split())
    if not compact:
        raise KeyFormatError(f"{what} is empty")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is neither PEM nor one-line base64 (Alipay key tool format)") from None


@lru_cache(maxsize=64)
def _load_private_key_cached(text: str) -> RSAPrivateKey:
    what = "app private key"
    if "PUBLIC KEY-----" in text or "CERTIFICATE-----" in text:
        raise KeyFormatError(f"{what}: this is a public key or certificate, not a private key")
    try:
        if "-----BEGIN" in text:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        else:
            key = serialization.load_der_private_key(_b64_der(text, what), password=None)
    except KeyFormatError:
        raise
    except TypeError:
        raise KeyFormatError(f"{what} is encrypted; export it without a password") from None
    except (ValueError, UnsupportedKey):
        if "-----BEGIN" not in text and _looks_like_public(text):
            raise KeyFormatError(f"{what}: this is a public key, not a private key") from None
        raise KeyFormatError(f"{what} cannot be parsed as PKCS#8 or PKCS#1 (PEM or one-line base64)") from None
    if not isinstance(key, RSAPrivateKey):
        raise KeyFormatError(f"{what} is not an RSA key (RSA2 needs RSA)")
    return key


def _looks_like_public(text: str) -> bool:
    try:
        serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except Exception:
        return False
    return True


def _is_private_der(der: bytes) -> bool:
    try:
        serialization.load_der_private_key(der, password=None)
    except Exception:
        return False
    return True


@lru_cache(maxsize=64)
def _load_public_key_cached(text: str) -> RSAPublicKey:
    what = "public key"
    if "PRIVATE KEY-----" in text:
        raise KeyFormatError(f"{what}: this is a private key; configure the public key here")
    try:
        if "-----BEGIN CERTIFICATE-----" in text:
            from cryptography import x509  # certificates only: kept off the cold path

            key = x509.load_pem_x509_certificate(text.encode("ascii")).public_key()
        elif "-----BEGIN" in text:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            der = _b64_der(text, what)
            try:
                key = serialization.load_der_public_key(der)
            except (ValueError, UnsupportedKey):
                try:
                    from cryptography import x509

                    key = x509.load_der_x509_certificate(der).public_key()
                except (ValueError, UnsupportedKey):
                    if _is_private_der(der):
                        raise KeyFormatError(f"{what}: this is a private key; configure the public key here") from None
                    raise
    except KeyFormatError:
        raise
    except (ValueError, UnsupportedKey):
        raise KeyFormatError(
            f"{what} cannot be parsed as SubjectPublicKeyInfo, PKCS#1 or an X.509 certificate"
        ) from None
    if not isinstance(key, RSAPublicKey):
        raise KeyFormatError(f"{what} is not an RSA key (RSA2 needs RSA)")
    return key


def load_private_key(text: str | bytes) -> RSAPrivateKey:
    """Parse an RSA private key: PEM (PKCS#1 or PKCS#8) or one-line base64 (PKCS#8 or PKCS#1)."""
    return _load_private_key_cached(_as_text(text))


def load_public_key(text: str | bytes) -> RSAPublicKey:
    """Parse an RSA public key: PEM, one-line base64 SPKI or PKCS#1, or an X.509 certificate."""
    return _load_public_key_cached(_as_text(text))


def public_key_one_line(key: RSAPublicKey | RSAPrivateKey) -> str:
    """The public key as one line of base64 DER SubjectPublicKeyInfo (Alipay console format)."""
    if isinstance(key, RSAPrivateKey):
        key = key.public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def check_alipay_public_key(alipay_public_key: RSAPublicKey, app_private_key: RSAPrivateKey) -> None:
    """Raise KeyMismatchError when the 'Alipay public key' is really the app's own public key."""
    if alipay_public_key.public_numbers() == app_private_key.public_key().public_numbers():
        raise KeyMismatchError(_MISMATCH_MESSAGE)


@dataclass(frozen=True)
class AppKeys:
    """An app's parsed key material: load once per container, reuse for every request."""

    app_private_key: RSAPrivateKey
    alipay_public_key: RSAPublicKey
    app_public_key_one_line: str

    @classmethod
    def from_texts(cls, app_private_key: str | bytes, alipay_public_key: str | bytes) -> AppKeys:
        private = load_private_key(app_private_key)
        public = load_public_key(alipay_public_key)
        check_alipay_public_key(public, private)
        return cls(private, public, public_key_one_line(private))
