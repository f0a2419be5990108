"""Inline SVG charts drawn in Python: no scripts, no external files, every text escaped.

Each function returns one ``<svg>`` element sized by its ``viewBox`` (the page's CSS makes it fluid). Points carry a
``<title>`` (the browser's tooltip) with the exact figure; incomplete points (a maturity window still open) are
drawn hollow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 24, 14, 34
MAX_X_LABELS = 8


def esc(value: object) -> str:
    return escape(str(value), quote=True)


@dataclass(frozen=True)
class Point:
    label: str  # the x position's name (a day, "day 3")
    value: float | None  # None: no figure (the line breaks there)
    complete: bool = True
    note: str = ""  # the tooltip's detail (numerator ÷ denominator …)
    tick: str = ""  # a shorter name for the x axis (default: label)


def _f(x: float) -> str:
    return f"{x:.1f}"


def _svg(body: list[str], label: str, height: int = HEIGHT) -> str:
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{esc(label)}">'
            f"<title>{esc(label)}</title>{''.join(body)}</svg>")


def _step(span: float, integer: bool) -> float:
    """A round step (1, 2, 2.5 or 5 × 10^k) giving about four intervals over ``span``."""
    raw = max(span, 1e-9) / 4
    power = 10 ** math.floor(math.log10(raw))
    for k in (1, 2, 2.5, 5, 10):
        if k * power >= raw and (not integer or (k * power).is_integer()):
            return k * power
    return 10 * power


def ticks(lo: float, hi: float, integer: bool = False) -> list[float]:
    """Round axis values covering ``lo`` … ``hi`` (0 included; whole numbers for counts)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        hi = lo + 1.0
    step = max(_step(hi - lo, integer), 1.0) if integer else _step(hi - lo, integer)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def _y_axis(values: Sequence[float], fmt: Callable[[float], str], y: Callable[[float], float]) -> list[str]:
    out = []
    for v in values:
        yy = _f(y(v))
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy}" y2="{yy}"/>'
                   f'<text class="axis" x="{LEFT - 6}" y="{yy}" text-anchor="end" dy="0.32em">{esc(fmt(v))}</text>')
    return out


def _x_labels(labels: Sequence[str], x: Callable[[int], float], height: int) -> list[str]:
    n = len(labels)
    if n == 0:
        return []
    step = max(1, -(-n // MAX_X_LABELS))
    shown = list(range(0, n, step))
    if shown[-1] != n - 1:  # the last label always shows; it replaces a neighbour too close to it
        shown = [i for i in shown if n - 1 - i >= step] + [n - 1]
    return [f'<text class="axis" x="{_f(x(i))}" y="{height - BOTTOM + 16}" text-anchor="middle">{esc(labels[i])}</text>'
            for i in shown]


def _scales(n: int, lo: float, hi: float, height: int) -> tuple[Callable[[int], float], Callable[[float], float]]:
    inner = WIDTH - LEFT - RIGHT
    band = inner / max(n, 1)

    def x(i: int) -> float:
        return LEFT + band * (i + 0.5)

    def y(v: float) -> float:
        return TOP + (hi - v) / (hi - lo or 1) * (height - TOP - BOTTOM)

    return x, y


def line_chart(points: Sequence[Point], label: str, fmt: Callable[[float], str], *, y_max: float | None = None,
               height: int = HEIGHT) -> str:
    """A line through the points (broken where a value is missing); hollow circles for incomplete points."""
    values = [p.value for p in points if p.value is not None]
    axis = ticks(0.0, y_max if y_max is not None else max(values, default=0.0))
    x, y = _scales(len(points), axis[0], axis[-1], height)
    body = _y_axis(axis, fmt, y)
    run: list[str] = []
    runs: list[list[str]] = []
    for i, p in enumerate(points):
        if p.value is None:
            if run:
                runs.append(run)
            run = []
            continue
        run.append(f"{_f(x(i))},{_f(y(p.value))}")
    if run:
        runs.append(run)
    body += [f'<polyline class="line" points="{" ".join(r)}"/>' for r in runs if len(r) > 1]
    for i, p in enumerate(points):
        if p.value is None:
            continue
        state = "done" if p.complete else "open"
        tip = f"{p.label}: {fmt(p.value)}" + (f" ({p.note})" if p.note else "") + ("" if p.complete else ", incomplete")
        body.append(f'<circle class="pt {state}" cx="{_f(x(i))}" cy="{_f(y(p.value))}" r="4">'
                    f"<title>{esc(tip)}</title></circle>")
    body += _x_labels([p.tick or p.label for p in points], x, height)
    return _svg(body, label, height)


def bars_and_line(labels: Sequence[str], bars: Sequence[int], line: Sequence[int], label: str,
                  bar_name: str, line_name: str, height: int = HEIGHT) -> str:
    """Daily bars (up green, down red) and a running line on the same scale (follower growth)."""
    axis = ticks(min([0, *bars, *line]), max([0, *bars, *line]), integer=True)
    x, y = _scales(len(labels), axis[0], axis[-1], height)
    body = _y_axis(axis, lambda v: f"{v:+.0f}" if v else "0", y)
    band = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    w = max(1.0, band * 0.7)
    zero = y(0)
    for i, (day, v) in enumerate(zip(labels, bars, strict=True)):
        top_y, h = (y(v), zero - y(v)) if v >= 0 else (zero, y(v) - zero)
        kind = "gain" if v >= 0 else "loss"
        body.append(f'<rect class="bar {kind}" x="{_f(x(i) - w / 2)}" y="{_f(top_y)}" width="{_f(w)}" '
                    f'height="{_f(max(h, 0.0))}"><title>{esc(f"{day}: {bar_name} {v:+d}")}</title></rect>')
    body.append(f'<line class="zero" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_f(zero)}" y2="{_f(zero)}"/>')
    coords = " ".join(f"{_f(x(i))},{_f(y(v))}" for i, v in enumerate(line))
    if len(line) > 1:
        body.append(f'<polyline class="line" points="{coords}"/>')
    for i, (day, v) in enumerate(zip(labels, line, strict=True)):
        body.append(f'<circle class="pt done" cx="{_f(x(i))}" cy="{_f(y(v))}" r="3">'
                    f"<title>{esc(f'{day}: {line_name} {v:+d}')}</title></circle>")
    body += _x_labels(labels, x, height)
    return _svg(body, label, height)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: not measured (an empty bar, the text says why)
    text: str  # printed right of the bar
    note: str = ""  # a second line under the label (conversion from the previous step …)


def _short(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def hbars(bars: Sequence[Bar], label: str, max_value: float | None = None) -> str:
    """Horizontal bars, one row per item (funnel steps, articles)."""
    row, label_w, text_w = 50, 200, 150
    height = TOP + row * len(bars) + 8
    hi = max_value if max_value is not None else max([b.value or 0.0 for b in bars] + [0.0]) or 1.0
    span = WIDTH - label_w - text_w - RIGHT
    body = []
    for i, b in enumerate(bars):
        y0 = TOP + i * row
        body.append(f'<text class="label" x="{label_w - 8}" y="{y0 + 20}" text-anchor="end">{esc(_short(b.label))}'
                    f"<title>{esc(b.label)}</title></text>")
        if b.note:
            body.append(f'<text class="note" x="{label_w}" y="{y0 + 41}">{esc(b.note)}</text>')
        body.append(f'<rect class="track" x="{label_w}" y="{y0 + 4}" width="{span}" height="22"/>')
        if b.value is not None:
            w = span * max(0.0, min(b.value / hi, 1.0))
            body.append(f'<rect class="hbar" x="{label_w}" y="{y0 + 4}" width="{_f(w)}" height="22">'
                        f"<title>{esc(f'{b.label}: {b.text}')}</title></rect>")
        body.append(f'<text class="value" x="{label_w + span + 8}" y="{y0 + 20}">{esc(b.text)}</text>')
    return _svg(body, label, height)


def stacked_bands(bands: Sequence[int], label: str) -> str:
    """A thin 100 % bar split into the exit bands (0–20 % … 80–100 % depth), darker as readers got further."""
    total = sum(bands) or 1
    w, h = 160, 14
    x = 0.0
    body = []
    for i, n in enumerate(bands):
        part = w * n / total
        tip = f"{i * 20}–{(i + 1) * 20} % depth: {n}"
        body.append(f'<rect class="band b{i}" x="{_f(x)}" y="0" width="{_f(part)}" height="{h}">'
                    f"<title>{esc(tip)}</title></rect>")
        x += part
    return (f'<svg class="bands" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="{esc(label)}">{"".join(body)}</svg>')
