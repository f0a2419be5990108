"""Coupons and stock an action would use (for previews)."""

from __future__ import annotations

from typing import Any

from lifelink.domain.campaigns import Campaign


def coupon_use(campaign: Campaign, coupon: str, at_most_users: int) -> dict[str, Any]:
    """``coupon`` of the campaign: its stock and how much of it the audience could take (one per user)."""
    stock = campaign.coupons.get(coupon)
    if stock is None:
        return {coupon: {"error": "not one of the campaign's coupons"}}
    return {coupon: {"activity_id": stock.activity_id, "stock": stock.stock,
                     "up_to": min(stock.stock, at_most_users)}}
