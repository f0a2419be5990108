"""The OpenAPI document: generated from the routes, matching template.yaml and the copy in docs/api.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lifelink.api import openapi_spec
from lifelink_local.provision import load_template
from tests.api_routes import INTERNAL_ROUTES

DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def test_the_spec_has_exactly_the_internal_routes_of_the_template() -> None:
    spec = openapi_spec()
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    routed = {(r.method, r.path) for r in load_template().http_routes() if r.function_id == "InternalApiFunction"}
    assert documented == routed == INTERNAL_ROUTES


def test_request_and_answer_schemas_are_the_models() -> None:
    spec = openapi_spec()
    schemas = spec["components"]["schemas"]
    post = spec["paths"]["/messages"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OutboundJob"}
    assert set(post["responses"]) == {"202", "413", "422"}
    assert {"app_id", "channel", "content", "not_after"} <= set(schemas["OutboundJob"]["required"])
    subscriptions = spec["paths"]["/subscriptions"]["post"]
    assert set(subscriptions["responses"]) == {"200", "422"}
    assert schemas["SubscriptionReport"]["properties"]["template_ids"]["maxItems"] == 3
    get = spec["paths"]["/messages/{ledger_key}"]["get"]
    assert set(get["responses"]) == {"200", "404"}
    # Every error answer documents the body the API really sends.
    for ops in spec["paths"].values():
        for op in ops.values():
            for status, answer in op["responses"].items():
                if status.startswith("4"):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, status
    assert spec["security"] == [{"sigv4": []}]


def test_docs_carry_the_current_spec() -> None:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- openapi:begin -->\s*```json\n(.*?)\n```\s*<!-- openapi:end -->", text, flags=re.S)
    assert match, "docs/api.md has no generated OpenAPI block"
    assert json.loads(match.group(1)) == openapi_spec(), "docs/api.md is stale: regenerate the OpenAPI block"
    assert "## Webhook" in text  # the webhook part stays
