"""Typed errors of the Alipay protocol core, and the one place that decides whether a retry can help."""

from __future__ import annotations

import re

SUCCESS_CODE = "10000"

# Sub-code fragments that mean "too often / too busy right now": retrying later can succeed.
_RETRYABLE_SUB_CODE_MARKERS: tuple[str, ...] = ("FREQUENCY", "LIMIT", "OVER", "BUSY", "SYSTEM_ERROR")
# Sub-codes that contain a marker above but describe a permanent condition.
# PUB.MSG_SD_OVER_TIME: outside the 48 h custom-send window (only a new interaction reopens it);
# PUB.MSG_SD_OVER_LIMIT: the user's 100 custom messages of the day are used up.
_FATAL_SUB_CODES: frozenset[str] = frozenset({"FORM_ID_OVER_TIME", "MSG_SD_OVER_TIME", "MSG_SD_OVER_LIMIT"})


# sub_msg as kept and logged: at most this many characters, the start and the end of a longer text.
SUB_MSG_LIMIT = 512
_SUB_MSG_HEAD = 320
_ELLIPSIS = " … "
# What a sub_msg may quote that must not be kept: for isv.invalid-signature it is the whole string Alipay verified
# (``app_auth_token=…&biz_content={"to_user_id":"2088…",…}&…``). Tokens and user ids become ``***``.
_SECRET_PARAM = re.compile(r"((?:^|[&?\s：:,])(?:app_auth_token|auth_token|encrypt_key)=)[^&\s]*")
_ID_MEMBER = re.compile(
    r'("(?:[a-z_]*(?:user_id|open_id|union_id|logon_id|token|mobile|phone)[a-z_]*)"\s*:\s*)"(?:[^"\\]|\\.)*"',
    re.I,
)
_ID_PARAM = re.compile(r"((?:^|[&?\s：:,])[a-z_]*(?:user_id|open_id|union_id|logon_id)=)[^&\s]*", re.I)
_USER_ID = re.compile(r"2088\d{12}")
_TRACKING = re.compile(r"([?&]ll=)[^&\s\"\\]*")  # an attribution token in a quoted link (domain.attribution.PARAM)
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{100,}={0,2}")  # keys, certificates, ciphertext: never kept


def redact_sub_msg(sub_msg: str | None, limit: int = SUB_MSG_LIMIT) -> str | None:
    """Alipay's ``sub_msg`` as it may be kept and logged: tokens, user ids (2088…, open ids, union ids) and long
    base64 runs (key or certificate material, ciphertext) replaced, then cut to ``limit`` characters keeping the
    start and the end (the end of a quoted signed string holds charset, method, sign_type and timestamp)."""
    if not sub_msg:
        return None
    text = str(sub_msg)
    text = _SECRET_PARAM.sub(r"\1***", text)
    text = _ID_MEMBER.sub(r'\1"***"', text)
    text = _ID_PARAM.sub(r"\1***", text)
    text = _USER_ID.sub("2088***", text)
    text = _TRACKING.sub(r"\1***", text)
    text = _LONG_BASE64.sub(lambda m: f"[{len(m.group())} base64 chars]", text)
    if len(text) > limit:
        head = min(_SUB_MSG_HEAD, limit // 2 + limit // 8)
        tail = max(0, limit - head - len(_ELLIPSIS))
        text = text[:head] + _ELLIPSIS + (text[-tail:] if tail else "")
    return text


class AlipayError(Exception):
    """Base class of every error raised by lifelink.alipay."""

    retryable: bool = False


class KeyFormatError(AlipayError, ValueError):
    """Key text that cannot be parsed in any Alipay format (or is the wrong kind of key)."""


class KeyMismatchError(AlipayError, ValueError):
    """Keys that parse but are configured in the wrong place (e.g. the app's own public key as Alipay's)."""


class SignatureError(AlipayError):
    """A signature is missing, of an unsupported type, or does not verify."""


class ResponseFormatError(AlipayError):
    """An OpenAPI response without its node, with the node twice, or with invalid JSON."""


class CallbackFormatError(AlipayError, ValueError):
    """A malformed, oversized or mis-encoded callback body."""


class AesError(AlipayError, ValueError):
    """Bad AES key or ciphertext (content encryption, encrypt_type=AES)."""


class AlipayTransportError(AlipayError):
    """The request did not get a usable HTTP answer (connect error, timeout, 5xx): a retry can help."""

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = retryable


def classify(code: str | None, sub_code: str | None = None) -> bool:
    """Return True when retrying the same call later can help (the single source of this rule).

    10000 success (not an error); 20000 service unavailable, outcome unknown: retryable (retry or query);
    40005 call limited: retryable later;
    20001 token problems, 40001 missing argument, 40002 invalid argument, 40006 missing permission: fatal;
    40004 business failure: fatal, except rate/frequency/busy sub-codes (e.g. PUB.MSG_BATCH_SD_OVER):
    retryable later. Unknown codes: fatal.
    """
    code = (code or "").strip()
    if code in ("20000", "40005"):  # service unavailable; call limit reached (isv.app-call-limited)
        return True
    if "call-limited" in (sub_code or "").lower():  # isv.app-call-limited / isv.method-call-limited, any code
        return True
    if code == "40004":
        sub = (sub_code or "").upper()
        if not sub:
            return False
        tail = sub.rsplit(".", 1)[-1]
        if tail in _FATAL_SUB_CODES or sub in _FATAL_SUB_CODES:
            return False
        return any(marker in sub for marker in _RETRYABLE_SUB_CODE_MARKERS)
    return False


class AlipayApiError(AlipayError):
    """Alipay answered with a code other than 10000."""

    def __init__(
        self,
        code: str | None,
        msg: str | None = None,
        sub_code: str | None = None,
        sub_msg: str | None = None,
        method: str | None = None,
        *,
        retryable: bool | None = None,
        verified: bool = True,
        response: dict | None = None,
    ) -> None:
        self.code = code
        self.msg = msg
        self.sub_code = sub_code
        self.sub_msg = sub_msg
        self.method = method
        self.retryable = classify(code, sub_code) if retryable is None else retryable
        self.verified = verified  # False when Alipay sent the error without a signature
        self.response = response or {}
        text = f"{method or 'alipay'}: code={code} msg={msg!r}"
        if sub_code or sub_msg:  # the message may be logged: its sub_msg is redacted (``.sub_msg`` stays raw)
            text += f" sub_code={sub_code} sub_msg={redact_sub_msg(sub_msg)!r}"
        text += " (retryable)" if self.retryable else " (fatal: retrying will not help)"
        super().__init__(text)


class RetryableApiError(AlipayApiError):
    """An API error for which retrying later (with backoff) can help."""


class FatalApiError(AlipayApiError):
    """An API error that will recur on retry: fix the request, configuration or permissions."""


def api_error(
    code: str | None,
    msg: str | None = None,
    sub_code: str | None = None,
    sub_msg: str | None = None,
    method: str | None = None,
    *,
    verified: bool = True,
    response: dict | None = None,
) -> AlipayApiError:
    """Build the right AlipayApiError subclass for a code/sub_code pair."""
    cls = RetryableApiError if classify(code, sub_code) else FatalApiError
    return cls(code, msg, sub_code, sub_msg, method, verified=verified, response=response)
