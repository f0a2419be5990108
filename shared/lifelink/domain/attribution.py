"""Attribution tokens: every link into the mini program carries who sent it (app, campaign, phase, message),
HMAC-signed so the metrics side can trust it, and compact enough for Alipay's field limits (about 80 characters).

Token: ``1`` + base64url(payload) + ``.`` + base64url(first 9 bytes of HMAC-SHA256), where payload is
``app_id|campaign|phase|message|issued_minute`` (issued_minute: minutes since the Unix epoch). Several keys
may verify (rotation); the first one signs.

Links: ``alipays://platformapi/startapp?appId=…&page=…&query=…`` gets the token inside its ``query``
(the mini program reads it from its launch options); a mini-program page path (``pages/a/b?x=1``, the
subscription message ``page``) and an https link get it as a query parameter. The parameter is ``ll``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

PARAM = "ll"
_MAC_BYTES = 9
_VERSION = "1"


class InvalidToken(ValueError):
    """The token is malformed, or no configured key made its signature."""


@dataclass(frozen=True)
class Attribution:
    app_id: str
    campaign: str
    phase: str
    message: str  # a short reference of the ledger entry (see message_ref)
    issued_at: datetime

    def __post_init__(self) -> None:
        for name in ("app_id", "campaign", "phase", "message"):
            if "|" in getattr(self, name):
                raise ValueError(f"{name} may not contain '|'")


def message_ref(ledger_key: str) -> str:
    """8 url-safe characters naming a ledger entry (6 bytes of SHA-256: collisions are irrelevant here)."""
    return base64.urlsafe_b64encode(hashlib.sha256(ledger_key.encode()).digest()[:6]).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: bytes, key: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def issue(att: Attribution, key: bytes) -> str:
    minute = int(att.issued_at.timestamp() // 60)
    payload = "|".join((att.app_id, att.campaign, att.phase, att.message, str(minute))).encode()
    return f"{_VERSION}{_b64(payload)}.{_b64(_mac(payload, key))}"


def verify_token(token: str, keys: bytes | Iterable[bytes]) -> Attribution:
    if isinstance(keys, bytes):
        keys = (keys,)
    if not token or len(token) > 512 or not token.startswith(_VERSION) or token.count(".") != 1:
        raise InvalidToken("not an attribution token")
    body, mac_text = token[1:].split(".")
    try:
        payload, mac = _unb64(body), _unb64(mac_text)
    except (ValueError, TypeError):
        raise InvalidToken("not an attribution token") from None
    if not any(hmac.compare_digest(mac, _mac(payload, k)) for k in keys):
        raise InvalidToken("attribution token signature does not verify")
    parts = payload.decode("utf-8", "replace").split("|")
    if len(parts) != 5 or not parts[4].isdigit():
        raise InvalidToken("attribution token payload is malformed")
    app_id, campaign, phase, message, minute = parts
    return Attribution(app_id, campaign, phase, message, datetime.fromtimestamp(int(minute) * 60, UTC))


def _with_param(query: str, token: str) -> str:
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != PARAM]
    pairs.append((PARAM, token))
    return urlencode(pairs, quote_via=quote)


def tag_link(link: str, token: str) -> str:
    """``link`` with the token added where the mini program will read it (replacing any earlier token)."""
    parts = urlsplit(link)
    if parts.scheme == "alipays":
        outer = parse_qsl(parts.query, keep_blank_values=True)
        inner = next((v for k, v in outer if k == "query"), "")
        outer = [(k, v) for k, v in outer if k != "query"] + [("query", _with_param(inner, token))]
        return urlunsplit(parts._replace(query=urlencode(outer, quote_via=quote)))
    if parts.scheme in ("http", "https"):
        return urlunsplit(parts._replace(query=_with_param(parts.query, token)))
    path, _, query = link.partition("?")  # a mini-program page path
    return f"{path}?{_with_param(query, token)}"


def token_from_query(query: str | dict[str, str]) -> str | None:
    """The token in a mini program's launch query (a dict or a query string), if any."""
    if isinstance(query, dict):
        return query.get(PARAM)
    return dict(parse_qsl(query)).get(PARAM)
