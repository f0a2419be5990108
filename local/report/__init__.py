"""`lifelink report`: a self-contained HTML dashboard of one app group, read from the metrics API.

    write_report(client, path, app=None, first=None, last=None) -> Path

``client`` is an :class:`lifelink_local.api_client.ApiClient` (or anything with its ``request``); ``app`` defaults
to the life account of the first campaign ``GET /campaigns`` lists. The page holds follower growth, the life
account → mini program funnel, retention by cohort, repurchase, the campaign table with uplift and the top
articles by read completion (see :mod:`lifelink_local.report.page`).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from lifelink_local.report.collect import Client, ReportData, ReportError, collect, default_app
from lifelink_local.report.page import render

__all__ = ["DEFAULT_NAME", "ReportData", "ReportError", "build_report", "write_report"]

DEFAULT_NAME = "report.html"


def build_report(client: Client, app: str | None = None, first: date | None = None, last: date | None = None,
                 now: datetime | None = None) -> str:
    """The page's HTML (raises :class:`ReportError` when it cannot be made; ApiUnavailable passes through)."""
    name = app or default_app(client)
    if not name:
        raise ReportError("no app named and no campaign to take one from: pass --app APP_ID")
    return render(collect(client, name, first, last, now))


def write_report(client: Client, path: str | Path = DEFAULT_NAME, app: str | None = None,
                 first: date | None = None, last: date | None = None) -> Path:
    """Writes the report to ``path`` (parents created; replaced atomically) and returns its absolute path."""
    html = build_report(client, app, first, last)
    out = Path(path).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
