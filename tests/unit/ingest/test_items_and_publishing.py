"""Item checks (locations within the item, every problem) and publishing against an SQS that refuses entries
(SQS is outside this machine: a stand-in that answers as SendMessageBatch does)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from lifelink.api.events_ingest import SQS_BATCH_BYTES, _chunks, _Entry, check_item, publish

APP = "2021000000000002"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def item(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "page_view",
        "occurred_at": (NOW - timedelta(minutes=5)).isoformat(),
        "user": {"open_id": "o-1"},
        "page": "pages/index/index",
        "foreground_s": 12,
    }
    body.update(overrides)
    return body


def test_a_valid_item_becomes_an_event_of_the_app() -> None:
    event, errors = check_item(item(), APP, NOW)
    assert errors == []
    assert event is not None
    assert json.loads(event.model_dump_json())["app_id"] == APP
    assert event.received_at == NOW  # type: ignore[attr-defined]
    assert check_item(item(event_id=None), APP, NOW)[0] == event  # null event_id: derived, as when absent


def test_every_problem_of_an_item_with_locations_inside_it() -> None:
    _, errors = check_item(item(foreground_s=-1, page="a b", app_id="other", received_at="x"), APP, NOW)
    found = {(tuple(e["loc"]), e["type"]) for e in errors}
    assert found == {
        (("foreground_s",), "greater_than_equal"),
        (("page",), "string_pattern_mismatch"),
        (("app_id",), "extra_forbidden"),
        (("received_at",), "extra_forbidden"),
    }
    assert all("o-1" not in e["msg"] for e in errors)  # nothing sent is echoed


def test_unknown_missing_and_webhook_only_types() -> None:
    for raw in (item(type="teleport"), {k: v for k, v in item().items() if k != "type"}, item(type="follow")):
        _, errors = check_item(raw, APP, NOW)
        assert [e["loc"] for e in errors] == [["type"]], raw
    _, errors = check_item(["not", "an", "object"], APP, NOW)
    assert errors == [{"loc": [], "msg": "an event must be a JSON object", "type": "dict_type"}]


def test_events_from_the_future_or_too_old_are_refused() -> None:
    _, future = check_item(item(occurred_at=(NOW + timedelta(hours=1)).isoformat()), APP, NOW)
    _, old = check_item(item(occurred_at=(NOW - timedelta(days=8)).isoformat()), APP, NOW)
    assert [(e["loc"], e["type"]) for e in future + old] == [(["occurred_at"], "out_of_window")] * 2
    assert check_item(item(occurred_at=(NOW - timedelta(days=1)).isoformat()), APP, NOW)[1] == []


class RefusingSqs:
    """SendMessageBatch that refuses the entries whose body contains a marker, ``times`` times each."""

    def __init__(self, refuse: dict[str, int], raise_first_call: bool = False) -> None:
        self.refuse = dict(refuse)
        self.raise_first_call = raise_first_call
        self.sent: list[str] = []
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        assert 1 <= len(Entries) <= 10
        assert len({e["Id"] for e in Entries}) == len(Entries)
        with self._lock:
            self.calls.append(len(Entries))
            if self.raise_first_call:
                self.raise_first_call = False
                raise ClientError(
                    {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "SendMessageBatch"
                )
            ok, failed = [], []
            for e in Entries:
                marker = next((m for m in self.refuse if m in e["MessageBody"]), None)
                if marker is not None and self.refuse[marker] > 0:
                    self.refuse[marker] -= 1
                    failed.append({"Id": e["Id"], "Code": "InternalError", "SenderFault": False})
                else:
                    self.sent.append(e["MessageBody"])
                    ok.append({"Id": e["Id"], "MessageId": e["Id"]})
        return {"Successful": ok, "Failed": failed}


def entries(n: int) -> list[_Entry]:
    return [_Entry(i, json.dumps({"n": i, "mark": f"<{i}>"})) for i in range(n)]


def test_publishing_in_batches_of_ten_retries_refused_entries_once() -> None:
    sqs = RefusingSqs({"<3>": 1, "<17>": 2, "<40>": 5})
    failed = publish(sqs, "url", entries(45))
    assert failed == {17: "InternalError", 40: "InternalError"}  # refused twice: reported
    assert sorted(json.loads(b)["n"] for b in sqs.sent) == [i for i in range(45) if i not in (17, 40)]
    assert sorted(sqs.calls) == sorted([10, 10, 10, 10, 5, 1, 1, 1])  # 5 batches, 3 retries


def test_a_failed_call_is_retried_once_for_all_its_entries() -> None:
    sqs = RefusingSqs({}, raise_first_call=True)
    assert publish(sqs, "url", entries(7)) == {}
    assert sorted(json.loads(b)["n"] for b in sqs.sent) == list(range(7))


def test_chunks_respect_the_payload_limit() -> None:
    big = [_Entry(i, "x" * (100 * 1024)) for i in range(5)]
    assert [len(c) for c in _chunks(big)] == [2, 2, 1]
    assert all(sum(len(e.body) for e in c) <= SQS_BATCH_BYTES for c in _chunks(big))
    assert publish(RefusingSqs({}), "url", []) == {}
