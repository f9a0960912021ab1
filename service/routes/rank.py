"""POST /rank and POST /recommend: the hot path.

They read the registry, ranker and settings off `request.app.state` instead of injecting them: FastAPI
solves each injected dependency per request, and three of them cost more than scoring 100 candidates."""
from __future__ import annotations

from fastapi import APIRouter, Request

from service.errors import unprocessable
from service.responses import FastJSON
from service.routes.deps import Authorized, served_model
from service.schemas import RankRequest, RankResponse, RecommendRequest

router = APIRouter(tags=["ranking"], dependencies=Authorized)


@router.post("/rank", response_model=RankResponse, response_class=FastJSON)
async def rank(body: RankRequest, request: Request) -> FastJSON:
    """Score `candidates` for a user, best first.

    The user is `history` (item ids, oldest first) when it is given and non-empty, else the stored history
    of `user_id` (the bundle's plus events posted since); ConvNCF needs a `user_id` it was trained on.
    Unknown candidates are returned in `unknown` and not scored; unknown history items are ignored.
    Histories longer than the model's `max_history` keep their last items.
    """
    state = request.app.state
    model, settings = served_model(request, state.registry, body.model), state.settings
    if len(body.candidates) > settings.max_candidates:
        raise unprocessable("candidates", f"{len(body.candidates)} candidates exceed the limit of "
                                          f"{settings.max_candidates}")
    return FastJSON(state.ranker.rank(model, body.user_id, body.history, body.candidates))


@router.post("/recommend", response_model=RankResponse, response_class=FastJSON)
async def recommend(body: RecommendRequest, request: Request) -> FastJSON:
    """The `k` best items of the whole catalog for a user (same user rules as /rank).

    `exclude_history` leaves out the items of the history used; `exclude` lists more items never to return.
    Dot-product models score the catalog with one matrix product; ConvNCF runs its scorer in chunks.
    """
    state = request.app.state
    model, settings = served_model(request, state.registry, body.model), state.settings
    if body.k > settings.max_k:
        raise unprocessable("k", f"{body.k} exceeds the limit of {settings.max_k}")
    return FastJSON(state.ranker.recommend(model, body.user_id, body.history, body.k, body.exclude_history,
                                           body.exclude))
