"""Alipay OpenAPI v2 (gateway.do) client: signed requests, verified responses, typed errors.

This is the only module of lifelink.alipay that imports httpx; the webhook never imports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from .aes import aes_decrypt, aes_encrypt
from .errors import (
    SUCCESS_CODE,
    AlipayTransportError,
    KeyFormatError,
    KeyMismatchError,
    ResponseFormatError,
    SignatureError,
    api_error,
)
from .keys import check_alipay_public_key, load_private_key, load_public_key
from .signing import beijing_timestamp, canonical_string, sign, verify

if TYPE_CHECKING:
    from .transport import AsyncPost

# Parameters that travel in the URL query (with sign); everything else goes in the form body.
SYSTEM_PARAMS: frozenset[str] = frozenset(
    {
        "app_id",
        "method",
        "format",
        "charset",
        "sign_type",
        "timestamp",
        "version",
        "notify_url",
        "return_url",
        "app_auth_token",
        "auth_token",
        "app_cert_sn",
        "alipay_root_cert_sn",
        "encrypt_type",
        "alipay_sdk",
        "prod_code",
        "terminal_type",
        "terminal_info",
    }
)
ERROR_NODE = "error_response"
_EMPTY: Mapping[str, RSAPublicKey] = MappingProxyType({})


@dataclass(frozen=True)
class OpenApiConfig:
    app_id: str
    app_private_key: RSAPrivateKey
    alipay_public_key: RSAPublicKey | None
    gateway_url: str
    charset: str = "utf-8"
    app_auth_token: str | None = None
    encrypt_key: str | None = None
    app_cert_sn: str | None = None
    alipay_root_cert_sn: str | None = None
    alipay_public_keys_by_sn: Mapping[str, RSAPublicKey] = field(default_factory=lambda: _EMPTY)
    timeout: float = 15.0

    @classmethod
    def from_secret(
        cls,
        app_id: str,
        secret: Mapping[str, Any],
        gateway_url: str,
        *,
        mode: str | None = None,
        third_party: bool = False,
        **kw: Any,
    ) -> OpenApiConfig:
        """Build from the app secret JSON; keys and certificates in any Alipay format.

        Public-key mode: ``{app_private_key, alipay_public_key, app_auth_token?, encrypt_key?}``. Certificate mode
        when the secret holds certificates (``app_cert``, ``alipay_root_cert`` and ``alipay_cert``, PEM; Alipay's
        certificate may instead be what ``alipay_public_key`` holds): requests carry ``app_cert_sn`` and
        ``alipay_root_cert_sn``, responses are verified with the key of the certificate their ``alipay_cert_sn``
        names. ``mode="cert"`` (the app record's mode) makes missing certificates an error rather than a request
        Alipay refuses; ``third_party`` likewise a missing ``app_auth_token``, which otherwise goes on every request
        when present. Raises KeyFormatError for missing or unreadable material, KeyMismatchError for swapped keys
        or an app certificate that is not the app private key's."""
        token = secret.get("app_auth_token") or None
        if third_party and not token:
            raise KeyFormatError("third-party app: its secret has no app_auth_token (give apps add --app-auth-token)")
        kw.setdefault("app_auth_token", token)
        kw.setdefault("encrypt_key", secret.get("encrypt_key") or None)
        certs = secret_certificates(secret)
        if certs is None and mode != "cert":
            private = load_private_key(secret["app_private_key"])
            public = load_public_key(secret["alipay_public_key"])
            check_alipay_public_key(public, private)
            return cls(app_id=app_id, app_private_key=private, alipay_public_key=public, gateway_url=gateway_url, **kw)
        if certs is None:
            missing = [name for name in CERT_FIELDS if not secret.get(name)]
            raise KeyFormatError(f"certificate mode: the secret has no {', '.join(missing)}")
        app_cert, alipay_cert, root_cert = certs
        from .certs import public_key_from_cert

        private = load_private_key(secret["app_private_key"])
        if public_key_from_cert(app_cert).public_numbers() != private.public_key().public_numbers():
            raise KeyMismatchError(
                "app_cert does not hold the app private key's public key (another app's appCertPublicKey_<app_id>.crt,"
                " or the certificate of an older key)"
            )
        return cls.from_certificates(app_id, private, app_cert, alipay_cert, root_cert, gateway_url, **kw)

    @classmethod
    def from_certificates(
        cls,
        app_id: str,
        app_private_key: str | bytes | RSAPrivateKey,
        app_cert_pem: str | bytes,
        alipay_cert_pem: str | bytes,
        alipay_root_cert_pem: str | bytes,
        gateway_url: str,
        **kw: Any,
    ) -> OpenApiConfig:
        """Certificate mode: compute app_cert_sn, alipay_root_cert_sn and the Alipay key by SN once."""
        from .certs import cert_sn, public_key_from_cert, root_cert_sn

        private = app_private_key if isinstance(app_private_key, RSAPrivateKey) else load_private_key(app_private_key)
        alipay_key = public_key_from_cert(alipay_cert_pem)
        check_alipay_public_key(alipay_key, private)
        return cls(
            app_id=app_id,
            app_private_key=private,
            alipay_public_key=alipay_key,
            gateway_url=gateway_url,
            app_cert_sn=cert_sn(app_cert_pem),
            alipay_root_cert_sn=root_cert_sn(alipay_root_cert_pem),
            alipay_public_keys_by_sn=MappingProxyType({cert_sn(alipay_cert_pem): alipay_key}),
            **kw,
        )


# Certificate mode's fields in the app secret (PEM): appCertPublicKey_<app_id>.crt, alipayCertPublicKey_RSA2.crt,
# alipayRootCert.crt.
CERT_FIELDS: tuple[str, ...] = ("app_cert", "alipay_cert", "alipay_root_cert")


def secret_certificates(secret: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(app_cert, alipay_cert, alipay_root_cert) when the secret is set up for certificate mode, else None.

    Alipay's certificate is ``alipay_cert``, or ``alipay_public_key`` when that holds a certificate. Some but not
    all certificates is an error (KeyFormatError) naming what is missing."""
    app_cert = str(secret.get("app_cert") or "")
    root_cert = str(secret.get("alipay_root_cert") or "")
    alipay_cert = str(secret.get("alipay_cert") or "")
    if not alipay_cert and "BEGIN CERTIFICATE" in str(secret.get("alipay_public_key") or ""):
        alipay_cert = str(secret["alipay_public_key"])
    if not app_cert and not root_cert and not secret.get("alipay_cert"):
        return None
    missing = [name for name, value in zip(CERT_FIELDS, (app_cert, alipay_cert, root_cert), strict=True) if not value]
    if missing:
        raise KeyFormatError(f"certificate mode: the secret has no {', '.join(missing)}")
    return app_cert, alipay_cert, root_cert


@dataclass
class PreparedRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    params: dict[str, str]
    query: str = ""  # the encoded query string of ``url`` (system params and sign)


def _biz_text(biz_content: Mapping[str, Any] | str | None) -> str | None:
    if biz_content is None:
        return None
    if isinstance(biz_content, str):
        return biz_content
    return json.dumps(biz_content, ensure_ascii=False, separators=(",", ":"))


def prepare_request(
    config: OpenApiConfig,
    method: str,
    biz_content: Mapping[str, Any] | str | None,
    *,
    notify_url: str | None = None,
    app_auth_token: str | None = None,
    extra_params: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> PreparedRequest:
    """Build a signed POST: system params and sign in the URL query, biz_content in the form body."""
    params: dict[str, str] = {
        "app_id": config.app_id,
        "method": method,
        "format": "JSON",
        "charset": config.charset,
        "sign_type": "RSA2",
        "timestamp": beijing_timestamp(now),
        "version": "1.0",
    }
    optional = {
        "notify_url": notify_url,
        "app_auth_token": app_auth_token or config.app_auth_token,
        "app_cert_sn": config.app_cert_sn,
        "alipay_root_cert_sn": config.alipay_root_cert_sn,
    }
    params.update({k: v for k, v in optional.items() if v})
    if extra_params:
        params.update({k: str(v) for k, v in extra_params.items() if v is not None})
    biz = _biz_text(biz_content)
    if biz is not None:
        if config.encrypt_key:
            biz = aes_encrypt(biz, config.encrypt_key, config.charset)
            params["encrypt_type"] = "AES"
        params["biz_content"] = biz
    params.pop("sign", None)
    params["sign"] = sign(canonical_string(params), config.app_private_key, config.charset)

    query = {k: v for k, v in params.items() if k in SYSTEM_PARAMS or k == "sign"}
    form = {k: v for k, v in params.items() if k not in query}
    separator = "&" if "?" in config.gateway_url else "?"
    query_text = urlencode(query, encoding=config.charset)
    url = config.gateway_url + separator + query_text
    body = urlencode(form, encoding=config.charset).encode("ascii")
    headers = {
        "Content-Type": f"application/x-www-form-urlencoded;charset={config.charset}",
        "Accept": "application/json",
    }
    return PreparedRequest(url=url, body=body, headers=headers, params=params, query=query_text)


class _GatewayUrl:
    """The gateway URL parsed once; each request's URL is that with its query swapped in.

    httpx parses and validates every URL string character by character (and once more when the client merges
    it), about 0.2-0.4 ms CPU for a signed request's ~600 characters. The query built by :func:`prepare_request`
    is already percent-encoded ASCII from ``urlencode``, so re-validating it finds nothing; the base is validated
    here once. Falls back to the plain string when the gateway URL already carries a query or httpx changes.
    """

    def __init__(self, gateway_url: str) -> None:
        self._base = httpx.URL(gateway_url)
        reference = getattr(self._base, "_uri_reference", None)
        self._fast = reference is not None and hasattr(reference, "_replace") and self._base.query == b""

    def with_query(self, request: PreparedRequest) -> httpx.URL | str:
        if not self._fast or not request.query:
            return request.url
        url = httpx.URL(self._base)  # a copy without re-parsing
        url._uri_reference = self._base._uri_reference._replace(query=request.query)  # type: ignore[attr-defined]
        return url


# ---- response node extraction -------------------------------------------------------------------------

_WS = re.compile(r"[ \t\r\n]*")
_STRING_STOP = re.compile(r'["\\]')
_STRUCT_STOP = re.compile(r'["{}\[\]]')
_LITERAL = re.compile(r"[^,}\]\s]+")


def _string_end(text: str, i: int) -> int:
    """text[i] == '"'; return the index just past the closing quote (escapes honoured)."""
    pos = i + 1
    while True:
        m = _STRING_STOP.search(text, pos)
        if m is None:
            raise ResponseFormatError("unterminated string in response")
        if m.group() == '"':
            return m.end()
        pos = m.end() + 1  # skip the escaped character


def _value_end(text: str, i: int) -> int:
    """Index just past the JSON value starting at text[i] (brace matching outside strings)."""
    if i >= len(text):
        raise ResponseFormatError("response ends where a value was expected")
    ch = text[i]
    if ch == '"':
        return _string_end(text, i)
    if ch in "{[":
        stack = [ch]
        pos = i + 1
        while stack:
            m = _STRUCT_STOP.search(text, pos)
            if m is None:
                raise ResponseFormatError("unbalanced braces in response")
            c = m.group()
            if c == '"':
                pos = _string_end(text, m.start())
                continue
            if c in "{[":
                stack.append(c)
            elif (c == "}" and stack[-1] == "{") or (c == "]" and stack[-1] == "["):
                stack.pop()
            else:
                raise ResponseFormatError("mismatched brackets in response")
            pos = m.end()
        return pos
    m = _LITERAL.match(text, i)
    if m is None:
        raise ResponseFormatError("invalid value in response")
    return m.end()


def _top_level_members(raw_text: str) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of every member of the top-level object, in order."""
    pos = _WS.match(raw_text, 0).end()
    if pos >= len(raw_text) or raw_text[pos] != "{":
        raise ResponseFormatError("response is not a JSON object")
    pos = _WS.match(raw_text, pos + 1).end()
    members: list[tuple[str, int, int]] = []
    if pos < len(raw_text) and raw_text[pos] == "}":
        return members
    while True:
        if pos >= len(raw_text) or raw_text[pos] != '"':
            raise ResponseFormatError("expected a member name in response")
        key_end = _string_end(raw_text, pos)
        try:
            key = json.loads(raw_text[pos:key_end])
        except ValueError:
            raise ResponseFormatError("invalid member name in response") from None
        pos = _WS.match(raw_text, key_end).end()
        if pos >= len(raw_text) or raw_text[pos] != ":":
            raise ResponseFormatError("expected ':' in response")
        start = _WS.match(raw_text, pos + 1).end()
        end = _value_end(raw_text, start)
        members.append((key, start, end))
        pos = _WS.match(raw_text, end).end()
        if pos < len(raw_text) and raw_text[pos] == ",":
            pos = _WS.match(raw_text, pos + 1).end()
            continue
        if pos < len(raw_text) and raw_text[pos] == "}":
            break
        raise ResponseFormatError("expected ',' or '}' in response")
    if _WS.match(raw_text, pos + 1).end() != len(raw_text):
        raise ResponseFormatError("trailing data after the response object")
    return members


def _string_member(raw_text: str, start: int, end: int, name: str) -> str | None:
    try:
        value = json.loads(raw_text[start:end])
    except (ValueError, RecursionError):
        raise ResponseFormatError(f"invalid {name} in response") from None
    if value is None:
        return None
    if not isinstance(value, str):
        raise ResponseFormatError(f"{name} in response is not a string")
    return value


def response_node_name(method: str) -> str:
    return method.replace(".", "_") + "_response"


def extract_node(raw_text: str, method: str) -> tuple[str, str, str | None, str | None]:
    """(node_name, node_text exactly as sent, sign, alipay_cert_sn) from a raw response text."""
    wanted = response_node_name(method)
    node: tuple[str, int, int] | None = None
    signature = cert_sn = None
    seen: set[str] = set()
    for key, start, end in _top_level_members(raw_text):
        if key in seen and key in (wanted, ERROR_NODE, "sign", "alipay_cert_sn"):
            raise ResponseFormatError(f"response has {key!r} twice")
        seen.add(key)
        if key in (wanted, ERROR_NODE):
            if node is not None:
                raise ResponseFormatError(f"response has both {node[0]!r} and {key!r}")
            node = (key, start, end)
        elif key == "sign":
            signature = _string_member(raw_text, start, end, "sign")
        elif key == "alipay_cert_sn":
            cert_sn = _string_member(raw_text, start, end, "alipay_cert_sn")
    if node is None:
        raise ResponseFormatError(f"response has neither {wanted!r} nor {ERROR_NODE!r}")
    name, start, end = node
    if raw_text[start] not in '{"':
        raise ResponseFormatError(f"{name} is neither an object nor an encrypted string")
    return name, raw_text[start:end], signature, cert_sn


def _verification_key(config: OpenApiConfig, cert_sn: str | None) -> RSAPublicKey:
    if config.alipay_public_keys_by_sn and cert_sn:
        key = config.alipay_public_keys_by_sn.get(cert_sn)
        if key is None:
            raise SignatureError(
                f"response signed with Alipay certificate {cert_sn}, which is not configured "
                "(Alipay rotated its certificate? download the new alipayCertPublicKey_RSA2.crt)"
            )
        return key
    if config.alipay_public_key is None:
        raise SignatureError("no Alipay public key configured to verify the response")
    return config.alipay_public_key


def _node_verifies(node_text: str, signature: str, key: RSAPublicKey, charset: str) -> bool:
    if verify(node_text, signature, key, charset):
        return True
    # Like Alipay's Java SDK: some gateways sign the text with '/' where the JSON carries '\/'.
    return "\\/" in node_text and verify(node_text.replace("\\/", "/"), signature, key, charset)


def _load_node(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's JSON parser goes
        raise ResponseFormatError(f"{name} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ResponseFormatError(f"{name} is not a JSON object")
    return value


def _text(value: Any) -> str | None:
    """A response field as text: Alipay sends strings, but nothing in a response is trusted to be one."""
    return None if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _raise_if_error(data: dict[str, Any], method: str, *, verified: bool) -> None:
    code = data.get("code")
    sub_code = _text(data.get("sub_code"))
    if (code is not None and str(code) != SUCCESS_CODE) or (code is None and sub_code):
        raise api_error(
            None if code is None else str(code),
            _text(data.get("msg")),
            sub_code,
            _text(data.get("sub_msg")),
            method,
            verified=verified,
            response=data,
        )


def parse_response(config: OpenApiConfig, method: str, raw_text: str) -> dict[str, Any]:
    """Verify and decode a gateway.do response; AlipayApiError subclasses for codes other than 10000."""
    name, node_text, signature, cert_sn = extract_node(raw_text, method)
    if not signature:
        # Only an error may come unsigned; its code is used for classification, never as a success.
        data = _load_node(node_text, name) if node_text.startswith("{") else {}
        _raise_if_error(data, method, verified=False)
        raise SignatureError(f"{name} has no sign")
    key = _verification_key(config, cert_sn)
    if not _node_verifies(node_text, signature, key, config.charset):
        raise SignatureError(f"signature of {name} does not verify")
    if node_text.startswith('"'):
        if not config.encrypt_key:
            raise ResponseFormatError(f"{name} is encrypted but no AES key is configured")
        try:
            ciphertext = json.loads(node_text)
        except ValueError:
            raise ResponseFormatError(f"{name} is not a valid JSON string") from None
        if not isinstance(ciphertext, str):
            raise ResponseFormatError(f"{name} is not a valid JSON string")
        data = _load_node(aes_decrypt(ciphertext, config.encrypt_key, config.charset), name)
    else:
        data = _load_node(node_text, name)
    _raise_if_error(data, method, verified=True)
    return data


# ---- HTTP clients -----------------------------------------------------------------------------------


def _decode_http(config: OpenApiConfig, method: str, response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 500:
        raise AlipayTransportError(
            f"{method}: Alipay gateway answered HTTP {response.status_code}", status_code=response.status_code
        )
    if response.status_code != 200:
        raise AlipayTransportError(
            f"{method}: Alipay gateway answered HTTP {response.status_code}",
            status_code=response.status_code,
            retryable=response.status_code == 429,
        )
    try:
        text = response.content.decode(config.charset)
    except UnicodeDecodeError:
        raise ResponseFormatError(f"{method}: response is not valid {config.charset}") from None
    return parse_response(config, method, text)


class AlipayClient:
    """Synchronous OpenAPI client. ``execute`` returns the verified response node as a dict."""

    def __init__(self, config: OpenApiConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self._owns_http = http is None
        self.http = http if http is not None else httpx.Client(timeout=config.timeout)
        self._url = _GatewayUrl(config.gateway_url)

    def execute(self, method: str, biz_content: Mapping[str, Any] | str | None = None, **kw: Any) -> dict[str, Any]:
        request = prepare_request(self.config, method, biz_content, **kw)
        try:
            response = self.http.post(self._url.with_query(request), content=request.body, headers=request.headers)
        except httpx.TimeoutException as exc:
            raise AlipayTransportError(f"{method}: timed out calling Alipay ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise AlipayTransportError(f"{method}: cannot reach Alipay ({exc!r})") from exc
        return _decode_http(self.config, method, response)

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> AlipayClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncAlipayClient:
    """Asynchronous OpenAPI client on httpx: an ``httpx.AsyncClient``, or the gateway's
    :class:`~lifelink.alipay.transport.PooledHttp` (anything with httpx's ``post`` and ``aclose``)."""

    def __init__(self, config: OpenApiConfig, http: AsyncPost | None = None) -> None:
        self.config = config
        self._owns_http = http is None
        self.http: AsyncPost = http if http is not None else httpx.AsyncClient(timeout=config.timeout)
        self._url = _GatewayUrl(config.gateway_url)

    async def execute(
        self, method: str, biz_content: Mapping[str, Any] | str | None = None, **kw: Any
    ) -> dict[str, Any]:
        request = prepare_request(self.config, method, biz_content, **kw)
        try:
            response = await self.http.post(
                self._url.with_query(request), content=request.body, headers=request.headers
            )
        except httpx.TimeoutException as exc:
            raise AlipayTransportError(f"{method}: timed out calling Alipay ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise AlipayTransportError(f"{method}: cannot reach Alipay ({exc!r})") from exc
        return _decode_http(self.config, method, response)

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> AsyncAlipayClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()
