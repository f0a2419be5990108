"""A campaign with one action of every participation type, and helpers to store it in a given state."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from lifelink.domain.campaigns import Campaign, CampaignState
from lifelink.store.campaigns import CampaignStore

LIFE_APP = "2021000000000101"
MINI_APP = "2021000000000102"
OTHER_MINI = "2021000000000103"
DAY = timedelta(days=1)


def definition(start: datetime, **overrides: Any) -> dict[str, Any]:
    """Preheat [start, +1d), burst [+1d, +2d), settle [+2d, +3d); flash window w1 is the burst's second hour."""
    message = {"template_id": "TPL_CAMPAIGN", "keywords": ["Spring sale"]}
    link = {"page": "pages/campaign/index"}
    burst = start + DAY
    body: dict[str, Any] = {
        "id": "spring",
        "name": "Spring sale",
        "life_account": LIFE_APP,
        "mini_programs": [MINI_APP, OTHER_MINI],
        "coupons": {
            "early": {"activity_id": "ACT_EARLY", "stock": 5},
            "thanks": {"activity_id": "ACT_THANKS", "stock": 2},
            "prize": {"activity_id": "ACT_PRIZE", "stock": 10},
        },
        "phases": {
            "preheat": {
                "start": start.isoformat(),
                "end": burst.isoformat(),
                "actions": [{"type": "early_bird", "id": "early", "coupon": "early"}],
            },
            "burst": {
                "start": burst.isoformat(),
                "end": (start + 2 * DAY).isoformat(),
                "actions": [
                    {
                        "type": "flash_sale",
                        "id": "flash",
                        "live_link": link,
                        "windows": [
                            {
                                "id": "w1",
                                "start": (burst + timedelta(hours=1)).isoformat(),
                                "end": (burst + timedelta(hours=2)).isoformat(),
                                "stock": 3,
                                "sku": "SKU-1",
                            }
                        ],
                    },
                    {"type": "share_task", "id": "share", "reward": "thanks"},
                    {"type": "ugc_challenge", "id": "ugc", "max_entries_per_user": 2},
                ],
            },
            "settle": {
                "start": (start + 2 * DAY).isoformat(),
                "end": (start + 3 * DAY).isoformat(),
                "actions": [
                    {
                        "type": "winners",
                        "id": "draw",
                        "pool": "voters",
                        "count": 2,
                        "prize": "prize",
                        "message": message,
                        "claim_link": link,
                    },
                    {
                        "type": "survey",
                        "id": "survey",
                        "message": message,
                        "link": link,
                        "questions": [
                            {"id": "overall", "kind": "rating", "text": "How was it?"},
                            {"id": "best", "kind": "choice", "text": "Best part?", "options": ["coupons", "live"]},
                            {"id": "say", "kind": "text", "text": "Anything else?"},
                        ],
                    },
                ],
            },
        },
    }
    body.update(overrides)
    return body


def campaign(start: datetime, **overrides: Any) -> Campaign:
    return Campaign.model_validate(definition(start, **overrides))


def store_in_state(dynamodb: Any, table: str, c: Campaign, state: CampaignState | str) -> None:
    """Store ``c`` and move it to ``state`` through the campaign store's own transitions."""
    store = CampaignStore(dynamodb, table)
    store.put(c)
    current = store.get(c.id)
    assert current is not None
    if current.state is CampaignState(state):
        return
    if current.state is CampaignState.draft:
        assert store.transition(c.id, CampaignState.draft, CampaignState.scheduled)
        current = store.get(c.id)
        assert current is not None
    if current.state is not CampaignState(state):
        assert store.transition(c.id, current.state, state), (current.state, state)
