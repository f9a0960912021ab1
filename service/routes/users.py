"""POST /users/{user_id}/events: clicks that change what the user is recommended next."""
from __future__ import annotations

from fastapi import APIRouter, Path, Request

from service.errors import documented, unprocessable
from service.responses import FastJSON
from service.routes.deps import RankerDep, RegistryDep, served_model
from service.schemas import ID_RULE, PRINTABLE, EventsRequest, EventsResponse

router = APIRouter(tags=["users"], responses=documented(401, 413))


@router.post("/users/{user_id}/events", response_model=EventsResponse, response_class=FastJSON,
             responses=documented(404, 422, 503))
async def post_events(body: EventsRequest, request: Request, registry: RegistryDep, ranker: RankerDep,
                      user_id: str = Path(min_length=1, max_length=256, pattern=PRINTABLE,
                                          description=f"The user: {ID_RULE}")) -> FastJSON:
    """Append clicked `items` (oldest first) to the user's history in `model`, or in every model that keeps
    histories. The user's cached vector is dropped, so the next /rank or /recommend with only `user_id`
    reflects the clicks. With Redis the clicks are stored there, for every worker and replica, before this
    answers (503 if they cannot be: nothing was written); without it they are kept in this process for at
    most RECSERVE_MAX_EVENT_USERS users per model (the least recently updated are dropped first).

    A model stores only the ids it knows; the others come back in `unknown`, per model. Ids unknown to a
    model change nothing there (no user is created).

    Every request is recorded in the feedback log, with its `event` type; a `request_id` (from the /rank or
    /recommend answer the items were clicked in) attributes it to that answer, in the log and in the online
    metrics (recserve_attributed_clicks_total, recserve_clicked_position).
    """
    if body.model is not None:
        targets = [served_model(request, registry, body.model)]
        if not targets[0].keeps_history:
            raise unprocessable("model", f"model {body.model!r} scores users by id and keeps no history")
    else:
        targets = [m for m in registry.models.values() if m.keeps_history]
    lengths, unknown = {}, {}
    for model in targets:
        known, missing = model.catalog.lookup(body.items)
        if known:
            ranker.forget_user(model, user_id)
            model.events.append(user_id, model.catalog.ids_of(known),
                                model.max_history * ranker.settings.history_cap_factor)
        lengths[model.name] = len(model.stored_history(user_id) or ())
        unknown[model.name] = list(dict.fromkeys(missing))
    feedback = ranker.feedback
    if feedback is not None:  # after the state is stored: a 503 above records nothing
        feedback.clicked(user_id, body.model, body.event, body.items, body.request_id)
    return FastJSON({"user_id": user_id, "models": lengths, "unknown": unknown})
