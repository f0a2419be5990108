"""Load a function's handler from its file and call it the way Lambda does.

Each handler file is imported under a unique module name (two functions may both be ``app.py``), with its
own directory first on ``sys.path`` during import (Lambda puts the code directory there) and the function's
environment variables applied. All functions share one process, so environment variables are process-wide:
the function's variables are (re)applied before each call. Functions that disagree on a variable's value and
run concurrently would see each other's value; the template gives every function the same shared variables.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_import_lock = threading.Lock()


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 128
    timeout_s: float = 30.0
    region: str = "us-east-1"
    account_id: str = "123456789012"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def module_name_for(handler_file: str | os.PathLike[str]) -> str:
    path = str(Path(handler_file).resolve())
    stem = Path(path).stem
    return f"lifelink_fn_{stem}_{hashlib.sha256(path.encode()).hexdigest()[:12]}"


def _apply_env(env: Mapping[str, str]) -> None:
    for key, value in env.items():
        os.environ[key] = str(value)


def load_module(handler_file: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Any:
    """Import ``handler_file`` under a unique module name (cached: a second call returns the same module)."""
    path = Path(handler_file).resolve()
    name = module_name_for(path)
    with _import_lock:
        if name in sys.modules:
            return sys.modules[name]
        _apply_env(env or {})
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load handler file {path}")
        module = importlib.util.module_from_spec(spec)
        code_dir = str(path.parent)
        sys.path.insert(0, code_dir)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(code_dir)
        return module


class LocalFunction:
    """A loaded handler: ``fn(event)`` calls ``handler(event, context)`` with a fresh context."""

    def __init__(
        self,
        handler_file: str | os.PathLike[str],
        handler_name: str = "handler",
        env: Mapping[str, str] | None = None,
        function_name: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.env = dict(env or {})
        self.module = load_module(handler_file, self.env)
        self.handler: Callable[[Any, Any], Any] = getattr(self.module, handler_name)
        self.function_name = function_name or Path(handler_file).parent.name
        self.timeout_s = timeout_s

    def __call__(self, event: Any) -> Any:
        _apply_env(self.env)
        context = LambdaContext(function_name=self.function_name, timeout_s=self.timeout_s)
        return self.handler(event, context)


def load_function(
    handler_file: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    handler_name: str = "handler",
    function_name: str | None = None,
) -> LocalFunction:
    """Load ``handler_file``'s ``handler_name`` with ``env`` applied; returns a callable taking the event."""
    return LocalFunction(handler_file, handler_name, env, function_name)
