"""`lifelink campaign …`: arguments, files, signing, output and exit codes, with the API played by a fake
transport (the real routes are tested in tests/unit/api and over HTTP in tests/integration)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from lifelink_local.cli import format_loc, main, read_definition

API = "https://api.example.test"

DEFINITION_YAML = """\
id: spring-sale
name: Spring sale
life_account: "2021000000000001"
mini_programs: ["2021000000000002"]
phases:
  preheat: {start: 2026-06-01 10:00:00, end: 2026-06-03 10:00:00}
  burst:
    start: 2026-06-03T10:00:00+08:00
    end: 2026-06-05T10:00:00+08:00
    actions: []
  settle: {start: 2026-06-05 10:00:00, end: 2026-06-06 10:00:00}
"""


@dataclass
class FakeApi:
    """Answers each request with the next queued (status, body) and keeps what was sent."""

    answers: list[tuple[int, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.answers.pop(0)
        return httpx.Response(status, json=body)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-east-1")
    monkeypatch.delenv("LIFELINK_API_URL", raising=False)
    return FakeApi()


@pytest.fixture
def run(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> Run:
    def invoke(*argv: str) -> tuple[int, str, str]:
        code = main(["--api-url", API, *argv], transport=api.transport)
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def applied(result: str = "created", state: str = "scheduled") -> dict[str, Any]:
    return {
        "id": "spring-sale",
        "result": result,
        "state": state,
        "definition_hash": "0123456789abcdef",
        "schedules": ["preheat_start", "burst_start", "settle_start", "settle_end"],
        "next_boundary": {"name": "preheat_start", "at": "2026-06-01T10:00:00+08:00"},
    }


def test_apply_sends_the_yaml_as_json_signed_for_execute_api(run: Run, api: FakeApi, tmp_path: Path) -> None:
    path = tmp_path / "spring.yaml"
    path.write_text(DEFINITION_YAML)
    api.answers.append((201, applied()))

    code, out, err = run("campaign", "apply", "-f", str(path))

    assert (code, err) == (0, "")
    (request,) = api.requests
    assert (request.method, str(request.url)) == ("POST", f"{API}/campaigns")
    sent = json.loads(request.content)
    assert sent["id"] == "spring-sale"
    assert sent["life_account"] == "2021000000000001"
    # A YAML timestamp without an offset stays wall-clock time (the campaign's zone applies); one with an
    # offset keeps it.
    assert sent["phases"]["preheat"]["start"] == "2026-06-01T10:00:00"
    assert sent["phases"]["burst"]["start"] == "2026-06-03T10:00:00+08:00"
    auth = request.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/ap-east-1/execute-api/aws4_request" in auth
    assert "x-amz-date" in request.headers
    assert "spring-sale: created (state scheduled)" in out
    assert "next: preheat_start at 2026-06-01 10:00 +08:00" in out


def test_apply_reads_json_and_stdin(run: Run, api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import yaml

    definition = yaml.safe_load(DEFINITION_YAML)
    path = tmp_path / "spring.json"
    path.write_text(json.dumps(definition, default=str))
    api.answers += [(200, applied("unchanged")), (200, applied("unchanged"))]

    code, out, _ = run("campaign", "apply", "-f", str(path))
    monkeypatch.setattr("sys.stdin", io.StringIO(DEFINITION_YAML))
    code_stdin, _, _ = run("campaign", "apply", "-f", "-")

    assert (code, code_stdin) == (0, 0)
    assert out.strip() == "spring-sale: unchanged (state scheduled); nothing written"
    assert [json.loads(r.content)["id"] for r in api.requests] == ["spring-sale", "spring-sale"]


def test_every_error_of_a_422_is_printed_with_where_it_is(run: Run, api: FakeApi, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(DEFINITION_YAML)
    errors = [
        {"loc": ["body", "phases", "burst", "start"], "msg": "burst starts before preheat ends", "type": "overlap"},
        {"loc": ["body", "phases", "preheat", "actions", 0, "message", "template_id"],
         "msg": "template TPL_X is not one of app 2021000000000001's templates", "type": "unknown_template"},
        {"loc": ["body", "audience"], "msg": "the audience matches nobody", "type": "empty_audience"},
    ]
    api.answers.append((422, {"errors": errors}))

    code, out, err = run("campaign", "apply", "-f", str(path))

    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "lifelink: campaign definition bad.yaml is invalid (3 problems):"
    assert lines[1:] == [
        "  phases.burst.start: burst starts before preheat ends",
        "  phases.preheat.actions[0].message.template_id: template TPL_X is not one of app 2021000000000001's "
        "templates",
        "  audience: the audience matches nobody",
    ]


def test_with_json_a_refusal_prints_the_api_body(run: Run, api: FakeApi) -> None:
    body = {"errors": [{"loc": ["path", "campaign_id"], "msg": "campaign spring-sale is closed", "type": "x"}]}
    api.answers.append((409, body))

    code, out, err = run("--json", "campaign", "pause", "spring-sale")

    assert code == 1
    assert json.loads(out) == body
    assert "campaign_id: campaign spring-sale is closed" in err


def test_a_file_that_is_not_yaml_is_invalid_not_sent(run: Run, api: FakeApi, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: spring-sale\nphases: [unclosed\n")

    code, _, err = run("campaign", "apply", "-f", str(path))

    assert code == 1
    assert "broken.yaml is not valid YAML" in err
    assert "line 3" in err or "line 2" in err
    assert api.requests == []


def test_a_list_is_not_a_definition(run: Run, api: FakeApi, tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    code, _, err = run("campaign", "apply", "-f", str(path))
    assert code == 1
    assert "not a campaign definition" in err
    assert api.requests == []


def test_usage_errors_exit_2(run: Run, api: FakeApi, tmp_path: Path) -> None:
    code, _, err = run("campaign", "apply", "-f", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "no such file" in err
    with pytest.raises(SystemExit) as exc:
        main(["campaign", "preview", "spring-sale", "--phase", "later"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["campaign", "status"])
    assert exc.value.code == 2
    assert api.requests == []


def test_no_api_url_anywhere_is_a_usage_error(api: FakeApi, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("LIFELINK_API_URL", "")

    def no_stack(stack: str) -> str:
        from lifelink_local.api_client import ApiUnavailable

        raise ApiUnavailable(f"cannot read stack {stack!r}; pass --api-url or set LIFELINK_API_URL")

    monkeypatch.setattr("lifelink_local.api_client._stack_api_url", no_stack)
    code = main(["--stack", "nowhere", "campaign", "list"], transport=api.transport)
    assert code == 2
    assert "pass --api-url" in capsys.readouterr().err


def test_the_api_url_can_come_from_the_environment(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFELINK_API_URL", "http://127.0.0.1:9/base/")
    api.answers.append((200, {"campaigns": []}))
    assert main(["campaign", "list"], transport=api.transport) == 0
    assert str(api.requests[0].url) == "http://127.0.0.1:9/base/campaigns"


def test_preview_passes_the_phase_and_prints_the_dry_run(run: Run, api: FakeApi) -> None:
    api.answers.append((200, {
        "campaign_id": "spring-sale", "phase": "burst", "as_of": "2026-06-03T02:00:00+00:00", "state": "preheat",
        "audience": {"expression": "tier:gold", "size": 120, "holdout": 12, "holdout_share": 0.1},
        "actions": [
            {"action": "burst.flash", "type": "flash_sale", "fires_at": "2026-06-03T10:00:00+08:00",
             "already_fired": False, "would_send": 100, "held": {"quiet_hours": 3}, "capped": {"daily_cap": 5},
             "skipped": {}, "messages": {"life_template": 108}},
            {"action": "burst.share", "type": "share_task", "fires_at": "2026-06-03T10:00:00+08:00",
             "already_fired": True, "would_send": 0, "note": "no message: this action sends nothing when it fires"},
        ],
        "totals": {"messages": {"life_template": 108}, "would_send": 100, "held": {"quiet_hours": 3},
                   "capped": {"daily_cap": 5}, "skipped": {}},
        "coupons": {"share-reward": {"activity_id": "A1", "stock": 50, "up_to": 50}},
    }))

    code, out, _ = run("campaign", "preview", "spring-sale", "--phase", "burst")

    assert code == 0
    request = api.requests[0]
    assert (request.method, request.url.path, request.url.params["phase"]) == (
        "GET", "/campaigns/spring-sale/preview", "burst"
    )
    lines = out.splitlines()
    assert lines[0] == "spring-sale: dry run of burst, state preheat (nothing sent or written)"
    assert lines[1] == "  audience: 120 (holdout 12 at 10%), expression tier:gold"
    flash = next(line for line in lines if line.strip().startswith("burst.flash"))
    assert flash.split()[-4:] == ["100", "3", "5", "0"]
    assert next(line for line in lines if "burst.share" in line).endswith("(fired)")
    assert "  messages: life_template 108" in lines
    assert "  held: quiet_hours 3" in lines
    assert "  capped: daily_cap 5" in lines
    assert "  coupon share-reward: up to 50 of stock 50" in lines


def test_a_preview_of_another_shape_is_printed_as_a_tree(run: Run, api: FakeApi) -> None:
    api.answers.append((200, {"campaign_id": "spring-sale", "phase": None, "as_of": "x", "state": "draft",
                              "actions": "not listed", "audience": {"size": 3}}))
    code, out, _ = run("campaign", "preview", "spring-sale")
    assert code == 0
    assert "every action not fired yet" in out.splitlines()[0]
    assert "    size: 3" in out


def test_status_shows_phases_next_boundary_and_counts(run: Run, api: FakeApi) -> None:
    status = {
        "id": "spring-sale", "name": "Spring sale", "state": "burst", "paused_from": None,
        "life_account": "2021000000000001", "mini_programs": ["2021000000000002"], "timezone": "Asia/Shanghai",
        "definition_hash": "0123456789abcdef",
        "phases": [
            {"phase": "preheat", "start": "2026-06-01T10:00:00+08:00", "end": "2026-06-03T10:00:00+08:00",
             "status": "done"},
            {"phase": "burst", "start": "2026-06-03T10:00:00+08:00", "end": "2026-06-05T10:00:00+08:00",
             "status": "current"},
            {"phase": "settle", "start": "2026-06-05T10:00:00+08:00", "end": "2026-06-06T10:00:00+08:00",
             "status": "upcoming"},
        ],
        "next_boundary": {"name": "settle_start", "at": "2026-06-05T10:00:00+08:00"},
        "actions": [
            {"phase": "preheat", "id": "topic", "type": "topic_push", "fire_at": "2026-06-01T10:00:00+08:00",
             "status": "fired", "counts": {"queued": 108, "held_out": 12}, "draw": None},
            {"phase": "burst", "id": "flash", "type": "flash_sale", "fire_at": "2026-06-03T10:00:00+08:00",
             "status": "firing", "counts": {"queued": 10}, "draw": None},
            {"phase": "settle", "id": "draw", "type": "winners", "fire_at": "2026-06-05T10:00:00+08:00",
             "status": "pending", "counts": {}, "draw": None},
        ],
        "as_of": "2026-06-04T10:00:00+08:00",
    }
    api.answers += [(200, status), (200, status)]

    code, out, _ = run("campaign", "status", "spring-sale")
    code_json, out_json, _ = run("campaign", "status", "spring-sale", "--json")

    assert (code, code_json) == (0, 0)
    assert api.requests[0].url.path == "/campaigns/spring-sale"
    assert "  state: burst" in out
    assert "    burst    2026-06-03 10:00 +08:00 → 2026-06-05 10:00 +08:00  current" in out
    assert "  next boundary: settle_start at 2026-06-05 10:00 +08:00" in out
    assert "preheat.topic  topic_push    fired  held_out=12 queued=108" in out
    assert "burst.flash    flash_sale    firing  queued=10" in out
    assert "settle.draw    winners       due 2026-06-05 10:00 +08:00" in out
    assert json.loads(out_json) == status


@pytest.mark.parametrize(("verb", "before", "after"), [("pause", "burst", "paused"), ("resume", "paused", "burst"),
                                                        ("cancel", "preheat", "cancelled")])
def test_transitions_post_to_their_route(run: Run, api: FakeApi, verb: str, before: str, after: str) -> None:
    api.answers.append(
        (200, {"id": "spring-sale", "state": after, "previous_state": before, "schedules_removed": verb == "cancel"})
    )
    code, out, _ = run("campaign", verb, "spring-sale")
    assert code == 0
    assert (api.requests[0].method, api.requests[0].url.path) == ("POST", f"/campaigns/spring-sale/{verb}")
    assert out.startswith(f"spring-sale: {after} (was {before})")
    assert ("schedules are deleted" in out) == (verb == "cancel")


def test_list_prints_one_line_per_campaign(run: Run, api: FakeApi) -> None:
    api.answers += [
        (200, {"campaigns": [
            {"id": "spring-sale", "name": "Spring sale", "state": "scheduled", "life_account": "2021000000000001",
             "starts_at": "2026-06-01T10:00:00+08:00", "ends_at": "2026-06-06T10:00:00+08:00"},
            {"id": "autumn", "name": "Autumn", "state": "draft", "life_account": "2021000000000001",
             "starts_at": "2026-09-01T10:00:00+08:00", "ends_at": "2026-09-06T10:00:00+08:00"},
        ]}),
        (200, {"campaigns": []}),
    ]
    _, out, _ = run("campaign", "list")
    _, empty, _ = run("campaign", "list")
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("spring-sale  scheduled  2026-06-01 10:00 +08:00 → 2026-06-06 10:00 +08:00")
    assert lines[1].startswith("autumn       draft")
    assert empty.strip() == "no campaigns"


def test_an_unknown_campaign_is_not_found(run: Run, api: FakeApi) -> None:
    body = {"errors": [{"loc": ["path", "campaign_id"], "msg": "no campaign 'nope'", "type": "not_found"}]}
    api.answers.append((404, body))
    code, out, err = run("campaign", "status", "nope")
    assert (code, out) == (1, "")
    assert err.splitlines() == ["lifelink: not found:", "  campaign_id: no campaign 'nope'"]


def test_a_server_error_is_a_refusal_with_the_status(run: Run, api: FakeApi) -> None:
    api.answers.append((500, {"message": "Internal Server Error"}))
    code, _, err = run("campaign", "status", "spring-sale")
    assert code == 1
    assert "HTTP 500" in err
    assert "Internal Server Error" in err


def test_locations_read_like_the_definition() -> None:
    assert format_loc(["body", "phases", "preheat", "actions", 2, "at"]) == "phases.preheat.actions[2].at"
    assert format_loc(["body"]) == ""
    assert format_loc(["query", "phase"]) == "query.phase"
    assert format_loc(["path", "campaign_id"]) == "campaign_id"


def test_read_definition_keeps_unicode(tmp_path: Path) -> None:
    path = tmp_path / "cn.yaml"
    path.write_text("id: chun-jie\nname: 春节大促\n", encoding="utf-8")
    assert read_definition(str(path)) == {"id": "chun-jie", "name": "春节大促"}
