"""Writes the internal API's OpenAPI document (docs/openapi.json) and the reference table in docs/api.md.

Both are generated from the routes (``lifelink.api.openapi_spec()``); ``tests/unit/api/test_openapi.py``
fails when either is stale. Run ``make openapi`` (or ``python -m lifelink_local.openapi``) after changing a
route; ``--check`` only reports whether the files are current (exit 1 when not).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from lifelink.api import openapi_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILE = ROOT / "docs" / "openapi.json"
API_DOC = ROOT / "docs" / "api.md"
BEGIN, END = "<!-- reference:begin -->", "<!-- reference:end -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), flags=re.S)
_METHOD_ORDER = {"get": 0, "post": 1, "put": 2, "patch": 3, "delete": 4}


def render_spec(spec: dict[str, Any] | None = None) -> str:
    """docs/openapi.json's text: the spec as indented JSON, keys in the order the generator gives them."""
    return json.dumps(openapi_spec() if spec is None else spec, indent=2, ensure_ascii=False) + "\n"


def _ref_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else schema.get("type", "object")


def _parameters(operation: dict[str, Any]) -> str:
    out = []
    for p in operation.get("parameters", []):
        if p["in"] == "path":
            continue
        out.append(f"`{p['name']}`" + ("" if p.get("required") else "?"))
    return ", ".join(out) or "–"


def _answers(operation: dict[str, Any]) -> str:
    parts = []
    for status in sorted(operation.get("responses", {})):
        content = operation["responses"][status].get("content", {}).get("application/json", {})
        schema = content.get("schema")
        parts.append(f"`{status}` {_ref_name(schema)}" if schema and "$ref" in schema else f"`{status}`")
    return ", ".join(parts)


def render_reference(spec: dict[str, Any] | None = None) -> str:
    """The generated reference block of docs/api.md: one row per operation, as docs/openapi.json has it."""
    spec = openapi_spec() if spec is None else spec
    rows = []
    for path, operations in sorted(spec["paths"].items()):
        for method, operation in sorted(operations.items(), key=lambda kv: _METHOD_ORDER.get(kv[0], 9)):
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            rows.append(
                f"| `{method.upper()} {path}` | {operation.get('summary', '')} | "
                f"{_ref_name(body) if body else '–'} | {_parameters(operation)} | {_answers(operation)} |"
            )
    lines = [
        BEGIN,
        f"{len(rows)} operations; schemas are the `components.schemas` of [openapi.json](openapi.json) "
        "(query parameters marked `?` are optional; every 4xx body is `ErrorBody`).",
        "",
        "| operation | summary | request body | query | answers |",
        "|---|---|---|---|---|",
        *rows,
        END,
    ]
    return "\n".join(lines)


def refreshed_api_doc(text: str, spec: dict[str, Any] | None = None) -> str:
    """docs/api.md with its reference block replaced by the current one (the block must exist)."""
    if not _BLOCK.search(text):
        raise ValueError(f"docs/api.md has no {BEGIN} … {END} block")
    block = render_reference(spec)
    return _BLOCK.sub(lambda _: block, text, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale; write nothing")
    args = parser.parse_args(argv)
    spec = openapi_spec()
    wanted = {SPEC_FILE: render_spec(spec), API_DOC: refreshed_api_doc(API_DOC.read_text(encoding="utf-8"), spec)}
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run make openapi)", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
