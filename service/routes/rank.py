"""POST /rank and POST /recommend: the hot path.

`service.hot_routes.HotRoutes` calls these endpoints straight from the middleware stack, so they take the bare
request and do what FastAPI would otherwise do for them: read the registry, ranker and settings off
`request.app.state` and parse their body with `parse_body` (one pydantic-core pass); the API key and the body
size are checked before them (`service.access`, `service.body_limit`). The router keeps them for the OpenAPI
document: body schema, error statuses and the response model."""
from __future__ import annotations

from contextlib import contextmanager
from time import perf_counter

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError

from service import request_ids
from service.errors import documented, unprocessable
from service.request_ids import HEADER
from service.responses import EncodedJSON
from service.routes.deps import documented_body, parse_body, ranking_model
from service.schemas import RankRequest, RankResponse, RecommendRequest


@contextmanager
def guarded(canaries, arm, started: float):
    """Count an experiment's answer, or its failure (a 5xx: an exception that is not the client's fault), for
    its canary guardrails."""
    try:
        yield
    except Exception as exc:
        client = isinstance(exc, RequestValidationError) or \
            (getattr(exc, "status", None) or getattr(exc, "status_code", None) or 500) < 500
        if not client:
            canaries.record(arm.experiment, arm.arm, perf_counter() - started, True)
        raise
    canaries.record(arm.experiment, arm.arm, perf_counter() - started, False)


# 401 too: `service.access.AccessControl` checks the API key in front of every route, these included.
router = APIRouter(tags=["ranking"], responses=documented(401, 404, 413, 422, 503))


@router.post("/rank", response_model=RankResponse, response_class=EncodedJSON,
             openapi_extra=documented_body(RankRequest))
async def rank(request: Request) -> EncodedJSON:
    """Score `candidates` for a user, best first.

    The user is `history` (item ids, oldest first) when it is given and non-empty, else the stored history
    of `user_id` (the bundle's plus events posted since). A user the model cannot score (a `user_id` it does
    not know and no history; ConvNCF: any user it was not trained on) gets the bundle's fallback ranking,
    flagged by `fallback` in the response. Unknown candidates are returned in `unknown` and not scored;
    unknown history items are ignored. Histories longer than the model's `max_history` keep their last items.

    Every answer has a `request_id` (also the X-Request-ID header; a client's own valid X-Request-ID is kept)
    and is recorded in the feedback log: post clicks with it to attribute them.

    `model` may name an experiment (RECSERVE_EXPERIMENTS): the user's arm answers (sticky per user; without
    a user_id, per request), and the answer names it in `experiment` and `arm`.
    """
    body, state = await parse_body(request, RankRequest), request.app.state
    model, arm = ranking_model(request, state.registry, body.model, body.user_id, answer_id)
    settings = state.settings
    if len(body.candidates) > settings.max_candidates:
        raise unprocessable("candidates", f"{len(body.candidates)} candidates exceed the limit of "
                                          f"{settings.max_candidates}")
    request_id = answer_id(request) if arm is None else arm.request_id
    started = perf_counter()
    if arm is None or arm.experiment not in state.canaries.watched:
        answer = state.ranker.rank(model, body.user_id, body.history, body.candidates, request_id, arm)
    else:  # the arm's outcome and latency feed its experiment's canary guardrails (canary.py)
        with guarded(state.canaries, arm, started):
            answer = state.ranker.rank(model, body.user_id, body.history, body.candidates, request_id, arm)
    if arm is not None:  # the experiment's shadow arms, if any, score it later (service/experiments/shadow.py)
        state.shadows.offer(arm, "rank", (body.user_id, body.history, body.candidates), answer,
                            perf_counter() - started)
    return EncodedJSON(answer, headers={HEADER: request_id})


@router.post("/recommend", response_model=RankResponse, response_class=EncodedJSON,
             openapi_extra=documented_body(RecommendRequest))
async def recommend(request: Request) -> EncodedJSON:
    """The `k` best items of the whole catalog for a user (same user rules as /rank).

    `exclude_history` leaves out the items of the history used; `exclude` lists more items never to return.
    Dot-product models score the catalog with one matrix product; ConvNCF runs its scorer in chunks.
    """
    body, state = await parse_body(request, RecommendRequest), request.app.state
    model, arm = ranking_model(request, state.registry, body.model, body.user_id, answer_id)
    settings = state.settings
    if body.k > settings.max_k:
        raise unprocessable("k", f"{body.k} exceeds the limit of {settings.max_k}")
    request_id = answer_id(request) if arm is None else arm.request_id
    started = perf_counter()
    if arm is None or arm.experiment not in state.canaries.watched:
        answer = await state.ranker.recommend(model, body.user_id, body.history, body.k, body.exclude_history,
                                              body.exclude, request_id, arm)
    else:
        with guarded(state.canaries, arm, started):
            answer = await state.ranker.recommend(model, body.user_id, body.history, body.k, body.exclude_history,
                                                  body.exclude, request_id, arm)
    if arm is not None:  # the experiment's shadow arms, if any, score it later (service/experiments/shadow.py)
        state.shadows.offer(arm, "recommend", (body.user_id, body.history, body.k, body.exclude_history,
                                               body.exclude), answer, perf_counter() - started)
    return EncodedJSON(answer, headers={HEADER: request_id})


def answer_id(request: Request) -> str:
    """The answer's request id (service/request_ids.py), kept in the request's state for the access log."""
    request.state.request_id = request_id = request_ids.request_id(request.headers)
    return request_id
