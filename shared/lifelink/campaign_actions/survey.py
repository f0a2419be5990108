"""Settle satisfaction survey push: the survey page's link to the audience
(answers: ``POST /campaigns/{id}/survey``)."""

from __future__ import annotations

from lifelink.campaign_actions.base import ActionContext, ActionPreview, ActionResult
from lifelink.campaign_actions.push import fan_out, preview_push
from lifelink.domain.campaigns import Survey


def fire(ctx: ActionContext) -> ActionResult:
    action: Survey = ctx.action
    return ActionResult(fan_out(ctx, action.message, action.link))


def preview(ctx: ActionContext) -> ActionPreview:
    action: Survey = ctx.action
    out = preview_push(ctx, action.message, action.link)
    return out
