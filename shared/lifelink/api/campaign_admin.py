"""Campaign administration routes: apply, list, status, preview, pause, resume, cancel.

``POST /campaigns`` takes the definition as a plain JSON object (not a pydantic ``Body``) so that pydantic's
field errors and the checks against the world (registered apps, templates, audience size) come back together
in one 422. The route logic lives in :class:`CampaignAdmin` (store, checks, schedules, runner), built per
request from :class:`lifelink.api.resolver.ApiDeps`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, GetJsonSchemaHandler

from lifelink.api.errors import ApiError, field_error
from lifelink.api.models import (
    CampaignActionStatus,
    CampaignApplied,
    CampaignBoundary,
    CampaignDraw,
    CampaignList,
    CampaignPhaseWindow,
    CampaignPreview,
    CampaignStatus,
    CampaignSummary,
    CampaignTransitioned,
    ErrorBody,
)
from lifelink.domain.campaign_checks import CampaignInvalid, CampaignWorld, check_campaign
from lifelink.domain.campaigns import TERMINAL_STATES, Campaign, CampaignState
from lifelink.domain.phases import LIVE_STATES, fired_key
from lifelink.scheduling import CampaignSchedules
from lifelink.store.campaigns import CampaignLocked, CampaignStore, RegistryWorld, StoredCampaign

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from aws_lambda_powertools.logging import Logger

    from lifelink.api.resolver import ApiDeps

PhaseName = Literal["preheat", "burst", "settle"]
_CAMPAIGN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")  # lifelink.domain.campaigns.Slug

_JSON = "application/json"


@dataclass(frozen=True)
class _DocumentedAs:
    """Annotated metadata: validate as the annotated type, document (JSON schema) as ``model``, whose nested
    models land in the OpenAPI components like any other."""

    model: type[BaseModel]

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return handler(self.model.__pydantic_core_schema__)


# The request body is taken as a plain object (so every error comes back at once) but documented as the model.
CampaignDefinition = Annotated[
    dict[str, Any],
    _DocumentedAs(Campaign),
    Body(description="A campaign definition (lifelink.domain.campaigns.Campaign) as a JSON object."),
]


def _answer(model: type, description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"model": model}}}


def _not_found(campaign_id: str) -> ApiError:
    return ApiError(404, [field_error(("path", "campaign_id"), f"no campaign {campaign_id!r}", "not_found")])


def _conflict(msg: str, type_: str, loc: Iterable[str | int] = ("path", "campaign_id")) -> ApiError:
    return ApiError(409, [field_error(loc, msg, type_)])


def _body_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check errors as the API answers them: ``loc`` under ``body``, never echoing what was sent."""
    out = []
    for e in errors:
        loc = list(e.get("loc", ()))
        if not loc or loc[0] != "body":
            loc = ["body", *loc]
        out.append(field_error(loc, str(e.get("msg", "")), str(e.get("type", "value_error"))))
    return out


def _iso(at: datetime, campaign: Campaign) -> str:
    return at.astimezone(campaign.zone).isoformat()


def next_boundary(campaign: Campaign, now: datetime) -> CampaignBoundary | None:
    """The first boundary strictly after ``now`` (None when the campaign has none left)."""
    for name, at in campaign.boundaries():
        if at > now:
            return CampaignBoundary(name=name, at=_iso(at, campaign))
    return None


def phase_windows(campaign: Campaign, now: datetime) -> list[CampaignPhaseWindow]:
    out = []
    for name, spec in campaign.phases.items():
        status = "done" if now >= spec.end else "current" if now >= spec.start else "upcoming"
        start, end = _iso(spec.start, campaign), _iso(spec.end, campaign)
        out.append(CampaignPhaseWindow(phase=name, start=start, end=end, status=status))
    return out


def campaign_status(
    campaign: Campaign,
    state: str,
    paused_from: str | None,
    counts: Mapping[str, Mapping[str, Any]],
    draws: Mapping[str, CampaignDraw],
    now: datetime,
) -> CampaignStatus:
    """The status answer. ``counts`` maps ``"<phase>.<action id>"`` of each action that started firing to its
    ``status`` (claimed, done) and what it recorded (numbers are shown); ``draws`` maps action ids to draws."""
    actions = []
    for phase, action in campaign.actions():
        recorded = counts.get(fired_key(phase, action.id)) or {}
        progress = {"done": "fired", "claimed": "firing"}.get(str(recorded.get("status")), "pending")
        actions.append(
            CampaignActionStatus(
                phase=phase,
                id=action.id,
                type=action.type,
                fire_at=_iso(campaign.fire_time(phase, action), campaign),
                status=progress,  # type: ignore[arg-type]
                counts={str(k): v for k, v in recorded.items() if isinstance(v, int) and not isinstance(v, bool)},
                draw=draws.get(action.id),
            )
        )
    return CampaignStatus(
        id=campaign.id,
        name=campaign.name,
        state=str(state),
        paused_from=str(paused_from) if paused_from else None,
        life_account=campaign.life_account,
        mini_programs=list(campaign.mini_programs),
        timezone=campaign.timezone,
        definition_hash=campaign.definition_hash(),
        phases=phase_windows(campaign, now),
        next_boundary=None if CampaignState(state) in TERMINAL_STATES else next_boundary(campaign, now),
        actions=actions,
        as_of=now.astimezone(campaign.zone).isoformat(),
    )


def transition_target(verb: str, stored: StoredCampaign) -> tuple[CampaignState | None, str]:
    """The state ``verb`` (pause, resume, cancel) moves the campaign to, or None and why it cannot."""
    state, cid = stored.state, stored.campaign.id
    if verb == "pause":
        if state in LIVE_STATES:
            return CampaignState.paused, ""
        if state is CampaignState.paused:
            was = stored.paused_from.value if stored.paused_from else "an unknown state"
            return None, f"campaign {cid} is already paused (in {was})"
        if state is CampaignState.draft:
            return None, f"campaign {cid} is a draft: nothing runs until it is applied"
        return None, f"campaign {cid} is {state.value}: there is nothing left to pause"
    if verb == "resume":
        if state is CampaignState.paused and stored.paused_from is not None:
            return stored.paused_from, ""
        return None, f"campaign {cid} is {state.value}, not paused: only a paused campaign resumes"
    if verb == "cancel":
        if state in TERMINAL_STATES:
            return None, f"campaign {cid} is already {state.value}"
        return CampaignState.cancelled, ""
    raise ValueError(f"unknown transition {verb!r}")


Runner = Any  # lifelink.campaign_runner.CampaignRunner: preview(campaign_id, phase, now) -> dict


@dataclass
class CampaignAdmin:
    """The administration of campaigns over the core parts: store, checks, schedules, and (for dry runs) the
    runner, built only when needed."""

    store: CampaignStore
    world: CampaignWorld
    schedules: CampaignSchedules
    runner_factory: Callable[[], Runner] | None = None
    logger: Logger | None = None

    @classmethod
    def from_deps(cls, d: ApiDeps) -> CampaignAdmin:
        store = CampaignStore(d.dynamodb, d.state_table)
        return cls(
            store=store,
            world=RegistryWorld(d.registry, d.audience),
            schedules=CampaignSchedules(d.scheduler, d.scheduler_target_arn, d.scheduler_role_arn),
            runner_factory=lambda: runner_for(d, store),
            logger=d.logger,
        )

    # ---- apply ----------------------------------------------------------------------------------------

    def validate(self, body: Any) -> Campaign:
        """The definition, checked against the world; ApiError 422 with every problem at once."""
        if not isinstance(body, dict):
            raise ApiError(422, [field_error(("body",), "the campaign definition must be a JSON object", "type_error")])
        try:
            return check_campaign(body, self.world)
        except CampaignInvalid as exc:
            raise ApiError(422, _body_errors(exc.errors)) from None

    def apply(self, body: Any, now: datetime) -> tuple[int, CampaignApplied]:
        """Check, store (draft), schedule every boundary, then draft → scheduled. Each step is idempotent, so an
        apply that stopped half-way is finished by applying the same definition again."""
        campaign = self.validate(body)
        before = self.store.get(campaign.id)
        if before is not None and before.definition_hash == campaign.definition_hash():
            if before.state in TERMINAL_STATES:
                return 200, self._applied(campaign, "unchanged", before.state, (), now)
            if before.state is not CampaignState.draft:
                # Nothing to store; the schedules are checked (and only written if an earlier apply stopped short).
                planned = self.schedules.create_for(campaign, now)
                pending = (*planned.created, *planned.updated, *planned.kept)
                return 200, self._applied(campaign, "unchanged", before.state, pending, now)
            result = "created"  # an earlier apply stopped before scheduling: finish it
        else:
            result = "created" if before is None else "updated"
        try:
            stored = self.store.put(campaign)
        except CampaignLocked as exc:
            raise _conflict(str(exc), "campaign_locked", ("body", "id")) from None
        previous = before.campaign if before is not None and result == "updated" else None
        planned = self.schedules.create_for(campaign, now, previous=previous)
        state = stored.state
        if state is CampaignState.draft:
            self.store.transition(campaign.id, CampaignState.draft, CampaignState.scheduled)
            state = self._stored(campaign.id).state
        pending = (*planned.created, *planned.updated, *planned.kept)
        self._log("campaign applied", campaign.id, result=result, state=state.value, schedules=len(pending))
        return (201 if result == "created" else 200), self._applied(campaign, result, state, pending, now)

    def _applied(
        self, campaign: Campaign, result: str, state: CampaignState, pending: Iterable[str], now: datetime
    ) -> CampaignApplied:
        return CampaignApplied(
            id=campaign.id,
            result=result,  # type: ignore[arg-type]
            state=state.value,
            definition_hash=campaign.definition_hash(),
            schedules=list(pending),
            next_boundary=next_boundary(campaign, now),
        )

    # ---- read -----------------------------------------------------------------------------------------

    def _stored(self, campaign_id: str) -> StoredCampaign:
        stored = self.store.get(campaign_id) if _CAMPAIGN_ID.match(campaign_id) else None
        if stored is None:
            raise _not_found(campaign_id)
        return stored

    def list(self) -> CampaignList:
        out = []
        for campaign_id, _ in self.store.list():
            stored = self.store.get(campaign_id)
            if stored is None:
                continue
            c = stored.campaign
            out.append(
                CampaignSummary(
                    id=c.id,
                    name=c.name,
                    state=stored.state.value,
                    life_account=c.life_account,
                    starts_at=_iso(c.phases.preheat.start, c),
                    ends_at=_iso(c.phases.settle.end, c),
                )
            )
        return CampaignList(campaigns=sorted(out, key=lambda s: (s.starts_at, s.id)))

    def status(self, campaign_id: str, now: datetime) -> CampaignStatus:
        stored = self._stored(campaign_id)
        draws = {}
        for _, action in stored.campaign.actions():
            if action.type == "winners" and (draw := self.store.get_draw(campaign_id, action.id)) is not None:
                draws[action.id] = CampaignDraw(
                    seed=draw.seed, eligible_hash=draw.eligible_hash, eligible_count=draw.eligible_count,
                    winners=len(draw.winners),
                )
        return campaign_status(
            stored.campaign,
            stored.state.value,
            stored.paused_from.value if stored.paused_from else None,
            self.store.counts(campaign_id),
            draws,
            now,
        )

    def preview(self, campaign_id: str, phase: str | None, now: datetime) -> CampaignPreview:
        self._stored(campaign_id)
        if self.runner_factory is None:
            raise RuntimeError("this CampaignAdmin has no runner: it cannot preview")
        found = dict(self.runner_factory().preview(campaign_id, phase, now))
        found.pop("campaign", None)
        return CampaignPreview.model_validate(
            {**found, "campaign_id": campaign_id, "phase": phase, "as_of": now.isoformat()}
        )

    # ---- transitions ----------------------------------------------------------------------------------

    def transition(self, verb: str, campaign_id: str, now: datetime) -> CampaignTransitioned:
        """Pause, resume or cancel; 409 with the reason when the campaign's state does not allow it."""
        stored = self._stored(campaign_id)
        target, why = transition_target(verb, stored)
        if target is None:
            raise _conflict(why, "transition_not_allowed")
        if not self.store.transition(campaign_id, stored.state, target):
            now_state = self._stored(campaign_id).state
            raise _conflict(
                f"campaign {campaign_id} moved from {stored.state.value} to {now_state.value} meanwhile; "
                f"{verb} again if still wanted",
                "state_changed",
            )
        removed = bool(self.schedules.remove(campaign_id)) if target is CampaignState.cancelled else False
        self._log(f"campaign {verb}", campaign_id, state=target.value, previous_state=stored.state.value)
        return CampaignTransitioned(
            id=campaign_id, state=target.value, previous_state=stored.state.value, schedules_removed=removed
        )

    def _log(self, message: str, campaign_id: str, **extra: Any) -> None:
        if self.logger is not None:
            self.logger.info(message, extra={"campaign": campaign_id, **extra})


class _NoPublishing:
    """The publisher of a dry-run runner: a preview never puts a job on the queue."""

    def publish_batch(self, jobs: list[Any]) -> None:
        raise RuntimeError("a campaign preview must not publish jobs")


def runner_for(d: ApiDeps, store: CampaignStore) -> Runner:
    """A runner for dry runs only: it reads the store, the audience, policies, participation and counters."""
    from lifelink.campaign_runner import CampaignRunner
    from lifelink.store.counters import Counters
    from lifelink.store.participation import Participation

    return CampaignRunner(
        store,
        d.audience,
        _NoPublishing(),
        registry=d.registry,
        pools=Participation(d.dynamodb, d.state_table, audience=d.audience, ledger=d.ledger),
        counters=Counters(d.dynamodb, d.state_table),
    )


def _now() -> datetime:
    return datetime.now(UTC)


def register(app: APIGatewayHttpResolver, deps: Callable[[], ApiDeps]) -> None:
    """Adds ``/campaigns`` routes to ``app``."""

    def admin() -> CampaignAdmin:
        return CampaignAdmin.from_deps(deps())

    @app.post(
        "/campaigns",
        summary="Apply a campaign definition",
        description=(
            "Validates the definition (`lifelink.domain.campaigns.Campaign`; YAML is converted to this JSON by "
            "`lifelink campaign apply`) against the registered apps, their templates and the audience, and "
            "answers 422 with every problem at once. A valid definition is stored, scheduled (one EventBridge "
            "Scheduler `at()` schedule per boundary) and answered 201. The same definition again is 200 "
            "`unchanged`; a changed one is accepted (200 `updated`) only while the campaign is draft or scheduled, "
            "else 409."
        ),
        responses={
            200: _answer(CampaignApplied, "Already applied (unchanged) or updated"),
            201: _answer(CampaignApplied, "Created and scheduled"),
            409: _answer(ErrorBody, "The campaign is running or over: its definition cannot change"),
            413: _answer(ErrorBody, "Body too large"),
            422: _answer(ErrorBody, "Invalid definition (every problem at once)"),
        },
        tags=["campaigns"],
    )
    def post_campaign(definition: CampaignDefinition) -> Response[CampaignApplied]:
        status, applied = admin().apply(definition, _now())
        return Response(status, content_types.APPLICATION_JSON, applied.model_dump(mode="json"))

    @app.get(
        "/campaigns",
        summary="List campaigns",
        description="Every campaign with its state and its span (start of preheat to end of settle).",
        responses={200: _answer(CampaignList, "The campaigns")},
        tags=["campaigns"],
    )
    def list_campaigns() -> CampaignList:
        return admin().list()

    @app.get(
        "/campaigns/<campaign_id>",
        summary="A campaign's status",
        description="State, phase windows (upcoming, current, done), the next boundary and counts per action.",
        responses={
            200: _answer(CampaignStatus, "The status"),
            404: _answer(ErrorBody, "No such campaign"),
        },
        tags=["campaigns"],
    )
    def get_campaign(campaign_id: str) -> CampaignStatus:
        return admin().status(campaign_id, _now())

    @app.get(
        "/campaigns/<campaign_id>/preview",
        summary="Dry run of a campaign's actions",
        description=(
            "What the actions of `phase` (default: every phase) would do now: audience and holdout size, messages "
            "per channel, how many would be capped, held or skipped and why, coupons and stock they would use. "
            "Sends and writes nothing."
        ),
        responses={
            200: _answer(CampaignPreview, "The dry run"),
            404: _answer(ErrorBody, "No such campaign"),
            422: _answer(ErrorBody, "Unknown phase"),
        },
        tags=["campaigns"],
    )
    def preview_campaign(
        campaign_id: str,
        phase: Annotated[PhaseName | None, Query(description="Default: every phase.")] = None,
    ) -> CampaignPreview:
        return admin().preview(campaign_id, phase, _now())

    def transition_route(verb: str, summary: str, description: str) -> None:
        @app.post(
            f"/campaigns/<campaign_id>/{verb}",
            summary=summary,
            description=description,
            responses={
                200: _answer(CampaignTransitioned, "Done"),
                404: _answer(ErrorBody, "No such campaign"),
                409: _answer(ErrorBody, "The transition is not allowed from the campaign's state (the reason)"),
            },
            tags=["campaigns"],
            operation_id=f"{verb}_campaign",
        )
        def transition(campaign_id: str) -> CampaignTransitioned:
            return admin().transition(verb, campaign_id, _now())

    transition_route(
        "pause",
        "Pause a campaign",
        "Stops a scheduled or running campaign: boundaries that fire while paused change nothing.",
    )
    transition_route(
        "resume",
        "Resume a paused campaign",
        "Returns to the state it was paused in, then catches up, in order, on boundaries passed meanwhile.",
    )
    transition_route(
        "cancel",
        "Cancel a campaign",
        "Ends a campaign that is not closed; its schedule group is deleted. Nothing more is sent.",
    )
