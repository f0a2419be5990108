"""Fixtures shared by the outbound unit tests: the state table on in-process moto, behind a client whose
requests are atomic the way DynamoDB's are."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest


class AtomicRequests:
    """DynamoDB applies each request (condition check and write) atomically; moto's in-process backend does
    not lock, so concurrent threads could interleave inside one request. This proxy serialises requests --
    and only requests: the code under test still interleaves freely between its calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name == "exceptions":
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


@pytest.fixture
def table(aws: Any) -> str:
    return aws.tables["StateTable"]


@pytest.fixture
def ddb(aws: Any) -> Any:
    return AtomicRequests(boto3.client("dynamodb"))


@pytest.fixture
def sqs(aws: Any) -> Any:
    return AtomicRequests(boto3.client("sqs"))
