"""Shared fixtures: throwaway RSA keys (an app and a stand-in for Alipay) and AWS on moto."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# Scans everything the session logs for private keys, raw user ids and tokens; fails the run on a find.
pytest_plugins = ["tests.log_scan.plugin"]

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"


@dataclass(frozen=True)
class KeyPair:
    private: rsa.RSAPrivateKey

    @property
    def private_pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )


def _new_pair() -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def app_keys() -> KeyPair:
    """The merchant app's own key pair."""
    return _new_pair()


@pytest.fixture(scope="session")
def alipay_keys() -> KeyPair:
    """Plays Alipay's key pair (the simulator's, in the local stack)."""
    return _new_pair()


@pytest.fixture(scope="session")
def other_keys() -> KeyPair:
    """Somebody else's key pair: a forger."""
    return _new_pair()


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """In-process moto with every table and queue of template.yaml; yields the provisioned names."""
    from moto import mock_aws

    from lifelink.store import aws as aws_clients
    from lifelink_local.provision import provision

    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws_clients.client.cache_clear()
    with mock_aws():
        import boto3

        yield provision(TEMPLATE, dynamodb=boto3.client("dynamodb"), sqs=boto3.client("sqs"))
    aws_clients.client.cache_clear()
    # Powertools keeps one provider (and its boto3 client) per process: one made inside this mock must not
    # outlive it, or a later test against moto's server would read secrets from a mock that is gone.
    from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

    DEFAULT_PROVIDERS.clear()


def load_function(name: str) -> Any:
    """Import functions/<name>/app.py under a unique module name (every function's file is app.py)."""
    path = ROOT / "functions" / name / "app.py"
    mod_name = f"fn_{name}_under_test"
    sys.modules.pop(mod_name, None)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module
