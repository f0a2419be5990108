"""Alipay content encryption (encrypt_type=AES): AES-CBC, PKCS7 padding, 16 zero bytes IV, base64."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CBC
from cryptography.hazmat.primitives.padding import PKCS7

from .errors import AesError

_IV = bytes(16)


@lru_cache(maxsize=32)
def _key(key_b64: str) -> bytes:
    try:
        key = base64.b64decode("".join(key_b64.split()), validate=True)
    except (binascii.Error, ValueError):
        raise AesError("AES key is not base64") from None
    if len(key) not in (16, 24, 32):
        raise AesError(f"AES key must be 16, 24 or 32 bytes, got {len(key)}")
    return key


def aes_encrypt(plaintext: str, key_b64: str, charset: str = "utf-8") -> str:
    """Encrypt plaintext (encoded in charset) and return base64 ciphertext."""
    padder = PKCS7(128).padder()
    data = padder.update(plaintext.encode(charset)) + padder.finalize()
    encryptor = Cipher(AES(_key(key_b64)), CBC(_IV)).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode("ascii")


def aes_decrypt(ciphertext_b64: str, key_b64: str, charset: str = "utf-8") -> str:
    """Decrypt base64 ciphertext and decode the plaintext in charset. AesError on any failure."""
    try:
        data = base64.b64decode("".join(ciphertext_b64.split()), validate=True)
    except (binascii.Error, ValueError):
        raise AesError("AES ciphertext is not base64") from None
    if not data or len(data) % 16:
        raise AesError("AES ciphertext length is not a positive multiple of 16")
    decryptor = Cipher(AES(_key(key_b64)), CBC(_IV)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode(charset)
    except (ValueError, UnicodeDecodeError):
        raise AesError("AES ciphertext does not decrypt with this key") from None
