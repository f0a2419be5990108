"""`lifelink report` over a fake metrics API (httpx.MockTransport behind the real, signing ApiClient): charts as
inline SVG, figures as hand-computed from the answers, everything escaped, empty states, a self-contained file."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.credentials import Credentials

from lifelink_local.api_client import ApiClient
from lifelink_local.cli import main
from lifelink_local.report import ReportError, build_report, write_report

LIFE = "2021000000000001"
EVIL_ARTICLE = "<script>alert(1)</script>"
EVIL_NAME = 'Autumn <tea> & "cakes"'
NOW = datetime(2026, 11, 10, 4, 0, tzinfo=UTC)


def _meta(metric: str) -> dict[str, Any]:
    return {"app": LIFE, "group": LIFE, "metric": metric, "from": "2026-11-01", "to": "2026-11-07",
            "timezone": "Asia/Shanghai", "today": "2026-11-10", "by": "day"}


def rate(n: float, d: float, complete: bool = True, **extra: Any) -> dict[str, Any]:
    return {**extra, "numerator": n, "denominator": d, "value": n / d if d else None, "complete": complete}


COHORTS = [("2026-11-01", 2, 3, True), ("2026-11-02", 1, 4, True), ("2026-11-03", 0, 2, False)]


def full_points() -> dict[str, list[dict[str, Any]]]:
    """What the API answers in the scenario (the tests' expected figures are computed by hand from these)."""
    return {
        "net_follower_growth": [
            {"day": "2026-11-01", "gained": 3, "lost": 0, "net": 3, "complete": True},
            {"day": "2026-11-03", "gained": 1, "lost": 2, "net": -1, "complete": True},
            {"day": "2026-11-05", "gained": 2, "lost": 0, "net": 2, "complete": True},
        ],
        "life_traffic_share": [rate(12, 40)],
        "attributed_orders": [
            {"day": "2026-11-02", "campaign": "c-autumn", "orders": 2, "amount_cents": 5000, "complete": True},
            {"day": "2026-11-04", "campaign": "c-autumn", "orders": 1, "amount_cents": 2500, "complete": True},
            {"day": "2026-11-04", "campaign": "c-x", "orders": 1, "amount_cents": 1000, "complete": True},
        ],
        "return_rate_7d": [rate(n, d, c, day=day) for day, n, d, c in COHORTS],
        "purchase_frequency_30d": [rate(3, 2, day="2026-11-06"), rate(5, 4, day="2026-11-07")],
        "repeat_buyer_rate_30d": [rate(1, 2, day="2026-11-06"), rate(2, 4, day="2026-11-07")],
        "post_jump_conversion_rate": [rate(3, 10, campaign="c-autumn"), rate(1, 4, campaign="c-x")],
        "treated_conversion": [rate(3, 8, campaign="c-autumn")],
        "read_completion_rate": [
            rate(1, 4, article="a-low", exit_bands=[2, 1, 0, 0, 1]),
            rate(3, 4, article=EVIL_ARTICLE, exit_bands=[0, 0, 1, 0, 3]),
            rate(1, 2, article="a-mid", exit_bands=[1, 0, 0, 0, 1]),
        ],
        "interaction_rate": [rate(2, 4, article=EVIL_ARTICLE, likes=5, comments=1, shares=2)],
    }


CAMPAIGNS = [
    {"id": "c-autumn", "name": EVIL_NAME, "state": "closed", "life_account": LIFE,
     "starts_at": "2026-11-01T10:00:00+08:00", "ends_at": "2026-11-03T10:00:00+08:00"},
    {"id": "c-elsewhere", "name": "Another shop", "state": "closed", "life_account": "2021000000000099",
     "starts_at": "2026-11-01T10:00:00+08:00", "ends_at": "2026-11-03T10:00:00+08:00"},
]
UPLIFT = {"campaign": "c-autumn", "window_start": "2026-11-01T02:00:00+00:00",
          "treated": {"numerator": 3, "denominator": 10, "value": 0.3},
          "holdout": {"numerator": 1, "denominator": 10, "value": 0.1}, "value": 0.2, "complete": True,
          "holdout_share": 0.1}


def unknown_metric() -> httpx.Response:
    return httpx.Response(422, json={"errors": [{"loc": ["query", "metric"], "msg": "unknown metric",
                                                 "type": "value_error"}]})


class FakeApi:
    """The metrics API's answer shapes (lifelink.aggregation.queries); records every request."""

    def __init__(self, points: dict[str, list[dict[str, Any]]], campaigns: list[dict[str, Any]] | None = None,
                 overrides: dict[str, Callable[[], httpx.Response]] | None = None) -> None:
        self.points = points
        self.campaigns = campaigns or []
        self.overrides = overrides or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256")
        if request.url.path == "/campaigns":
            return self.overrides.get("campaigns", lambda: httpx.Response(200, json={"campaigns": self.campaigns}))()
        assert request.url.path == "/metrics", request.url
        q = request.url.params
        metric = q["metric"]
        if metric in self.overrides:
            return self.overrides[metric]()
        if metric == "uplift":
            return httpx.Response(200, json={"app": q["app"], "metric": "uplift", "points": [UPLIFT]})
        if metric == "day_n_retention":
            n = int(q["n"])
            cohort = sum(d for _, _, d, _ in COHORTS)
            return httpx.Response(200, json={**_meta(metric), "by": "total",
                                             "points": [rate(cohort if n == 0 else 9 - n, cohort, n < 7)]})
        if metric not in self.points and metric not in (
                "net_follower_growth", "return_rate_7d", "life_traffic_share", "attributed_orders"):
            return unknown_metric()
        points = self.points.get(metric, [])
        if q.get("by") == "total" and not points:
            points = [{"numerator": 0, "denominator": 0, "value": None, "complete": True}]
        return httpx.Response(200, json={**_meta(metric), "points": points})

    def paths(self) -> set[str]:
        return {r.url.path for r in self.requests}


def client(api: FakeApi) -> ApiClient:
    return ApiClient("http://api.test", Credentials("testing", "testing"), transport=httpx.MockTransport(api))


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def page() -> tuple[str, FakeApi]:
    api = FakeApi(full_points(), CAMPAIGNS)
    return build_report(client(api), LIFE, now=NOW), api


def test_every_section_has_an_inline_svg_chart(page: tuple[str, FakeApi]) -> None:
    html, _ = page
    sections = re.findall(r"<section>(.*?)</section>", html, re.S)
    assert len(sections) == 6
    titles = [re.search(r"<h2>(.*?)</h2>", s).group(1) for s in sections]  # type: ignore[union-attr]
    assert titles == ["Follower growth", "Life account → mini program funnel", "Retention by cohort",
                      "Repurchase (30-day windows)", "Campaigns", "Top articles by read completion"]
    for title, body in zip(titles, sections, strict=True):
        if title != "Campaigns":  # the campaign table is a table
            assert "<svg" in body, title
    assert "<table>" in sections[4]


def test_follower_growth_bars_per_day_and_the_running_total(page: tuple[str, FakeApi]) -> None:
    html, _ = page
    growth = html.split("<section>")[1]
    # seven days of the range, one bar each (days without changes are 0); red only for the day that lost net
    assert len(re.findall(r'<rect class="bar (?:gain|loss)"', growth)) == 7
    assert len(re.findall(r'<rect class="bar loss"', growth)) == 1
    running = re.findall(r"since the range began ([+-]\d+)</title>", growth)
    assert running == ["+3", "+3", "+2", "+2", "+4", "+4", "+4"]
    assert "Gained <b>6</b>, lost <b>2</b>, net <b>+4</b>" in growth


def test_funnel_steps_and_conversions(page: tuple[str, FakeApi]) -> None:
    html, _ = page
    funnel = text_of(html.split("<section>")[2])
    assert "Follows" in funnel and " 6 " in funnel
    assert "200.0 % of follows" in funnel  # 12 life sessions ÷ 6 follows
    assert "30.0 % of 40 sessions" in funnel
    assert "Product viewers" in funnel and "not measured" in funnel  # this fake API answers 422 for them
    assert "33.3 % of life-account sessions" in funnel  # 4 attributed orders ÷ 12 (skips the gap)


def test_funnel_with_product_viewers_converts_through_them() -> None:
    points = full_points()
    points["product_viewers"] = [{"viewers": 8, "complete": True}]  # by=total: the API sums the days
    funnel = text_of(build_report(client(FakeApi(points, CAMPAIGNS)), LIFE, now=NOW).split("<section>")[2])
    assert "66.7 % of life-account sessions" in funnel  # 8 viewer-days ÷ 12 life sessions
    assert "50.0 % of product viewers (per day, summed)" in funnel  # 4 attributed orders ÷ 8


def test_retention_points_are_hollow_while_the_cohort_is_incomplete(page: tuple[str, FakeApi]) -> None:
    html, _ = page
    retention = html.split("<section>")[3]
    first_chart = retention.split("</svg>")[0]
    assert len(re.findall(r'class="pt done"', first_chart)) == 2
    assert len(re.findall(r'class="pt open"', first_chart)) == 1
    assert "2026-11-01: 66.7 % (2 of 3)" in first_chart
    assert "2026-11-03: 0.0 % (0 of 2), incomplete" in first_chart
    day_n = retention.split("</svg>")[1]
    assert "day 1: 88.9 % (8 of 9)" in day_n
    tiles = text_of(html.split("<section>")[0])
    assert "Return rate 7d 42.9 %" in tiles  # complete cohorts only: (2 + 1) ÷ (3 + 4)


def test_repurchase_shows_the_latest_window(page: tuple[str, FakeApi]) -> None:
    html, _ = page
    rep = text_of(html.split("<section>")[4])
    assert "Purchase frequency 30d: 1.25 on 2026-11-07" in rep
    assert "Repeat buyer rate 30d: 50.0 % on 2026-11-07" in rep


def test_campaign_table_with_uplift(page: tuple[str, FakeApi]) -> None:
    html, api = page
    table = html.split("<section>")[5]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
    cells = [[text_of(c).strip() for c in re.findall(r"<td>(.*?)</td>", r, re.S)] for r in rows]
    assert [c[0].split(" ")[0] for c in cells] == ["c-autumn", "c-x"]  # c-elsewhere is another group's
    autumn, other = cells
    assert autumn[2:] == ["10", "3", "30.0 %", "3", "¥75.00", "30.0 % (3/10)", "10.0 % (1/10)", "+20.0 pts"]
    assert other[1] == "no definition" and other[2:7] == ["4", "1", "25.0 %", "1", "¥10.00"]
    assert other[-1] == "—"
    uplift_calls = [r.url.params.get("campaign") for r in api.requests if r.url.params.get("metric") == "uplift"]
    assert uplift_calls == ["c-autumn"]


def test_top_articles_ranked_by_completion(page: tuple[str, FakeApi]) -> None:
    html, _ = page
    articles = html.split("<section>")[6]
    rows = re.findall(r"<tr>(.*?)</tr>", articles.split("<tbody>")[1], re.S)
    first_cells = [text_of(re.findall(r"<td>(.*?)</td>", r, re.S)[0]).strip() for r in rows]
    assert first_cells == ["&lt;script&gt;alert(1)&lt;/script&gt;", "a-mid", "a-low"]
    assert "75.0 % of 4 readers" in articles
    assert "5 / 1 / 2" in text_of(articles)
    assert articles.count('<svg class="bands"') == 3


def test_every_value_is_escaped(page: tuple[str, FakeApi]) -> None:
    html, _ = page
    assert EVIL_ARTICLE not in html and "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert EVIL_NAME not in html
    assert "Autumn &lt;tea&gt; &amp; &quot;cakes&quot;" in html


def test_the_file_is_self_contained(page: tuple[str, FakeApi]) -> None:
    html, _ = page
    assert not re.search(r"""(?:src|href|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    for forbidden in ("<script", "<link", "<iframe", "<img", "@import", "url("):
        assert forbidden not in html.lower(), forbidden
    assert "<style>" in html and html.startswith("<!DOCTYPE html>")


def test_only_the_metrics_and_campaign_routes_are_read(page: tuple[str, FakeApi]) -> None:
    _, api = page
    assert api.paths() == {"/metrics", "/campaigns"}  # never /profiles: no user ids can reach the page
    assert {r.method for r in api.requests} == {"GET"}
    assert {r.url.params.get("app") for r in api.requests if r.url.path == "/metrics"} == {LIFE}


def test_no_data_renders_empty_states() -> None:
    api = FakeApi({}, [])
    html = build_report(client(api), LIFE, now=NOW)
    assert html.count('class="empty"') >= 6
    assert "No follows or unfollows in this range." in html
    assert "No cohorts in this range" in html
    assert "No article opened yet." in html
    assert "No campaigns for this app" in html
    assert "<svg" not in html


def test_a_refused_metric_says_why_and_the_rest_renders() -> None:
    api = FakeApi(full_points(), CAMPAIGNS, overrides={
        "read_completion_rate": lambda: httpx.Response(503, json={"errors": [{"loc": ["config"],
                                                                              "msg": "tables <not> set"}]})})
    html = build_report(client(api), LIFE, now=NOW)
    assert "the API answered HTTP 503: tables &lt;not&gt; set" in html
    assert "Gained <b>6</b>" in html


def test_an_unknown_app_is_an_error_not_a_page() -> None:
    api = FakeApi({}, overrides={"net_follower_growth": lambda: httpx.Response(
        404, json={"errors": [{"loc": ["query", "app"], "msg": "no such app", "type": "not_found"}]})})
    with pytest.raises(ReportError, match="no such app"):
        build_report(client(api), "nope")


def test_without_an_app_the_first_campaigns_life_account_is_used() -> None:
    api = FakeApi(full_points(), CAMPAIGNS)
    build_report(client(api), None, now=NOW)
    assert {r.url.params.get("app") for r in api.requests if r.url.path == "/metrics"} == {LIFE}
    with pytest.raises(ReportError, match="--app"):
        build_report(client(FakeApi({}, [])), None)


def test_write_report_returns_the_absolute_path(tmp_path: Path) -> None:
    out = write_report(client(FakeApi(full_points(), CAMPAIGNS)), tmp_path / "sub" / "r.html", LIFE)
    assert out == (tmp_path / "sub" / "r.html").resolve()
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not list((tmp_path / "sub").glob("*.tmp"))


# ---- the CLI ----------------------------------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("LIFELINK_API_URL", raising=False)


@pytest.mark.usefixtures("aws_env")
def test_cli_writes_the_file_and_prints_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(full_points(), CAMPAIGNS)
    out = tmp_path / "report.html"
    code = main(["--api-url", "http://api.test", "report", "--app", LIFE, "--from", "2026-11-01", "--to",
                 "2026-11-07", "--out", str(out)], transport=httpx.MockTransport(api))
    printed, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert printed.strip() == str(out.resolve())
    assert "Gained <b>6</b>" in out.read_text(encoding="utf-8")
    ranges = {(r.url.params.get("from"), r.url.params.get("to")) for r in api.requests if r.url.path == "/metrics"}
    assert ranges == {("2026-11-01", "2026-11-07")}
    code = main(["--json", "--api-url", "http://api.test", "report", "--app", LIFE, "--out", str(out)],
                transport=httpx.MockTransport(api))
    assert code == 0 and json.loads(capsys.readouterr().out) == {"path": str(out.resolve())}


@pytest.mark.usefixtures("aws_env")
def test_cli_unreachable_api_exits_non_zero_with_a_message(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    out = tmp_path / "report.html"
    code = main(["--api-url", "http://127.0.0.1:9", "report", "--app", LIFE, "--out", str(out)],
                transport=httpx.MockTransport(refuse))
    _, err = capsys.readouterr()
    assert code == 2
    assert "cannot reach the API at http://127.0.0.1:9" in err
    assert not out.exists()


@pytest.mark.usefixtures("aws_env")
def test_cli_unknown_app_and_bad_days(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi({}, overrides={"net_follower_growth": lambda: httpx.Response(
        404, json={"errors": [{"loc": ["query", "app"], "msg": "no such app", "type": "not_found"}]})})
    code = main(["--api-url", "http://api.test", "report", "--app", "nope", "--out", str(tmp_path / "r.html")],
                transport=httpx.MockTransport(api))
    assert code == 1 and "no such app" in capsys.readouterr().err
    code = main(["--api-url", "http://api.test", "report", "--from", "11/01/2026"], transport=httpx.MockTransport(api))
    assert code == 2 and "--from must be a day" in capsys.readouterr().err



@pytest.mark.usefixtures("aws_env")
def test_cli_local_takes_the_life_account_and_writes_into_the_state_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lifelink_local import localconf

    monkeypatch.setattr(localconf, "STATE_DIR", tmp_path / ".lifelink")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # apply_aws_env sets it; restored after
    localconf.save({"api_url": "http://api.test", "aws_endpoint_url": "http://127.0.0.1:1", "region": "us-east-1",
                    "apps": [{"app_id": "2021000000000002", "kind": "mini"}, {"app_id": LIFE, "kind": "life"}]})
    api = FakeApi(full_points(), [])
    code = main(["--local", "report"], transport=httpx.MockTransport(api))
    printed, err = capsys.readouterr()
    expected = (tmp_path / ".lifelink" / "report.html").resolve()
    assert (code, err, printed.strip()) == (0, "", str(expected))
    assert expected.is_file()
    assert {r.url.params.get("app") for r in api.requests if r.url.path == "/metrics"} == {LIFE}
    assert {r.url.host for r in api.requests} == {"api.test"}
