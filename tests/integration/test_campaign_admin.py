"""`lifelink campaign …` end to end over real HTTP: the CLI signs its requests (SigV4), the local front turns them
into payload-2.0 events for the internal API's handler, which talks to moto's server (DynamoDB, EventBridge
Scheduler) on loopback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from aws_lambda_powertools.logging import Logger
from moto.server import ThreadedMotoServer

from lifelink.api import ApiDeps, InternalApi
from lifelink.scheduling import group_name
from lifelink.store import aws as aws_clients
from lifelink.store.apps import AppRegistry
from lifelink.store.audience import Audience
from lifelink.store.campaigns import CampaignStore
from lifelink.store.ledger import Ledger
from lifelink_local import localconf
from lifelink_local.cli import main
from lifelink_local.front import Front
from lifelink_local.handlers import LambdaContext
from lifelink_local.provision import Provisioned, provision
from tests.aws_env import use_moto_endpoint
from tests.unit.api.test_campaign_admin import MINI_APP, ROLE, TARGET, definition, register_world

pytestmark = pytest.mark.integration

REGION = "us-east-1"
ADMIN_ROUTES = [
    ("POST", "/campaigns"),
    ("GET", "/campaigns"),
    ("GET", "/campaigns/{campaign_id}"),
    ("GET", "/campaigns/{campaign_id}/preview"),
    ("POST", "/campaigns/{campaign_id}/pause"),
    ("POST", "/campaigns/{campaign_id}/resume"),
    ("POST", "/campaigns/{campaign_id}/cancel"),
]


@dataclass
class Stack:
    url: str
    moto_url: str
    provisioned: Provisioned

    @property
    def store(self) -> CampaignStore:
        return CampaignStore(boto3.client("dynamodb"), self.provisioned.tables["StateTable"])


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    mp = pytest.MonkeyPatch()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    front: Front | None = None
    try:
        moto_url = f"http://{host}:{port}"
        use_moto_endpoint(mp, moto_url, REGION)
        mp.delenv("LIFELINK_API_URL", raising=False)
        provisioned = provision(prefix="campaign-admin")
        dynamodb, table = boto3.client("dynamodb"), provisioned.tables["StateTable"]
        register_world(dynamodb, table)
        api = InternalApi(
            ApiDeps(
                registry=AppRegistry(dynamodb, table),
                audience=Audience(dynamodb, table),
                sqs=boto3.client("sqs"),
                outbound_queue_url=provisioned.queues["OutboundQueue"],
                ledger=Ledger(dynamodb, table),
                logger=Logger(service="internal_api"),
                dynamodb=dynamodb,
                state_table=table,
                scheduler=boto3.client("scheduler"),
                scheduler_target_arn=TARGET,
                scheduler_role_arn=ROLE,
            )
        )

        def target(event: dict[str, Any]) -> dict[str, Any]:
            return api.handle(event, LambdaContext(function_name="internal_api"))

        front = Front([(method, path, target, "AWS_IAM") for method, path in ADMIN_ROUTES], port=0)
        front.start()
        yield Stack(front.url, moto_url, provisioned)
    finally:
        if front is not None:
            front.stop()
        server.stop()
        aws_clients.client.cache_clear()
        mp.undo()


def lifelink(stack: Stack, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--api-url", stack.url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_yaml(tmp_path: Path, body: dict[str, Any], name: str = "campaign.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_unsigned_requests_are_forbidden(stack: Stack) -> None:
    for method, path in ADMIN_ROUTES:
        response = httpx.request(method, stack.url + path.replace("{campaign_id}", "x"), json={}, timeout=30)
        assert response.status_code == 403, (method, path)
    assert stack.store.list() == []


def test_a_campaign_through_apply_status_preview_pause_resume_cancel(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_yaml(tmp_path, definition("cli-journey"))

    code, out, err = lifelink(stack, capsys, "campaign", "apply", "-f", str(path))
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "cli-journey: created (state scheduled)"
    scheduler = boto3.client("scheduler")
    names = {s["Name"] for s in scheduler.list_schedules(GroupName=group_name("cli-journey"))["Schedules"]}
    assert names == {"preheat_start", "action-reserve", "burst_start", "settle_start", "settle_end"}

    code, out, _ = lifelink(stack, capsys, "campaign", "apply", "-f", str(path))
    assert (code, out.strip()) == (0, "cli-journey: unchanged (state scheduled); nothing written")

    code, out, _ = lifelink(stack, capsys, "campaign", "list")
    assert code == 0
    assert any(line.startswith("cli-journey") and "scheduled" in line for line in out.splitlines())

    code, out, _ = lifelink(stack, capsys, "--json", "campaign", "status", "cli-journey")
    status = json.loads(out)
    assert (code, status["state"], status["next_boundary"]["name"]) == (0, "scheduled", "preheat_start")
    assert [a["id"] for a in status["actions"]] == ["topic", "reserve", "draw"]

    code, out, _ = lifelink(stack, capsys, "campaign", "preview", "cli-journey", "--phase", "preheat", "--json")
    preview = json.loads(out)
    assert code == 0
    assert preview["audience"]["size"] == 5
    assert [a["action"] for a in preview["actions"]] == ["preheat.topic", "preheat.reserve"]
    assert stack.store.fired("cli-journey") == set()

    assert lifelink(stack, capsys, "campaign", "pause", "cli-journey")[:2] == (
        0, "cli-journey: paused (was scheduled)\n"
    )
    code, _, err = lifelink(stack, capsys, "campaign", "pause", "cli-journey")
    assert code == 1
    assert "already paused" in err
    assert lifelink(stack, capsys, "campaign", "resume", "cli-journey")[:2] == (
        0, "cli-journey: scheduled (was paused)\n"
    )
    code, out, _ = lifelink(stack, capsys, "campaign", "cancel", "cli-journey")
    assert (code, out.strip()) == (0, "cli-journey: cancelled (was scheduled); its schedules are deleted")
    assert stack.store.get("cli-journey").state.value == "cancelled"
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule_group(Name=group_name("cli-journey"))


def test_an_invalid_definition_shows_every_error_and_stores_nothing(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = definition("cli-invalid", holdout_share=0.9, mini_programs=[MINI_APP, "2021000000000099"])
    bad["phases"]["burst"]["start"] = bad["phases"]["preheat"]["start"]
    bad["phases"]["preheat"]["actions"][0]["message"]["template_id"] = "TPL_UNKNOWN"
    path = write_yaml(tmp_path, bad, "invalid.yaml")

    code, out, err = lifelink(stack, capsys, "campaign", "apply", "-f", str(path))

    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0].startswith("lifelink: campaign definition invalid.yaml is invalid (")
    problems = lines[1:]
    assert len(problems) >= 2 and all(p.startswith("  ") for p in problems)
    where = {p.strip().split(":", 1)[0] for p in problems}
    assert "holdout_share" in where  # a field error (pydantic) …
    assert "mini_programs[1]" in where  # … and a check against the registry, in the same answer
    assert stack.store.get("cli-invalid") is None


def test_the_local_flag_reads_the_api_url_from_local_json(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    localconf.save({"api_url": stack.url, "aws_endpoint_url": stack.moto_url, "region": REGION}, tmp_path)
    monkeypatch.setattr(localconf, "STATE_DIR", tmp_path)
    for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, os.environ[name])  # restored after apply_aws_env rewrites them
    path = write_yaml(tmp_path, definition("cli-local"))

    applied = main(["--local", "campaign", "apply", "-f", str(path)])
    capsys.readouterr()
    listed = main(["--local", "--json", "campaign", "list"])

    assert (applied, listed) == (0, 0)
    rows = {r["id"]: r["state"] for r in json.loads(capsys.readouterr().out)["campaigns"]}
    assert rows["cli-local"] == "scheduled"
