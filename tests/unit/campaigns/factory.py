"""A complete campaign definition (every action type) with times relative to a start, and a fake world."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from lifelink.domain.campaigns import Campaign

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 11, 10, 0, tzinfo=SHANGHAI)  # 10:00 local: outside the default quiet hours
LIFE = "2021000000000001"
MINI = "2021000000000002"
TPL = "TPL_CAMPAIGN"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat()


def message(text: str = "双十一") -> dict[str, Any]:
    return {"template_id": TPL, "first": text, "keywords": [text, "11月11日"], "remark": "点击查看"}


def definition(campaign_id: str = "double-11", **changes: Any) -> dict[str, Any]:
    """Preheat 0–60 min, burst 60–120, settle 120–180 (minutes after T0), with every kind of action."""
    d: dict[str, Any] = {
        "id": campaign_id,
        "name": "Double 11",
        "life_account": LIFE,
        "mini_programs": [MINI],
        "holdout_share": 0.0,
        "coupons": {
            "early": {"activity_id": "ACT_EARLY", "stock": 100},
            "share": {"activity_id": "ACT_SHARE", "stock": 50},
            "prize": {"activity_id": "ACT_PRIZE", "stock": 5},
        },
        "phases": {
            "preheat": {
                "start": iso(0),
                "end": iso(60),
                "actions": [
                    {"type": "topic_push", "id": "topic", "message": message("话题"),
                     "link": {"page": "pages/topic/index?id=11"}},
                    {"type": "early_bird", "id": "early", "at": iso(10), "coupon": "early",
                     "message": message("预约"), "link": {"page": "pages/reserve/index"}},
                ],
            },
            "burst": {
                "start": iso(60),
                "end": iso(120),
                "actions": [
                    {"type": "flash_sale", "id": "flash", "live_link": {"page": "pages/live/index"},
                     "message": message("直播"),
                     "windows": [
                         {"id": "w1", "start": iso(70), "end": iso(80), "stock": 10, "sku": "SKU1"},
                         {"id": "w2", "start": iso(90), "end": iso(100), "stock": 10, "sku": "SKU2"},
                     ]},
                    {"type": "share_task", "id": "share", "at": iso(65), "reward": "share",
                     "message": message("分享"), "link": {"page": "pages/share/index"}},
                    {"type": "ugc_challenge", "id": "ugc", "at": iso(75)},
                ],
            },
            "settle": {
                "start": iso(120),
                "end": iso(180),
                "actions": [
                    {"type": "winners", "id": "draw", "pool": "reservations", "count": 2, "prize": "prize",
                     "message": message("中奖"), "claim_link": {"page": "pages/claim/index"}},
                    {"type": "survey", "id": "survey", "at": iso(150), "message": message("问卷"),
                     "link": {"page": "pages/survey/index"},
                     "questions": [{"id": "q1", "kind": "rating", "text": "满意吗"}]},
                ],
            },
        },
    }
    d.update(changes)
    return d


def campaign(**changes: Any) -> Campaign:
    return Campaign.model_validate(definition(**changes))


def edit(d: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    """A copy of ``d`` with the value at ``path`` replaced."""
    out = copy.deepcopy(d)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


@dataclass
class FakeApp:
    app_id: str
    kind: str
    life_account: str | None = None
    templates: list[str] | None = None


@dataclass
class FakeWorld:
    apps: dict[str, FakeApp] = field(default_factory=lambda: {
        LIFE: FakeApp(LIFE, "life", templates=[TPL]),
        MINI: FakeApp(MINI, "mini", life_account=LIFE),
    })
    size: int = 10
    asked: list[str] = field(default_factory=list)

    def app(self, app_id: str) -> FakeApp | None:
        return self.apps.get(app_id)

    def audience_size(self, campaign: Campaign) -> int:
        self.asked.append(campaign.id)
        return self.size
