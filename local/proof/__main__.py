"""``python -m lifelink_local.proof [--scale reduced|full] [--only abcd] [--json FILE]``: run the scenarios on a
fresh local stack, print the table, exit 1 when a row is not OK (keyed effects lost or duplicated, unexplained
discrepancies, or counts that do not reconcile)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

from lifelink_local.proof.harness import proof_stack
from lifelink_local.proof.scenarios import SCALES, SCENARIOS
from lifelink_local.proof.table import Row, render


def run(scale_name: str, only: str = "abcd", seed: int = 6,
        log: Path | None = None) -> tuple[list[Row], dict[str, float]]:
    """Run the scenarios; the functions' logs (Powertools writes JSON lines to stdout) go to ``log``."""
    scale = SCALES[scale_name]
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    started = time.monotonic()
    with (open(log or os.devnull, "w") as sink, contextlib.redirect_stdout(sink), proof_stack() as ps):
        seconds["stack"] = time.monotonic() - started
        for name in only:
            t = time.monotonic()
            print(f"scenario {name} ...", file=sys.stderr, flush=True)
            rows += SCENARIOS[name](ps, scale, random.Random(f"{seed}-{name}"))
            seconds[name] = time.monotonic() - t
    return rows, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifelink_local.proof", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--only", default="abcd", help="scenario letters to run (default abcd)")
    parser.add_argument("--json", type=Path, help="also write the rows (with their facts) to this file")
    parser.add_argument("--log", type=Path, default=Path(".lifelink/proof.log"),
                        help="where the functions' logs go (default .lifelink/proof.log)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # the stack's own narration stays quiet; the table tells the story
    args.log.parent.mkdir(parents=True, exist_ok=True)
    rows, seconds = run(args.scale, args.only, log=args.log)
    title = (f"lifelink proof, {args.scale} scale ("
             + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")")
    print(render(rows, title))
    print(f"(the functions' logs: {args.log})")
    if args.json:
        args.json.write_text(json.dumps({"scale": args.scale, "seconds": seconds,
                                         "rows": [r.to_dict() for r in rows]}, indent=1, default=str))
    bad = [r for r in rows if not r.ok]
    if bad:
        print(f"\n{len(bad)} row(s) not OK", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
