"""Every check a campaign definition must pass before it is stored, reported all at once in the merchant's terms.

``check_campaign(definition, world)`` returns the :class:`Campaign` or raises :class:`CampaignInvalid` whose
``errors`` are ``{"loc": [...], "msg": str, "type": str}`` (the API's 422 shape), e.g.
``{"loc": ["phases", "burst", "start"], "msg": "burst starts at 2026-11-11 18:00 (Asia/Shanghai), before preheat
ends at 2026-11-11 20:00: phases must not overlap", "type": "phase_overlap"}``.

Checks: the definition's own fields (pydantic); each phase starts before it ends and the phases follow one
another without overlapping; each action's ``at`` lies inside its phase; flash-sale windows lie inside the burst
and do not overlap; action ids are unique; coupons that actions name exist in ``coupons``; the life account is a
registered life account and each mini program a registered mini program bound to it; links name one of the
campaign's mini programs; template ids are known to the life account (when its registry entry lists them); the
audience expression parses; and the audience matches somebody. When the definition's fields are invalid, the
checks that need a valid definition are skipped, but the apps and the audience expression are still checked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from itertools import pairwise
from typing import Any, Protocol

from pydantic import ValidationError

from lifelink.domain.audience_expr import ExprError, parse
from lifelink.domain.campaigns import Campaign, FlashSale

Error = dict[str, Any]
Loc = list[str | int]


class AppInfo(Protocol):
    """What the checks read of a registered app (lifelink.store.apps.AppRecord has it)."""

    app_id: str
    kind: str
    life_account: str | None
    templates: list[str] | None


class CampaignWorld(Protocol):
    def app(self, app_id: str) -> AppInfo | None: ...

    def audience_size(self, campaign: Campaign) -> int: ...


class CampaignInvalid(ValueError):
    def __init__(self, errors: list[Error]) -> None:
        super().__init__(f"invalid campaign: {len(errors)} error(s): " + "; ".join(e["msg"] for e in errors[:3]))
        self.errors = errors


def _err(loc: Loc, msg: str, type_: str) -> Error:
    return {"loc": list(loc), "msg": msg, "type": type_}


def _when(campaign: Campaign, at: datetime) -> str:
    return f"{at.astimezone(campaign.zone):%Y-%m-%d %H:%M} ({campaign.timezone})"


_ACTION_TYPES = {"topic_push", "early_bird", "flash_sale", "share_task", "ugc_challenge", "winners", "survey"}


def _pydantic_errors(exc: ValidationError) -> list[Error]:
    out = []
    for e in json.loads(exc.json(include_url=False, include_input=False)):
        loc = list(e.get("loc", ()))
        # Drop the union tag pydantic adds after an action's index: ["phases","preheat","actions",0,"topic_push",...]
        loc = [p for i, p in enumerate(loc) if not (p in _ACTION_TYPES and i > 0 and isinstance(loc[i - 1], int))]
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        out.append(_err(loc, msg, str(e.get("type", "value_error"))))
    return out


# ---- checks on a valid definition -------------------------------------------------------------------------


def _windows(c: Campaign) -> list[Error]:
    errors: list[Error] = []
    items = c.phases.items()
    for name, spec in items:
        if spec.start >= spec.end:
            errors.append(_err(["phases", name, "end"],
                               f"{name} ends at {_when(c, spec.end)}, not after it starts at {_when(c, spec.start)}",
                               "window_order"))
    for (a, first), (b, second) in pairwise(items):
        if second.start < first.end:
            errors.append(_err(["phases", b, "start"],
                               f"{b} starts at {_when(c, second.start)}, before {a} ends at {_when(c, first.end)}: "
                               "phases must follow one another without overlapping", "phase_overlap"))
    return errors


def _actions(c: Campaign) -> list[Error]:
    errors: list[Error] = []
    seen: dict[str, Loc] = {}
    flash: list[tuple[Loc, Any]] = []
    for phase, spec in c.phases.items():
        for i, action in enumerate(spec.actions):
            loc: Loc = ["phases", phase, "actions", i]
            if action.id in seen:
                errors.append(_err([*loc, "id"], f"action id {action.id!r} is used twice (also at "
                                   f"{'.'.join(str(p) for p in seen[action.id])}): ids must be unique", "duplicate_id"))
            seen.setdefault(action.id, loc)
            if action.at is not None and not (spec.start <= action.at < spec.end):
                errors.append(_err([*loc, "at"], f"action {action.id} fires at {_when(c, action.at)}, outside "
                                   f"{phase} ({_when(c, spec.start)} to {_when(c, spec.end)})", "action_outside_phase"))
            for field in ("coupon", "reward", "prize"):
                coupon = getattr(action, field, None)
                if coupon is not None and coupon not in c.coupons:
                    known = ", ".join(sorted(c.coupons)) or "none"
                    errors.append(_err([*loc, field], f"coupon {coupon!r} is not one of the campaign's coupons "
                                       f"(defined: {known})", "unknown_coupon"))
            if isinstance(action, FlashSale):
                flash += [([*loc, "windows", j], w) for j, w in enumerate(action.windows)]
            questions = getattr(action, "questions", None) or []
            ids = [q.id for q in questions]
            for j, q in enumerate(questions):
                if ids.index(q.id) != j:
                    errors.append(_err([*loc, "questions", j, "id"], f"question id {q.id!r} is used twice",
                                       "duplicate_id"))
    return errors + _flash_windows(c, flash)


def _flash_windows(c: Campaign, windows: list[tuple[Loc, Any]]) -> list[Error]:
    errors: list[Error] = []
    burst = c.phases.burst
    ids: set[str] = set()
    for loc, w in windows:
        if w.id in ids:
            errors.append(_err([*loc, "id"], f"flash window id {w.id!r} is used twice", "duplicate_id"))
        ids.add(w.id)
        if w.start >= w.end:
            errors.append(_err([*loc, "end"], f"flash window {w.id} ends at {_when(c, w.end)}, not after it starts",
                               "window_order"))
        elif w.start < burst.start or w.end > burst.end:
            errors.append(_err([*loc, "start"], f"flash window {w.id} ({_when(c, w.start)} to {_when(c, w.end)}) "
                               f"is not inside burst ({_when(c, burst.start)} to {_when(c, burst.end)})",
                               "flash_outside_burst"))
    ordered = sorted((w for w in windows if w[1].start < w[1].end), key=lambda lw: lw[1].start)
    for (_, a), (loc, b) in pairwise(ordered):
        if b.start < a.end:
            errors.append(_err([*loc, "start"], f"flash window {b.id} starts at {_when(c, b.start)}, before flash "
                               f"window {a.id} ends at {_when(c, a.end)}: windows must not overlap", "flash_overlap"))
    return errors


def _links_and_templates(c: Campaign, world: CampaignWorld) -> list[Error]:
    errors: list[Error] = []
    life = world.app(c.life_account)
    templates = set(life.templates) if life is not None and life.templates is not None else None
    for phase, spec in c.phases.items():
        for i, action in enumerate(spec.actions):
            loc: Loc = ["phases", phase, "actions", i]
            for field in ("link", "live_link", "claim_link"):
                link = getattr(action, field, None)
                if link is not None and link.mini_program and link.mini_program not in c.mini_programs:
                    errors.append(_err([*loc, field, "mini_program"], f"{link.mini_program} is not one of the "
                                       f"campaign's mini programs ({', '.join(c.mini_programs)})",
                                       "unknown_mini_program"))
            message = getattr(action, "message", None)
            if message is not None and templates is not None and message.template_id not in templates:
                errors.append(_err([*loc, "message", "template_id"], f"template {message.template_id!r} is not "
                                   f"one of life account {c.life_account}'s templates "
                                   f"({', '.join(sorted(templates)) or 'none registered'})", "unknown_template"))
    return errors


# ---- checks that work on the raw definition too -----------------------------------------------------------


def _apps(life_account: Any, minis: Any, world: CampaignWorld) -> list[Error]:
    errors: list[Error] = []
    if isinstance(life_account, str) and life_account:
        life = world.app(life_account)
        if life is None:
            errors.append(_err(["life_account"], f"life account {life_account} is not registered "
                               "(lifelink apps register)", "unknown_app"))
        elif life.kind != "life":
            errors.append(_err(["life_account"], f"{life_account} is a {life.kind} app, not a life account",
                               "app_kind"))
    for i, mini_id in enumerate(minis if isinstance(minis, list) else []):
        if not isinstance(mini_id, str) or not mini_id:
            continue
        mini = world.app(mini_id)
        if mini is None:
            errors.append(_err(["mini_programs", i], f"mini program {mini_id} is not registered "
                               "(lifelink apps register)", "unknown_app"))
        elif mini.kind != "mini":
            errors.append(_err(["mini_programs", i], f"{mini_id} is a {mini.kind} app, not a mini program",
                               "app_kind"))
        elif mini.life_account != life_account:
            bound = f"is bound to {mini.life_account}" if mini.life_account else "is not bound to a life account"
            errors.append(_err(["mini_programs", i], f"mini program {mini_id} {bound}, not to {life_account} "
                               "(bind it in Alipay's console, then lifelink apps configure --life-account)",
                               "not_bound"))
    return errors


def _expression(audience: Any) -> list[Error]:
    if not isinstance(audience, Mapping):
        return []
    expression = audience.get("expression")
    if isinstance(expression, str) and expression.strip():
        try:
            parse(expression)
        except ExprError as exc:
            return [_err(["audience", "expression"], f"audience expression: {exc}", "audience_syntax")]
    elif audience.get("all_followers") is False and not expression:
        return [_err(["audience"], "audience names nobody: set all_followers or an expression", "audience_empty")]
    return []


def _raw(definition: Campaign | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(definition, Campaign):
        return definition.model_dump(mode="json")
    return definition


def check_campaign(definition: Campaign | Mapping[str, Any], world: CampaignWorld) -> Campaign:
    """The campaign when every check passes; :class:`CampaignInvalid` with every error otherwise."""
    raw = _raw(definition)
    errors: list[Error] = []
    campaign: Campaign | None = None
    try:
        campaign = definition if isinstance(definition, Campaign) else Campaign.model_validate(definition)
    except ValidationError as exc:
        errors += _pydantic_errors(exc)
    errors += _apps(raw.get("life_account"), raw.get("mini_programs"), world)
    expression_errors = _expression(raw.get("audience"))
    errors += expression_errors
    if campaign is not None:
        errors += _windows(campaign) + _actions(campaign) + _links_and_templates(campaign, world)
        life_ok = not any(e["loc"][:1] == ["life_account"] for e in errors)
        if life_ok and not expression_errors and world.audience_size(campaign) == 0:
            what = (f"the expression {campaign.audience.expression!r}" if campaign.audience.expression
                    else "all followers")
            errors.append(_err(["audience"], f"the audience ({what} of {campaign.life_account}) matches nobody "
                               "right now", "audience_empty"))
    if errors:
        raise CampaignInvalid(errors)
    assert campaign is not None
    return campaign
