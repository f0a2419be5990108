"""Property tests of the life-account gateway's hardened XML parser.

What a user relies on: any text either parses or raises CallbackFormatError; DOCTYPE and entities are
refused whatever they look like; size, depth and element count are bounded exactly where documented;
well-formed messages of every kind the registry knows come back with their fields, in any element order,
CDATA or escaped, whatever case and padding the type names carry.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lifelink.alipay.errors import CallbackFormatError
from lifelink.alipay.lifegateway import (
    MAX_XML_BYTES,
    MAX_XML_DEPTH,
    MAX_XML_ELEMENTS,
    MESSAGE_KINDS,
    UNKNOWN_KIND,
    GatewayMessage,
    parse_gateway_xml,
)

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=150)

XML_PIECES = st.sampled_from(
    ["<XML>", "</XML>", "<A>", "</A>", "<A/>", "<![CDATA[", "]]>", "<!--", "-->", "<?xml version='1.0'?>",
     "<!DOCTYPE XML [", "<!ENTITY e 'x'>", "]>", "&e;", "&amp;", "&#x41;", "&#0;", "<", ">", "&", "'", '"',
     "a", " ", "\n", "\x00", "\ufffe", "早", "<MsgType>", "</MsgType>", "event", "<ActionParam>{", "}</ActionParam>",
     'SYSTEM "file:///etc/passwd"', "%e;", "<?pi x?>", "<XML a='1' a='2'>"]
)  # fmt: skip
XMLISH = st.lists(XML_PIECES | st.text(max_size=4), max_size=30).map("".join)


@FUZZ
@given(xml=st.one_of(st.text(max_size=100), XMLISH))
def test_any_text_parses_or_raises_callback_format_error(xml: str) -> None:
    try:
        message = parse_gateway_xml(xml)
    except CallbackFormatError:
        return
    assert isinstance(message, GatewayMessage)
    assert message.kind == UNKNOWN_KIND or message.kind in MESSAGE_KINDS.values()


# ---- DOCTYPE, entities, bounds -------------------------------------------------------------------------

DOCTYPES = st.sampled_from(
    [
        "<!DOCTYPE XML>",
        "<!DOCTYPE XML []>",
        '<!DOCTYPE XML SYSTEM "http://127.0.0.1:1/x.dtd">',
        '<!DOCTYPE XML PUBLIC "-//X//EN" "file:///etc/passwd">',
        '<!DOCTYPE XML [<!ENTITY e "x">]>',
        '<!DOCTYPE XML [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE XML [<!ENTITY % p SYSTEM "http://127.0.0.1:1/p.dtd"> %p;]>',
        '<!DOCTYPE XML [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',
        '<!DOCTYPE XML [<!NOTATION n SYSTEM "x"><!ENTITY u SYSTEM "x" NDATA n>]>',
        '<!DOCTYPE XML [<!ELEMENT XML ANY><!ATTLIST XML a CDATA "d">]>',
    ]
)
ENTITY_USES = st.sampled_from(["", "&e;", "&c;", "&u;", "x"])


@FUZZ
@given(doctype=DOCTYPES, use=ENTITY_USES, declaration=st.booleans(), ws=st.sampled_from(["", "\n", " \r\n"]))
def test_doctype_and_entities_are_refused(doctype: str, use: str, declaration: bool, ws: str) -> None:
    head = '<?xml version="1.0" encoding="GBK"?>' if declaration else ""
    xml = f"{head}{ws}{doctype}{ws}<XML><MsgType><![CDATA[event]]></MsgType><Text>{use}</Text></XML>"
    with pytest.raises(CallbackFormatError, match="refused"):
        parse_gateway_xml(xml)


@FUZZ
@given(name=st.sampled_from(["e", "nbsp", "amp2", "x"]), where=st.sampled_from(["text", "attr"]))
def test_undeclared_entities_are_refused(name: str, where: str) -> None:
    xml = f"<XML><Text>&{name};</Text></XML>" if where == "text" else f"<XML a='&{name};'></XML>"
    with pytest.raises(CallbackFormatError):
        parse_gateway_xml(xml)


@FUZZ
@given(depth=st.integers(1, 3 * MAX_XML_DEPTH), tag=st.sampled_from(["A", "Text", "x-y"]))
def test_nesting_depth_is_bounded(depth: int, tag: str) -> None:
    xml = "<XML>" + f"<{tag}>" * (depth - 1) + "v" + f"</{tag}>" * (depth - 1) + "</XML>"
    if depth <= MAX_XML_DEPTH:  # the root counts as one level
        assert parse_gateway_xml(xml).kind == UNKNOWN_KIND
    else:
        with pytest.raises(CallbackFormatError, match="too deep"):
            parse_gateway_xml(xml)


@FUZZ
@given(children=st.integers(MAX_XML_ELEMENTS - 8, MAX_XML_ELEMENTS + 8))
def test_element_count_is_bounded(children: int) -> None:
    xml = "<XML>" + "".join(f"<F{i}>v</F{i}>" for i in range(children)) + "</XML>"
    if children + 1 <= MAX_XML_ELEMENTS:
        assert len(parse_gateway_xml(xml).fields) == children
    else:
        with pytest.raises(CallbackFormatError, match="too many elements"):
            parse_gateway_xml(xml)


@FUZZ
@given(extra=st.integers(-64, 64), fill=st.sampled_from(["a", "早", "\U0001f600"]))
def test_size_is_bounded_in_bytes(extra: int, fill: str) -> None:
    head, tail = "<XML><Text><![CDATA[", "]]></Text></XML>"
    room = MAX_XML_BYTES + extra - len(head) - len(tail)
    width = len(fill.encode("utf-8"))
    xml = head + fill * (room // width) + "a" * (room % width) + tail
    assert len(xml.encode("utf-8")) == MAX_XML_BYTES + extra
    if extra <= 0:
        assert parse_gateway_xml(xml).fields["Text"].startswith(fill)
    else:
        with pytest.raises(CallbackFormatError, match="exceeds"):
            parse_gateway_xml(xml)


@FUZZ
@given(name=st.sampled_from(["AppId", "MsgType", "Text/Content", "Image/MediaId"]))
def test_a_repeated_element_is_refused(name: str) -> None:
    parent, _, child = name.rpartition("/")
    one = f"<{child}>x</{child}>"
    inner = f"<{parent}>{one}{one}</{parent}>" if parent else one + one
    with pytest.raises(CallbackFormatError, match="twice"):
        parse_gateway_xml(f"<XML>{inner}</XML>")


# ---- round trips of well-formed messages ---------------------------------------------------------------

# XML 1.0 character data: no controls but tab/newline, no surrogates or non-characters; no CR (the parser
# normalises line ends as XML requires).
XML_CHARS = st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\ufffe\uffff") | st.sampled_from(
    "\t\n <>&'\"]]>早鸟{}"
)
VALUES = st.text(alphabet=XML_CHARS, max_size=24)
KNOWN = sorted(MESSAGE_KINDS.items(), key=lambda item: (item[0][0], item[0][1] or ""))


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def encode_value(value: str, as_cdata: bool) -> str:
    return cdata(value) if as_cdata else escape(value)


def case_and_pad(draw: st.DrawFn, value: str) -> str:
    cased = "".join(draw(st.sampled_from([ch.lower(), ch.upper()])) for ch in value)
    return draw(st.sampled_from(["", " ", "\n"])) + cased + draw(st.sampled_from(["", " ", "\t"]))


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, dict[str, str | None], str]:
    """(XML text, expected fields, expected kind) for a message type the registry knows."""
    (msg_type, event_type), kind = draw(st.sampled_from(KNOWN))
    if event_type is None and msg_type == "event":
        event_type = draw(st.sampled_from(["anything", "verifygw2"]))
    as_cdata = draw(st.booleans())
    fields: dict[str, str] = {
        "AppId": draw(st.from_regex(r"20[0-9]{14}", fullmatch=True)),
        "FromAlipayUserId": draw(st.from_regex(r"2088[0-9]{12}", fullmatch=True)),
        "FromUserId": draw(st.text(alphabet="abcXYZ019+/=", min_size=1, max_size=20)),
        "CreateTime": str(draw(st.integers(0, 2**53))),
        "MsgType": case_and_pad(draw, msg_type),
    }
    if event_type is not None:
        fields["EventType"] = case_and_pad(draw, event_type)
    scene = draw(st.none() | st.integers(0, 10**9) | st.text(alphabet=XML_CHARS, min_size=1, max_size=12))
    if scene is not None:
        fields["ActionParam"] = json.dumps({"scene": {"sceneId": scene}}, ensure_ascii=draw(st.booleans()))
    extras = draw(st.dictionaries(st.from_regex(r"X[A-Za-z]{0,8}", fullmatch=True), VALUES, max_size=4))
    fields.update(extras)
    body = [f"<{k}>{encode_value(v, as_cdata)}</{k}>" for k, v in fields.items()]
    text = draw(st.none() | VALUES.filter(lambda v: v.strip() != ""))
    if text is not None:
        body.append(f"<Text><Content>{encode_value(text, as_cdata)}</Content></Text>")
    media = draw(st.none() | st.text(alphabet="abc0123_-", min_size=1, max_size=16))
    if media is not None:
        body.append(f"<Image><MediaId>{media}</MediaId></Image>")
    ordered = draw(st.permutations(body))
    head = draw(st.sampled_from(["", '<?xml version="1.0" encoding="GBK"?>', "<?xml version='1.0'?>\n"]))
    xml = head + "<XML>" + "".join(ordered) + "</XML>"
    expected: dict[str, str | None] = {
        **fields,
        "scene": None if scene is None else str(scene),
        "text": text,
        "media": media,
    }
    return xml, expected, kind


@FUZZ
@given(message=messages())
def test_well_formed_messages_round_trip(message: tuple[str, dict[str, str | None], str]) -> None:
    xml, expected, kind = message
    parsed = parse_gateway_xml(xml)
    assert parsed.kind == kind
    assert parsed.app_id == expected["AppId"]
    assert parsed.from_alipay_user_id == expected["FromAlipayUserId"]
    assert parsed.from_user_id == expected["FromUserId"]
    assert parsed.create_time_ms == int(expected["CreateTime"] or "")
    assert parsed.msg_type == (expected["MsgType"] or "").strip()
    assert parsed.event_type == ((expected.get("EventType") or "").strip() or None)
    assert parsed.scene_id == expected["scene"]
    assert parsed.text == expected["text"]
    assert parsed.media_id == expected["media"]
    # Every top-level element is kept as sent (raw, unstripped), nested ones are not.
    top = {k: v for k, v in expected.items() if k[0].isupper()}
    assert parsed.fields == {
        **top,
        **({"Text": ""} if expected["text"] is not None else {}),
        **({"Image": ""} if expected["media"] is not None else {}),
    }


# ---- inputs that once leaked an exception the API does not name (found by these tests, fixed) ----------


@FUZZ
@given(depth=st.integers(21_000, 30_000))
@example(depth=25_000)
def test_deeply_nested_action_param_gives_no_scene(depth: int) -> None:
    inner = "[" * depth + "]" * depth  # 60 KB at most: inside the size limit
    xml = f'<XML><MsgType>event</MsgType><EventType>follow</EventType><ActionParam>{{"a":{inner}}}</ActionParam></XML>'
    message = parse_gateway_xml(xml)
    assert message.kind == "follow"
    assert message.scene_id is None


@FUZZ
@given(before=st.text(max_size=8), surrogate=st.characters(categories=["Cs"]))
@example(before="", surrogate="\ud800")
def test_text_with_a_lone_surrogate_raises_callback_format_error(before: str, surrogate: str) -> None:
    with pytest.raises(CallbackFormatError):
        parse_gateway_xml(f"<XML>{before}{surrogate}</XML>")
