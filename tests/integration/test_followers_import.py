"""`lifelink followers import`: followers from before the deployment into the audience store campaigns use."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from lifelink.store.apps import AppRecord, AppRegistry
from lifelink.store.audience import Audience
from lifelink_local.cli import main
from lifelink_local.followers_import import parse_user_list

LIFE = "2021004100000011"
MINI = "2021004100000012"
AS_OF = "2025-03-01T08:00:00+08:00"
USERS = [f"20881000000000{n:02d}" for n in range(30)]
OPEN_ID = "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo"


@pytest.fixture
def table(aws: Any, app_keys: Any, alipay_keys: Any) -> str:
    name = aws.tables["StateTable"]
    registry = AppRegistry(boto3.client("dynamodb"), name, boto3.client("secretsmanager"))
    secret = {"app_private_key": app_keys.private_pem, "alipay_public_key": alipay_keys.public_pem}
    registry.register(AppRecord(app_id=LIFE, kind="life", secret_name=f"lifelink/apps/{LIFE}"), secret)
    registry.register(AppRecord(app_id=MINI, kind="mini", secret_name=f"lifelink/apps/{MINI}", life_account=LIFE),
                      secret)
    return name


def _import(table: str, path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(["--state-table", table, "--json", "followers", "import", "--app", LIFE, str(path), *extra])
    out = capsys.readouterr().out
    return code, (json.loads(out) if code == 0 else {})


def test_a_csv_list_is_imported_once_and_campaign_audiences_see_it(
    table: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "followers.csv"
    lines = ["user_id", *USERS, USERS[0], "not-a-user", "", OPEN_ID]
    path.write_text("\n".join(lines) + "\n")
    audience = Audience(boto3.client("dynamodb"), table)
    # one user unfollowed after the list was taken, as the events consumer recorded it
    later = datetime.fromisoformat(AS_OF) + timedelta(days=2)
    audience.set_following(LIFE, USERS[5], False, later)

    code, summary = _import(table, path, capsys, "--as-of", AS_OF)
    assert code == 0
    assert (summary["recorded"], summary["unchanged"], summary["duplicates"]) == (30, 1, 1)
    assert summary["invalid_entries"] == [33]  # the line number of "not-a-user"
    expected = {*USERS, OPEN_ID} - {USERS[5]}
    assert set(audience.followers(LIFE)) == expected  # what a campaign's fan-out walks
    facts = audience.facts(LIFE, USERS[0])
    assert facts.following is True and facts.follow_changed_at == datetime.fromisoformat(AS_OF)
    assert facts.last_interaction_at is None  # importing opens no 48-hour window
    assert audience.facts(LIFE, USERS[5]).following is False  # the later unfollow stands

    again_code, again = _import(table, path, capsys, "--as-of", AS_OF)
    assert again_code == 0 and (again["recorded"], again["unchanged"]) == (0, 31)
    assert set(audience.followers(LIFE)) == expected


def test_json_lists_in_each_accepted_shape(table: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shapes = [USERS[:3], [{"user_id": u} for u in USERS[3:6]], {"user_id_list": USERS[6:9]}]
    for n, data in enumerate(shapes):
        path = tmp_path / f"page{n}.json"
        path.write_text(json.dumps(data))
        code, summary = _import(table, path, capsys, "--as-of", AS_OF)
        assert code == 0 and summary["recorded"] == 3
    assert set(Audience(boto3.client("dynamodb"), table).followers(LIFE)) == set(USERS[:9])


def test_the_default_as_of_is_when_the_file_was_written(
    table: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    path = tmp_path / "followers.csv"
    path.write_text(USERS[0] + "\n")
    written = datetime(2025, 2, 1, tzinfo=UTC)
    os.utime(path, (written.timestamp(), written.timestamp()))
    code, summary = _import(table, path, capsys)
    assert code == 0 and datetime.fromisoformat(summary["as_of"]) == written
    assert Audience(boto3.client("dynamodb"), table).facts(LIFE, USERS[0]).follow_changed_at == written


def test_refusals(table: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "followers.csv"
    path.write_text(USERS[0] + "\n")
    base = ["--state-table", table, "followers", "import"]
    assert main([*base, "--app", MINI, str(path)]) == 2  # a mini program has no followers
    assert main([*base, "--app", LIFE, str(path), "--as-of", "2025-03-01T08:00:00"]) == 2  # no offset
    (tmp_path / "bad.json").write_text("[1, 2")
    assert main([*base, "--app", LIFE, str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "life account" in err and "timezone" in err and "JSON" in err
    assert list(Audience(boto3.client("dynamodb"), table).followers(LIFE)) == []


def test_parsing_rejects_what_is_not_a_user_id() -> None:
    parsed = parse_user_list("\ufeffopen_id\n2088123\n12345678901234567890\n" + OPEN_ID + "\n")
    assert parsed.users == [OPEN_ID] and parsed.invalid == [2, 3]
