"""The life-account application gateway: hardened XML parsing, message kinds, signed XML replies.

The gateway posts a form (see callbacks.py) whose ``biz_content`` is an XML document rooted at ``<XML>``.
It is parsed with expat directly, refusing any DOCTYPE, entity declaration or external entity, with a
bounded size and nesting depth. Replies are ``<alipay><response>INNER</response><sign>…`` documents
signed over exactly INNER, in the reply charset (GBK by default), with the app private key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from .errors import CallbackFormatError
from .signing import sign

MAX_XML_BYTES = 64 * 1024
MAX_XML_DEPTH = 8
MAX_XML_ELEMENTS = 512

# (MsgType, EventType) -> kind; (MsgType, None) matches any event type of that MsgType.
MESSAGE_KINDS: dict[tuple[str, str | None], str] = {
    ("event", "verifygw"): "gateway_check",
    ("event", "follow"): "follow",
    ("event", "unfollow"): "unfollow",
    ("event", "enter"): "enter",
    ("event", "click"): "menu_click",
    ("text", None): "text",
    ("image", None): "image",
}
UNKNOWN_KIND = "unknown"


def register_kind(msg_type: str, event_type: str | None, kind: str) -> None:
    """Add or replace a (MsgType, EventType) -> kind entry (event_type None: any event type)."""
    MESSAGE_KINDS[(msg_type.lower(), event_type.lower() if event_type else None)] = kind


def kind_of(msg_type: str | None, event_type: str | None) -> str:
    mt = (msg_type or "").strip().lower()
    et = (event_type or "").strip().lower() or None
    return MESSAGE_KINDS.get((mt, et)) or MESSAGE_KINDS.get((mt, None)) or UNKNOWN_KIND


@dataclass(frozen=True)
class GatewayMessage:
    kind: str
    msg_type: str | None
    event_type: str | None
    app_id: str | None
    from_user_id: str | None
    from_alipay_user_id: str | None
    create_time_ms: int | None
    action_param: str | None
    scene_id: str | None
    msg_id: str | None
    text: str | None
    media_id: str | None
    user_info: str | None
    agreement_id: str | None
    account_no: str | None
    fields: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    pass


def _refuse(*_args: Any) -> None:
    raise _Refused("DOCTYPE, entity declarations and external entities are not allowed")


def _parse_tree(xml_text: str) -> tuple[str, dict[str, str]]:
    """Return (root tag, {path: text}) where path is 'A' for children of the root, 'A/B' below."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.NotationDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.SkippedEntityHandler = _refuse

    stack: list[str] = []
    texts: list[list[str]] = []
    values: dict[str, str] = {}
    root: list[str] = []
    count = 0

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if len(stack) >= MAX_XML_DEPTH or count > MAX_XML_ELEMENTS:
            raise _Refused("XML too deep or too many elements")
        if not stack:
            root.append(name)
        stack.append(name)
        texts.append([])

    def end(_name: str) -> None:
        text = "".join(texts.pop())
        path = "/".join(stack[1:])
        stack.pop()
        if path:
            if path in values:
                raise _Refused(f"element {path} appears twice")
            values[path] = text

    def chars(data: str) -> None:
        if texts:
            texts[-1].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(xml_text, True)
    except _Refused as exc:
        raise CallbackFormatError(f"refused gateway XML: {exc}") from None
    except expat.ExpatError as exc:
        raise CallbackFormatError(f"malformed gateway XML: {exc}") from None
    return root[0], values


def _scene_id(action_param: str | None) -> str | None:
    if not action_param or not action_param.lstrip().startswith("{"):
        return None
    try:
        scene = json.loads(action_param).get("scene")
        scene_id = scene.get("sceneId") if isinstance(scene, dict) else None
    except (ValueError, AttributeError, RecursionError):  # RecursionError: JSON nested deeper than Python parses
        return None
    return None if scene_id is None or isinstance(scene_id, dict | list) else str(scene_id)


def parse_gateway_xml(xml_text: str) -> GatewayMessage:
    """Parse the gateway's biz_content XML. CallbackFormatError when malformed, refused or oversized."""
    if not isinstance(xml_text, str):
        raise CallbackFormatError("gateway XML must be text (decoded once from the form)")
    try:
        size = len(xml_text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no parser could read it either
        raise CallbackFormatError("gateway XML is not valid Unicode text") from None
    if size > MAX_XML_BYTES:
        raise CallbackFormatError(f"gateway XML exceeds {MAX_XML_BYTES} bytes")
    root, values = _parse_tree(xml_text)
    if root.upper() != "XML":
        raise CallbackFormatError(f"gateway XML root is <{root}>, expected <XML>")

    def get(name: str) -> str | None:
        value = values.get(name)
        return value.strip() if value is not None and value.strip() else None

    fields = {k: v for k, v in values.items() if "/" not in k}
    create_time = get("CreateTime")
    try:
        create_time_ms = int(create_time) if create_time is not None else None
    except ValueError:
        create_time_ms = None
    msg_type, event_type = get("MsgType"), get("EventType")
    action_param = get("ActionParam")
    return GatewayMessage(
        kind=kind_of(msg_type, event_type),
        msg_type=msg_type,
        event_type=event_type,
        app_id=get("AppId"),
        from_user_id=get("FromUserId"),
        from_alipay_user_id=get("FromAlipayUserId"),
        create_time_ms=create_time_ms,
        action_param=action_param,
        scene_id=_scene_id(action_param),
        msg_id=get("MsgId"),
        text=values.get("Text/Content") or get("Text") or get("Content"),
        media_id=get("Image/MediaId") or get("MediaId"),
        user_info=get("UserInfo"),
        agreement_id=get("AgreementId"),
        account_no=get("AccountNo"),
        fields=fields,
    )


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _document(inner: str, app_private_key: RSAPrivateKey, charset: str) -> bytes:
    signature = sign(inner.encode(charset), app_private_key)
    text = (
        f'<?xml version="1.0" encoding="{charset}"?><alipay><response>{inner}</response>'
        f"<sign>{signature}</sign><sign_type>RSA2</sign_type></alipay>"
    )
    return text.encode(charset)


def check_reply(app_private_key: RSAPrivateKey, app_public_key_one_line: str, ok: bool, charset: str = "GBK") -> bytes:
    """The signed answer to a gateway check (alipay.service.check): success, or VERIFY_FAILED."""
    if ok:
        inner = f"<success>true</success><biz_content>{app_public_key_one_line}</biz_content>"
    else:
        inner = (
            "<success>false</success><error_code>VERIFY_FAILED</error_code>"
            f"<biz_content>{app_public_key_one_line}</biz_content>"
        )
    return _document(inner, app_private_key, charset)


def ack_reply(
    app_private_key: RSAPrivateKey, to_user_id: str, app_id: str, create_time_ms: int, charset: str = "GBK"
) -> bytes:
    """The signed acknowledgement of any other gateway message."""
    inner = (
        f"<XML><ToUserId>{_cdata(to_user_id)}</ToUserId><AppId>{_cdata(app_id)}</AppId>"
        f"<CreateTime>{int(create_time_ms)}</CreateTime><MsgType><![CDATA[ack]]></MsgType></XML>"
    )
    return _document(inner, app_private_key, charset)


_DECL_ENCODING = re.compile(rb"^<\?xml[^>]*encoding=[\"']([A-Za-z0-9_\-]+)[\"']")
_SIGN = re.compile(r"</response><sign>([^<]*)</sign><sign_type>([^<]*)</sign_type></alipay>\s*$")


def _reply_text(document: bytes | str) -> str:
    if isinstance(document, str):
        return document
    match = _DECL_ENCODING.match(document)
    return document.decode(match.group(1).decode("ascii") if match else "utf-8")


def reply_inner(document: bytes | str) -> str:
    """The exact INNER text between <response> and </response> of a gateway reply."""
    text = _reply_text(document)
    start = text.find("<alipay><response>")
    end = text.rfind("</response><sign>")
    if start < 0 or end < start:
        raise CallbackFormatError("not a gateway reply document")
    return text[start + len("<alipay><response>") : end]


def reply_signature(document: bytes | str) -> tuple[str, str]:
    """(sign, sign_type) of a gateway reply document."""
    match = _SIGN.search(_reply_text(document))
    if not match:
        raise CallbackFormatError("gateway reply has no sign")
    return match.group(1), match.group(2)
