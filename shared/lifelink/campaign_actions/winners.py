"""Settle: a seeded, reproducible winner draw, then the announcement (with the claim link) to each winner.

The draw: the pool's users (from lifelink.store.participation), deduplicated and sorted, are the eligible list;
``seed`` is the action's own or 32 random hex digits; winners = ``random.Random(seed).sample(eligible, count)``
(everybody when fewer are eligible). The seed, the SHA-256 of the newline-joined eligible list and its length
are stored with the winners (``DRAW#<action>``), written once: firing again re-uses the stored draw. Anyone with
the seed and the eligible list can re-run it with :func:`redraw` and check :func:`eligible_hash`.
Winners are not subject to the holdout: they took part.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Iterable

from lifelink.campaign_actions.base import ActionContext, ActionPreview, ActionResult
from lifelink.campaign_actions.push import fan_out, preview_push
from lifelink.campaign_actions.stock import coupon_use
from lifelink.domain.campaigns import Winners


def eligible_list(users: Iterable[str]) -> list[str]:
    return sorted(set(users))


def eligible_hash(eligible: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(eligible_list(eligible)).encode()).hexdigest()


def redraw(seed: str, eligible: Iterable[str], count: int) -> list[str]:
    """The winners a draw with ``seed`` picks from ``eligible`` (any order: it is sorted first)."""
    users = eligible_list(eligible)
    if count >= len(users):
        return users
    return random.Random(seed).sample(users, count)  # noqa: S311 - reproducible on purpose, not a secret


def _pool(ctx: ActionContext, action: Winners) -> list[str]:
    if ctx.pools is None:
        raise RuntimeError("the winners action needs the participation store (pool_members)")
    top = action.count if action.pool == "top_entries" else None
    return eligible_list(ctx.pools.pool_members(ctx.campaign.id, action.pool, None, top))


def fire(ctx: ActionContext) -> ActionResult:
    from lifelink.store.campaigns import Draw

    action: Winners = ctx.action
    draw = ctx.store.get_draw(ctx.campaign.id, action.id)
    if draw is None:
        eligible = _pool(ctx, action)
        seed = action.seed or secrets.token_hex(16)
        fresh = Draw(seed, eligible_hash(eligible), len(eligible), redraw(seed, eligible, action.count))
        draw = ctx.store.put_draw(ctx.campaign.id, action.id, fresh)  # an earlier draw wins
    counts = fan_out(ctx, action.message, action.claim_link, users=draw.winners, holdout=False)
    counts.update(eligible=draw.eligible_count, winners=len(draw.winners))
    return ActionResult(counts)


def preview(ctx: ActionContext) -> ActionPreview:
    action: Winners = ctx.action
    draw = ctx.store.get_draw(ctx.campaign.id, action.id) if ctx.store is not None else None
    if draw is not None:
        eligible_count, winners = draw.eligible_count, list(draw.winners)
        note = "drawn already: the stored draw"
    else:
        eligible = _pool(ctx, action) if ctx.pools is not None else []
        eligible_count = len(eligible)
        winners = redraw(action.seed, eligible, action.count) if action.seed else eligible[: action.count]
        note = ("the pool as it is now, drawn with the action's seed" if action.seed else
                "the pool as it is now; the seed is drawn when the action fires, so who wins is not known yet")
    out = preview_push(ctx, action.message, action.claim_link, users=winners, holdout=False)
    out.update(eligible=eligible_count, winners=min(action.count, eligible_count), pool=action.pool, note=note)
    out["coupons"] = coupon_use(ctx.campaign, action.prize, min(action.count, eligible_count))
    return out
