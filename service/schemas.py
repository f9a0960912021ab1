"""Request, response and error bodies. Requests reject unknown fields, so a typo is a 422 naming it."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bundle.contract import FALLBACK_KINDS

# Ids are printable: no control, invisible or separator characters (a "\x1f" in an id once let one client's
# history collide with another's in the cache). Enforced wherever an id enters: candidates, histories,
# exclusions, events, added items, user ids (body and path).
# C0 and C1 controls, DEL, soft hyphen, zero-width and bidi marks, line and paragraph separators, word
# joiners, BOM: written with \uXXXX escapes, which Rust's regex (pydantic), Python's re and ECMA-262 all read.
PRINTABLE = r"^[^\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]+$"
ID_RULE = "1-256 printable characters (no control characters)"
ItemId = Annotated[str, Field(min_length=1, max_length=256, pattern=PRINTABLE, examples=["N1234"],
                              description=f"An item id: {ID_RULE}")]
UserId = Annotated[str, Field(min_length=1, max_length=256, pattern=PRINTABLE, examples=["U87243"],
                              description=f"A user id: {ID_RULE}")]

# Request ids: what the service makes (32 hex digits) or what a client sends as X-Request-ID (a trace id,
# a UUID): printable ASCII without spaces, so the id is one token in a log line.
REQUEST_ID_PATTERN = r"^[\x21-\x7e]+$"
MAX_REQUEST_ID = 128
RequestId = Annotated[str, Field(min_length=1, max_length=MAX_REQUEST_ID, pattern=REQUEST_ID_PATTERN,
                                 description=f"1-{MAX_REQUEST_ID} printable ASCII characters, no spaces")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserRef(Strict):
    model: str = Field(examples=["nrms"], description="Model name, as listed by GET /models")
    user_id: UserId | None = Field(None, description="A user the model knows")
    history: list[ItemId] | None = Field(
        None, description="Item ids, oldest first; when non-empty it is used instead of the stored history")


class RankRequest(UserRef):
    candidates: list[ItemId] = Field(min_length=1, description="Items to score (unknown ones are reported)")


class RecommendRequest(UserRef):
    k: int = Field(10, ge=1, description="How many items to return")
    exclude_history: bool = Field(True, description="Leave out the items of the history")
    exclude: list[ItemId] = Field(default_factory=list, description="Items never to return")


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(description="See the model's `score` in GET /models: raw relevance or probability. "
                                     "In a fallback answer: 1 / the item's place in the fallback ranking (1, 0.5, "
                                     "0.333...), 0 for a candidate that ranking does not list")
    rank: int = Field(description="1 = best")


class RankResponse(BaseModel):
    model: str
    version: str
    request_id: str = Field(description="This answer's id, also sent as the X-Request-ID header (the client's "
                                        "own X-Request-ID when it sent one): post it with the clicks it brings "
                                        "(POST /users/{id}/events) to attribute them")
    experiment: str | None = Field(
        None, description="Present only when the request named an experiment as `model`: its name; `model` and "
                          "`version` are then the arm's served model")
    arm: str | None = Field(None, description="Present only with `experiment`: the arm that answered (sticky "
                                              "per user, or per request without a user_id); "
                                              "`interleaved` for an interleaved experiment, whose arms both "
                                              "answered (see `teams`)")
    teams: list[str] | None = Field(
        None, description="Present only in an interleaved experiment's answer (`arm` is `interleaved`): the arm that "
                          "placed each result, in `results` order (team-draft interleaving). Each result's `score` "
                          "is then its own arm's score, so scores need not decrease down the list; `model` and "
                          "`version` name both arms' (joined by `+` where they differ)")
    results: list[ScoredItem] = Field(description="Best first")
    unknown: list[str] = Field(description="Request ids the model does not know; they are not scored")
    fallback: Literal[FALLBACK_KINDS] | None = Field(
        None, examples=["popularity"],
        description="Present only when the model could not score the user (a `user_id` it does not know and no "
                    "history, or a history of which no item is known; ConvNCF: any user it was not trained on): the results are then the bundle's "
                    "fallback ranking, computed at training time from training data only, and this says which: "
                    "`popularity` (interactions per item) or `recency_popularity` (news clicks, each weighted "
                    "by half per day of age). The newest items added through /items take every second place "
                    "from the 2nd. /rank lists the candidates in that order, those it does not rank after them "
                    "in request order. Absent from a model's own answers")
    unknown_history: list[str] | None = Field(
        None, examples=[["N-gone"]],
        description="Present only when the request's `history` holds ids the model does not know (once each, in "
                    "request order): they were ignored. A history of which no id is known is a user the model "
                    "cannot score, so such an answer is the fallback ranking (`fallback` set), for every model")


# Field limits of POST /items: each added item is kept in memory (service.items.apply).
MAX_TITLE_CHARS = 1_000  # news titles are under 300 characters; the tokenizer reads only the first words
MAX_CATEGORY_CHARS = 100


class NewItem(Strict):
    item_id: ItemId
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS,
                       description=f"The text the item encoder reads; at most {MAX_TITLE_CHARS} characters")
    category: str | None = Field(None, max_length=MAX_CATEGORY_CHARS,
                                 description=f"Kept with the title; at most {MAX_CATEGORY_CHARS} characters")


class ItemsRequest(Strict):
    model: str = Field(examples=["nrms"])
    items: list[NewItem] = Field(min_length=1)


class ItemsResponse(BaseModel):
    model: str
    version: str
    added: list[str]
    updated: list[str]


class EventsRequest(Strict):
    model: str | None = Field(None, description="Default: every model that keeps histories")
    items: list[ItemId] = Field(min_length=1, description="Clicked items, oldest first")
    request_id: RequestId | None = Field(
        None, description="The answer (its `request_id`) the items were clicked in: the click is attributed to "
                          "it in the feedback log and the online metrics. Unattributed events are recorded too")
    event: str = Field("click", min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$",
                       description="The event type, recorded with the event (click, purchase, ...); only clicks "
                                   "and other events alike append to the user's history")


class EventsResponse(BaseModel):
    user_id: str
    models: dict[str, int] = Field(description="Model -> length of the user's history now")
    unknown: dict[str, list[str]] = Field(
        description="Model -> the request's ids it does not know (once each, in request order): they are not "
                    "stored. Every target model is listed; ids unknown to all of them change nothing")


class Retrieval(BaseModel):
    way: Literal["index", "exact"] = Field(description="How /recommend finds the k best items: the bundle's "
                                                       "nearest-neighbour index, or an exact scan of the catalog")
    reason: str = Field(description="Why that way (catalog size against RECSERVE_RETRIEVAL_MIN_ITEMS, no index, or "
                                    "an index that missed its recall target at export, with the scan's cost)")
    recall_at_10: float | None = Field(None, description="The index's recall@10 measured at export on the bundle's "
                                                         "own users; an index below `recall_target` is never searched")
    recall_target: float | None = None


class ModelInfo(BaseModel):
    name: str
    kind: str
    version: str
    items: int
    dimension: int
    scorer: str
    score: str = Field(description='"raw" (unbounded relevance) or "probability"')
    user_input: str
    max_history: int
    provider: str
    metrics: dict
    created_at: str | None = None
    fallback_from: str | None = Field(
        None, description="Set when this is an older version served because the one LATEST names was refused: "
                          "that version (docs/bundle.md, fallback)")
    fallback_reason: str | None = Field(None, description="With `fallback_from`: why that version was refused")
    retrieval: Retrieval | None = None
    fallback: str | None = Field(None, description="The fallback ranking users it cannot score get (see "
                                                   "RankResponse.fallback); null: they get a 422")
    rolled_back: dict[str, str] = Field(
        default_factory=dict, description="Canary arms answering with this model that a guardrail rolled back "
                                          "(its users answered by the control on every replica): \"<experiment>/<arm>\" -> why")


class ReloadResponse(BaseModel):
    loaded: dict[str, str]
    unchanged: dict[str, str]
    refused: dict[str, str]
    experiments_refused: str | None = Field(
        None, description="Why the experiments file (RECSERVE_EXPERIMENTS) was refused, naming the file and the "
                          "field; the previous configuration keeps serving. null when it was read (or none is set)")


class FieldError(BaseModel):
    field: str = Field(description="Where, as a dotted path (e.g. `candidates.2`), or `body` for the whole body")
    message: str


class ErrorBody(BaseModel):
    """Every error answer, whatever its status."""

    model_config = ConfigDict(extra="forbid")  # what service/errors.py sends, exactly: tests hold them to it

    detail: str = Field(description="What went wrong, for a person")
    field: str | None = Field(description="The request field at fault (e.g. `candidates`), or null")
    errors: list[FieldError] = Field(
        default_factory=list, description="Only on a 422 from validating the request: every problem found")


class ReloadRefused(ErrorBody, ReloadResponse):
    """A reload that refused a bundle: the error body plus the reload report."""


class Fallback(BaseModel):
    serving: str = Field(description="The older version served")
    latest: str = Field(description="The version LATEST names, which was refused (empty if LATEST is unreadable)")
    reason: str = Field(description="Why LATEST's version was refused: the folder, the file and the problem")


class Readiness(BaseModel):
    status: str = Field(description='"ready"; "degraded" (answered with 200: every model serves, but some serve '
                                    'an older version than LATEST names, see `fallbacks`, or Redis stopped '
                                    'answering after start-up); or "not ready" (503)')
    models: dict[str, str] = Field(description="Served model -> bundle version")
    failed: dict[str, str] = Field(description="Model -> why its bundle was refused (no older version serves)")
    fallbacks: dict[str, Fallback] = Field(
        default_factory=dict, description="Model -> the older version it serves since the one LATEST names was "
                                          "refused at start-up (docs/bundle.md); empty when every model serves LATEST's")
    cache: str = Field(description='"up", "degraded" (Redis unreachable) or "in-process" (no Redis configured)')
    reason: str | None = Field(None, description="Only when not ready or degraded: why (no model folder found under "
                                                 "the artifacts folder, which bundles were refused, which models "
                                                 "serve an older version, a Redis that does not answer, named by "
                                                 "its URL without password)")
    rollbacks: dict[str, str] = Field(
        default_factory=dict, description="Canary arms rolled back by a guardrail, \"<experiment>/<arm>\" -> why "
                                          "(the replica is ready: their users are served by the other arms)")

