"""The webhook's cold path stays light: no httpx (outbound only) and no X-Ray SDK / Tracer use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_webhook_handler_imports_neither_httpx_nor_the_xray_sdk():
    code = (
        "import sys, json; sys.path[:0] = ['functions/webhook', 'shared'];"
        "import app; print(json.dumps(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('httpx', 'aws_xray_sdk', 'httpcore', 'lifelink', 'h11'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "lifelink.webhook" in loaded  # the probe really imported the handler's code
    assert not [m for m in loaded if m.split(".")[0] in ("httpx", "httpcore", "h11", "aws_xray_sdk")]
    assert "lifelink.alipay.openapi" not in loaded

