"""Burst share task: an optional push inviting shares (``POST /campaigns/{id}/shares`` unlocks the reward once)."""

from __future__ import annotations

from lifelink.campaign_actions.base import ActionContext, ActionPreview, ActionResult
from lifelink.campaign_actions.push import fan_out, preview_push
from lifelink.campaign_actions.stock import coupon_use
from lifelink.domain.campaigns import ShareTask


def fire(ctx: ActionContext) -> ActionResult:
    action: ShareTask = ctx.action
    return ActionResult(fan_out(ctx, action.message, action.link))


def preview(ctx: ActionContext) -> ActionPreview:
    action: ShareTask = ctx.action
    out = preview_push(ctx, action.message, action.link)
    out["coupons"] = coupon_use(ctx.campaign, action.reward, out["recipients"])
    return out
