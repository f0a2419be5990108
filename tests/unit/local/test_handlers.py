from __future__ import annotations

import os
from pathlib import Path

from lifelink_local.handlers import LambdaContext, load_function, module_name_for


def write_fn(root: Path, name: str, marker: str) -> Path:
    d = root / name
    d.mkdir()
    (d / "helper_mod_for_test.py").write_text(f"MARK = {marker!r}\n")
    (d / "app.py").write_text(
        "import os\n"
        "from helper_mod_for_test import MARK\n"
        "IMPORT_TABLE = os.environ.get('UNIT_TABLE')\n"
        "def handler(event, context):\n"
        "    return {'mark': MARK, 'table': os.environ.get('UNIT_TABLE'), 'import_table': IMPORT_TABLE,\n"
        "            'fn': context.function_name, 'arn': context.invoked_function_arn,\n"
        "            'left': context.get_remaining_time_in_millis(), 'event': event}\n"
    )
    return d / "app.py"


def test_two_app_py_files_load_as_distinct_modules_with_their_env(tmp_path: Path) -> None:
    a = load_function(write_fn(tmp_path, "alpha", "A"), env={"UNIT_TABLE": "t-alpha"}, function_name="Alpha")
    b = load_function(tmp_path / "alpha" / "app.py", env={"UNIT_TABLE": "t-alpha"})
    assert a.module is b.module  # cached by path
    out = a({"x": 1})
    assert out["mark"] == "A"
    assert out["table"] == "t-alpha" and out["import_table"] == "t-alpha"
    assert out["fn"] == "Alpha" and out["arn"].endswith(":function:Alpha")
    assert 0 < out["left"] <= 30_000
    assert out["event"] == {"x": 1}
    assert module_name_for(tmp_path / "alpha" / "app.py") != module_name_for(tmp_path / "beta" / "app.py")
    os.environ.pop("UNIT_TABLE", None)


def test_context_defaults() -> None:
    ctx = LambdaContext(function_name="F")
    assert ctx.log_group_name == "/aws/lambda/F"
    assert ctx.aws_request_id != LambdaContext(function_name="F").aws_request_id
