"""Property tests of callback form parsing (decode once, in the body's own charset), family detection and
verification.

What a user relies on: any bytes either parse or raise CallbackFormatError (never a stray IndexError,
KeyError or UnicodeDecodeError); what Alipay encodes comes back exactly, in UTF-8 and the GBK family;
a callback signed under its family's rule verifies, and one changed field makes it fail.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelink.alipay.callbacks import (
    MAX_BODY_BYTES,
    CallbackFamily,
    detect_family,
    normalize_charset,
    parse_form,
    verify_callback,
)
from lifelink.alipay.errors import CallbackFormatError, SignatureError
from lifelink.alipay.signing import canonical_string, sign

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=150)

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded;charset=utf-8",
        "application/x-www-form-urlencoded; charset=GBK",
        'application/x-www-form-urlencoded; charset="gb2312"',
        "application/x-www-form-urlencoded;charset=latin-1",
        "text/plain; charset=",
    ]
)
# Form-shaped bytes: separators, percent escapes (valid, truncated, non-hex), '+', charset fields, high bytes.
FORM_PIECES = st.sampled_from(
    [b"&", b"=", b"%", b"%2", b"%zz", b"%e4%b8", b"%ff", b"%c4%e3", b"+", b"a", b"sign", b"charset=",
     b"charset=gbk", b"charset=utf-8", b"charset=%ff", b"charset=GB2312", b"charset=x", b"\xff", b"\xe4\xb8\xad",
     b"%00", b"%26", b"%3D", b"notify_type=t"]
)  # fmt: skip
FORMISH = st.lists(FORM_PIECES | st.binary(max_size=4), max_size=24).map(b"".join)


@FUZZ
@given(body=st.one_of(st.binary(max_size=200), FORMISH), content_type=CONTENT_TYPES)
def test_any_bytes_parse_or_raise_callback_format_error(body: bytes, content_type: str | None) -> None:
    try:
        params, charset = parse_form(body, content_type)
    except CallbackFormatError:
        return
    assert params
    assert all(isinstance(k, str) and k for k in params)
    assert all(isinstance(v, str) for v in params.values())
    codec = normalize_charset(charset)  # the charset reported is one we decode with
    declared = params.get("charset")
    if declared is not None:
        assert normalize_charset(declared) == codec


@FUZZ
@given(body=FORMISH, size=st.integers(1, 64))
def test_oversized_bodies_are_refused_before_decoding(body: bytes, size: int) -> None:
    with pytest.raises(CallbackFormatError):
        parse_form(body + b"x" * (size + 1), max_bytes=len(body) + size)


# Charset name as Alipay writes it in the form -> the codec its values are encoded with.
CHARSET_NAMES = st.sampled_from(["utf-8", "UTF-8", "GBK", "gbk", "GB2312", "gb18030"])
CODECS = {"utf-8": "utf-8", "gbk": "gbk", "gb2312": "gb2312", "gb18030": "gb18030"}
SAMPLE_TEXT = "早鸟券直播闪购投票问卷,./?&=+%#;:'\"<>{} \t\n€™é"


def text_in(codec: str, min_size: int = 0) -> st.SearchStrategy[str]:
    """Text Alipay could send in this charset: everyday CJK and separators, plus anything the codec encodes."""
    sample = "".join(ch for ch in SAMPLE_TEXT if ch.encode(codec, "replace") != b"?")
    chars = st.sampled_from(sample) | st.characters(codec=codec, exclude_categories=["Cs"])
    return st.text(alphabet=chars, min_size=min_size, max_size=16)


# Built once per codec (building a codec's alphabet is the slow part).
KEYS_IN = {codec: text_in(codec, min_size=1).filter(lambda k: k != "charset") for codec in CODECS.values()}
VALUES_IN = {codec: text_in(codec) for codec in CODECS.values()}


@st.composite
def forms(draw: st.DrawFn) -> tuple[dict[str, str], str]:
    name = draw(CHARSET_NAMES)
    codec = CODECS[name.lower()]
    params = draw(st.dictionaries(KEYS_IN[codec], VALUES_IN[codec], max_size=8))
    params["charset"] = name
    ordered = draw(st.permutations(list(params.items())))
    return dict(ordered), name


@FUZZ
@given(form=forms(), quote_spaces_as_plus=st.booleans())
def test_encoded_forms_parse_back_exactly(form: tuple[dict[str, str], str], quote_spaces_as_plus: bool) -> None:
    params, name = form
    codec = CODECS[name.lower()]
    if quote_spaces_as_plus:
        body = urlencode(params, encoding=codec).encode("ascii")
    else:  # %20 for spaces, as some senders do
        body = "&".join(f"{quote(k, safe='', encoding=codec)}={quote(v, safe='', encoding=codec)}"
                        for k, v in params.items()).encode("ascii")  # fmt: skip
    decoded, charset = parse_form(body)
    assert decoded == params
    assert charset == name


@FUZZ
@given(params=st.dictionaries(KEYS_IN["gbk"], VALUES_IN["gbk"], min_size=1))
def test_gbk_form_without_charset_field_uses_the_header(params: dict[str, str]) -> None:
    body = urlencode(params, encoding="gbk").encode("ascii")
    decoded, charset = parse_form(body, "application/x-www-form-urlencoded; charset=GBK")
    assert decoded == params
    assert charset == "GBK"


@FUZZ
@given(form=forms(), repeat=st.data())
def test_a_repeated_field_is_refused(form: tuple[dict[str, str], str], repeat: st.DataObject) -> None:
    params, name = form
    codec = CODECS[name.lower()]
    key = repeat.draw(st.sampled_from(sorted(params)))
    body = urlencode(params, encoding=codec) + "&" + urlencode({key: "again"}, encoding=codec)
    with pytest.raises(CallbackFormatError):
        parse_form(body.encode("ascii"))


# ---- family detection and verification -----------------------------------------------------------------

FAMILY_KEYS = st.sampled_from(["msg_method", "service", "method", "notify_type"])
EXCLUDED_BY_FAMILY = {
    CallbackFamily.TRADE: ("sign", "sign_type"),
    CallbackFamily.GATEWAY: ("sign",),
    CallbackFamily.MESSAGE: ("sign", "sign_type"),
}


def reference_family(params: dict[str, str]) -> CallbackFamily | None:
    """ALIPAY.md's table, in the order callbacks.py documents: msg_method, then service/method, then notify_type."""
    if params.get("msg_method"):
        return CallbackFamily.MESSAGE
    if params.get("service") or params.get("method"):
        return CallbackFamily.GATEWAY
    if params.get("notify_type"):
        return CallbackFamily.TRADE
    return None


@FUZZ
@given(params=st.dictionaries(FAMILY_KEYS | st.text(max_size=6), st.sampled_from(["", "x", "alipay.service.check"])))
def test_detect_family_follows_the_table(params: dict[str, str]) -> None:
    expected = reference_family(params)
    if expected is None:
        with pytest.raises(CallbackFormatError):
            detect_family(params)
    else:
        assert detect_family(params) is expected


@st.composite
def callbacks(draw: st.DrawFn) -> tuple[dict[str, str], str, str]:
    """(params without sign, charset name, codec) for one of the three families."""
    params, name = draw(forms())
    codec = CODECS[name.lower()]
    for key in ("msg_method", "service", "method", "notify_type", "sign", "sign_type"):
        params.pop(key, None)
    family_key = draw(FAMILY_KEYS)
    params[family_key] = draw(KEYS_IN[codec])
    params["sign_type"] = draw(st.sampled_from(["RSA2", "rsa2"]))
    return params, name, codec


@FUZZ
@given(callback=callbacks(), field=st.data())
def test_signed_callbacks_verify_and_a_changed_field_does_not(
    alipay_keys: Any, other_keys: Any, callback: tuple[dict[str, str], str, str], field: st.DataObject
) -> None:
    params, name, codec = callback
    family = reference_family(params)
    assert family is not None
    signed = {**params, "sign": sign(canonical_string(params, EXCLUDED_BY_FAMILY[family]).encode(codec),
                                      alipay_keys.private)}  # fmt: skip
    decoded, charset = parse_form(urlencode(signed, encoding=codec).encode("ascii"))
    assert charset == name
    public = alipay_keys.private.public_key()
    assert verify_callback(decoded, charset, public) is family
    with pytest.raises(SignatureError):
        verify_callback(decoded, charset, other_keys.private.public_key())
    # Change one signed field (never sign itself, nor sign_type where the family leaves it unsigned).
    signed_keys = sorted(k for k, v in decoded.items() if k not in EXCLUDED_BY_FAMILY[family] and v)
    key = field.draw(st.sampled_from(signed_keys))
    tampered = {**decoded, key: decoded[key] + "1"}
    if reference_family(tampered) is not family:
        return  # the change moved it to another family: a different rule, covered by the next property
    with pytest.raises(SignatureError):
        verify_callback(tampered, charset, public)


@FUZZ
@given(
    params=st.dictionaries(FAMILY_KEYS | st.sampled_from(["sign", "sign_type", "charset"]) | st.text(max_size=6),
                           st.text(max_size=12) | st.sampled_from(["RSA2", "", "x" * 40, "YWJj"]), max_size=8),
    charset=st.sampled_from(["utf-8", "GBK", "gb2312", "latin-1", ""]),
)  # fmt: skip
def test_unsigned_or_forged_callbacks_never_verify(alipay_keys: Any, params: dict[str, str], charset: str) -> None:
    with pytest.raises((SignatureError, CallbackFormatError)):
        verify_callback(params, charset, alipay_keys.private.public_key())


def test_the_form_limit_is_64_kib() -> None:
    body = b"notify_type=t&pad=" + b"x" * (MAX_BODY_BYTES - len(b"notify_type=t&pad="))
    assert parse_form(body)[0]["pad"] == "x" * (MAX_BODY_BYTES - 18)
    with pytest.raises(CallbackFormatError):
        parse_form(body + b"x")
