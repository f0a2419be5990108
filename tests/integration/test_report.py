"""`lifelink report` end to end over real HTTP: the metrics consumer folds a small hand-made history into moto's
server, the CLI signs its requests to the local front, the internal API answers GET /metrics and GET /campaigns,
and the page shows what was folded (figures computed by hand below)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from lifelink.api import ApiDeps, InternalApi
from lifelink.api.campaign_admin import CampaignAdmin
from lifelink.domain.attribution import Attribution, issue
from lifelink.domain.campaigns import in_holdout
from lifelink.store import aws as aws_clients
from lifelink.store.audience import Audience
from lifelink.store.campaigns import CampaignStore
from lifelink_local.cli import main
from lifelink_local.front import Front
from lifelink_local.handlers import LambdaContext
from lifelink_local.motoserver import MotoServer
from lifelink_local.provision import provision
from tests.conftest import load_function
from tests.unit.aggregation.helpers import LIFE_APP, at, behaviour, follow, session, sqs_batch, today, trade
from tests.unit.api.test_campaign_admin import FOLLOWERS, definition, register_world

pytestmark = pytest.mark.integration

REGION = "us-east-1"
CAMPAIGN = "tea-week"
READERS = ("open-reader-a1", "open-reader-b2", "open-reader-c3")  # the day-0 cohort
ROUTES = [("GET", "/metrics"), ("GET", "/campaigns")]


@dataclass
class Stack:
    url: str
    held: list[str]  # the campaign's audience, held out (one of them paid on their own)
    treated: list[str]  # the rest (one of them converted)


def sent(when: Any, user: str) -> dict[str, Any]:
    return {"schema_version": 1, "event_id": f"out-{user}", "type": "message_outcome", "app_id": LIFE_APP,
            "source": "message_gateway", "occurred_at": when.isoformat(), "received_at": when.isoformat(),
            "user": {"open_id": user}, "ledger_key": f"{LIFE_APP}|{CAMPAIGN}|push|{user}|life_template",
            "channel": "life_template", "status": "sent", "campaign": CAMPAIGN, "phase": "push",
            "message_ref": "abcd1234"}


def history(d0: Any, key: bytes, treated: list[str], held: list[str]) -> list[dict[str, Any]]:
    a, b, c = READERS
    day = timedelta(days=1)
    jumper = treated[0]  # the other treated followers were sent the campaign and did nothing
    token = issue(Attribution(LIFE_APP, CAMPAIGN, "push", "msg12345", at(d0 + 2 * day, 9)), key)
    return [
        # follows: 3 on day 0, one of them leaves on day 2 → gained 3, lost 1, net +2
        follow(at(d0, 8), a), follow(at(d0, 8, 5), b), follow(at(d0, 8, 10), c),
        follow(at(d0 + 2 * day, 8), c, followed=False),
        # sessions: 3 on day 0, returns on day 1 (a, through a life-account link: scene 1020) and day 5 (b)
        session(at(d0, 9), a), session(at(d0, 9, 5), b), session(at(d0, 9, 10), c),
        session(at(d0 + day, 9), a, scene="1020"), session(at(d0 + 5 * day, 9), b),
        # articles on day 0: a reads art-tea to the end and likes it, b stops halfway, c opens art-coffee only
        behaviour("article_open", at(d0, 10), a, article_id="art-tea", category="tea"),
        behaviour("article_progress", at(d0, 10, 2), a, article_id="art-tea", depth=0.97, dwell_s=45.0),
        behaviour("like", at(d0, 10, 3), a, article_id="art-tea"),
        behaviour("article_open", at(d0, 11), b, article_id="art-tea", category="tea"),
        behaviour("article_progress", at(d0, 11, 2), b, article_id="art-tea", depth=0.5, dwell_s=20.0),
        behaviour("article_open", at(d0, 12), c, article_id="art-coffee", category="coffee"),
        # the campaign: sent to the treated followers on day 1; one of them jumps on day 2 (a verified token)
        # and pays on day 3; a held-out follower pays on day 2 on their own
        *[sent(at(d0 + day, 10, i), u) for i, u in enumerate(treated)],
        session(at(d0 + 2 * day, 10), jumper, token=token),
        behaviour("product_view", at(d0 + 2 * day, 10, 1), jumper, product_id="tea-gift", price_cents=10000),
        trade(at(d0 + 3 * day, 12), jumper, "RPT1", amount="100.00"),
        trade(at(d0 + 2 * day, 12), held[0], "RPT2", amount="40.00"),
    ]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    mp = pytest.MonkeyPatch()
    server = MotoServer(port=0)
    endpoint = server.start()
    front: Front | None = None
    try:
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}.items():
            mp.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "LIFELINK_API_URL"):
            mp.delenv(name, raising=False)
        aws_clients.client.cache_clear()
        provisioned = provision(prefix="report")
        for function_id in ("InternalApiFunction", "MetricsFunction"):
            for k, v in provisioned.function_environment(function_id).items():
                mp.setenv(k, v)
        register_world(boto3.client("dynamodb"), provisioned.tables["StateTable"])
        deps = ApiDeps.from_env()
        campaign = CampaignAdmin.from_deps(deps).validate(definition(CAMPAIGN, holdout_share=0.5,
                                                                     name="Tea week <b>&</b>"))
        CampaignStore(deps.dynamodb, deps.state_table).put(campaign)
        held = [u for u in FOLLOWERS if in_holdout(LIFE_APP, CAMPAIGN, u, 0.5)]
        treated = [u for u in FOLLOWERS if u not in held]
        assert len(held) >= 1 and len(treated) >= 2  # the scenario needs both groups

        secret = boto3.client("secretsmanager").get_secret_value(SecretId=provisioned.secrets["AttributionSecret"])
        module = load_function("metrics")
        d0 = today() - timedelta(days=9)
        events = history(d0, secret["SecretString"].encode(), treated, held)
        answer = module.handler(sqs_batch(events), LambdaContext(function_name="metrics"))
        assert answer == {"batchItemFailures": []}

        # the campaign's audience is the life account's followers when the report is read: the five of the
        # state table and the readers still following (c left on day 2), split by the holdout hash
        audience = set(Audience(deps.dynamodb, deps.state_table).followers(LIFE_APP))
        assert audience == {*FOLLOWERS, READERS[0], READERS[1]}
        api = InternalApi(deps)

        def target(event: dict[str, Any]) -> dict[str, Any]:
            return api.handle(event, LambdaContext(function_name="internal_api"))

        front = Front([(method, path, target, "AWS_IAM") for method, path in ROUTES], port=0)
        front.start()
        held_out = sorted(u for u in audience if in_holdout(LIFE_APP, CAMPAIGN, u, 0.5))
        yield Stack(front.url, held_out, sorted(audience - set(held_out)))
    finally:
        if front is not None:
            front.stop()
        server.stop()
        aws_clients.client.cache_clear()
        from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

        DEFAULT_PROVIDERS.clear()
        mp.undo()


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture(scope="module")
def page(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    d0 = today() - timedelta(days=9)
    code = main(["--api-url", stack.url, "report", "--app", LIFE_APP, "--from", d0.isoformat(), "--to",
                 today().isoformat(), "--out", str(out)])
    assert code == 0
    return out.read_text(encoding="utf-8")


def section(html: str, title: str) -> str:
    for part in html.split("<section>")[1:]:
        if part.startswith(f"<h2>{title}"):
            return part.split("</section>")[0]
    raise AssertionError(f"no section {title!r}")


def test_the_cli_prints_the_path_of_the_file(stack: Stack, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nested" / "r.html"
    code = main(["--api-url", stack.url, "report", "--app", LIFE_APP, "--out", str(out)])
    printed, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert printed.strip() == str(out.resolve()) and out.is_file()


def test_follower_growth(page: str) -> None:
    growth = section(page, "Follower growth")
    assert "Gained <b>3</b>, lost <b>1</b>, net <b>+2</b>" in growth
    assert len(re.findall(r'<rect class="bar (?:gain|loss)"', growth)) == 10  # d0 … today
    assert len(re.findall(r'<rect class="bar loss"', growth)) == 1


def test_funnel(page: str) -> None:
    funnel = text(section(page, "Life account → mini program funnel"))
    assert "33.3 % of 6 sessions" in funnel  # a's scene-1020 return and the verified jump, of 6 sessions
    assert "50.0 % of life-account sessions" in funnel  # the jumper viewed a product: 1 viewer-day ÷ 2 sessions
    assert "100.0 % of product viewers (per day, summed)" in funnel  # 1 attributed order ÷ 1


def test_retention_by_cohort(page: str) -> None:
    retention = section(page, "Retention by cohort")
    d0, d2 = today() - timedelta(days=9), today() - timedelta(days=7)
    assert f"{d0.isoformat()}: 66.7 % (2 of 3)</title>" in retention  # a back on day 1, b on day 5, c never
    # the two followers first seen on day 2 (one comes back the next day): D+7 ends tonight, so hollow
    assert f"{d2.isoformat()}: 50.0 % (1 of 2), incomplete</title>" in retention
    first_chart = retention.split("</svg>")[0]
    assert (first_chart.count('class="pt done"'), first_chart.count('class="pt open"')) == (1, 1)


def test_repurchase(page: str) -> None:
    rep = text(section(page, "Repurchase"))
    assert f"Purchase frequency 30d: 1.00 on {today().isoformat()}" in rep  # 2 orders, 2 buyers
    assert f"Repeat buyer rate 30d: 0.0 % on {today().isoformat()}" in rep


def test_campaign_table_with_uplift(stack: Stack, page: str) -> None:
    table = section(page, "Campaigns")
    (row,) = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
    cells = [text(c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
    assert cells[0] == "tea-week Tea week &lt;b&gt;&amp;&lt;/b&gt;"
    assert "Tea week <b>" not in page
    # one jumper, who paid 100.00 on the next day: converted; the order is attributed to the campaign
    assert cells[2:7] == ["1", "1", "100.0 %", "1", "¥100.00"]
    t, h = len(stack.treated), len(stack.held)
    assert cells[7] == f"{100 / t:.1f} % (1/{t})"
    assert cells[8] == f"{100 / h:.1f} % (1/{h})"
    assert cells[9].startswith(f"{(1 / t - 1 / h) * 100:+.1f} pts")


def test_top_articles(page: str) -> None:
    articles = section(page, "Top articles by read completion")
    rows = re.findall(r"<tr>(.*?)</tr>", articles.split("<tbody>")[1], re.S)
    cells = [[text(c).strip() for c in re.findall(r"<td>(.*?)</td>", r, re.S)] for r in rows]
    assert [c[:5] for c in cells] == [["art-tea", "2", "1", "50.0 %", "50.0 %"],
                                      ["art-coffee", "1", "0", "0.0 %", "0.0 %"]]
    assert cells[0][5] == "1 / 0 / 0"


def test_no_user_id_reaches_the_page(stack: Stack, page: str) -> None:
    for user in (*READERS, *FOLLOWERS):
        assert user not in page
    assert "<script" not in page and not re.search(r"(?:src|href)\s*=\s*[\"']?https?:", page)


def test_an_unknown_app_exits_1(stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--api-url", stack.url, "report", "--app", "2021000000009999", "--out", str(tmp_path / "r.html")])
    _, err = capsys.readouterr()
    assert code == 1 and "no such app" in err
    assert not (tmp_path / "r.html").exists()


def test_an_unreachable_api_exits_2(stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["--api-url", f"http://127.0.0.1:{port}", "report", "--app", LIFE_APP,
                 "--out", str(tmp_path / "r.html")])
    _, err = capsys.readouterr()
    assert code == 2 and f"cannot reach the API at http://127.0.0.1:{port}" in err
