"""`make bench`: every figure (issue 2 §7, the message gateway of issue 3, the data loop of issue 5) in one run,
then a summary table. Reports; never fails on a missed target (exit 0), only on a broken benchmark."""

from __future__ import annotations

import platform
import sys
import time

import aggregate_speed
import import_time
import metrics_speed
import outbound_speed
import rsa_speed
import webhook_speed
from common import heading, print_summary


def main() -> int:
    started = time.perf_counter()
    print(f"lifelink bench — Python {platform.python_version()} ({sys.executable}), {platform.machine()}, "
          f"single thread")
    rows = []
    rows += rsa_speed.run()
    rows += webhook_speed.run()
    rows += import_time.run()
    rows += outbound_speed.run()
    rows += metrics_speed.run()
    rows += aggregate_speed.run()
    heading("Summary")
    print_summary(rows)
    print(f"\n(bench took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
