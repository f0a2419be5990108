"""A small client for the internal API: every request SigV4-signed (service ``execute-api``), sent with httpx.

The base URL comes from ``--api-url`` / ``$LIFELINK_API_URL``, or with ``--local`` from ``.lifelink/local.json``
(the local stack's HTTP front), or else from the CloudFormation stack's ``ApiUrl`` output. Credentials and
region are botocore's usual chain (environment, profile, role); locally, the moto credentials the stack uses.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lifelink_local import localconf

API_URL_ENV = "LIFELINK_API_URL"
SERVICE = "execute-api"
DEFAULT_REGION = "us-east-1"
DEFAULT_TIMEOUT = 30.0


class ApiUnavailable(Exception):
    """The API could not be reached or named (no URL, no credentials, connection refused)."""


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: Any  # the decoded JSON body, or the text when it is not JSON (None when empty)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def errors(self) -> list[dict[str, Any]]:
        """The ``{"errors": [...]}`` of a refusal (or one error made of API Gateway's ``{"message": ...}``)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("errors"), list):
            return [e for e in self.body["errors"] if isinstance(e, dict)]
        if isinstance(self.body, dict) and "message" in self.body:
            return [{"loc": [], "msg": str(self.body["message"]), "type": f"http_{self.status}"}]
        text = self.body if isinstance(self.body, str) and self.body else f"HTTP {self.status}"
        return [{"loc": [], "msg": text, "type": f"http_{self.status}"}]


class ApiClient:
    """``request(method, path, body=None, params=None) -> ApiAnswer``; 4xx and 5xx are answers, not exceptions."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        region: str = DEFAULT_REGION,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.region = region
        self._http = httpx.Client(transport=transport, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str, params: dict[str, str] | None = None) -> str:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        return f"{self.base_url}{path}" + (f"?{query}" if query else "")

    def signed_headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers={"content-type": "application/json"})
        SigV4Auth(self.credentials, SERVICE, self.region).add_auth(request)
        return dict(request.headers.items())

    def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> ApiAnswer:
        url = self.url(path, params)
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = self.signed_headers(method, url, raw)
        try:
            response = self._http.request(method, url, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiUnavailable(f"cannot reach the API at {self.base_url}: {exc}") from exc
        return ApiAnswer(response.status_code, _decode(response))


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def path_part(value: str) -> str:
    """One path segment, percent-encoded (``/`` included)."""
    return quote(value, safe="")


def _stack_api_url(stack: str) -> str:
    import boto3

    try:
        stacks = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except Exception as exc:
        raise ApiUnavailable(f"cannot read stack {stack!r} ({exc}); pass --api-url or set {API_URL_ENV}") from exc
    for output in stacks[0].get("Outputs", []):
        if output["OutputKey"] == "ApiUrl":
            return str(output["OutputValue"])
    raise ApiUnavailable(f"stack {stack!r} has no ApiUrl output; pass --api-url or set {API_URL_ENV}")


def _credentials() -> tuple[Credentials, str]:
    import botocore.session

    session = botocore.session.get_session()
    found = session.get_credentials()
    if found is None:
        raise ApiUnavailable("no AWS credentials found to sign requests (environment, profile or role)")
    frozen = found.get_frozen_credentials()
    region = session.get_config_variable("region") or os.environ.get("AWS_REGION") or DEFAULT_REGION
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token), region


def client_for(
    *,
    api_url: str | None = None,
    local: bool = False,
    stack: str = "lifelink",
    transport: httpx.BaseTransport | None = None,
) -> ApiClient:
    """The client a CLI invocation uses: explicit URL, then $LIFELINK_API_URL, then the local stack or AWS stack."""
    url = api_url or os.environ.get(API_URL_ENV)
    if local:
        conf = localconf.load()
        localconf.apply_aws_env(conf)
        url = url or conf.get("api_url")
        if not url:
            raise ApiUnavailable(f"{localconf.path()} names no api_url: restart the local stack with `make run`")
    elif not url:
        url = _stack_api_url(stack)
    credentials, region = _credentials()
    return ApiClient(url, credentials, region, transport=transport)
