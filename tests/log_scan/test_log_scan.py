"""The log scan can fail: each kind of secret planted in a line is found, hashed ids are not, the tap sees
Powertools' lines and plain records, and a session that logs a secret exits non-zero."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aws_lambda_powertools.logging import Logger
from cryptography.hazmat.primitives import serialization

from lifelink.domain.attribution import Attribution, issue
from lifelink.privacy import hash_id
from tests.conftest import KeyPair
from tests.log_scan.scanner import Secrets, harvest_literals, scan, scan_line
from tests.log_scan.tap import ENV_DIR, LogTap

ROOT = Path(__file__).resolve().parents[2]
USER_ID = "2088102177846875"
OPEN_ID = "074a1Z0hq0IxGtN0Yb0cUvlCpSkQHoKf0pX3Ur1w3N"


def kinds(line: str, secrets: Secrets | None = None) -> set[str]:
    return {kind for kind, _ in scan_line(line, secrets)}


def test_private_keys_are_found_as_pem_and_as_bare_base64(other_keys: KeyPair) -> None:
    pem = other_keys.private_pem
    assert "private key (PEM)" in kinds(f"loaded key {pem}")
    body = "".join(pem.splitlines()[1:-1])
    assert "private key (base64 DER)" in kinds(f'{{"app_private_key": "{body}"}}')
    pkcs1 = other_keys.private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert "private key (base64 DER)" in kinds(base64.b64encode(pkcs1).decode())
    public = "".join(other_keys.public_pem.splitlines()[1:-1])
    assert kinds(f"alipay_public_key={public}") == set()  # public keys may be logged


def test_a_fragment_of_a_known_key_is_found(other_keys: KeyPair) -> None:
    secrets = Secrets()
    secrets.add_pem(other_keys.private_pem)
    middle = "".join(other_keys.private_pem.splitlines()[5:7])  # two PEM lines from the middle, no header
    assert kinds(f"x={middle}") == set()  # no pattern knows it …
    assert kinds(f"x={middle}", secrets) == {"known private key"}  # … the key itself does


def test_raw_user_ids_and_open_ids_are_found_hashed_ones_are_not() -> None:
    assert kinds(f"follow from {USER_ID}") == {"raw user id"}
    assert kinds(f'{{"user": "{OPEN_ID}"}}') == {"raw open id"}
    assert kinds(f"ledger 2021000000000011|welcome|-|{OPEN_ID}|life_template") == {"raw open id"}
    assert kinds(f'{{"user": "{hash_id(USER_ID)}", "open": "{hash_id(OPEN_ID)}"}}') == set()
    assert kinds(f"event_id={hashlib.sha256(b'x').hexdigest()} trace 1-6763ab2f-0a1b2c3d4e5f60718293a4b5") == set()
    assert kinds("app 2021000000000011 order 20881021778468751234 amount 2088") == set()  # not 16 digits
    short = Secrets(open_ids={"074abc"})
    assert kinds("user 074abc sent", short) == {"known open id"}


def test_app_auth_tokens_are_found_by_name_and_by_value() -> None:
    assert kinds('biz_content={"app_auth_token": "202511BBd9a2c4e7f00b4c2b9e1a5c6d7e8f9a0b"}') == {"app_auth_token"}
    assert kinds("params app_auth_token=202511BBd9a2c4e7f00b&method=alipay.x") == {"app_auth_token"}
    assert kinds('{"app_auth_token": null, "third_party": true}') == set()
    assert kinds("has_app_auth_token=True") == set()
    assert kinds("token 202501BBmerchanttoken", Secrets(auth_tokens={"202501BBmerchanttoken"})) == {
        "known app_auth_token"
    }


def test_attribution_tokens_and_signatures_are_found() -> None:
    att = Attribution("2021000000000011", "spring", "burst", "AbCdEfGh", datetime(2026, 3, 3, tzinfo=UTC))
    token = issue(att, b"k" * 32)
    assert kinds(f"session_start query ll={token}") == {"attribution token"}
    signature = base64.b64encode(hmac.new(b"k", b"m", "sha256").digest() * 8).decode()  # 256 bytes: 344 chars
    assert len(signature) == 344
    assert kinds(f"verify failed for {signature}") == {"signature"}
    assert kinds("form charset=utf-8&sign=ZGF0YWRhdGFkYXRhZGF0YWRhdGFkYXRhZGF0YWRhdGFkYXRh%2B%3D&x=1") == {"signature"}
    assert kinds("sign_type=RSA2 signature valid") == set()


def test_scan_numbers_lines_and_names_the_source() -> None:
    found = scan(["clean", f"user {USER_ID}", "clean"], "proc-42.log")
    assert [(f.source, f.line_no, f.kind) for f in found] == [("proc-42.log", 2, "raw user id")]
    assert USER_ID not in found[0].excerpt  # the report does not repeat the whole secret


def test_literals_are_harvested_from_sources() -> None:
    secrets = Secrets()
    harvest_literals(['OPEN_ID = "074a1CcTG1LelxKe"\nsecret = {"app_auth_token": "202611BBtoken"}'], secrets)
    assert secrets.open_ids == {"074a1CcTG1LelxKe"} and secrets.auth_tokens == {"202611BBtoken"}


def test_the_tap_sees_powertools_lines_and_plain_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tap = LogTap(tmp_path / "t.log")
    tap.install()
    try:
        powertools = Logger(service="logscan-test", level="INFO")
        powertools.append_keys(appended="marker-appended-key")
        powertools.info("marker-powertools", extra={"field": "marker-extra"})
        powertools.debug("marker-debug", extra={"field": "marker-debug-extra"})  # below its level
        logging.getLogger("logscan.plain").warning("marker-%s", "plain", extra={"who": "marker-who"})
        logging.getLogger("lifelink.logscan").debug("marker-product-debug")  # a product logger, below its level
        logging.getLogger("logscan.other").debug("marker-other-debug")  # not ours, below its level
        logging.getLogger("lifelink_local.front").debug("marker-local-debug")  # a local stand-in, below its level
    finally:
        tap.uninstall()
    text = (tmp_path / "t.log").read_text()
    for marker in ("marker-appended-key", "marker-powertools", "marker-extra", "marker-plain", "marker-who",
                   "marker-debug-extra", "marker-product-debug"):
        assert marker in text, marker
    assert "marker-other-debug" not in text and "marker-local-debug" not in text
    printed = capsys.readouterr().out
    assert "marker-powertools" in printed and "marker-debug" not in printed  # what is emitted is unchanged
    assert logging.Logger.handle.__name__ == "tapped_handle" or ENV_DIR not in os.environ  # session tap back


PLANTED = '''
import logging
import subprocess
import sys

from aws_lambda_powertools.logging import Logger


def test_logs_secrets():
    Logger(service="planted").info("user", extra={"user_id": "2088102177846875"})
    code = "import logging; logging.getLogger('child').warning('token app_auth_token=202511BBabcdef0123')"
    subprocess.run([sys.executable, "-c", code], check=True)
'''


@pytest.mark.timeout(120)
def test_a_session_that_logs_secrets_fails_and_says_where(tmp_path: Path) -> None:
    (tmp_path / "test_planted.py").write_text(textwrap.dedent(PLANTED))
    env = {k: v for k, v in os.environ.items() if k != ENV_DIR}  # not into this session's own scan
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.log_scan.plugin", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_planted.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=110, check=False,
    )
    assert "1 passed" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1, done.stdout
    assert "session.log" in done.stdout and "raw user id" in done.stdout  # in-process, Powertools' line
    assert "proc-" in done.stdout and "app_auth_token" in done.stdout  # the child process's own log
