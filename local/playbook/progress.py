"""A progress bar on a terminal, periodic lines elsewhere (CI, a pipe): no dependency.

    progress = Progress(total_steps=9)
    progress.step("follows", total=1000)   # a new step with its own count
    progress.advance()                      # one unit of the step done (thread-safe)
    progress.note("waiting for burst")      # a status without a count
    progress.log("a line above the bar")    # printed whole, the bar redrawn below it
    progress.close()
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

BAR_WIDTH = 28


class Progress:
    def __init__(self, total_steps: int, stream: TextIO | None = None, tty: bool | None = None,
                 line_every_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.total_steps = max(1, total_steps)
        self.line_every_s = line_every_s
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._step_no = 0
        self._label = ""
        self._done = 0
        self._total = 0
        self._note = ""
        self._drawn = False
        self._last_line = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="progress", daemon=True)
        self._thread.start()

    # ---- what the driver tells it ----------------------------------------------------------------------------
    def step(self, label: str, total: int = 0) -> None:
        with self._lock:
            self._step_no += 1
            self._label, self._total, self._done, self._note = label, total, 0, ""
            self._draw(force_line=True)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self._done += n
            self._draw()

    def note(self, text: str) -> None:
        with self._lock:
            self._note = text
            self._draw()

    def log(self, line: str) -> None:
        with self._lock:
            self._clear()
            self.stream.write(line + "\n")
            self._draw(force_line=False)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._clear()
            self.stream.flush()

    # ---- drawing ----------------------------------------------------------------------------------------------
    def fraction(self) -> float:
        within = (self._done / self._total) if self._total else 0.0
        return min(1.0, (self._step_no - 1 + min(within, 1.0)) / self.total_steps)

    def text(self) -> str:
        frac = self.fraction()
        filled = round(frac * BAR_WIDTH)
        count = f" {self._done}/{self._total}" if self._total else ""
        note = f" · {self._note}" if self._note else ""
        elapsed = time.monotonic() - self._started
        return (f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {frac * 100:3.0f}%  "
                f"{self._step_no}/{self.total_steps} {self._label}{count}{note}  {elapsed:4.0f} s")

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False

    def _draw(self, force_line: bool = False) -> None:
        if self._step_no == 0:
            return
        if self.tty:
            self.stream.write("\r\033[K" + self.text())
            self.stream.flush()
            self._drawn = True
            return
        now = time.monotonic()
        if force_line or now - self._last_line >= self.line_every_s:
            self._last_line = now
            self.stream.write(self.text() + "\n")
            self.stream.flush()

    def _refresh(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if not self._stop.is_set():
                    self._draw()
