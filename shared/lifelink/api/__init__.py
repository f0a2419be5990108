"""The internal API (HTTP API routes with IAM auth): enqueue outbound jobs, read the send ledger, record
mini-program subscription grants.

``InternalApi(deps).handle(event, context)`` answers an API Gateway HTTP API (payload format 2.0) event;
``openapi_spec()`` is the OpenAPI document of its routes (docs/api.md is written from it).
"""

from __future__ import annotations

from lifelink.api.resolver import MAX_BODY_BYTES, ApiDeps, InternalApi, build_resolver, openapi_spec

__all__ = ["MAX_BODY_BYTES", "ApiDeps", "InternalApi", "build_resolver", "openapi_spec"]
