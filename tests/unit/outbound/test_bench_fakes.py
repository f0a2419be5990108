"""The bench's in-memory stores (bench/outbound_speed.py) accept every argument the real stores take, so the bench
keeps measuring the gateway as it is (a renamed or added argument broke it silently twice)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import pytest

from lifelink.store.ledger import Ledger

BENCH = Path(__file__).resolve().parents[3] / "bench" / "outbound_speed.py"


@pytest.fixture(scope="module")
def bench() -> Any:
    sys.path.insert(0, str(BENCH.parent))
    try:
        spec = importlib.util.spec_from_file_location("bench_outbound_speed", BENCH)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH.parent))


@pytest.mark.parametrize("method", ["get", "claim", "finish", "release", "close"])
def test_the_in_memory_ledger_takes_every_argument_of_the_real_one(bench: Any, method: str) -> None:
    real = inspect.signature(getattr(Ledger, method)).parameters
    fake = inspect.signature(getattr(bench._MemLedger, method)).parameters
    missing = [name for name in real if name not in fake]
    assert not missing, f"bench _MemLedger.{method} lacks {missing}"
