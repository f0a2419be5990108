"""Property tests of the OpenAPI response-node extraction (brace matching on the raw text) and parse_response.

What a user relies on: the node handed to signature verification is exactly the text Alipay sent for it
(whatever its strings hold: braces, quotes, escaped slashes, unicode), a duplicated node is refused, and
no input makes parse_response raise anything but lifelink.alipay's own errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lifelink.alipay.errors import AlipayApiError, AlipayError, ResponseFormatError, SignatureError
from lifelink.alipay.openapi import OpenApiConfig, extract_node, parse_response, response_node_name
from lifelink.alipay.signing import sign

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=100)
GATEWAY = "https://openapi.test.invalid/gateway.do"
METHODS = st.sampled_from(
    ["alipay.open.public.message.single.send", "alipay.trade.query", "alipay.system.oauth.token", "a.b"]
)

# Strings that stress a brace matcher: structure characters, quotes, backslashes, slashes, unicode.
TRICKY_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from('{}[]"\\/:, ab早\u2028\n\t'), max_size=12),
    st.text(max_size=8),
    st.sampled_from(['{"alipay_trade_query_response":{', '"sign":"x"', "\\", '\\"', "}}]]", "http://a/b", "\\/"]),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY_TEXT, inner, max_size=4),
    max_leaves=12,
)
NODES = st.dictionaries(TRICKY_TEXT, JSON_VALUES, max_size=5)
WS = st.text(alphabet=" \t\r\n", max_size=2)


@dataclass(frozen=True)
class Style:
    ensure_ascii: bool
    compact: bool
    escape_slash: bool  # Java-style '\/' for every '/' (only ever inside strings in JSON)


STYLES = st.builds(Style, st.booleans(), st.booleans(), st.booleans())


def dump(value: Any, style: Style) -> str:
    separators = (",", ":") if style.compact else (", ", ": ")
    text = json.dumps(value, ensure_ascii=style.ensure_ascii, separators=separators)
    return text.replace("/", "\\/") if style.escape_slash else text


def body(members: list[tuple[str, str]], ws: str) -> str:
    """A top-level object from (raw key text, raw value text) pairs, whitespace around every token."""
    inner = ",".join(f"{ws}{key}{ws}:{ws}{value}{ws}" for key, value in members)
    return f"{ws}{{{inner}{ws}}}{ws}"


@st.composite
def responses(draw: st.DrawFn) -> tuple[str, str, str, str, str | None, str | None]:
    """(raw body, method, node name, node text, sign, cert_sn) with the node among decoy siblings."""
    method = draw(METHODS)
    name = draw(st.sampled_from([response_node_name(method), "error_response"]))
    style = draw(STYLES)
    node_text = dump(draw(NODES), style)
    reserved = {response_node_name(method), "error_response", "sign", "alipay_cert_sn"}
    siblings = draw(st.dictionaries(TRICKY_TEXT.filter(lambda k: k not in reserved), JSON_VALUES, max_size=3))
    members = [(json.dumps(k), dump(v, style)) for k, v in siblings.items()]
    members.append((json.dumps(name), node_text))
    signature = draw(st.none() | st.text(alphabet="ABCxyz0189+/=", max_size=12))
    if signature is not None:
        members.append(('"sign"', dump(signature, style)))
    cert_sn = draw(st.none() | st.text(alphabet="0123456789abcdef", min_size=1, max_size=8))
    if cert_sn is not None:
        members.append(('"alipay_cert_sn"', json.dumps(cert_sn)))
    ordered = draw(st.permutations(members))
    return body(ordered, draw(WS)), method, name, node_text, signature, cert_sn


@FUZZ
@given(response=responses())
def test_extract_node_returns_exactly_the_node_text(
    response: tuple[str, str, str, str, str | None, str | None],
) -> None:
    raw, method, name, node_text, signature, cert_sn = response
    got_name, got_text, got_sign, got_sn = extract_node(raw, method)
    assert (got_name, got_text, got_sign, got_sn) == (name, node_text, signature, cert_sn)
    # And it is the node a JSON parser sees in the same body.
    assert json.loads(got_text) == json.loads(raw)[name]


@FUZZ
@given(response=responses(), escaped_key=st.booleans(), other=NODES, style=STYLES)
def test_a_duplicated_node_is_refused(
    response: tuple[str, str, str, str, str | None, str | None], escaped_key: bool, other: dict, style: Style
) -> None:
    raw, method, name, *_ = response
    # The second copy may spell its name with a \u escape: it is still the same member name in JSON.
    key = json.dumps(name).replace("_", "\\u005f", 1) if escaped_key and "_" in name else json.dumps(name)
    duplicated = raw.rstrip(" \t\r\n")[:-1] + f",{key}:{dump(other, style)}}}"
    with pytest.raises(ResponseFormatError):
        extract_node(duplicated, method)


@FUZZ
@given(response=responses(), style=STYLES)
def test_both_the_node_and_error_response_is_refused(
    response: tuple[str, str, str, str, str | None, str | None], style: Style
) -> None:
    raw, method, name, *_ = response
    other = "error_response" if name != "error_response" else response_node_name(method)
    both = raw.rstrip(" \t\r\n")[:-1] + f',"{other}":{dump({"code": "40004"}, style)}}}'
    with pytest.raises(ResponseFormatError):
        extract_node(both, method)


@FUZZ
@given(method=METHODS, top=st.dictionaries(TRICKY_TEXT, JSON_VALUES, max_size=4), style=STYLES)
def test_without_the_node_the_response_is_refused(method: str, top: dict, style: Style) -> None:
    top = {k: v for k, v in top.items() if k not in (response_node_name(method), "error_response")}
    with pytest.raises(ResponseFormatError):
        extract_node(dump(top, style), method)


# ---- parse_response on arbitrary and on signed input ---------------------------------------------------


@pytest.fixture(scope="module")
def config(alipay_keys: Any, app_keys: Any) -> OpenApiConfig:
    return OpenApiConfig(
        app_id="2021000000000000",
        app_private_key=app_keys.private,
        alipay_public_key=alipay_keys.private.public_key(),
        gateway_url=GATEWAY,
        encrypt_key="aa4BtZ4tspm2wnXLb1ThQA==",
    )


JSONISH = st.text(alphabet=st.sampled_from('{}[]":,\\/ \nabu0159e.-+"') | st.characters(), max_size=80)


@st.composite
def mutated_responses(draw: st.DrawFn) -> tuple[str, str]:
    """A generated response cut, spliced or with a character replaced: near-valid text."""
    raw, method, *_ = draw(responses())
    cut = draw(st.integers(0, len(raw)))
    how = draw(st.sampled_from(["truncate", "insert", "replace", "drop"]))
    piece = draw(st.sampled_from(['"', "\\", "{", "}", "[", "]", ",", ":", "x", " ", '\\"']))
    if how == "truncate":
        raw = raw[:cut]
    elif how == "insert":
        raw = raw[:cut] + piece + raw[cut:]
    elif how == "replace":
        raw = raw[:cut] + piece + raw[cut + 1 :]
    else:
        raw = raw[:cut] + raw[cut + 1 :]
    return raw, method


@FUZZ
@given(case=st.one_of(mutated_responses(), st.tuples(JSONISH, METHODS)))
def test_parse_response_raises_only_its_own_errors(config: OpenApiConfig, case: tuple[str, str]) -> None:
    raw, method = case
    with pytest.raises(AlipayError):  # never returns: nothing here is signed by Alipay's key
        parse_response(config, method, raw)


@FUZZ
@given(method=METHODS, node=NODES, style=STYLES, code=st.sampled_from([None, "10000"]), ws=WS)
def test_signed_success_node_is_returned_as_sent(
    config: OpenApiConfig, alipay_keys: Any, method: str, node: dict, style: Style, code: str | None, ws: str
) -> None:
    node = {k: v for k, v in node.items() if k not in ("code", "sub_code")}
    if code is not None:
        node["code"] = code
    node_text = dump(node, style)
    # With escaped slashes, sign the '/' form (what some gateways sign): the Java SDK's retry must accept it.
    signature = sign(node_text.replace("\\/", "/") if style.escape_slash else node_text, alipay_keys.private)
    raw = body([(json.dumps(response_node_name(method)), node_text), ('"sign"', json.dumps(signature))], ws)
    assert parse_response(config, method, raw) == node


@FUZZ
@given(method=METHODS, node=NODES, style=STYLES, where=st.integers(0, 10_000), other_key=st.booleans())
def test_tampered_or_foreign_signed_node_is_refused(
    config: OpenApiConfig,
    alipay_keys: Any,
    other_keys: Any,
    method: str,
    node: dict,
    style: Style,
    where: int,
    other_key: bool,
) -> None:
    node_text = dump(node, style)
    if other_key:
        signature = sign(node_text, other_keys.private)
    else:
        signature = sign(node_text, alipay_keys.private)
        node = {**node, "tampered": where}
        node_text = dump(node, style)
    raw = body([(json.dumps(response_node_name(method)), node_text), ('"sign"', json.dumps(signature))], "")
    with pytest.raises(SignatureError):
        parse_response(config, method, raw)


# ---- inputs that once leaked an exception the API does not name (found by these tests, fixed) ----------

SCALARS = st.none() | st.booleans() | st.integers() | TRICKY_TEXT | st.lists(st.integers(), max_size=2)


@FUZZ
@given(method=METHODS, code=SCALARS, sub_code=SCALARS, msg=SCALARS)
@example(method="a.b", code=None, sub_code=1, msg=None)
def test_unsigned_error_node_with_any_field_types_raises_an_api_error(
    config: OpenApiConfig, method: str, code: Any, sub_code: Any, msg: Any
) -> None:
    node = json.dumps({"code": code, "sub_code": sub_code, "msg": msg})
    with pytest.raises((AlipayApiError, SignatureError)):
        parse_response(config, method, f'{{"error_response":{node},"sign":""}}')


@pytest.mark.parametrize("where", ["node", "sign", "alipay_cert_sn"])
def test_deeply_nested_json_is_refused_with_a_response_error(config: OpenApiConfig, where: str) -> None:
    deep = "[" * 25_000 + "]" * 25_000
    raw = {
        "node": f'{{"error_response":{{"a":{deep}}}}}',
        "sign": f'{{"error_response":{{}},"sign":{deep}}}',
        "alipay_cert_sn": f'{{"error_response":{{}},"alipay_cert_sn":{deep}}}',
    }[where]
    with pytest.raises(AlipayError):
        parse_response(config, "a.b", raw)


@FUZZ
@given(content=st.text(alphabet=st.sampled_from("\\quU0a9fA=+/ "), max_size=10))
@example(content="\\q")
def test_signed_encrypted_node_with_bad_escapes_raises_a_response_error(
    config: OpenApiConfig, alipay_keys: Any, content: str
) -> None:
    node_text = f'"{content}"' if not content.endswith("\\") else f'"{content}\\"'
    raw = body([('"a_b_response"', node_text), ('"sign"', json.dumps(sign(node_text, alipay_keys.private)))], "")
    with pytest.raises(AlipayError):  # AES garbage or bad escapes: never a result, never a foreign error
        parse_response(config, "a.b", raw)
