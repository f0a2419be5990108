"""The events consumer's cold start: the rules load no Alipay client (no httpx, none of lifelink.alipay's key
handling) until an app asks for follow confirmation. (boto3 itself may load parts of cryptography.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_building_the_rules_loads_no_alipay_client() -> None:
    code = (
        "import sys, json; sys.path[:0] = ['shared'];"
        "from lifelink.rules import RuleDeps; deps = RuleDeps.from_env(); deps.engine;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('httpx', 'httpcore', 'lifelink'))))"
    )
    env = {**os.environ, "STATE_TABLE": "t", "OUTBOUND_QUEUE_URL": "http://127.0.0.1:1/q", "PROFILES_TABLE": "p",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    loaded = json.loads(out.stdout)
    assert "lifelink.rules.engine" in loaded  # the probe really built the engine
    assert not [m for m in loaded if m.split(".")[0] in ("httpx", "httpcore")]
    assert not [m for m in loaded if m.startswith(("lifelink.alipay", "lifelink.rules.follow_check"))]
