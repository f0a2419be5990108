"""Figure 1: RSA2 signs/s and verifies/s, ours vs `openssl speed rsa2048` vs the official Alipay SDK.

Ours is lifelink.alipay.signing.sign/verify (cryptography, SHA256withRSA PKCS#1 v1.5, 2048-bit) on a
realistic ~500-byte canonical request string with Chinese text. The SDK peer is
alipay.aop.api.util.SignatureUtils.sign_with_rsa2 exactly as the SDK's client calls it per request: the
one-line PKCS#1 key text in, the pure-Python ``rsa`` package parses it and signs. Rounds alternate the
three so that a noisy neighbour hurts all of them alike; medians are reported.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common import Row, heading, median, print_table, rate, spread
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink.alipay import signing

ROUNDS = 3
SECONDS_PER_OP = 1.0
OPENSSL_SECONDS = 3
TARGET_SIGN = 0.9
TARGET_VERIFY = 0.7
TARGET_SDK = 80.0

_OPENSSL_LINE = re.compile(r"^rsa\s+2048\s+bits\b")


def canonical_request() -> str:
    """An alipay.trade.create request as Alipay's canonical string sees it (~500 bytes, Chinese text)."""
    biz = (
        '{"out_trade_no":"LL20250118093012000042","total_amount":"88.80",'
        '"subject":"生活号会员年卡 · 杭州西湖店","body":"会员年卡一张，含 12 次免费咖啡与生日礼券",'
        '"buyer_id":"2088102177846880","product_code":"JSAPI_PAY","timeout_express":"15m",'
        '"extend_params":{"sys_service_provider_id":"2088511833207846"}}'
    )
    params = {
        "app_id": "2021004101234567",
        "method": "alipay.trade.create",
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": "2025-01-18 09:30:12",
        "version": "1.0",
        "notify_url": "https://abc123.execute-api.ap-southeast-1.amazonaws.com/alipay/notify",
        "biz_content": biz,
    }
    return signing.canonical_string(params)


@dataclass
class _Series:
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return median(self.values)


def openssl_speed() -> tuple[float, float] | str:
    """(sign/s, verify/s) from ``openssl speed -seconds 3 rsa2048``, or why it could not be measured."""
    exe = shutil.which("openssl")
    if exe is None:
        return "openssl is not on PATH"
    done = subprocess.run(
        [exe, "speed", "-seconds", str(OPENSSL_SECONDS), "rsa2048"], capture_output=True, text=True, check=False
    )
    header: list[str] | None = None
    for line in done.stdout.splitlines():
        if "sign/s" in line:
            header = [c for c in line.split() if c.endswith("/s")]
        elif _OPENSSL_LINE.match(line) and header:
            numbers = [float(x) for x in line.split() if re.fullmatch(r"[\d.]+", x)]
            per_second = dict(zip(header, numbers[-len(header):], strict=True))
            return per_second["sign/s"], per_second["verify/s"]
    return f"could not parse openssl speed output (exit {done.returncode})"


def openssl_version() -> str:
    exe = shutil.which("openssl")
    if exe is None:
        return "-"
    return subprocess.run([exe, "version"], capture_output=True, text=True, check=False).stdout.strip()


def _sdk_signer(private_key: rsa.RSAPrivateKey, content: str) -> tuple[Callable[[], Any], Callable[[], Any]] | str:
    """(SDK's sign_with_rsa2 per call, SDK signing with a pre-parsed key) or why the SDK cannot be used."""
    try:
        import rsa as pure_rsa  # the SDK's own dependency
        from alipay.aop.api.util.SignatureUtils import sign_with_rsa2
    except Exception as exc:  # the SDK is optional: report instead of failing the bench
        return f"alipay-sdk-python not importable: {type(exc).__name__}: {exc}"
    pkcs1 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    one_line = base64.b64encode(pkcs1).decode("ascii")  # Alipay's "non-Java" private key format
    theirs = sign_with_rsa2(one_line, content, "utf-8")
    ours = signing.sign(content, private_key)
    if theirs != ours:  # PKCS#1 v1.5 is deterministic: both must produce the same bytes
        return "the SDK's signature differs from ours on the same key and content"
    parsed = pure_rsa.PrivateKey.load_pkcs1(pkcs1, format="DER")
    data = content.encode("utf-8")
    return (lambda: sign_with_rsa2(one_line, content, "utf-8")), (lambda: pure_rsa.sign(data, parsed, "SHA-256"))


def run() -> list[Row]:
    heading("1. RSA2 sign/s and verify/s (2048-bit SHA256withRSA PKCS#1 v1.5, one thread)")
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_key = private_key.public_key()
    content = canonical_request()
    signature = signing.sign(content, private_key)
    assert signing.verify(content, signature, public_key)
    sdk = _sdk_signer(private_key, content)

    ours_sign, ours_verify, ssl_sign, ssl_verify, sdk_sign, sdk_sign_parsed = (_Series() for _ in range(6))
    ssl_problem: str | None = None
    for n in range(ROUNDS):
        steps: list[Callable[[], None]] = [
            lambda: ours_sign.values.append(rate(lambda: signing.sign(content, private_key), SECONDS_PER_OP)),
            lambda: ours_verify.values.append(
                rate(lambda: signing.verify(content, signature, public_key), SECONDS_PER_OP, batch=64)
            ),
        ]
        if not isinstance(sdk, str):
            per_call, parsed = sdk
            steps.append(lambda f=per_call: sdk_sign.values.append(rate(f, SECONDS_PER_OP, batch=1)))
            steps.append(lambda f=parsed: sdk_sign_parsed.values.append(rate(f, SECONDS_PER_OP, batch=1)))

        def openssl_round() -> None:
            nonlocal ssl_problem
            got = openssl_speed()
            if isinstance(got, str):
                ssl_problem = got
            else:
                ssl_sign.values.append(got[0])
                ssl_verify.values.append(got[1])

        steps.insert(n % (len(steps) + 1), openssl_round)  # openssl runs first, then second, … in turn
        for step in steps:
            step()

    print(f"content: {len(content.encode())} bytes of canonical string (UTF-8, Chinese text), {ROUNDS} rounds; "
          "medians, range across rounds in brackets")
    print(f"openssl: {openssl_version()}  (its speed test signs a digest-sized input: no SHA-256 over the content)")
    table = [
        ("lifelink signing.sign / verify", f"{ours_sign.median:,.0f}", f"{ours_verify.median:,.0f}",
         f"[{spread(ours_sign.values)}] [{spread(ours_verify.values)}]"),
    ]
    if ssl_problem is None:
        table.append(("openssl speed -seconds 3 rsa2048", f"{ssl_sign.median:,.0f}", f"{ssl_verify.median:,.0f}",
                      f"[{spread(ssl_sign.values)}] [{spread(ssl_verify.values)}]"))
    else:
        table.append(("openssl speed -seconds 3 rsa2048", "n/a", "n/a", ssl_problem))
    if isinstance(sdk, str):
        table.append(("alipay-sdk-python sign_with_rsa2", "n/a", "-", sdk))
    else:
        table.append(("alipay-sdk-python sign_with_rsa2", f"{sdk_sign.median:,.1f}", "-",
                      f"[{spread(sdk_sign.values)}] key text parsed per call, as the SDK's client does"))
        table.append(("  (same, rsa.sign with key pre-parsed)", f"{sdk_sign_parsed.median:,.1f}", "-",
                      f"[{spread(sdk_sign_parsed.values)}] for reference only"))
    print_table(("signer", "sign/s", "verify/s", "notes"), table)
    if ssl_problem is None and not isinstance(sdk, str):
        print(f"openssl sign/s ÷ SDK sign/s = {ssl_sign.median / sdk_sign.median:,.1f}×: the most any "
              "OpenSSL-based signer can reach against the SDK on this machine and Python")

    rows: list[Row] = []
    if ssl_problem is None:
        r_sign = ours_sign.median / ssl_sign.median
        r_verify = ours_verify.median / ssl_verify.median
        rows.append(Row("RSA2 sign/s vs openssl", f"{ours_sign.median:,.0f}", f"{ssl_sign.median:,.0f}", r_sign,
                        f"≥ {TARGET_SIGN}×", r_sign >= TARGET_SIGN))
        rows.append(Row("RSA2 verify/s vs openssl", f"{ours_verify.median:,.0f}", f"{ssl_verify.median:,.0f}",
                        r_verify, f"≥ {TARGET_VERIFY}×", r_verify >= TARGET_VERIFY))
    else:
        rows.append(Row("RSA2 sign/s vs openssl", f"{ours_sign.median:,.0f}", "n/a", None, f"≥ {TARGET_SIGN}×", None))
        rows.append(Row("RSA2 verify/s vs openssl", f"{ours_verify.median:,.0f}", "n/a", None,
                        f"≥ {TARGET_VERIFY}×", None))
    if isinstance(sdk, str):
        rows.append(Row("RSA2 sign/s vs Alipay SDK", f"{ours_sign.median:,.0f}", "n/a", None,
                        f"≥ {TARGET_SDK:.0f}×", None))
    else:
        r_sdk = ours_sign.median / sdk_sign.median
        rows.append(Row("RSA2 sign/s vs Alipay SDK", f"{ours_sign.median:,.0f}", f"{sdk_sign.median:,.1f}", r_sdk,
                        f"≥ {TARGET_SDK:.0f}×", r_sdk >= TARGET_SDK))
    return rows
