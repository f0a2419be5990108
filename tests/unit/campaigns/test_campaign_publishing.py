from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from lifelink.campaign_actions.links import mini_program_url
from lifelink.campaign_actions.push import recipient_for
from lifelink.campaign_runner import SqsPublisher
from lifelink.domain.attribution import tag_link
from lifelink.domain.messages import Channel, LifeTemplateContent, OutboundJob, Recipient, TemplateField
from tests.unit.campaigns.factory import LIFE, MINI, T0


def test_a_page_with_a_query_becomes_a_startapp_link_the_gateway_can_tag() -> None:
    url = mini_program_url(MINI, "/pages/topic/index?id=11&from=push")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("alipays", "platformapi", "/startapp")
    assert parse_qs(parts.query) == {"appId": [MINI], "page": ["pages/topic/index"], "query": ["id=11&from=push"]}
    tagged = parse_qs(urlsplit(tag_link(url, "TOKEN")).query)
    assert tagged["page"] == ["pages/topic/index"]
    assert parse_qs(tagged["query"][0])["id"] == ["11"] and "TOKEN" in tagged["query"][0]


def test_user_keys_become_user_ids_or_open_ids() -> None:
    assert recipient_for("2088000000000001") == Recipient(user_id="2088000000000001")
    assert recipient_for("075abcOPENID") == Recipient(open_id="075abcOPENID")
    assert recipient_for("20880000000000011") == Recipient(open_id="20880000000000011")


class FlakySqs:
    """Refuses the first entry of the first call, like SQS does under throttling."""

    def __init__(self, refuse_always: bool = False) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.refuse_always = refuse_always

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        if len(self.calls) == 1 or self.refuse_always:
            return {"Successful": [], "Failed": [{"Id": Entries[0]["Id"], "Code": "Throttled", "SenderFault": False}]}
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def _jobs(n: int) -> list[OutboundJob]:
    content = LifeTemplateContent(template_id="T", keywords=[TemplateField(value="x")])
    return [OutboundJob(app_id=LIFE, channel=Channel.life_template, recipient=Recipient(user_id=f"2088{i:012d}"),
                        content=content, campaign="c", phase="preheat.topic", not_after=T0 + timedelta(hours=1))
            for i in range(n)]


def test_batches_of_ten_and_refused_entries_are_sent_again() -> None:
    sqs = FlakySqs()
    SqsPublisher(sqs, "https://queue", parallel=1).publish_batch(_jobs(23))
    assert [len(c) for c in sqs.calls] == [10, 1, 10, 3]
    assert sqs.calls[1] == [sqs.calls[0][0]]


def test_parallel_batches_deliver_every_job() -> None:
    sqs = FlakySqs()
    jobs = _jobs(95)
    SqsPublisher(sqs, "https://queue", parallel=4).publish_batch(jobs)
    bodies = [e["MessageBody"] for call in sqs.calls for e in call]
    assert len(sqs.calls) == 11 and all(len(c) <= 10 for c in sqs.calls)
    assert sorted(set(bodies)) == sorted(j.to_body() for j in jobs)
    assert len(bodies) == 96  # the one refused entry went twice


def test_entries_refused_twice_raise() -> None:
    with pytest.raises(RuntimeError, match="refused 1 job"):
        SqsPublisher(FlakySqs(refuse_always=True), "https://queue").publish_batch(_jobs(3))
