"""Figure 3: the webhook handler's cold import time against the import time of its dependencies.

Each measurement is a fresh interpreter of the bench venv that times, with perf_counter, only the import
statement(s): (a) the third-party modules the handler pulls in, or (b) functions/webhook/app.py imported as
the module ``app`` with functions/webhook and shared/ first on sys.path, as on Lambda (function code + the
layer). The interpreter runs with -S and an explicit sys.path (stdlib, the venv's site-packages), so that
no .pth file (e.g. the editable install's import hook) sits in the way; Lambda processes none in a layer.

Two cases, each with (a) and (b) alternated 15 times, medians:
- with .pyc: bytecode already compiled (what the layer ships, and any run after the first), using a
  private ``-X pycache_prefix`` directory warmed by one import of each first;
- without .pyc: a new empty ``pycache_prefix`` per run and PYTHONDONTWRITEBYTECODE, so every module of
  both sides is compiled from source (SAM's default build, which ships no .pyc).
"""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from common import Row, heading, median, print_table

ROOT = Path(__file__).resolve().parent.parent
RUNS = 15
IMPORTTIME_RUNS = 5
TARGET = 1.3

# The handler's third-party dependencies, as far as it uses them. ``import pydantic`` alone is lazy and loads
# almost nothing; the handler's models need pydantic's model machinery, so (a) imports ``BaseModel``.
DEPENDENCIES = (
    "import boto3, botocore\n"
    "import aws_lambda_powertools.logging\n"
    "import aws_lambda_powertools.utilities.parameters\n"
    "import aws_lambda_powertools.utilities.idempotency\n"
    "from pydantic import BaseModel\n"
    "from cryptography.hazmat.primitives.asymmetric import rsa, padding\n"
    "from cryptography.hazmat.primitives import hashes, serialization\n"
)
HANDLER = "import importlib\nimportlib.import_module('app')\n"
FORBIDDEN = ("httpx", "aws_xray_sdk")

_PROBE = """\
import sys
sys.path[:0] = {paths!r}
import time
_t = time.perf_counter()
{body}
_dt = time.perf_counter() - _t
import json
print(json.dumps({{"s": _dt, "modules": sorted(sys.modules)}}))
"""


def _paths(handler: bool) -> list[str]:
    own = [str(ROOT / "functions" / "webhook"), str(ROOT / "shared")] if handler else []
    return own + site.getsitepackages()


def _env(no_pyc: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.setdefault("AWS_DEFAULT_REGION", "ap-southeast-1")
    env["POWERTOOLS_SERVICE_NAME"] = "webhook"
    if no_pyc:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _probe(body: str, handler: bool, prefix: str, no_pyc: bool, importtime: bool = False) -> tuple[dict, str]:
    args = [sys.executable, "-S", "-X", f"pycache_prefix={prefix}"]
    if importtime:
        args += ["-X", "importtime"]
    code = _PROBE.format(paths=_paths(handler), body=body)
    done = subprocess.run([*args, "-c", code], capture_output=True, text=True, env=_env(no_pyc), cwd=ROOT,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"import probe failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _series(cases: dict[str, tuple[str, bool]], no_pyc: bool, workdir: str) -> dict[str, list[float]]:
    """Run every case RUNS times, rotating the order each round; seconds per run."""
    shared_prefix = os.path.join(workdir, "pyc")
    if not no_pyc:
        for body, handler in cases.values():  # warm-up: write the .pyc files
            _probe(body, handler, shared_prefix, no_pyc=False)
    out: dict[str, list[float]] = defaultdict(list)
    names = list(cases)
    for n in range(RUNS):
        for name in names[n % len(names):] + names[: n % len(names)]:
            body, handler = cases[name]
            prefix = tempfile.mkdtemp(dir=workdir) if no_pyc else shared_prefix
            got, _ = _probe(body, handler, prefix, no_pyc)
            out[name].append(got["s"])
    return out


_IMPORTTIME = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def _attribution(workdir: str) -> tuple[list[tuple[str, float, float]], set[str]]:
    """Median self/cumulative µs (from -X importtime) of every module the handler loads beyond (a)."""
    prefix = os.path.join(workdir, "pyc")
    deps, _ = _probe(DEPENDENCIES, False, prefix, no_pyc=False)
    base = set(deps["modules"])
    self_us: dict[str, list[float]] = defaultdict(list)
    cum_us: dict[str, list[float]] = defaultdict(list)
    loaded: set[str] = set()
    for _ in range(IMPORTTIME_RUNS):
        got, err = _probe(DEPENDENCIES + HANDLER, True, prefix, no_pyc=False, importtime=True)
        loaded = set(got["modules"])  # importtime also lists failed optional imports: keep only loaded ones
        for m in _IMPORTTIME.finditer(err):
            self_us[m.group(4)].append(float(m.group(1)))
            cum_us[m.group(4)].append(float(m.group(2)))
    rows = [
        (name, median(v), median(cum_us[name])) for name, v in self_us.items() if name in loaded and name not in base
    ]
    return sorted(rows, key=lambda r: -r[1]), base


def _group(name: str) -> str:
    if name == "app" or name.startswith("lifelink"):
        return "ours: " + (name if name == "app" else ".".join(name.split(".")[:3]))
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top.lstrip("_") in sys.stdlib_module_names:
        return "stdlib (pulled in by the above)"
    if name.startswith("pydantic"):
        return "third-party: pydantic model machinery (pydantic.main, _generate_schema, …)"
    if name.startswith("cryptography.x509"):
        return "third-party: cryptography.x509"
    return f"third-party: {top} (other)"


def run() -> list[Row]:
    heading("3. Webhook handler cold import vs its dependencies (fresh interpreter per run, one thread)")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="lifelink-bench-pyc-") as workdir:
        handler_probe, _ = _probe(HANDLER, True, os.path.join(workdir, "check"), no_pyc=True)
        loaded = set(handler_probe["modules"])
        forbidden = {m: any(x == m or x.startswith(m + ".") for x in loaded) for m in FORBIDDEN}

        pyc = _series({"a": (DEPENDENCIES, False), "b": (HANDLER, True)},
                      no_pyc=False, workdir=workdir)
        src = _series({"a": (DEPENDENCIES, False), "b": (HANDLER, True)}, no_pyc=True, workdir=workdir)
        attribution, _ = _attribution(workdir)

    def ms(values: list[float]) -> str:
        return f"{median(values) * 1e3:,.0f} ms"

    table = []
    for label, series in (("with .pyc", pyc), ("without .pyc", src)):
        a, b = median(series["a"]), median(series["b"])
        table.append((label, ms(series["a"]), ms(series["b"]), f"{b / a:.2f}×",
                      f"[{min(series['a']) * 1e3:.0f}–{max(series['a']) * 1e3:.0f}] "
                      f"[{min(series['b']) * 1e3:.0f}–{max(series['b']) * 1e3:.0f}]"))
        rows.append(Row(f"handler import / deps ({label})", ms(series["b"]), ms(series["a"]), b / a,
                        f"≤ {TARGET}×", b / a <= TARGET))
    print(f"{RUNS} runs of each, alternated; medians (range in brackets); python {sys.executable} -S")
    print_table(("case", "(a) deps", "(b) handler", "b/a", "range a, b (ms)"), table)
    for name, present in forbidden.items():
        print(f"{name} in sys.modules after importing the handler: {'YES (must not be)' if present else 'no'}")
    rows.append(Row("handler imports httpx / aws_xray_sdk", "/".join("yes" if v else "no" for v in forbidden.values()),
                    "-", None, "no / no", not any(forbidden.values())))

    groups: dict[str, float] = defaultdict(float)
    for name, self_us, _ in attribution:
        groups[_group(name)] += self_us
    gap_ms = (median(pyc["b"]) - median(pyc["a"])) * 1e3
    print(f"\nwhere (b) − (a) = {gap_ms:,.0f} ms goes, with .pyc (-X importtime self times, median of "
          f"{IMPORTTIME_RUNS}; importtime inflates absolute values):")
    print_table(("group of modules loaded by the handler beyond (a)", "self ms"),
                [(g, f"{us / 1e3:,.1f}") for g, us in sorted(groups.items(), key=lambda kv: -kv[1])])
    print("\ntop modules by self time:")
    print_table(("module", "self ms", "cumulative ms"),
                [(n, f"{s / 1e3:,.1f}", f"{c / 1e3:,.1f}") for n, s, c in attribution[:15]])
    return rows
