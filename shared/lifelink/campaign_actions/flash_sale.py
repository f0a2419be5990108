"""Burst live-stream flash sale: an optional push announcing the live stream (the live link). Each window's
time-boxed stock is taken through ``POST /campaigns/{id}/flash-sales`` (the participation routes)."""

from __future__ import annotations

from lifelink.campaign_actions.base import ActionContext, ActionPreview, ActionResult
from lifelink.campaign_actions.push import fan_out, preview_push
from lifelink.domain.campaigns import FlashSale


def fire(ctx: ActionContext) -> ActionResult:
    action: FlashSale = ctx.action
    return ActionResult(fan_out(ctx, action.message, action.live_link))


def preview(ctx: ActionContext) -> ActionPreview:
    action: FlashSale = ctx.action
    out = preview_push(ctx, action.message, action.live_link)
    out["stock"] = {
        w.id: {"sku": w.sku, "stock": w.stock, "start": w.start.isoformat(), "end": w.end.isoformat()}
        for w in action.windows
    }
    return out
