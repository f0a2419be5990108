"""`make run` as a user meets it: the stack in its own process on loopback (ephemeral ports) plays the playbook demo
with a few synthetic users, prints its summary and writes the report, then keeps serving; the summary is checked
against what the simulator received, and the running stack against an independently signed gateway check and the
`lifelink` command."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest

from lifelink.alipay.keys import load_public_key
from lifelink.alipay.lifegateway import reply_inner, reply_signature
from lifelink.alipay.signing import verify

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration
USERS = 20
SINGLE_SEND = "alipay.open.public.message.single.send"
TOTAL_SEND = "alipay.open.public.message.total.send"
VOUCHER_SEND = "alipay.marketing.activity.voucher.send"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("lifelink-state")
    env = {**os.environ, "LIFELINK_MOTO_PORT": "0", "LIFELINK_API_PORT": "0", "LIFELINK_ALIPAY_PORT": "0",
           "PYTHONUNBUFFERED": "1"}
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lifelink_local.stack", "--state-dir", str(state), "--users", str(USERS),
         "--speed", "4"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 280
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("serving"):
            break
    output = "".join(lines)
    try:
        assert "serving" in output, output
        yield {"output": output, "state": state, "conf": json.loads((state / "local.json").read_text()), "env": env}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _summary(out: str, label: str) -> str:
    found = re.search(rf"^  {label} +(.*)$", out, re.MULTILINE)
    assert found, f"no {label!r} line in the summary:\n{out[-3000:]}"
    return found.group(1)


def _first_number(text: str) -> int:
    return int(re.match(r"(\d+)", text).group(1))  # type: ignore[union-attr]


def _outbound(conf: dict[str, Any]) -> list[dict[str, Any]]:
    sim = conf["alipay_gateway_url"].removesuffix("/gateway.do")
    got = httpx.get(f"{sim}/sim/outbound", trust_env=False).json()
    return got if isinstance(got, list) else got.get("outbound", got)


def test_the_summary_matches_what_the_simulator_received(running):
    out, conf = running["output"], running["conf"]
    received = Counter(r["method"] for r in _outbound(conf))
    failed = int(re.search(r"failed (\d+)", _summary(out, "messages")).group(1))  # type: ignore[union-attr]
    # Every send the ledger calls sent arrived. A send that timed out (or whose outcome was unknown) may still have
    # been executed by Alipay: it arrived but is counted failed, never sent.
    template_sent = _first_number(_summary(out, "template sent"))
    assert template_sent <= received[SINGLE_SEND] <= template_sent + failed
    assert _first_number(_summary(out, "coupons sent")) == received[VOUCHER_SEND]  # out_biz_no: exactly once
    at_sim = _summary(out, "at the simulator")
    assert at_sim.startswith(f"{received[SINGLE_SEND]} template messages, {received[TOTAL_SEND]} broadcast "
                             f"deliveries, {received[VOUCHER_SEND]} coupons")
    follows = re.match(r"(\d+) \(scenes: (.*)\); unfollowed (\d+)", _summary(out, "follows"))
    assert follows, out
    assert int(follows.group(1)) == USERS
    assert sum(int(n) for n in re.findall(r" (\d+)", follows.group(2))) == USERS  # every follow had a scene code
    # the article went to every follower still following (one broadcast, one delivery each)
    assert received[TOTAL_SEND] == USERS - int(follows.group(3))
    sent = int(re.search(r"sent (\d+)", _summary(out, "messages")).group(1))  # type: ignore[union-attr]
    assert sent >= template_sent + received[VOUCHER_SEND]  # plus the broadcast (one job)


def test_every_follower_is_welcomed_once_and_the_report_is_written(running):
    welcomes = [r for r in _outbound(running["conf"]) if r["method"] == SINGLE_SEND
                and (r.get("detail") or {}).get("template_id") == "TM_WELCOME_SILVER"]
    users = Counter(r["recipient"] for r in welcomes)
    assert all(n == 1 for n in users.values())  # nobody welcomed twice
    unfollowed = int(re.search(r"unfollowed (\d+)", _summary(running["output"], "follows")).group(1))  # type: ignore
    assert USERS - unfollowed <= len(users) <= USERS
    report = Path(_summary(running["output"], "report"))
    assert report == running["state"].resolve() / "report.html"
    html = report.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") or "<html" in html[:500]
    assert "demo-playbook" in html  # the campaign table names the demo's campaign


def test_local_json_is_the_documented_contract(running):
    conf = running["conf"]
    for key in ("api_url", "alipay_gateway_url", "aws_endpoint_url", "alipay_private_key_file"):
        assert conf[key]
    assert {a["kind"] for a in conf["apps"]} == {"life", "mini"}
    for app in conf["apps"]:
        for key in ("app_id", "kind", "app_private_key_file", "app_public_key_file", "alipay_public_key_file"):
            assert app[key]
        assert Path(app["app_private_key_file"]).read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert all(u.startswith("http://127.0.0.1:") for u in (conf["api_url"], conf["aws_endpoint_url"]))


def _openssl_signed_check(conf: dict[str, Any], app_id: str, tamper: bool) -> bytes:
    """A gateway check signed by an independent client: the openssl command with the simulator's key."""
    biz = (f"<XML><AppId><![CDATA[{app_id}]]></AppId><MsgType><![CDATA[event]]></MsgType>"
           f"<EventType><![CDATA[verifygw]]></EventType><CreateTime>{int(time.time() * 1000)}</CreateTime></XML>")
    params = {"service": "alipay.service.check", "charset": "GBK", "sign_type": "RSA2", "biz_content": biz}
    content = "&".join(f"{k}={params[k]}" for k in sorted(params))
    signed = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", conf["alipay_private_key_file"]],
        input=content.encode("gbk"), capture_output=True, check=True,
    ).stdout
    params["sign"] = base64.b64encode(signed).decode()
    if tamper:
        params["biz_content"] = biz.replace("verifygw", "verifyGW")
    return "&".join(f"{k}={quote_plus(v, encoding='gbk')}" for k, v in params.items()).encode()


@pytest.mark.parametrize("tamper", [False, True])
def test_independently_signed_gateway_check(running, tamper):
    conf = running["conf"]
    life = next(a for a in conf["apps"] if a["kind"] == "life")
    body = _openssl_signed_check(conf, life["app_id"], tamper)
    response = httpx.post(f"{conf['api_url']}/alipay/gateway", content=body,
                          headers={"content-type": "application/x-www-form-urlencoded; charset=GBK"}, trust_env=False)
    assert response.status_code == 200
    inner = reply_inner(response.content)
    sign, _ = reply_signature(response.content)
    app_public = Path(life["app_public_key_file"]).read_text()
    assert verify(inner, sign, load_public_key(app_public), "GBK")
    if tamper:
        assert "<success>false</success><error_code>VERIFY_FAILED</error_code>" in inner
    else:
        assert inner == f"<success>true</success><biz_content>{''.join(app_public.splitlines()[1:-1])}</biz_content>"


def _cli(running: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**running["env"], "LIFELINK_STATE_DIR": str(running["state"])}
    return subprocess.run([sys.executable, "-m", "lifelink_local.cli", "--local", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_cli_registers_a_bound_mini_program_and_lists_bindings(running, tmp_path, app_keys):
    conf = running["conf"]
    life = next(a for a in conf["apps"] if a["kind"] == "life")
    key_file = tmp_path / "mini.pem"
    key_file.write_text(app_keys.private_pem)
    one_line_alipay = "".join(Path(conf["alipay_public_key_file"]).read_text().splitlines()[1:-1])
    added = _cli(running, "apps", "add", "--app-id", "2021004100000099", "--kind", "mini",
                 "--app-private-key", str(key_file), "--alipay-public-key", one_line_alipay,
                 "--life-account", life["app_id"])
    assert added.returncode == 0, added.stderr
    assert "app_private_key" not in added.stdout  # the record points at a secret; keys are not echoed
    listed = _cli(running, "--json", "apps", "list")
    apps = {a["app_id"]: a for a in json.loads(listed.stdout)}
    assert apps["2021004100000099"]["life_account"] == life["app_id"]
    assert "app_private_key" not in json.dumps(apps)


def test_cli_names_the_mistake_when_the_app_public_key_is_given_as_alipays(running, tmp_path, app_keys):
    key_file = tmp_path / "app.pem"
    key_file.write_text(app_keys.private_pem)
    wrong = _cli(running, "apps", "add", "--app-id", "2021004100000098", "--kind", "life",
                 "--app-private-key", str(key_file), "--alipay-public-key", app_keys.public_pem)
    assert wrong.returncode == 2
    assert "public key" in wrong.stderr.lower() and "alipay" in wrong.stderr.lower()
    listed = _cli(running, "--json", "apps", "list")
    assert "2021004100000098" not in listed.stdout


def test_dlq_show_and_redrive_move_a_dead_letter_back_to_its_consumer(running):
    """A follow event parked on the events DLQ is shown, redriven, and then handled by the consumer."""
    from datetime import UTC, datetime, timedelta

    import boto3

    from lifelink.domain.events import FollowEvent, UserRef

    conf = running["conf"]
    pair = conf["queues"]["events"]
    aws = {"endpoint_url": conf["aws_endpoint_url"], "region_name": conf["region"],
           "aws_access_key_id": "local", "aws_secret_access_key": "local"}
    now = datetime.now(UTC)
    life = next(a for a in conf["apps"] if a["kind"] == "life")["app_id"]
    event = FollowEvent(event_id="dead-1", app_id=life, source="life_gateway", occurred_at=now, received_at=now,
                        user=UserRef(user_id="2088102100009999"))
    boto3.client("sqs", **aws).send_message(QueueUrl=pair["dlq_url"], MessageBody=event.model_dump_json())
    shown = json.loads(_cli(running, "--json", "dlq", "show", "events").stdout)
    assert shown["depth"] == 1 and shown["samples"][0]["event_id"] == "dead-1"
    moved = _cli(running, "--json", "dlq", "redrive", "events")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["moved"] == 1
    assert json.loads(_cli(running, "--json", "dlq", "show", "events").stdout)["depth"] == 0
    ddb = boto3.client("dynamodb", **aws)
    key = {"pk": {"S": f"USER#{life}#2088102100009999"}, "sk": {"S": "FACTS"}}
    deadline = time.monotonic() + 20
    while not (item := ddb.get_item(TableName=conf["state_table"], Key=key).get("Item")):
        assert time.monotonic() < deadline, "the redriven event never reached the consumer"
        time.sleep(0.2)
    assert item["following"]["BOOL"] is True
    assert _cli(running, "dlq", "show", "nosuch").returncode == 2

    # an outbound job in its DLQ is shown with what the send ledger says of it (here: never booked)
    job = {"app_id": life, "channel": "life_template", "recipient": {"user_id": "2088102100009998"},
           "content": {"template_id": "TPL-DLQ", "keywords": [{"value": "x"}]}, "campaign": "dlq-e2e",
           "kind": "transactional", "not_after": (now + timedelta(days=1)).isoformat()}
    out_dlq = conf["queues"]["outbound"]["dlq_url"]
    sqs = boto3.client("sqs", **aws)
    sqs.send_message(QueueUrl=out_dlq, MessageBody=json.dumps(job))
    shown = json.loads(_cli(running, "--json", "dlq", "show", "outbound").stdout)
    sample = next(s for s in shown["samples"] if s.get("ledger_key", "").startswith(f"{life}|dlq-e2e|"))
    assert (sample["channel"], sample["ledger"]) == ("life_template", "none (never booked)")
    for m in sqs.receive_message(QueueUrl=out_dlq, MaxNumberOfMessages=10).get("Messages", []):
        sqs.delete_message(QueueUrl=out_dlq, ReceiptHandle=m["ReceiptHandle"])


def test_cli_configures_an_apps_message_policy_and_refuses_a_bad_one(running):
    life = next(a for a in running["conf"]["apps"] if a["kind"] == "life")["app_id"]
    negative = '{"caps": {"life_template": {"per_day": -1}}}'
    bad = _cli(running, "apps", "configure", "--app-id", life, "--policy", negative)
    assert bad.returncode == 2 and "per_day" in bad.stderr
    policy = '{"caps": {"life_template": {"per_day": 1, "on_exceed": "defer"}}, "rate_per_second": 5}'
    ok = _cli(running, "--json", "apps", "configure", "--app-id", life, "--policy", policy)
    assert ok.returncode == 0, ok.stderr
    stored = json.loads(ok.stdout)["policy"]
    assert stored["caps"]["life_template"] == {"per_day": 1, "on_exceed": "defer"}
    assert stored["rate_per_second"] == 5
    assert stored["quiet_hours"]["start"] == "22:00:00"  # defaults filled in and stored explicitly
    listed = {a["app_id"]: a for a in json.loads(_cli(running, "--json", "apps", "list").stdout)}
    assert listed[life]["policy"]["rate_per_second"] == 5
    assert listed[life]["welcome"]["template_id"]  # the demo's welcome message is untouched
