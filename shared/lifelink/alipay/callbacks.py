"""Verify Alipay callbacks: trade/notify_url notifications, application-gateway posts, message-service pushes.

The form body is decoded exactly once, in its own charset (GBK included); nothing in it is trusted until
the signature holds. Families and what they sign:

- TRADE (``notify_type`` without ``method``/``service``): all but ``sign`` and ``sign_type``;
- GATEWAY (``service`` or ``method``: life-account events, service-market orders): all but ``sign``;
- MESSAGE (``msg_method``: message-service pushes): all but ``sign`` and ``sign_type``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from urllib.parse import unquote_to_bytes

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .errors import CallbackFormatError, SignatureError
from .signing import canonical_string, verify

MAX_BODY_BYTES = 64 * 1024

# Charsets Alipay uses, mapped to the Python codec that decodes (and re-encodes) them losslessly.
# GB2312 is decoded as GBK, its superset, so any byte sequence Alipay sends round-trips.
_CHARSETS: dict[str, str] = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "gbk": "gbk",
    "gb2312": "gbk",
    "gb18030": "gb18030",
}
_HEADER_CHARSET = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9_\-]+)", re.I)
_FORM_CHARSET = re.compile(rb"(?:^|&)charset=([^&]*)")


class CallbackFamily(StrEnum):
    TRADE = "trade"
    GATEWAY = "gateway"
    MESSAGE = "message"


def normalize_charset(name: str) -> str:
    """Python codec name for an Alipay charset name; CallbackFormatError when unknown."""
    codec = _CHARSETS.get(name.strip().lower())
    if codec is None:
        raise CallbackFormatError(f"unsupported charset {name!r} (expected UTF-8, GBK or GB2312)")
    return codec


def _charset_of(body: bytes, content_type: str | None) -> str:
    # The body's own charset field wins: it is what Alipay signed and percent-encoded with.
    match = _FORM_CHARSET.search(body)
    if match:
        raw = unquote_to_bytes(match.group(1).replace(b"+", b" "))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise CallbackFormatError("charset field is not ASCII") from None
    if content_type:
        header = _HEADER_CHARSET.search(content_type)
        if header:
            return header.group(1)
    return "utf-8"


def parse_form(
    body: bytes, content_type: str | None = None, *, max_bytes: int = MAX_BODY_BYTES
) -> tuple[dict[str, str], str]:
    """Decode an application/x-www-form-urlencoded body once, in its own charset.

    Returns (params, charset) where charset is the name as declared (e.g. "GBK"). The charset comes from
    the raw ``charset=`` form field (found on the bytes before decoding), else the Content-Type header,
    else UTF-8. Raises CallbackFormatError for oversized bodies, repeated keys, undecodable bytes or an
    unknown charset.
    """
    if not isinstance(body, bytes | bytearray):
        raise CallbackFormatError("callback body must be bytes")
    if len(body) > max_bytes:
        raise CallbackFormatError(f"callback body is {len(body)} bytes; the limit is {max_bytes}")
    charset = _charset_of(bytes(body), content_type)
    codec = normalize_charset(charset)
    params: dict[str, str] = {}
    for piece in bytes(body).split(b"&"):
        if not piece:
            continue
        raw_key, _, raw_value = piece.partition(b"=")
        try:
            key = unquote_to_bytes(raw_key.replace(b"+", b" ")).decode(codec)
            value = unquote_to_bytes(raw_value.replace(b"+", b" ")).decode(codec)
        except UnicodeDecodeError:
            raise CallbackFormatError(f"callback body is not valid {charset}") from None
        if not key:
            raise CallbackFormatError("callback body has a field without a name")
        if key in params:
            raise CallbackFormatError(f"callback body repeats the field {key!r}")
        params[key] = value
    if not params:
        raise CallbackFormatError("callback body is empty")
    declared = params.get("charset")
    if declared is not None and normalize_charset(declared) != codec:
        raise CallbackFormatError(f"callback declares charset {declared!r} but was decoded as {charset!r}")
    return params, charset


def detect_family(params: Mapping[str, str]) -> CallbackFamily:
    """Which signing rule applies: msg_method => MESSAGE; service/method => GATEWAY; notify_type => TRADE."""
    if params.get("msg_method"):
        return CallbackFamily.MESSAGE
    if params.get("service") or params.get("method"):
        return CallbackFamily.GATEWAY
    if params.get("notify_type"):
        return CallbackFamily.TRADE
    raise CallbackFormatError("not an Alipay callback: no notify_type, service, method or msg_method")


def signed_content(params: Mapping[str, str], family: CallbackFamily) -> str:
    """The exact string Alipay signed for this family."""
    if family is CallbackFamily.GATEWAY:
        return canonical_string(params, ("sign",))
    return canonical_string(params, ("sign", "sign_type"))


def verify_callback(params: Mapping[str, str], charset: str, alipay_public_key: RSAPublicKey) -> CallbackFamily:
    """Verify a decoded callback; return its family. SignatureError when it must not be trusted."""
    signature = params.get("sign")
    if not signature:
        raise SignatureError("callback has no sign")
    sign_type = params.get("sign_type")
    if sign_type is None or sign_type.strip().upper() != "RSA2":
        raise SignatureError(f"unsupported sign_type {sign_type!r}: only RSA2 is accepted")
    family = detect_family(params)
    codec = normalize_charset(charset)
    try:
        content = signed_content(params, family).encode(codec)
    except UnicodeEncodeError:
        raise SignatureError(f"callback content cannot be encoded in {charset}") from None
    if not verify(content, signature, alipay_public_key):
        raise SignatureError(f"callback signature does not verify ({family.value} rule)")
    return family
