"""OpenAPI requests and responses, and the sync/async clients against an httpx.MockTransport playing Alipay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink.alipay.aes import aes_decrypt, aes_encrypt
from lifelink.alipay.errors import (
    AlipayApiError,
    AlipayTransportError,
    FatalApiError,
    KeyMismatchError,
    ResponseFormatError,
    RetryableApiError,
    SignatureError,
    classify,
)
from lifelink.alipay.keys import public_key_one_line
from lifelink.alipay.openapi import (
    AlipayClient,
    AsyncAlipayClient,
    OpenApiConfig,
    extract_node,
    parse_response,
    prepare_request,
)
from lifelink.alipay.signing import canonical_string, sign, verify

GATEWAY = "https://openapi.test.invalid/gateway.do"
METHOD = "alipay.open.public.message.single.send"
NODE = "alipay_open_public_message_single_send_response"
AES_KEY = "aa4BtZ4tspm2wnXLb1ThQA=="


@pytest.fixture
def config(app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey) -> OpenApiConfig:
    return OpenApiConfig(
        app_id="2021000000000000",
        app_private_key=app_rsa,
        alipay_public_key=alipay_rsa.public_key(),
        gateway_url=GATEWAY,
    )


def signed_response(node_name: str, node_text: str, key: rsa.RSAPrivateKey, **extra: str) -> str:
    signature = sign(node_text, key)
    tail = "".join(f',"{k}":{json.dumps(v)}' for k, v in extra.items())
    return f'{{"{node_name}":{node_text},"sign":"{signature}"{tail}}}'


# ---- prepare_request -------------------------------------------------------------------------------


def test_prepare_request_splits_query_and_body(config: OpenApiConfig, app_rsa: rsa.RSAPrivateKey) -> None:
    biz = {"to_user_id": "2088102122458832", "template": {"template_id": "TM", "context": {"first": "早鸟"}}}
    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
    req = prepare_request(config, METHOD, biz, notify_url="https://example.com/n", now=now)
    url = urlsplit(req.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == GATEWAY
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    form = dict(parse_qsl(req.body.decode("ascii"), keep_blank_values=True))
    assert set(form) == {"biz_content"}
    assert json.loads(form["biz_content"]) == biz
    assert "早鸟" in form["biz_content"]  # sent as UTF-8 text, not \u escapes
    assert query["charset"] == "utf-8"
    assert query["timestamp"] == "2026-11-24 20:00:00"
    assert query["notify_url"] == "https://example.com/n"
    assert {"app_id", "method", "format", "sign_type", "version", "sign"} <= set(query)
    assert "biz_content" not in query
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded;charset=utf-8"
    together = {**query, **form}
    assert together == req.params
    assert verify(canonical_string(together), query["sign"], app_rsa.public_key())


def test_prepare_request_app_auth_token(config: OpenApiConfig) -> None:
    req = prepare_request(config, METHOD, None, app_auth_token="202611BBtoken")
    query = dict(parse_qsl(urlsplit(req.url).query))
    assert query["app_auth_token"] == "202611BBtoken"
    assert req.body == b""
    cfg = OpenApiConfig(**{**config.__dict__, "app_auth_token": "cfg-token"})
    assert dict(parse_qsl(urlsplit(prepare_request(cfg, METHOD, {}).url).query))["app_auth_token"] == "cfg-token"


def test_prepare_request_biz_content_string_is_sent_as_signed(config: OpenApiConfig) -> None:
    text = '{"b":1,  "a":"x"}'
    req = prepare_request(config, METHOD, text)
    assert dict(parse_qsl(req.body.decode()))["biz_content"] == text
    assert req.params["biz_content"] == text


def test_prepare_request_aes(config: OpenApiConfig, app_rsa: rsa.RSAPrivateKey) -> None:
    cfg = OpenApiConfig(**{**config.__dict__, "encrypt_key": AES_KEY})
    req = prepare_request(cfg, METHOD, {"to_user_id": "2088"})
    query = dict(parse_qsl(urlsplit(req.url).query))
    form = dict(parse_qsl(req.body.decode()))
    assert query["encrypt_type"] == "AES"
    assert json.loads(aes_decrypt(form["biz_content"], AES_KEY)) == {"to_user_id": "2088"}
    assert verify(canonical_string({**query, **form}), query["sign"], app_rsa.public_key())


def test_from_secret_detects_swapped_keys(app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = app_rsa.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    good = OpenApiConfig.from_secret(
        "2021", {"app_private_key": pem, "alipay_public_key": public_key_one_line(alipay_rsa)}, GATEWAY
    )
    assert good.alipay_public_key is not None
    with pytest.raises(KeyMismatchError, match="支付宝公钥"):
        OpenApiConfig.from_secret(
            "2021", {"app_private_key": pem, "alipay_public_key": public_key_one_line(app_rsa)}, GATEWAY
        )


# ---- extract_node ------------------------------------------------------------------------------------


def test_extract_node_keeps_the_raw_text() -> None:
    node = '{"code":"10000","msg":"Success","text":"a } b { \\" c \\\\","arr":[{"x":"]"}],"n":1.50}'
    raw = f'{{ "{NODE}" : {node} , "sign":"SIG" }}'
    assert extract_node(raw, METHOD) == (NODE, node, "SIG", None)


def test_extract_node_sign_before_node_and_cert_sn() -> None:
    node = '{"code":"10000"}'
    raw = f'{{"sign":"S\\/x","alipay_cert_sn":"abc","{NODE}":{node}}}'
    assert extract_node(raw, METHOD) == (NODE, node, "S/x", "abc")


def test_extract_node_ignores_node_names_inside_strings() -> None:
    node = f'{{"code":"10000","msg":"\\"{NODE}\\":{{}}"}}'
    raw = f'{{"{NODE}":{node},"sign":"S"}}'
    assert extract_node(raw, METHOD)[1] == node


def test_extract_node_twice_is_refused() -> None:
    raw = f'{{"{NODE}":{{"code":"10000"}},"{NODE}":{{"code":"10000","x":1}},"sign":"S"}}'
    with pytest.raises(ResponseFormatError, match="twice"):
        extract_node(raw, METHOD)
    both = f'{{"{NODE}":{{"code":"10000"}},"error_response":{{"code":"40002"}},"sign":"S"}}'
    with pytest.raises(ResponseFormatError, match="both"):
        extract_node(both, METHOD)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "[]",
        "{",
        '{"other_response":{"code":"10000"},"sign":"S"}',
        f'{{"{NODE}":{{"code":"10000"}}',
        f'{{"{NODE}":{{"code":"1"]}}',
        f'{{"{NODE}":{{"a":"unterminated}}}}',
        f'{{"{NODE}":{{}}}} trailing',
        "<html>502 Bad Gateway</html>",
        f'{{"{NODE}":[1,2],"sign":"S"}}',
    ],
)
def test_extract_node_malformed(raw: str) -> None:
    with pytest.raises(ResponseFormatError):
        extract_node(raw, METHOD)


def test_extract_node_encrypted_string_includes_quotes() -> None:
    raw = f'{{"{NODE}":"ILpoMowjIQjfYMR847rnFQ==","sign":"S"}}'
    assert extract_node(raw, METHOD)[1] == '"ILpoMowjIQjfYMR847rnFQ=="'


# ---- parse_response ----------------------------------------------------------------------------------


def test_parse_response_success(config: OpenApiConfig, alipay_rsa: rsa.RSAPrivateKey) -> None:
    node = '{"code":"10000","msg":"Success","msg_id":"m1","note":"{ \\"x\\": 1 }"}'
    data = parse_response(config, METHOD, signed_response(NODE, node, alipay_rsa))
    assert data == {"code": "10000", "msg": "Success", "msg_id": "m1", "note": '{ "x": 1 }'}


def test_parse_response_success_without_code(config: OpenApiConfig, alipay_rsa: rsa.RSAPrivateKey) -> None:
    node = '{"access_token":"t","user_id":"2088"}'  # e.g. alipay.system.oauth.token
    raw = signed_response("alipay_system_oauth_token_response", node, alipay_rsa)
    assert parse_response(config, "alipay.system.oauth.token", raw)["access_token"] == "t"


def test_parse_response_forged_and_tampered(
    config: OpenApiConfig, alipay_rsa: rsa.RSAPrivateKey, forger_rsa: rsa.RSAPrivateKey, app_rsa: rsa.RSAPrivateKey
) -> None:
    node = '{"code":"10000","msg":"Success"}'
    with pytest.raises(SignatureError):
        parse_response(config, METHOD, signed_response(NODE, node, forger_rsa))
    with pytest.raises(SignatureError):
        parse_response(config, METHOD, signed_response(NODE, node, app_rsa))
    tampered = signed_response(NODE, node, alipay_rsa).replace("Success", "Succesz")
    with pytest.raises(SignatureError):
        parse_response(config, METHOD, tampered)
    # Re-serialised whitespace changes the signed text: must not verify.
    spaced = signed_response(NODE, node, alipay_rsa).replace('"code":"10000"', '"code": "10000"')
    with pytest.raises(SignatureError):
        parse_response(config, METHOD, spaced)


def test_parse_response_unsigned_success_is_refused(config: OpenApiConfig) -> None:
    with pytest.raises(SignatureError, match="no sign"):
        parse_response(config, METHOD, f'{{"{NODE}":{{"code":"10000","msg":"Success"}},"sign":""}}')
    with pytest.raises(SignatureError):
        parse_response(config, METHOD, f'{{"{NODE}":{{"code":"10000","msg":"Success"}}}}')


def test_error_response_with_empty_sign(config: OpenApiConfig) -> None:
    raw = (
        '{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature",'
        '"sub_msg":"验签出错，验签字符串为【app_id=...】"},"sign":""}'
    )
    with pytest.raises(FatalApiError) as info:
        parse_response(config, METHOD, raw)
    err = info.value
    assert (err.code, err.sub_code, err.method, err.retryable, err.verified) == (
        "40002",
        "isv.invalid-signature",
        METHOD,
        False,
        False,
    )
    assert "验签字符串" in (err.sub_msg or "")


def test_signed_business_error(config: OpenApiConfig, alipay_rsa: rsa.RSAPrivateKey) -> None:
    node = '{"code":"40004","msg":"Business Failed","sub_code":"PUB.MSG_BATCH_SD_OVER","sub_msg":"too often"}'
    with pytest.raises(RetryableApiError) as info:
        parse_response(config, METHOD, signed_response(NODE, node, alipay_rsa))
    assert info.value.retryable and info.value.verified


def test_escaped_slash_retry(config: OpenApiConfig, alipay_rsa: rsa.RSAPrivateKey) -> None:
    # Alipay signed the text with '/', the JSON on the wire carries '\/'.
    signed_text = '{"code":"10000","msg":"Success","url":"https://a.example/x"}'
    wire_text = signed_text.replace("/", "\\/")
    raw = f'{{"{NODE}":{wire_text},"sign":"{sign(signed_text, alipay_rsa)}"}}'
    assert parse_response(config, METHOD, raw)["url"] == "https://a.example/x"


def test_aes_response_node(config: OpenApiConfig, alipay_rsa: rsa.RSAPrivateKey) -> None:
    cfg = OpenApiConfig(**{**config.__dict__, "encrypt_key": AES_KEY})
    ciphertext = aes_encrypt('{"code":"10000","msg":"Success","content_id":"c1"}', AES_KEY)
    node_text = json.dumps(ciphertext)  # the quotes are part of the signed text
    raw = signed_response(NODE, node_text, alipay_rsa)
    assert parse_response(cfg, METHOD, raw)["content_id"] == "c1"
    without_quotes = f'{{"{NODE}":{node_text},"sign":"{sign(ciphertext, alipay_rsa)}"}}'
    with pytest.raises(SignatureError):
        parse_response(cfg, METHOD, without_quotes)
    with pytest.raises(ResponseFormatError, match="AES"):
        parse_response(config, METHOD, raw)


def test_certificate_mode_verifies_by_alipay_cert_sn(
    config: OpenApiConfig, alipay_rsa: rsa.RSAPrivateKey, forger_rsa: rsa.RSAPrivateKey
) -> None:
    cfg = OpenApiConfig(
        **{
            **config.__dict__,
            "alipay_public_key": None,
            "alipay_public_keys_by_sn": {"sn-old": forger_rsa.public_key(), "sn-new": alipay_rsa.public_key()},
        }
    )
    node = '{"code":"10000","msg":"Success"}'
    assert parse_response(cfg, METHOD, signed_response(NODE, node, alipay_rsa, alipay_cert_sn="sn-new"))
    with pytest.raises(SignatureError):
        parse_response(cfg, METHOD, signed_response(NODE, node, alipay_rsa, alipay_cert_sn="sn-old"))
    with pytest.raises(SignatureError, match="not configured"):
        parse_response(cfg, METHOD, signed_response(NODE, node, alipay_rsa, alipay_cert_sn="sn-unknown"))


def test_from_certificates_computes_sns_once(
    app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey, cert_factory: Any
) -> None:
    from lifelink.alipay.certs import cert_sn, root_cert_sn

    root = cert_factory(alipay_rsa, issuer_key=alipay_rsa, cn="root", serial=1)
    app_cert = cert_factory(app_rsa, issuer_key=alipay_rsa, cn="app", serial=2)
    alipay_cert = cert_factory(alipay_rsa, issuer_key=alipay_rsa, cn="alipay", serial=3)
    cfg = OpenApiConfig.from_certificates("2021", app_rsa, app_cert, alipay_cert, root, GATEWAY)
    assert cfg.app_cert_sn == cert_sn(app_cert)
    assert cfg.alipay_root_cert_sn == root_cert_sn(root)
    assert set(cfg.alipay_public_keys_by_sn) == {cert_sn(alipay_cert)}
    query = dict(parse_qsl(urlsplit(prepare_request(cfg, METHOD, {}).url).query))
    assert query["app_cert_sn"] == cfg.app_cert_sn
    assert query["alipay_root_cert_sn"] == cfg.alipay_root_cert_sn


@pytest.mark.parametrize(
    ("code", "sub_code", "retryable"),
    [
        ("20000", "isp.unknow-error", True),
        ("20001", "aop.invalid-auth-token", False),
        ("40001", "isv.missing-method", False),
        ("40002", "isv.invalid-timestamp", False),
        ("40004", "PUB.MSG_BATCH_SD_OVER", True),
        ("40004", "isv.app-call-limited", True),
        ("40004", "ACQ.SYSTEM_ERROR", True),
        ("40004", "MSG_TEMPLATE_NOT_EXIST", False),
        ("40004", "FORM_ID_OVER_TIME", False),
        ("40004", "PUB.MSG_SD_OVER_TIME", False),
        ("40004", "PUB.MSG_SD_OVER_LIMIT", False),
        ("40005", "isv.app-call-limited", True),
        ("40004", "isv.method-call-limited", True),
        ("40004", None, False),
        ("40006", "isv.insufficient-isv-permissions", False),
        ("99999", None, False),
    ],
)
def test_classify(code: str, sub_code: str | None, retryable: bool) -> None:
    assert classify(code, sub_code) is retryable


# ---- clients against a mock Alipay -----------------------------------------------------------------------


class FakeAlipay:
    """Plays Alipay's gateway: verifies our request signature, answers with a signed response."""

    def __init__(
        self,
        app_public: Any,
        alipay_private: rsa.RSAPrivateKey,
        answer: Callable[[dict[str, str]], tuple[str, str]] | None = None,
    ) -> None:
        self.app_public = app_public
        self.alipay_private = alipay_private
        self.answer = answer
        self.seen: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded;charset=utf-8"
        query = dict(parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True))
        form = dict(parse_qsl(request.content.decode("ascii"), keep_blank_values=True))
        params = {**query, **form}
        self.seen.append(params)
        if not verify(canonical_string(params), query.get("sign", ""), self.app_public, query["charset"]):
            body = (
                '{"error_response":{"code":"40002","msg":"Invalid Arguments",'
                '"sub_code":"isv.invalid-signature","sub_msg":"bad sign"},"sign":""}'
            )
            return httpx.Response(200, content=body.encode())
        node_name = params["method"].replace(".", "_") + "_response"
        if self.answer:
            node_name, node = self.answer(params)
        else:
            biz = json.loads(params["biz_content"])
            node = json.dumps(
                {"code": "10000", "msg": "Success", "echo": biz["to_user_id"]},
                ensure_ascii=False,
                separators=(",", ":"),
            )
        return httpx.Response(200, content=signed_response(node_name, node, self.alipay_private).encode())


def test_sync_client_roundtrip(
    config: OpenApiConfig, app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey
) -> None:
    fake = FakeAlipay(app_rsa.public_key(), alipay_rsa)
    with AlipayClient(config, httpx.Client(transport=httpx.MockTransport(fake))) as client:
        data = client.execute(METHOD, {"to_user_id": "2088中文"}, app_auth_token="tok")
    assert data == {"code": "10000", "msg": "Success", "echo": "2088中文"}
    assert fake.seen[0]["app_auth_token"] == "tok"


def test_async_client_roundtrip(
    config: OpenApiConfig, app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey
) -> None:
    fake = FakeAlipay(app_rsa.public_key(), alipay_rsa)

    async def run() -> dict[str, Any]:
        async with AsyncAlipayClient(config, httpx.AsyncClient(transport=httpx.MockTransport(fake))) as client:
            return await client.execute(METHOD, {"to_user_id": "2088"})

    assert asyncio.run(run())["echo"] == "2088"


def test_client_with_wrong_app_key_gets_the_gateway_signature_error(
    config: OpenApiConfig, forger_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey
) -> None:
    fake = FakeAlipay(forger_rsa.public_key(), alipay_rsa)  # Alipay has another app public key on file
    client = AlipayClient(config, httpx.Client(transport=httpx.MockTransport(fake)))
    with pytest.raises(FatalApiError) as info:
        client.execute(METHOD, {"to_user_id": "2088"})
    assert info.value.sub_code == "isv.invalid-signature"


def test_client_refuses_response_signed_by_someone_else(
    config: OpenApiConfig, app_rsa: rsa.RSAPrivateKey, forger_rsa: rsa.RSAPrivateKey
) -> None:
    fake = FakeAlipay(app_rsa.public_key(), forger_rsa)
    client = AlipayClient(config, httpx.Client(transport=httpx.MockTransport(fake)))
    with pytest.raises(SignatureError):
        client.execute(METHOD, {"to_user_id": "2088"})


def test_client_rate_limited(config: OpenApiConfig, app_rsa: rsa.RSAPrivateKey, alipay_rsa: rsa.RSAPrivateKey) -> None:
    def answer(params: dict[str, str]) -> tuple[str, str]:
        return (
            params["method"].replace(".", "_") + "_response",
            '{"code":"40004","msg":"Business Failed","sub_code":"PUB.MSG_BATCH_SD_OVER","sub_msg":"x"}',
        )

    fake = FakeAlipay(app_rsa.public_key(), alipay_rsa, answer)

    async def run() -> None:
        client = AsyncAlipayClient(config, httpx.AsyncClient(transport=httpx.MockTransport(fake)))
        await client.execute("alipay.open.public.message.total.send", {"to_user_id": "x"})

    with pytest.raises(RetryableApiError) as info:
        asyncio.run(run())
    assert isinstance(info.value, AlipayApiError) and info.value.retryable


@pytest.mark.parametrize(
    ("handler", "retryable"),
    [
        (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)), True),
        (lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)), True),
        (lambda r: httpx.Response(502, content=b"<html>bad gateway</html>"), True),
        (lambda r: httpx.Response(404, content=b"not found"), False),
    ],
    ids=["connect-error", "timeout", "http-502", "http-404"],
)
def test_transport_errors(config: OpenApiConfig, handler: Any, retryable: bool) -> None:
    client = AlipayClient(config, httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(AlipayTransportError) as info:
        client.execute(METHOD, {"to_user_id": "2088"})
    assert info.value.retryable is retryable

    async def run() -> None:
        aclient = AsyncAlipayClient(config, httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        await aclient.execute(METHOD, {"to_user_id": "2088"})

    with pytest.raises(AlipayTransportError) as ainfo:
        asyncio.run(run())
    assert ainfo.value.retryable is retryable


def test_importing_the_webhook_side_does_not_import_httpx() -> None:
    import subprocess
    import sys

    code = (
        "import sys, lifelink.alipay, lifelink.alipay.callbacks, lifelink.alipay.lifegateway, "
        "lifelink.alipay.keys, lifelink.alipay.signing, lifelink.alipay.errors; "
        "print('httpx' in sys.modules, 'lifelink.alipay.openapi' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
