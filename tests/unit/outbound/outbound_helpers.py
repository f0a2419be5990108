"""Builders for outbound jobs in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lifelink.domain.messages import OutboundJob, parse_job

APP = "2021000000000001"
USER = "2088000000000001"
NOW = datetime(2025, 3, 5, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai

CONTENT: dict[str, dict[str, Any]] = {
    "life_template": {
        "template_id": "TPL1",
        "url": "alipays://platformapi/startapp?appId=2021000000000002&page=pages/home/index&query=a%3D1",
        "action_name": "查看",
        "first": {"value": "欢迎", "color": "#FF0000"},
        "keywords": [{"value": "银卡会员"}, {"value": "2025-03-05", "color": "#000000"}],
        "remark": {"value": "谢谢"},
    },
    "life_custom": {"msg_type": "text", "text": {"title": "hi", "content": "你好"}},
    "life_broadcast": {
        "msg_type": "image-text",
        "articles": [{"title": "新品", "desc": "d", "image_url": "https://img/x.png", "url": "https://shop.example/a"}],
    },
    "life_label": {"msg_type": "text", "text": {"content": "label news"}},
    "mini_subscription": {"user_template_id": "UT1", "page": "pages/order/detail?id=7", "data": {"keyword1": "已发货"}},
    "coupon": {"activity_id": "ACT1"},
    "member_card": {"target_card_no": "C001", "level": "silver"},
}


def job(channel: str = "life_template", **overrides: Any) -> OutboundJob:
    recipient: dict[str, Any] = {"user_id": USER}
    if channel == "life_broadcast":
        recipient = {}
    elif channel == "life_label":
        recipient = {"label_id": "L9"}
    data: dict[str, Any] = {
        "app_id": APP,
        "channel": channel,
        "recipient": recipient,
        "content": CONTENT.get(channel, {}),
        "campaign": "spring",
        "phase": "p1",
        "not_after": (NOW + timedelta(days=3)).isoformat(),
        "created_at": NOW.isoformat(),
    }
    data.update(overrides)
    return parse_job(data)
