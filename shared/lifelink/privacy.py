"""Pseudonyms for logs: user ids are never logged raw."""

from __future__ import annotations

import hashlib
import os

_SALT = os.environ.get("LOG_ID_SALT", "lifelink").encode()


def hash_id(value: str | None) -> str | None:
    """A short, stable pseudonym for a user id (salted SHA-256, 16 hex chars)."""
    if not value:
        return None
    return hashlib.sha256(_SALT + value.encode()).hexdigest()[:16]
