"""Demo campaign definitions with relative times: local/demo/*.yaml write ``"+Ns"`` (N seconds after the moment the
definition is applied) for ``start``, ``end`` and ``at``; :func:`load_definition` turns them into times, scaled.

The playbook demo (:mod:`lifelink_local.playbook`) applies local/demo/playbook.yaml this way, stretched to its
number of users and speed; ``LIFELINK_DEMO_TIME_SCALE`` multiplies every phase on top (e.g. 2: twice as long, for a
slow machine). local/demo/campaign.yaml is the example the README's campaign section points at.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

DEMO_FILE = Path(__file__).resolve().parent / "demo" / "campaign.yaml"
TIME_SCALE_ENV = "LIFELINK_DEMO_TIME_SCALE"
TIME_KEYS = ("start", "end", "at")


def time_scale() -> float:
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    scale = float(raw)
    if scale <= 0:
        raise ValueError(f"{TIME_SCALE_ENV} must be positive")
    return scale


def _offset(value: str) -> timedelta | None:
    text = value.strip()
    if not (text.startswith("+") and text.endswith("s")):
        return None
    return timedelta(seconds=float(text[1:-1]))


def load_definition(now: datetime, scale: float = 1.0, path: Path = DEMO_FILE) -> dict[str, Any]:
    """The demo definition with every ``"+Ns"`` time replaced by ``now + N × scale`` seconds (whole seconds, in the
    campaign's time zone)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    zone = ZoneInfo(str(data.get("timezone", "Asia/Shanghai")))
    origin = now.astimezone(zone).replace(microsecond=0)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                offset = _offset(value) if key in TIME_KEYS and isinstance(value, str) else None
                out[key] = (origin + offset * scale).replace(microsecond=0).isoformat() if offset else walk(value)
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(data)


def template_ids(definition: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("template_id"), str):
                found.add(node["template_id"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(definition)
    return found
