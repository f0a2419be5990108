"""Campaign participation routes for the mini program's backend: reservations, flash sales, shares, entries,
votes, leaderboard, claims, survey.

The rules live in :class:`lifelink.store.participation.Participation`; these routes load the campaign, map its
refusals to answers (404 unknown campaign/action/window/entry, 409 wrong phase, closed, sold out, limit reached,
already voted today, not a winner; 422 every field problem at once; 503 when a coupon job could not be queued —
the grant is kept and the same request, retried, queues it) and log users only as hashes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from lifelink.api.errors import ApiError, field_error
from lifelink.api.models import (
    CampaignEntry,
    ClaimRequest,
    ClaimsSummaryBody,
    EntryRequest,
    ErrorBody,
    FlashSaleRequest,
    FlashSaleTaken,
    Leaderboard,
    LeaderboardEntry,
    ParticipationGrant,
    ReservationRequest,
    ShareRequest,
    SurveyRecorded,
    SurveyRequest,
    SurveySummaryBody,
    VoteRecorded,
    VoteRequest,
)
from lifelink.domain.campaigns import Survey, UgcChallenge, Winners
from lifelink.domain.messages import Recipient
from lifelink.privacy import hash_id
from lifelink.store.campaigns import StoredCampaign
from lifelink.store.participation import Contended, Grant, Participation, QueueFailed, Refused

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from lifelink.api.models import CampaignUser
    from lifelink.api.resolver import ApiDeps

_JSON = "application/json"
STATUS_BY_REFUSAL = {
    "not_found": 404,
    "wrong_action": 422,
    "invalid": 422,
    "closed": 409,
    "sold_out": 409,
    "entry_limit": 409,
    "already_voted": 409,
    "unknown_voter": 409,
    "not_drawn": 409,
    "not_a_winner": 409,
    "already_answered": 409,
}
_TAGS = ["campaign participation"]


def _answer(model: type, description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"model": model}}}


def _errors(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"model": ErrorBody}}}


def _responses(ok: dict[int, dict[str, Any]], conflict: str, *, body: bool = True) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {
        **ok,
        404: _errors("Unknown campaign or action (or window, entry)"),
        409: _errors(conflict),
    }
    if body:
        out[422] = _errors("Invalid request: every field problem at once")
        out[503] = _errors("Recorded, but the coupon job could not be queued: send the same request again")
    return out


def _refusal(exc: Refused, where: str = "body") -> ApiError:
    errors = [{**e, "loc": [where, *e["loc"][1:]] if e["loc"][:1] == ["body"] else e["loc"]} for e in exc.errors]
    return ApiError(STATUS_BY_REFUSAL.get(exc.kind, 409), errors)


def _recipient(user: CampaignUser) -> Recipient:
    return Recipient(user_id=user.user_id, open_id=user.open_id)


class _Routes:
    """Per request: the participation store and the campaign."""

    def __init__(self, d: ApiDeps) -> None:
        self.d = d
        self.participation = Participation(
            d.dynamodb,
            d.state_table,
            sqs=d.sqs,
            queue_url=d.outbound_queue_url,
            audience=d.audience,
            ledger=d.ledger,
        )

    def campaign(self, campaign_id: str) -> StoredCampaign:
        stored = self.participation.load(campaign_id)
        if stored is None:
            raise ApiError(404, [field_error(("path", "campaign_id"), f"no campaign {campaign_id!r}", "not_found")])
        return stored

    def log(self, what: str, campaign_id: str, action: str, user: str, **extra: Any) -> None:
        self.d.logger.info(what, extra={"campaign": campaign_id, "action": action, "user": hash_id(user), **extra})


def _only_action(stored: StoredCampaign, kind: type, action: str | None) -> str:
    """The action named in the query, or the campaign's only action of this type."""
    if action:
        return action
    found = [a.id for _, a in stored.campaign.actions() if isinstance(a, kind)]
    if len(found) == 1:
        return found[0]
    wanted = kind.model_fields["type"].default
    msg = f"name the {wanted} action (campaign has {len(found)}: {', '.join(found) or 'none'})"
    raise ApiError(404 if not found else 422, [field_error(("query", "action"), msg, "action_required")])


def _grant_answer(grant: Grant, created: str, existing: str) -> Response[ParticipationGrant]:
    body = ParticipationGrant(
        campaign_id=grant.campaign_id,
        action=grant.action_id,
        result=created if grant.created else existing,
        at=grant.at,
        coupon=grant.coupon,
        coupon_status=grant.coupon_status,
        ledger_key=grant.ledger_key,
    )
    return Response(201 if grant.created else 200, content_types.APPLICATION_JSON, body.model_dump())


def _entry_model(entry: Any) -> dict[str, Any]:
    return {
        "entry_id": entry.entry_id,
        "action": entry.action_id,
        "user": entry.user,
        "title": entry.title,
        "content_url": entry.content_url,
        "at": entry.at,
        "votes": entry.votes,
    }


def register(
    app: APIGatewayHttpResolver, deps: Callable[[], ApiDeps], clock: Callable[[], datetime] | None = None
) -> None:
    """Adds the participation routes to ``app``. ``clock`` (default: now, UTC) lets tests move time."""
    now = clock or (lambda: datetime.now(UTC))

    def run(call: Callable[[], Any], where: str = "body") -> Any:
        try:
            return call()
        except Refused as exc:
            raise _refusal(exc, where) from None
        except QueueFailed as exc:
            raise ApiError(503, [field_error(("body",), str(exc), "queue_unavailable")]) from None
        except Contended as exc:
            raise ApiError(503, [field_error(("body",), str(exc), "contended")]) from None

    @app.post(
        "/campaigns/<campaign_id>/reservations",
        summary="Reserve (early bird)",
        description=(
            "Records the user's reservation for an early-bird action and grants its coupon once: one unit of the "
            "coupon's stock is taken in the same DynamoDB transaction as the reservation is recorded, so the stock is "
            "never oversold and a user never reserves twice, even under concurrent requests. The coupon job then goes "
            "on the outbound queue. Open while the campaign is in its preheat phase (state and window). A repeated "
            "request answers 200 with the earlier reservation and queues nothing new (unless its coupon job never "
            "reached the queue, which a repeat then queues: the send ledger sends it once)."
        ),
        responses=_responses(
            {
                201: _answer(ParticipationGrant, "Reserved; coupon job queued"),
                200: _answer(ParticipationGrant, "Already reserved (the earlier reservation)"),
            },
            "Not open (wrong phase or state) or sold out",
        ),
        tags=_TAGS,
    )
    def post_reservation(
        campaign_id: str, request: Annotated[ReservationRequest, Body()]
    ) -> Response[ParticipationGrant]:
        r = _Routes(deps())
        stored = r.campaign(campaign_id)
        grant: Grant = run(
            lambda: r.participation.reserve(
                stored.campaign,
                request.action,
                _recipient(request.user),
                now(),
                state=stored.state,
                app_id=request.app_id,
            )
        )
        r.log("reservation", campaign_id, request.action, grant.user, first=grant.created)
        return _grant_answer(grant, "reserved", "already_reserved")

    @app.post(
        "/campaigns/<campaign_id>/flash-sales",
        summary="Take a flash-sale unit",
        description=(
            "Takes one unit of a live-stream flash window's stock, once per user per window, only between the "
            "window's start and end during the burst phase. Stock and the user's record change in one transaction."
        ),
        responses=_responses(
            {
                201: _answer(FlashSaleTaken, "Taken"),
                200: _answer(FlashSaleTaken, "Already taken by this user"),
            },
            "Window not open, wrong phase, or sold out",
        ),
        tags=_TAGS,
    )
    def post_flash_sale(campaign_id: str, request: Annotated[FlashSaleRequest, Body()]) -> Response[FlashSaleTaken]:
        r = _Routes(deps())
        stored = r.campaign(campaign_id)
        take = run(
            lambda: r.participation.flash_take(
                stored.campaign, request.action, request.window, request.user.key, now(), state=stored.state
            )
        )
        r.log("flash sale", campaign_id, request.action, take.user, window=take.window_id, first=take.created)
        body = FlashSaleTaken(
            campaign_id=campaign_id,
            action=take.action_id,
            window=take.window_id,
            result="taken" if take.created else "already_taken",
            sku=take.sku,
            at=take.at,
        )
        return Response(201 if take.created else 200, content_types.APPLICATION_JSON, body.model_dump())

    @app.post(
        "/campaigns/<campaign_id>/shares",
        summary="Record a share",
        description=(
            "Records that the user shared, once per user per share task; the first share unlocks the task's reward "
            "coupon once (from the coupon's stock: when it is gone the share is still recorded, coupon_status "
            "sold_out). Open during the burst phase."
        ),
        responses=_responses(
            {
                201: _answer(ParticipationGrant, "Recorded; reward queued"),
                200: _answer(ParticipationGrant, "Already recorded (the earlier share)"),
            },
            "Not open (wrong phase or state)",
        ),
        tags=_TAGS,
    )
    def post_share(campaign_id: str, request: Annotated[ShareRequest, Body()]) -> Response[ParticipationGrant]:
        r = _Routes(deps())
        stored = r.campaign(campaign_id)
        grant: Grant = run(
            lambda: r.participation.share(
                stored.campaign,
                request.action,
                _recipient(request.user),
                now(),
                state=stored.state,
                app_id=request.app_id,
            )
        )
        r.log("share", campaign_id, request.action, grant.user, first=grant.created, coupon=grant.coupon_status)
        return _grant_answer(grant, "shared", "already_shared")

    @app.post(
        "/campaigns/<campaign_id>/entries",
        summary="Submit a UGC entry",
        description=(
            "Submits an entry to a UGC challenge (at most `max_entries_per_user` per user). Open during the burst "
            "phase. The answer carries the entry's id, which votes name."
        ),
        responses=_responses({201: _answer(CampaignEntry, "Submitted")}, "Not open, or the user's limit reached"),
        tags=_TAGS,
    )
    def post_entry(campaign_id: str, request: Annotated[EntryRequest, Body()]) -> Response[CampaignEntry]:
        r = _Routes(deps())
        stored = r.campaign(campaign_id)
        entry = run(
            lambda: r.participation.submit_entry(
                stored.campaign,
                request.action,
                request.user.key,
                request.title,
                request.content_url,
                now(),
                state=stored.state,
            )
        )
        r.log("entry", campaign_id, request.action, entry.user, entry_id=entry.entry_id)
        return Response(201, content_types.APPLICATION_JSON, CampaignEntry(**_entry_model(entry)).model_dump())

    @app.post(
        "/campaigns/<campaign_id>/votes",
        summary="Vote for an entry",
        description=(
            "One vote per voter per entry per calendar day (the campaign's time zone, Asia/Shanghai by default), "
            "only from users who exist in the app (a follow or an interaction is known in the campaign's life "
            "account or mini programs). The entry's count goes up in the same transaction that records the vote."
        ),
        responses=_responses(
            {201: _answer(VoteRecorded, "Counted")},
            "Not open, already voted for this entry today, or the voter is unknown to the app",
        ),
        tags=_TAGS,
    )
    def post_vote(campaign_id: str, request: Annotated[VoteRequest, Body()]) -> Response[VoteRecorded]:
        r = _Routes(deps())
        stored = r.campaign(campaign_id)
        vote = run(
            lambda: r.participation.vote(
                stored.campaign,
                request.action,
                request.entry_id,
                request.user.key,
                now(),
                state=stored.state,
                app_id=request.app_id,
            )
        )
        r.log("vote", campaign_id, request.action, vote.voter, entry_id=vote.entry_id)
        body = VoteRecorded(entry_id=vote.entry_id, day=vote.day, votes=vote.votes)
        return Response(201, content_types.APPLICATION_JSON, body.model_dump())

    @app.get(
        "/campaigns/<campaign_id>/leaderboard",
        summary="UGC leaderboard",
        description="The challenge's entries by votes (most first; ties go to the earlier entry).",
        responses={
            200: _answer(Leaderboard, "The leaderboard"),
            404: _errors("Unknown campaign or action"),
            422: _errors("Invalid query"),
        },
        tags=_TAGS,
    )
    def get_leaderboard(
        campaign_id: str,
        action: Annotated[
            str | None, Query(description="The UGC challenge (default: the campaign's only one).")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100, description="How many entries.")] = 10,
    ) -> Leaderboard:
        r = _Routes(deps())
        stored = r.campaign(campaign_id)
        action_id = _only_action(stored, UgcChallenge, action)
        entries = run(lambda: r.participation.leaderboard(stored.campaign, action_id, limit), "query")
        ranked = [LeaderboardEntry(rank=i + 1, **_entry_model(e)) for i, e in enumerate(entries)]
        return Leaderboard(campaign_id=campaign_id, action=action_id, entries=ranked)

    @app.post(
        "/campaigns/<campaign_id>/claims",
        summary="Claim a prize",
        description=(
            "A winner of a draw claims the prize, once: the claim is recorded (claimed_at) and the prize coupon job "
            "queued. Fulfilment is the coupon job's send-ledger entry reaching `sent` (see GET .../claims). Open "
            "during the settle phase, after the draw."
        ),
        responses=_responses(
            {
                201: _answer(ParticipationGrant, "Claimed; prize coupon queued"),
                200: _answer(ParticipationGrant, "Already claimed (the earlier claim)"),
            },
            "Not open, winners not drawn yet, or the user is not a winner",
        ),
        tags=_TAGS,
    )
    def post_claim(campaign_id: str, request: Annotated[ClaimRequest, Body()]) -> Response[ParticipationGrant]:
        r = _Routes(deps())
        stored = r.campaign(campaign_id)
        grant: Grant = run(
            lambda: r.participation.claim(
                stored.campaign,
                request.action,
                _recipient(request.user),
                now(),
                state=stored.state,
                app_id=request.app_id,
            )
        )
        r.log("claim", campaign_id, request.action, grant.user, first=grant.created)
        return _grant_answer(grant, "claimed", "already_claimed")

    @app.get(
        "/campaigns/<campaign_id>/claims",
        summary="Claims summary",
        description=(
            "Winners, claims, fulfilled claims (prize coupon sent) and the claim and redemption rates of a Winners "
            "action."
        ),
        responses={
            200: _answer(ClaimsSummaryBody, "The summary"),
            404: _errors("Unknown campaign or action"),
            422: _errors("Invalid query"),
        },
        tags=_TAGS,
    )
    def get_claims(
        campaign_id: str,
        action: Annotated[
            str | None, Query(description="The Winners action (default: the campaign's only one).")
        ] = None,
    ) -> ClaimsSummaryBody:
        r = _Routes(deps())
        stored = r.campaign(campaign_id)
        action_id = _only_action(stored, Winners, action)
        s = run(lambda: r.participation.claims_summary(stored.campaign, action_id), "query")
        return ClaimsSummaryBody(
            campaign_id=campaign_id,
            action=action_id,
            winners=s.winners,
            claimed=s.claimed,
            fulfilled=s.fulfilled,
            claim_rate=s.claim_rate,
            redemption_rate=s.redemption_rate,
        )

    @app.post(
        "/campaigns/<campaign_id>/survey",
        summary="Answer the survey",
        description=(
            "One answer per user, validated against the questions (rating: a whole number 1..5; choice: one of the "
            "options; text: at most 500 characters); every problem is reported at once. Sending the same answers "
            "again answers 200; different answers from a user who already answered get 409. Open during settle."
        ),
        responses=_responses(
            {
                201: _answer(SurveyRecorded, "Answered"),
                200: _answer(SurveyRecorded, "The same answer was already recorded"),
            },
            "Not open, or already answered differently",
        ),
        tags=_TAGS,
    )
    def post_survey(campaign_id: str, request: Annotated[SurveyRequest, Body()]) -> Response[SurveyRecorded]:
        r = _Routes(deps())
        stored = r.campaign(campaign_id)
        answered = run(
            lambda: r.participation.answer(
                stored.campaign, request.action, request.user.key, dict(request.answers), now(), state=stored.state
            )
        )
        r.log("survey answer", campaign_id, request.action, answered.user, first=answered.created)
        body = SurveyRecorded(
            campaign_id=campaign_id,
            action=answered.action_id,
            result="answered" if answered.created else "already_answered",
            at=answered.at,
        )
        return Response(201 if answered.created else 200, content_types.APPLICATION_JSON, body.model_dump())

    @app.get(
        "/campaigns/<campaign_id>/survey",
        summary="Survey summary",
        description="Answers so far: their count, the average per rating question, counts per option, text answers.",
        responses={
            200: _answer(SurveySummaryBody, "The summary"),
            404: _errors("Unknown campaign or action"),
            422: _errors("Invalid query"),
        },
        tags=_TAGS,
    )
    def get_survey(
        campaign_id: str,
        action: Annotated[str | None, Query(description="The survey (default: the campaign's only one).")] = None,
    ) -> SurveySummaryBody:
        r = _Routes(deps())
        stored = r.campaign(campaign_id)
        action_id = _only_action(stored, Survey, action)
        s = run(lambda: r.participation.survey_summary(stored.campaign, action_id), "query")
        return SurveySummaryBody(
            campaign_id=campaign_id,
            action=action_id,
            answers=s.answers,
            average_rating=s.average_rating,
            option_counts=s.option_counts,
            text_answers=s.text_answers,
        )
