"""Canonical string, RSA2 sign/verify, Beijing-time timestamps whatever the host TZ."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from lifelink.alipay.signing import beijing_timestamp, canonical_string, sign, verify


def test_canonical_string_rules() -> None:
    params = {"b": "2", "a": "1", "sign": "S", "empty": "", "none": None, "A": "upper", "c": "x y&z=%"}
    # ASCII order (uppercase first), empty/None dropped, sign dropped, raw (not URL-encoded) values.
    assert canonical_string(params) == "A=upper&a=1&b=2&c=x y&z=%"


def test_canonical_string_exclude() -> None:
    params = {"sign": "S", "sign_type": "RSA2", "x": "1"}
    assert canonical_string(params) == "sign_type=RSA2&x=1"
    assert canonical_string(params, ("sign", "sign_type")) == "x=1"


def test_sign_and_verify_roundtrip(app_rsa: rsa.RSAPrivateKey, forger_rsa: rsa.RSAPrivateKey) -> None:
    content = "a=1&b=中文"
    signature = sign(content, app_rsa)
    assert verify(content, signature, app_rsa.public_key())
    assert verify(content.encode("utf-8"), signature, app_rsa.public_key())
    assert not verify(content + "x", signature, app_rsa.public_key())
    assert not verify(content, signature, forger_rsa.public_key())
    assert not verify(content, sign(content, forger_rsa), app_rsa.public_key())


def test_sign_in_gbk_differs_from_utf8(app_rsa: rsa.RSAPrivateKey) -> None:
    content = "title=麦禾商城"
    gbk = sign(content, app_rsa, "gbk")
    assert verify(content.encode("gbk"), gbk, app_rsa.public_key())
    assert verify(content, gbk, app_rsa.public_key(), "gbk")
    assert not verify(content, gbk, app_rsa.public_key(), "utf-8")


@pytest.mark.parametrize("bad", ["", "not base64!!", "QUJD", "====", "\x00", "a" * 1000])
def test_verify_never_raises_on_bad_signatures(app_rsa: rsa.RSAPrivateKey, bad: str) -> None:
    assert verify("x=1", bad, app_rsa.public_key()) is False


def test_verify_returns_false_for_content_not_encodable(app_rsa: rsa.RSAPrivateKey) -> None:
    assert verify("中文", sign("x", app_rsa), app_rsa.public_key(), "ascii") is False


@pytest.fixture
def host_tz() -> Iterator[None]:
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Shanghai"])
def test_timestamp_is_beijing_time_whatever_the_host_tz(host_tz: None, tz: str) -> None:
    os.environ["TZ"] = tz
    time.tzset()
    before = datetime.now(UTC)
    stamp = beijing_timestamp()
    after = datetime.now(UTC)
    parsed = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone(timedelta(hours=8)))
    assert before.replace(microsecond=0) <= parsed <= after


def test_timestamp_of_given_instants(host_tz: None) -> None:
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    assert beijing_timestamp(datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)) == "2026-11-24 20:00:00"
    ny = timezone(timedelta(hours=-5))
    assert beijing_timestamp(datetime(2026, 12, 31, 19, 30, 5, tzinfo=ny)) == "2027-01-01 08:30:05"
    # Naive datetimes are taken as UTC, never as host-local time.
    assert beijing_timestamp(datetime(2026, 11, 24, 12, 0, 0)) == "2026-11-24 20:00:00"
