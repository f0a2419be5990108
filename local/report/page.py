"""The report as one self-contained HTML page: inline CSS and SVG, no scripts, no external files or fonts.

Every value that comes from the API is escaped (:func:`charts.esc`). The page shows only aggregates, campaign and
article ids: the metrics API answers hold no user ids, and ``GET /profiles`` is never read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from lifelink_local.report.charts import Bar, Point, bars_and_line, esc, hbars, line_chart, stacked_bands
from lifelink_local.report.collect import ReportData, Section

TOP_ARTICLES = 10
DASH = "—"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}
.meta{color:#5b6475;margin:0 0 20px}
section{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:16px 20px;margin:0 0 18px}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 18px}
.kpi{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:10px 14px;min-width:150px}
.kpi b{display:block;font-size:20px}.kpi span{color:#5b6475;font-size:12px}
svg.chart{width:100%;height:auto;display:block;margin:6px 0}
.grid{stroke:#eceef2}.zero{stroke:#9aa3b2}.axis{font-size:11px;fill:#5b6475}
.line{fill:none;stroke:#2f6fde;stroke-width:2}
.pt.done{fill:#2f6fde;stroke:#2f6fde;stroke-width:1.5}.pt.open{fill:#fff;stroke:#2f6fde;stroke-width:2}
.bar.gain{fill:#35a46b}.bar.loss{fill:#d9534f}
.track{fill:#eef1f5}.hbar{fill:#2f6fde}.label{font-size:13px;fill:#1d2330}.note,.value{font-size:12px;fill:#5b6475}
.band.b0{fill:#dbe6fb}.band.b1{fill:#b5cdf6}.band.b2{fill:#86acef}.band.b3{fill:#5289e6}.band.b4{fill:#2f6fde}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:right;padding:5px 8px;border-bottom:1px solid #eceef2;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{color:#5b6475;font-weight:600}
.pos{color:#23824f}.neg{color:#c0392b}.muted{color:#8a93a3}
.empty{color:#5b6475;background:#f6f7f9;border:1px dashed #cfd5de;border-radius:6px;padding:14px;margin:6px 0}
.legend{color:#5b6475;font-size:12px;margin:2px 0 8px}
footer{color:#8a93a3;font-size:12px;margin:8px 0 0}
"""


def pct(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f} %"


def points_diff(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:+.1f} pts"


def yuan(cents: int) -> str:
    return f"¥{cents / 100:,.2f}"


def num(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def _empty(section: Section, what: str) -> str:
    why = f" ({section.problem})" if section.problem else ""
    return f'<p class="empty">{esc(what)}{esc(why)}</p>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """``rows`` hold already-escaped cells (they may carry markup such as a small chart)."""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def _tick(day: Any) -> str:
    """``2026-11-25`` → ``11-25`` (the axis; tooltips keep the whole day)."""
    text = str(day)
    return text[5:] if len(text) == 10 and text[4] == "-" else text


def _int(p: dict[str, Any], key: str) -> int:
    v = p.get(key)
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def _value(p: dict[str, Any]) -> float | None:
    v = p.get("value")
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


# ---- sections ---------------------------------------------------------------------------------------------


def follower_growth(d: ReportData) -> tuple[str, int | None]:
    """The daily net change (bars) and the running total since the first day of the range (line)."""
    head = "<h2>Follower growth</h2>"
    if d.followers.problem or not d.followers.points:
        return head + _empty(d.followers, "No follows or unfollows in this range."), None
    by_day = {str(p.get("day")): p for p in d.followers.points}
    labels, nets, running, gained, lost = [], [], [], 0, 0
    total = 0
    for day in _days(d.first, d.last):
        p = by_day.get(day.isoformat(), {})
        net = _int(p, "net")
        gained += _int(p, "gained")
        lost += _int(p, "lost")
        total += net
        labels.append(day.strftime("%m-%d"))
        nets.append(net)
        running.append(total)
    chart = bars_and_line(labels, nets, running, "Follower growth: daily net change and running total",
                          "net", "since the range began")
    summary = (f'<p class="legend">Bars: net change per day (follows − unfollows as state changes). Line: running '
               f"total since {esc(d.first.isoformat())}. Gained <b>{num(gained)}</b>, lost <b>{num(lost)}</b>, "
               f"net <b>{esc(f'{total:+d}')}</b>. Today ({esc(d.today.isoformat())}) is still open.</p>")
    return head + summary + chart, total


def _one(section: Section) -> dict[str, Any] | None:
    return section.points[0] if section.points and not section.problem else None


def _product_views(section: Section) -> int | None:
    p = _one(section)
    if p is None:
        return None
    for key in ("viewers",):
        if key in p:
            return _int(p, key)
    return None


def funnel(d: ReportData, gained: int | None) -> str:
    """Follows → sessions from the life account → product views → paid orders attributed to life-account links,
    with the conversion from the previous measured step."""
    head = "<h2>Life account → mini program funnel</h2>"
    traffic = _one(d.traffic)
    life = _int(traffic, "numerator") if traffic else None
    sessions = _int(traffic, "denominator") if traffic else None
    orders = None if d.attributed.problem else sum(_int(p, "orders") for p in d.attributed.points)
    steps: list[tuple[str, int | None, str]] = [
        ("Follows", gained, "new followers (state changes)"),
        ("Life-account sessions", life,
         f"{pct(_value(traffic) if traffic else None)} of {num(sessions)} sessions"),
        ("Product viewers (per day, summed)", _product_views(d.product_views),
         "" if _one(d.product_views) else "not counted by this deployment's metrics API"),
        ("Attributed orders", orders, "paid, via life-account links (last click, 7 days)"),
    ]
    if all(v in (None, 0) for _, v, _ in steps):
        return head + _empty(Section(problem=d.traffic.problem), "No follows, sessions or orders in this range.")
    bars, previous = [], None
    for name, value, detail in steps:
        note = detail
        if value is not None and previous is not None:
            prev_name, prev_value = previous
            rate = value / prev_value if prev_value else None
            note = f"{pct(rate)} of {prev_name.lower()}" + (f"; {detail}" if detail else "")
        bars.append(Bar(name, float(value) if value is not None else None,
                        num(value) if value is not None else "not measured", note))
        if value is not None:
            previous = (name, value)
    return (head + '<p class="legend">Each step counts in the range; the note gives the conversion from the '
            "previous measured step (units differ: people who followed, sessions, views, orders).</p>"
            + hbars(bars, "Funnel from the life account to paid orders"))


def retention(d: ReportData) -> str:
    head = "<h2>Retention by cohort</h2>"
    if d.retention.problem or not d.retention.points:
        return head + _empty(d.retention, "No cohorts in this range (no first activity).")
    pts = [Point(str(p.get("day")), _value(p), bool(p.get("complete")),
                 f"{num(p.get('numerator'))} of {num(p.get('denominator'))}", _tick(p.get("day")))
           for p in d.retention.points]
    parts = [head, '<p class="legend">return_rate_7d per cohort day: users first active on D who came back on any '
             "of D+1…D+7 ÷ cohort size. Hollow points are incomplete (D+7 has not ended yet).</p>",
             line_chart(pts, "Return rate within 7 days by cohort day", pct, y_max=1.0)]
    if d.day_n.points:
        curve = [Point(f"day {p['n']}", _value(p), bool(p.get("complete")),
                       f"{num(p.get('numerator'))} of {num(p.get('denominator'))}") for p in d.day_n.points]
        parts += ['<p class="legend">Day-N retention over all cohorts of the range (active on exactly D+N).</p>',
                  line_chart(curve, "Day-N retention over all cohorts", pct, y_max=1.0, height=200)]
    rows = [[esc(p.get("day")), num(p.get("denominator")), num(p.get("numerator")), esc(pct(_value(p))),
             "yes" if p.get("complete") else '<span class="muted">not yet</span>'] for p in d.retention.points]
    parts.append(_table(["Cohort day", "Cohort size", "Returned ≤ 7 d", "Return rate 7d", "Complete"], rows))
    return "".join(parts)


def repurchase(d: ReportData) -> str:
    head = "<h2>Repurchase (30-day windows)</h2>"
    parts = [head]
    for section, name, fmt, y_max, text in (
        (d.frequency, "Purchase frequency 30d", lambda v: f"{v:.2f}", None,
         "paid orders in the 30 days ending each day ÷ distinct buyers in them"),
        (d.repeat, "Repeat buyer rate 30d", pct, 1.0, "buyers with ≥ 2 paid orders ÷ buyers with ≥ 1"),
    ):
        if section.problem or not section.points:
            parts.append(f"<h3>{esc(name)}</h3>" + _empty(section, "No paid orders in these windows."))
            continue
        by_day = {str(p.get("day")): p for p in section.points}
        pts = [Point(day.isoformat(), *_day_point(by_day.get(day.isoformat())), tick=_tick(day.isoformat()))
               for day in _days(d.first, d.last)]
        latest = section.points[-1]
        parts.append(f"<h3>{esc(name)}: {esc(fmt(_value(latest)) if _value(latest) is not None else DASH)} "
                     f'<span class="muted">on {esc(latest.get("day"))}</span></h3>'
                     f'<p class="legend">{esc(text)}.</p>' + line_chart(pts, name, fmt, y_max=y_max, height=200))
    return "".join(parts)


def _day_point(p: dict[str, Any] | None) -> tuple[float | None, bool, str]:
    if p is None:
        return None, True, ""
    return _value(p), bool(p.get("complete")), f"{num(p.get('numerator'))} ÷ {num(p.get('denominator'))}"


def _by_campaign(section: Section) -> dict[str, dict[str, Any]]:
    return {str(p["campaign"]): p for p in section.points if p.get("campaign")}


def campaigns(d: ReportData) -> str:
    head = "<h2>Campaigns</h2>"
    listed = {str(c["id"]): c for c in d.campaigns.points}
    conversion, treated = _by_campaign(d.conversion), _by_campaign(d.treated)
    orders: dict[str, list[int]] = {}
    for p in d.attributed.points:
        if p.get("campaign"):
            o = orders.setdefault(str(p["campaign"]), [0, 0])
            o[0] += _int(p, "orders")
            o[1] += _int(p, "amount_cents")
    ids = sorted(listed.keys() | conversion.keys() | treated.keys() | orders.keys())
    if not ids:
        return head + _empty(d.campaigns, "No campaigns for this app, and no campaign jumps in this range.")
    rows = []
    for cid in ids:
        c = listed.get(cid, {})
        conv = conversion.get(cid, {})
        up = _one(d.uplift[cid]) if cid in d.uplift else None
        if up is not None:
            t, h = up.get("treated") or {}, up.get("holdout") or {}
            u = _value(up)
            klass = "pos" if u is not None and u > 0 else "neg" if u is not None and u < 0 else "muted"
            mark = "" if up.get("complete") else " *"
            treated_cell = f"{esc(pct(_value(t)))} ({num(t.get('numerator'))}/{num(t.get('denominator'))})"
            holdout_cell = f"{esc(pct(_value(h)))} ({num(h.get('numerator'))}/{num(h.get('denominator'))})"
            uplift_cell = f'<b class="{klass}">{esc(points_diff(u))}</b>{mark}'
        else:
            tc = treated.get(cid)
            treated_cell = esc(pct(_value(tc))) if tc else DASH
            holdout_cell = DASH
            why = d.uplift[cid].problem if cid in d.uplift else "not a stored campaign of this app"
            uplift_cell = f'<span class="muted" title="{esc(why)}">{DASH}</span>'
        o = orders.get(cid, [0, 0])
        rows.append([
            esc(cid) + (f'<br><span class="muted">{esc(c["name"])}</span>' if c.get("name") else ""),
            esc(c.get("state", "no definition")),
            num(conv.get("denominator")), num(conv.get("numerator")),
            esc(pct(_value(conv))) if conv else DASH,
            num(o[0]), esc(yuan(o[1])),
            treated_cell, holdout_cell, uplift_cell,
        ])
    legend = ('<p class="legend">Uplift = conversion of the treated audience − conversion of the holdout (same '
              "7-day window from the first send), in rate points. * incomplete: the window is still open. "
              "Jumpers and post-jump conversion count users whose first jump falls in the range.</p>")
    table = _table(["Campaign", "State", "Jumpers", "Converted", "Post-jump conversion", "Attributed orders",
                    "Amount", "Treated", "Holdout", "Uplift"], rows)
    problem = f'<p class="legend">Campaign list: {esc(d.campaigns.problem)}</p>' if d.campaigns.problem else ""
    return head + legend + table + problem


def top_articles(d: ReportData) -> str:
    head = "<h2>Top articles by read completion</h2>"
    if d.completion.problem or not d.completion.points:
        return head + _empty(d.completion, "No article opened yet.")
    ranked = sorted(d.completion.points,
                    key=lambda p: (-(_value(p) or 0.0), -_int(p, "denominator"), str(p.get("article"))))
    top = ranked[:TOP_ARTICLES]
    chart = hbars([Bar(str(p.get("article")), _value(p) or 0.0,
                       f"{pct(_value(p))} of {num(p.get('denominator'))} readers") for p in top],
                  "Read completion rate of the top articles", max_value=1.0)
    inter = {str(p.get("article")): p for p in d.interaction.points}
    rows = []
    for p in top:
        a = str(p.get("article"))
        i = inter.get(a, {})
        bands = [int(b) for b in p.get("exit_bands") or [] if isinstance(b, int | float)]
        rows.append([esc(a), num(p.get("denominator")), num(p.get("numerator")), esc(pct(_value(p))),
                     esc(pct(_value(i))) if i else DASH,
                     " / ".join(num(i.get(k, 0)) for k in ("likes", "comments", "shares")) if i else DASH,
                     stacked_bands(bands, f"exit depth of {a}") if bands else DASH])
    legend = ('<p class="legend">Completion = readers who reached ≥ 95 % depth with ≥ 10 s on the article ÷ readers '
              "who opened it (all time). Exit: where readers stopped, in 20 % bands (darker = further).</p>")
    table = _table(["Article", "Readers", "Completed", "Completion", "Interaction", "Likes / comments / shares",
                    "Exit depth"], rows)
    return head + legend + chart + table


def _kpis(d: ReportData, net: int | None) -> str:
    traffic = _one(d.traffic)
    complete = [p for p in d.retention.points if p.get("complete")]
    returned = sum(_int(p, "numerator") for p in complete)
    size = sum(_int(p, "denominator") for p in complete)
    repeat = d.repeat.points[-1] if d.repeat.points else None
    tiles = [
        ("Net followers", f"{net:+d}" if net is not None else DASH, "in the range"),
        ("Life traffic share", pct(_value(traffic)) if traffic else DASH, "sessions from the life account"),
        ("Return rate 7d", pct(returned / size) if size else DASH, "complete cohorts of the range"),
        ("Repeat buyers 30d", pct(_value(repeat)) if repeat else DASH, "latest day"),
    ]
    return '<div class="kpis">' + "".join(
        f'<div class="kpi"><span>{esc(t)}</span><b>{esc(v)}</b><span>{esc(s)}</span></div>' for t, v, s in tiles
    ) + "</div>"


def render(d: ReportData) -> str:
    growth, net = follower_growth(d)
    group = "" if d.group == d.app else f" (group {d.group})"
    title = f"lifelink report: {d.app}"
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">App {esc(d.app)}{esc(group)} · {esc(d.first.isoformat())} … {esc(d.last.isoformat())} '
        f"({esc(d.timezone)} days) · generated {esc(d.generated_at.strftime('%Y-%m-%d %H:%M UTC'))}</p>",
        _kpis(d, net),
        *(f"<section>{s}</section>" for s in (growth, funnel(d, _gained(d)), retention(d), repurchase(d),
                                                campaigns(d), top_articles(d))),
        "<footer>Figures from the lifelink metrics API (GET /metrics, GET /campaigns); definitions in "
        "docs/metrics.md. Aggregates only: no user ids.</footer>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>{''.join(body)}</main></body></html>\n")


def _gained(d: ReportData) -> int | None:
    if d.followers.problem:
        return None
    return sum(_int(p, "gained") for p in d.followers.points)
