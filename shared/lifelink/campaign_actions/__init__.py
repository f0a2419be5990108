"""Campaign actions, one module per action type, each with ``fire(ctx) -> ActionResult`` and
``preview(ctx) -> ActionPreview`` (see :mod:`lifelink.campaign_actions.base`)."""

from __future__ import annotations

from types import ModuleType

from lifelink.campaign_actions import (
    early_bird,
    flash_sale,
    share_task,
    survey,
    topic_push,
    ugc_challenge,
    winners,
)
from lifelink.campaign_actions.base import ActionContext, ActionPreview, ActionResult, JobPublisher, WinnerPools

ACTIONS: dict[str, ModuleType] = {
    "topic_push": topic_push,
    "early_bird": early_bird,
    "flash_sale": flash_sale,
    "share_task": share_task,
    "ugc_challenge": ugc_challenge,
    "winners": winners,
    "survey": survey,
}


def module_for(action_type: str) -> ModuleType:
    return ACTIONS[action_type]


__all__ = ["ACTIONS", "ActionContext", "ActionPreview", "ActionResult", "JobPublisher", "WinnerPools", "module_for"]
