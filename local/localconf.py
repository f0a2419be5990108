"""`.lifelink/local.json`: the contract for anyone connecting a client to the local stack.

Written by ``make run``; read by ``lifelink --local`` and by tests. See README "Local stack contract".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_DIR = Path(os.environ.get("LIFELINK_STATE_DIR", ".lifelink"))
LOCAL_JSON = "local.json"


def path(state_dir: Path | None = None) -> Path:
    return (state_dir or STATE_DIR) / LOCAL_JSON


def load(state_dir: Path | None = None) -> dict[str, Any]:
    p = path(state_dir)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist: start the local stack with `make run` first")
    return json.loads(p.read_text())


def save(data: dict[str, Any], state_dir: Path | None = None) -> Path:
    p = path(state_dir)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(p)
    return p


def apply_aws_env(conf: dict[str, Any]) -> None:
    """Point boto3 at the local stack's moto server (never at AWS)."""
    os.environ["AWS_ENDPOINT_URL"] = conf["aws_endpoint_url"]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ["AWS_DEFAULT_REGION"] = conf.get("region", "us-east-1")
