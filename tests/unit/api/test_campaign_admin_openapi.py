"""The campaign administration routes in the OpenAPI document: the apply body is documented as the Campaign
model (though validated as a plain object), and every answer has its schema."""

from __future__ import annotations

from pathlib import Path

from lifelink.api import openapi_spec

DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"
ADMIN = {
    ("post", "/campaigns"): {"200", "201", "409", "413", "422"},
    ("get", "/campaigns"): {"200"},
    ("get", "/campaigns/{campaign_id}"): {"200", "404"},
    ("get", "/campaigns/{campaign_id}/preview"): {"200", "404", "422"},
    ("post", "/campaigns/{campaign_id}/pause"): {"200", "404", "409"},
    ("post", "/campaigns/{campaign_id}/resume"): {"200", "404", "409"},
    ("post", "/campaigns/{campaign_id}/cancel"): {"200", "404", "409"},
}


def test_every_admin_route_is_documented_with_its_answers() -> None:
    spec = openapi_spec()
    for (method, path), statuses in ADMIN.items():
        operation = spec["paths"][path][method]
        assert set(operation["responses"]) == statuses, (method, path)
        assert operation["tags"] == ["campaigns"]


def test_the_apply_body_is_the_campaign_schema() -> None:
    spec = openapi_spec()
    body = spec["paths"]["/campaigns"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"] == "#/components/schemas/Campaign"
    schemas = spec["components"]["schemas"]
    assert {"id", "name", "life_account", "mini_programs", "phases"} <= set(schemas["Campaign"]["required"])
    # The nested models are components too, so clients can generate types for them.
    assert {"PhaseSpec", "TopicPush", "Winners", "FlashWindow", "AudienceSpec"} <= set(schemas)


def test_the_preview_phase_is_an_enum() -> None:
    spec = openapi_spec()
    (phase,) = [p for p in spec["paths"]["/campaigns/{campaign_id}/preview"]["get"]["parameters"]
                if p["name"] == "phase"]
    assert phase["in"] == "query" and not phase["required"]
    enums = [s.get("enum") for s in phase["schema"]["anyOf"] if "enum" in s]
    assert enums == [["preheat", "burst", "settle"]]


def test_the_docs_describe_every_admin_route() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert "### Campaigns: administration" in text
    for method, path in ADMIN:
        assert f"`{method.upper()} {path}" in text, (method, path)
