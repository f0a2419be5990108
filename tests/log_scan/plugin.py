"""pytest plugin: everything the test session logs is scanned for private keys, raw user ids and tokens.

- In-process: a ``LogTap`` from the start of the session to its end (every record handled, every line a handler
  formats: Powertools' JSON lines, pytest's captured logs, the local stack's loggers).
- Subprocesses (``lifelink_local.stack`` and the CLI the e2e tests start): ``site/sitecustomize.py`` goes on
  PYTHONPATH and ``LIFELINK_LOG_TAP_DIR`` names the folder their taps write to.
- At the end, every line is scanned (``scanner.py``) with the patterns and the exact secrets the session used:
  private keys of fixtures (``KeyPair`` values and RSA keys), ``*_private_key.pem`` files under the session's
  temporary folders and ``.lifelink/``, open ids and app_auth_tokens written as literals in tests/ and local/.
  Any finding is reported and fails the run (exit status 1), even when every test passed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.log_scan.scanner import Finding, Secrets, harvest_literals, scan
from tests.log_scan.tap import ENV_DIR, LogTap

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(__file__).resolve().parent / "site"
_STATE: dict[str, Any] = {}


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config, "workerinput", None) is not None or os.environ.get(ENV_DIR):
        return  # an xdist worker, or a session started by a tapped one: the outer session scans
    directory = Path(tempfile.mkdtemp(prefix="lifelink-logscan-"))
    tap = LogTap(directory / "session.log")
    tap.install()
    saved = {name: os.environ.get(name) for name in (ENV_DIR, "PYTHONPATH")}
    os.environ[ENV_DIR] = str(directory)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE), saved["PYTHONPATH"]) if p)
    _STATE.update(directory=directory, tap=tap, saved=saved, secrets=Secrets())


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Iterator[Any]:
    value = yield
    secrets: Secrets | None = _STATE.get("secrets")
    if secrets is not None:
        if isinstance(value, rsa.RSAPrivateKey):
            secrets.add_pem(_pem(value))
        elif isinstance(getattr(value, "private", None), rsa.RSAPrivateKey):  # tests.conftest.KeyPair
            secrets.add_pem(_pem(value.private))
    return value


def _key_files(config: pytest.Config) -> Iterator[Path]:
    roots = [ROOT / ".lifelink"]
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None and getattr(factory, "_basetemp", None) is not None:
        roots.append(factory.getbasetemp())
    for root in roots:
        if root.is_dir():
            yield from root.rglob("*private_key*.pem")


def _sources() -> Iterator[str]:
    for folder in (ROOT / "tests", ROOT / "local"):
        for path in folder.rglob("*.py"):
            if "log_scan" not in path.parts:  # the planted examples of the scanner's own tests
                yield path.read_text(encoding="utf-8", errors="replace")


def collect_findings(directory: Path, secrets: Secrets) -> list[Finding]:
    """Every leak in the session's log files (at most 200 are reported)."""
    found: list[Finding] = []
    for path in sorted(directory.glob("*.log")):
        if len(found) >= 200:
            break
        with path.open(encoding="utf-8", errors="replace") as lines:
            found += scan(lines, path.name, secrets, limit=200 - len(found))
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    tap: LogTap | None = _STATE.pop("tap", None)
    if tap is None:
        return
    tap.uninstall()
    for name, value in _STATE.pop("saved").items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    directory: Path = _STATE.pop("directory")
    secrets: Secrets = _STATE.pop("secrets")
    for path in _key_files(session.config):
        secrets.add_pem(path.read_text(encoding="utf-8", errors="replace"))
    harvest_literals(_sources(), secrets)
    findings = collect_findings(directory, secrets)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = 0
    for path in directory.glob("*.log"):
        with path.open(encoding="utf-8", errors="replace") as f:
            lines += sum(1 for _ in f)
    if not findings:
        if not os.environ.get("LIFELINK_LOG_SCAN_KEEP"):  # set it to look at what was scanned
            shutil.rmtree(directory, ignore_errors=True)
        if reporter is not None:
            reporter.write_line(f"\nlog scan: {lines} log lines, no private key, raw user id or token")
            if os.environ.get("LIFELINK_LOG_SCAN_KEEP"):
                reporter.write_line(f"(the logs are kept in {directory})")
        return
    if reporter is not None:
        reporter.write_sep("=", "log scan: secrets in the logs", red=True, bold=True)
        for f in findings:
            reporter.write_line(f"{f.source}:{f.line_no}: {f.kind}: {f.excerpt}")
        reporter.write_line(f"(the logs are kept in {directory})")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
