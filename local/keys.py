"""Sandbox keys for the local stack, generated once into `.lifelink/` (gitignored), PEM files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True)
class KeyFiles:
    private: Path
    public: Path


def ensure_pair(directory: Path, stem: str) -> KeyFiles:
    """``<stem>_private_key.pem`` and ``<stem>_public_key.pem`` in ``directory``; made once, then reused."""
    directory.mkdir(parents=True, exist_ok=True)
    files = KeyFiles(directory / f"{stem}_private_key.pem", directory / f"{stem}_public_key.pem")
    if files.private.exists() and files.public.exists():
        return files
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files.private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files.private.chmod(0o600)
    files.public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return files
