"""Point boto3, and lifelink's cached clients, at moto's server on loopback."""

from __future__ import annotations

import pytest

from lifelink.store import aws as aws_clients


def use_moto_endpoint(mp: pytest.MonkeyPatch, endpoint: str, region: str) -> None:
    """Test credentials, the region, no profile or session token; ``mp.undo()`` restores the environment."""
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.delenv("AWS_SESSION_TOKEN", raising=False)
    mp.delenv("AWS_PROFILE", raising=False)
    mp.setenv("AWS_DEFAULT_REGION", region)
    mp.setenv("AWS_REGION", region)
    aws_clients.client.cache_clear()
