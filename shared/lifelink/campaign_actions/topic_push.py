"""Preheat topic push: a template message to the audience linking to the topic page in the mini program."""

from __future__ import annotations

from lifelink.campaign_actions.base import ActionContext, ActionPreview, ActionResult
from lifelink.campaign_actions.push import fan_out, preview_push
from lifelink.domain.campaigns import TopicPush


def fire(ctx: ActionContext) -> ActionResult:
    action: TopicPush = ctx.action
    return ActionResult(fan_out(ctx, action.message, action.link))


def preview(ctx: ActionContext) -> ActionPreview:
    action: TopicPush = ctx.action
    out = preview_push(ctx, action.message, action.link)
    return out
