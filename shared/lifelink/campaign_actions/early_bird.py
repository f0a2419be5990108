"""Preheat early-bird reservations: an optional push inviting the audience to reserve. Reservations themselves
(``POST /campaigns/{id}/reservations``, the coupon granted once per user from the campaign's stock) are the
participation routes' work."""

from __future__ import annotations

from lifelink.campaign_actions.base import ActionContext, ActionPreview, ActionResult
from lifelink.campaign_actions.push import fan_out, preview_push
from lifelink.campaign_actions.stock import coupon_use
from lifelink.domain.campaigns import EarlyBird


def fire(ctx: ActionContext) -> ActionResult:
    action: EarlyBird = ctx.action
    return ActionResult(fan_out(ctx, action.message, action.link))


def preview(ctx: ActionContext) -> ActionPreview:
    action: EarlyBird = ctx.action
    out = preview_push(ctx, action.message, action.link)
    out["coupons"] = coupon_use(ctx.campaign, action.coupon, out["recipients"] + out["holdout"])
    return out
