"""The OpenAPI document: generated from the routes, matching template.yaml, the pydantic models, docs/openapi.json
and the reference table in docs/api.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import schemathesis

from lifelink.api import build_resolver, openapi_spec
from lifelink_local.openapi import SPEC_FILE, refreshed_api_doc, render_reference, render_spec
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


def test_the_committed_document_is_what_the_code_generates() -> None:
    assert SPEC_FILE.read_text(encoding="utf-8") == render_spec(), "docs/openapi.json is stale: run make openapi"
    text = DOCS.read_text(encoding="utf-8")
    assert refreshed_api_doc(text) == text, "docs/api.md's reference table is stale: run make openapi"
    assert "(openapi.json)" in text and "## Webhook" in text  # points at the document; the webhook part stays


def test_the_reference_table_lists_every_operation_once() -> None:
    rows = re.findall(r"^\| `(GET|POST) (/[^`]*)` \|", render_reference(), flags=re.M)
    assert sorted(rows) == sorted(INTERNAL_ROUTES)


def test_schemathesis_loads_every_operation() -> None:
    loaded = list(schemathesis.openapi.from_dict(openapi_spec()).get_all_operations())
    errors = [str(r.err().__cause__ or r.err()) for r in loaded if hasattr(r, "err")]
    assert errors == []  # e.g. an undeclared {variable} in the server URL fails every operation
    assert len(loaded) == len(INTERNAL_ROUTES)


def _without_none_defaults(schema: Any) -> Any:
    """Powertools leaves out ``"default": null``; pydantic writes it. Nothing else may differ."""
    if isinstance(schema, dict):
        return {k: _without_none_defaults(v) for k, v in schema.items() if not (k == "default" and v is None)}
    if isinstance(schema, list):
        return [_without_none_defaults(v) for v in schema]
    return schema


def test_every_request_body_is_its_pydantic_models_schema() -> None:
    spec = openapi_spec()
    resolver = build_resolver(lambda: None)  # type: ignore[arg-type,return-value]
    checked = 0
    for route in resolver._static_routes + resolver._dynamic_routes:
        if route.body_field is None:
            continue
        documented = spec["paths"][route.openapi_path][route.method.lower()]["requestBody"]["content"]
        name = documented["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        model = getattr(route.body_field.type_, "__metadata__", [None])[0]  # POST /campaigns: Annotated[dict, ...]
        model = getattr(model, "model", None) or route.body_field.type_
        assert model.__name__ == name, route.openapi_path
        own = model.model_json_schema(ref_template="#/components/schemas/{model}")
        nested = own.pop("$defs", {})
        assert _without_none_defaults(spec["components"]["schemas"][name]) == _without_none_defaults(own), name
        for sub, schema in nested.items():
            assert _without_none_defaults(spec["components"]["schemas"][sub]) == _without_none_defaults(schema), sub
        checked += 1
    assert checked == sum("requestBody" in op for ops in spec["paths"].values() for op in ops.values())
