"""Burst UGC challenge: an optional push inviting entries and votes (those are the participation routes')."""

from __future__ import annotations

from lifelink.campaign_actions.base import ActionContext, ActionPreview, ActionResult
from lifelink.campaign_actions.push import fan_out, preview_push
from lifelink.domain.campaigns import UgcChallenge


def fire(ctx: ActionContext) -> ActionResult:
    action: UgcChallenge = ctx.action
    return ActionResult(fan_out(ctx, action.message, action.link))


def preview(ctx: ActionContext) -> ActionPreview:
    action: UgcChallenge = ctx.action
    out = preview_push(ctx, action.message, action.link)
    return out
