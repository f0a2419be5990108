"""Loaded by every Python process the test session starts (the plugin puts this folder on PYTHONPATH): taps
its logging into $LIFELINK_LOG_TAP_DIR when that is set (tests/log_scan/tap.py)."""

import importlib.util
import os
from pathlib import Path

if os.environ.get("LIFELINK_LOG_TAP_DIR"):
    try:
        _spec = importlib.util.spec_from_file_location("_lifelink_log_tap", Path(__file__).parents[1] / "tap.py")
        if _spec and _spec.loader:
            _tap = importlib.util.module_from_spec(_spec)
            _spec.loader.exec_module(_tap)
            _tap.install_from_env()
    except Exception:  # noqa: S110 - never stop a process from starting
        pass
