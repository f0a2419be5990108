"""`lifelink demo --users N --speed X [--seed S]`: start a local stack of its own (ephemeral ports, state under
``.lifelink/demo``), play the playbook, print the summary, write the HTML report and stop. `make run` plays the same
demo on its stack (``python -m lifelink_local.stack``) and keeps serving afterwards."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from lifelink_local.playbook.summary import Summary
    from lifelink_local.stack import LocalStack

DEFAULT_USERS = 1000
DEFAULT_SPEED = 1.0
DEFAULT_SEED = 11
USERS_ENV = "LIFELINK_DEMO_USERS"
SPEED_ENV = "LIFELINK_DEMO_SPEED"


def run_demo(stack: LocalStack, users: int = DEFAULT_USERS, speed: float = DEFAULT_SPEED, seed: int = DEFAULT_SEED,
             out: TextIO | None = None, progress_stream: TextIO | None = None) -> Summary:
    """Play the playbook on a started stack; print the narration and progress to ``progress_stream`` (stderr), the
    summary to ``out`` (stdout); write the report into the stack's state directory."""
    from lifelink_local.playbook.driver import Playbook, PlaybookError
    from lifelink_local.playbook.population import make_population
    from lifelink_local.playbook.progress import Progress
    from lifelink_local.playbook.summary import summarise
    from lifelink_local.playbook.timeline import Timeline

    out = out or sys.stdout
    started = time.monotonic()
    population = make_population(users, seed)
    timeline = Timeline(users, speed)
    progress = Progress(Playbook.STEPS, stream=progress_stream)
    progress.log(f"\nPlaybook demo: {users} synthetic users (seed {seed}), speed {speed:g}: phases of at least "
                 f"{timeline.phase_s:.0f} s")
    playbook = Playbook(stack, population, timeline, progress, seed)
    failure: Exception | None = None
    try:
        playbook.run()
    except PlaybookError as exc:
        failure = exc
    finally:
        progress.close()
    summary = summarise(stack, population, playbook.tally, seed=seed, speed=speed,
                        wall_s=time.monotonic() - started)
    summary.report = write_demo_report(stack, out)
    (stack.state_dir / "demo-summary.json").write_text(json.dumps(summary.as_json(), indent=2, ensure_ascii=False),
                                                      encoding="utf-8")
    out.write("\n" + "\n".join(summary.render()) + "\n")
    if failure is not None:
        out.write(f"  INCOMPLETE: {failure}\n")
    out.flush()
    if failure is not None:
        raise failure
    return summary


def write_demo_report(stack: LocalStack, out: TextIO) -> Path | None:
    from lifelink_local.api_client import client_for
    from lifelink_local.playbook.driver import LIFE
    from lifelink_local.report import write_report

    try:
        with client_for(api_url=stack.conf["api_url"]) as api:
            return write_report(api, stack.state_dir / "report.html", app=LIFE)
    except Exception as exc:  # the summary still prints; say why there is no report
        out.write(f"\nReport not written: {exc}\n")
        return None


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=positive_int, default=int(os.environ.get(USERS_ENV) or DEFAULT_USERS),
                        help=f"synthetic users (default {DEFAULT_USERS}, or ${USERS_ENV})")
    parser.add_argument("--speed", type=positive_float, default=float(os.environ.get(SPEED_ENV) or DEFAULT_SPEED),
                        help="how much faster the campaign's clock runs (default %(default)g); phases also get "
                             "time in proportion to the users, for the machine's work")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="who does what (default %(default)s)")


def _own_stack_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    parser.add_argument("--state-dir", type=Path, default=Path(".lifelink") / "demo",
                        help="keys, local.json and report.html of the demo's stack (default %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="show the functions' INFO logs")


def register(sub: Any) -> None:
    """Adds ``demo`` to the `lifelink` command's subparsers (local/cli.py)."""
    cmd = sub.add_parser("demo", help="play the seed playbook with synthetic users on a local stack of its own")
    _own_stack_arguments(cmd)
    cmd.set_defaults(run=_cli_run)


def _cli_run(args: argparse.Namespace) -> Any:
    raise SystemExit(run(args))  # prints its own output; the exit code is the demo's


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifelink demo", description=__doc__.splitlines()[0] if __doc__ else None)
    _own_stack_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    from lifelink_local.playbook.driver import PlaybookError
    from lifelink_local.stack import LocalStack

    stack = LocalStack(args.state_dir, moto_port=0, api_port=0, alipay_port=0,
                       log_level="INFO" if args.verbose else "WARNING", moto_process=True)
    try:
        stack.start()
        print(f"lifelink local stack up (API {stack.conf['api_url']}, simulator {stack.conf['alipay_gateway_url']})",
              flush=True)
        run_demo(stack, args.users, args.speed, args.seed)
        return 0
    except PlaybookError:
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
