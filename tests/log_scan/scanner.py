"""What must never be in a log line: private-key material, raw Alipay user ids and open ids, app_auth_token
values, attribution tokens and signatures. Hashed ids (lifelink.privacy.hash_id: 16 hex characters) are fine."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

FRAGMENT = 32  # characters of a known key's base64 body: any such run in a line is a leak of that key

_PATTERNS: dict[str, re.Pattern[str]] = {
    "private key (PEM)": re.compile(r"-----BEGIN (?:RSA |EC |ENCRYPTED |OPENSSH )?PRIVATE KEY-----"),
    # The DER openings of an RSA private key in base64 (PKCS#8 and PKCS#1), any size; an EC PKCS#8 key.
    "private key (base64 DER)": re.compile(
        r"MII[A-Za-z0-9+/]{3}(?:IBADANBgkqhkiG9w0BAQEFAAS|IBAAK[CB])|MIG[A-Za-z0-9+/]AgEAMBMGByqGSM49"
    ),
    "raw user id": re.compile(r"(?<![0-9])2088[0-9]{12}(?![0-9])"),
    # Alipay open ids: 0 + two digits, then mixed-case letters and digits (a hex digest has no capitals).
    "raw open id": re.compile(r"(?<![A-Za-z0-9])0[0-9]{2}(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{20,60}(?![A-Za-z0-9])"),
    "app_auth_token": re.compile(
        r"(?<![A-Za-z0-9_])app_auth_token[\"']?\s*[:=]\s*[\"']?"
        r"(?!None\b|null\b|True\b|False\b|\*|\[|[\"',}\s])[^\"'\s,&}]{4,}"
    ),
    # lifelink.domain.attribution: "1" + base64url(app_id|campaign|…) + "." + base64url(9-byte MAC).
    "attribution token": re.compile(r"(?<![A-Za-z0-9_-])1[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{12}(?![A-Za-z0-9_-])"),
    # An RSA signature in base64: 2048 bits is 344 characters, 4096 bits 684; or any `sign` field's value.
    "signature": re.compile(
        r"(?<![A-Za-z0-9+/=])(?:[A-Za-z0-9+/]{342}|[A-Za-z0-9+/]{682})[A-Za-z0-9+/=]{2}(?![A-Za-z0-9+/=])"
        r"|(?<![A-Za-z_])sign[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9+/%]{40,}"
    ),
}
KINDS = (*_PATTERNS, "known private key", "known open id", "known app_auth_token")


@dataclass(frozen=True)
class Finding:
    kind: str
    source: str  # where the line was logged: "session" or a subprocess's log file
    line_no: int
    excerpt: str  # the match with some context, shortened so the report does not repeat the whole secret


@dataclass
class Secrets:
    """Exact values the tests use: key bodies (base64, whitespace removed), open ids and app_auth_tokens."""

    key_bodies: set[str] = field(default_factory=set)
    open_ids: set[str] = field(default_factory=set)
    auth_tokens: set[str] = field(default_factory=set)
    _fragments: set[str] | None = None

    def add_pem(self, pem: str) -> None:
        body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
        if len(body) >= FRAGMENT:
            self.key_bodies.add(body)
            self._fragments = None

    def fragments(self) -> set[str]:
        if self._fragments is None:
            self._fragments = {b[i : i + FRAGMENT] for b in self.key_bodies for i in range(len(b) - FRAGMENT + 1)}
        return self._fragments


_B64_RUN = re.compile(rf"[A-Za-z0-9+/]{{{FRAGMENT},}}")


def _excerpt(line: str, start: int, end: int) -> str:
    match = line[start:end]
    shown = match if len(match) <= 8 else f"{match[:6]}…{match[-2:]}"  # enough to find it, not to use it
    return f"…{line[max(0, start - 40) : start]}[{shown}]{line[end : end + 20]}…"


def scan_line(line: str, secrets: Secrets | None = None) -> Iterator[tuple[str, str]]:
    """(kind, excerpt) for every leak in one line."""
    for kind, pattern in _PATTERNS.items():
        for m in pattern.finditer(line):
            yield kind, _excerpt(line, m.start(), m.end())
    if secrets is None:
        return
    fragments = secrets.fragments()
    if fragments:
        for m in _B64_RUN.finditer(line):
            run = m.group()
            if any(run[i : i + FRAGMENT] in fragments for i in range(len(run) - FRAGMENT + 1)):
                yield "known private key", _excerpt(line, m.start(), m.end())
    for kind, values in (("known open id", secrets.open_ids), ("known app_auth_token", secrets.auth_tokens)):
        for value in values:
            at = line.find(value)
            if at >= 0:
                yield kind, _excerpt(line, at, at + len(value))


def scan(lines: Iterable[str], source: str, secrets: Secrets | None = None, limit: int = 200) -> list[Finding]:
    """Every leak in ``lines`` (at most ``limit``), numbered from 1."""
    found: list[Finding] = []
    for n, line in enumerate(lines, start=1):
        for kind, excerpt in scan_line(line.rstrip("\n"), secrets):
            found.append(Finding(kind, source, n, excerpt))
            if len(found) >= limit:
                return found
    return found


_OPEN_ID_LITERAL = re.compile(r"[\"'](0[0-9]{2}[A-Za-z][A-Za-z0-9]{2,})[\"']")
_TOKEN_LITERAL = re.compile(r"app_auth_token[\"']?\s*[:=]\s*[\"']([^\"'\s]{6,})[\"']")


def harvest_literals(sources: Iterable[str], secrets: Secrets) -> None:
    """Open ids and app_auth_tokens written as literals in test and local-stack sources."""
    for text in sources:
        secrets.open_ids.update(_OPEN_ID_LITERAL.findall(text))
        secrets.auth_tokens.update(_TOKEN_LITERAL.findall(text))
