"""`recserve evaluate`: how a candidate bundle would have ranked what users were actually shown, next to what
was served, on the impressions of the log that got a click.

Replay, through the service's own code (service/batch.py loads the bundle, service/ranking.py's `Ranker`
ranks), of each impression of the model a user saw (shadow arms left out, and interleaved answers, which no
one model served) with at least one attributed click:
- /rank: the logged items, reranked by the candidate for the logged history window (or, for an empty window,
  the logged user, as the service resolves them); metrics of MIND: group AUC, MRR, nDCG@5, nDCG@10 of the
  clicked items. Items the candidate does not know rank last.
- /recommend: the candidate's top k for the same user, k = the number of items shown, leaving out what the
  served answer left out (the record's `excluded`: the history and the request's `exclude`); hit@k and nDCG@k
  of the clicked items.
The served figures come from the logged order and scores. Items added through /items (the log's item records
of the model) are added to the candidate as they come, as the service would, so later impressions can show
them.

Both routes replay exactly: the served bundle replays to the served figures. (A record written before
impressions carried `excluded` replays /recommend leaving out the window alone.)
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from service.errors import ServiceError
from service.feedback.join import CLICK, DEFAULT_WINDOW_S, join
from service.feedback.metrics import IMPRESSION_KEYS, LIST_KEYS, Means, impression_figures, list_figures

ROUTES = ("rank", "recommend")


def evaluate(records: Iterable[dict], bundle: Path, model_name: str | None = None,
             window_s: float = DEFAULT_WINDOW_S, click_types: Iterable[str] = (CLICK,)) -> dict:
    """The report: {"model", "candidate": version, "served": versions seen, "skipped", "rank"/"recommend":
    {"impressions", "served": metrics, "candidate": metrics}} for the routes that had impressions."""
    from service.batch import load_for_batch
    from service.cache import LocalStore
    from service.config import load_settings
    from service.metrics import Metrics
    from service.ranking import Ranker

    model = load_for_batch(bundle)
    settings = load_settings()
    ranker = Ranker(LocalStore(10_000), settings, Metrics())
    return asyncio.run(_replay(records, model, ranker, settings, model_name or model.name, window_s, click_types))


async def _replay(records, model, ranker, settings, name: str, window_s: float, click_types) -> dict:
    from service import items

    keys = {"rank": IMPRESSION_KEYS, "recommend": LIST_KEYS}
    got = {route: {"served": Means(keys[route]), "candidate": Means(keys[route])} for route in ROUTES}
    replayed = dict.fromkeys(ROUTES, 0)
    versions: set[str] = set()
    skipped: dict[str, int] = {}
    for joined in join(records, window_s, click_types):
        r = joined.record
        if joined.type == "item" and r.get("model") == name and model.tokenizer is not None:
            try:
                items.add_items(model, [{"item_id": r["item_id"], "title": r.get("title") or "",
                                         "category": r.get("category")}], settings)
            except ServiceError as err:  # past RECSERVE_MAX_ADDED_ITEMS, say: as the service would refuse it
                skipped[f"added item: {err.message}"] = skipped.get(f"added item: {err.message}", 0) + 1
        if (joined.type != "impression" or r.get("model") != name or r.get("shadow") or r.get("teams") is not None
                or not joined.shown.clicked):
            continue
        route = r.get("route")
        if route not in ROUTES:
            skipped["unknown route"] = skipped.get("unknown route", 0) + 1
            continue
        shown, clicked = list(r.get("items") or ()), set(joined.shown.clicked)
        try:
            answer = await _answer(ranker, model, r, route, shown)
        except ServiceError as err:  # what the service would have answered 422: the candidate cannot rank it
            skipped[err.message] = skipped.get(err.message, 0) + 1
            continue
        versions.add(r.get("version"))
        replayed[route] += 1
        if route == "rank":  # the logged items in logged order; the candidate's scores of them (unknown: last)
            labels = np.array([i in clicked for i in shown], dtype=np.float64)
            scores = {a["item_id"]: a["score"] for a in answer["results"]}
            got[route]["served"].add(impression_figures(labels, np.asarray(r.get("scores") or [], np.float64)))
            got[route]["candidate"].add(impression_figures(labels, np.array([scores.get(i, -np.inf) for i in shown])))
        else:
            got[route]["served"].add(list_figures(shown, clicked))
            got[route]["candidate"].add(list_figures([a["item_id"] for a in answer["results"]], clicked))
    report = {"model": name, "candidate": model.version, "served": sorted(v for v in versions if v),
              "skipped": skipped}
    for route, means in got.items():
        if replayed[route]:
            report[route] = {"impressions": replayed[route], **{k: m.result() for k, m in means.items()}}
    return report


async def _answer(ranker, model, record: dict, route: str, shown: list[str]) -> dict:
    """The candidate's answer to the logged request, as the API's JSON."""
    user, history = record.get("user"), list(record.get("history") or ()) or None
    if route == "rank":
        body = ranker.rank(model, user, history, shown)
    else:
        excluded = record.get("excluded")
        if excluded is None:  # an older record: the window is all that is known of what was left out
            body = await ranker.recommend(model, user, history, len(shown), True, ())
        else:
            body = await ranker.recommend(model, user, history, len(shown), False, excluded)
    return json.loads(body)


def table(report: dict) -> str:
    """The report as a small table: one line per route and metric, served next to candidate."""
    served = ", ".join(report["served"]) or "-"
    lines = [f"model {report['model']}: served {served}; candidate {report['candidate']}"]
    if any(route in report for route in ROUTES):
        lines.append(f"{'route':<10}{'metric':<11}{'served':>9}{'candidate':>11}{'impressions':>13}")
    else:
        lines.append("(no impression of this model with an attributed click in the range)")
    for route in ROUTES:
        if route in report:
            part = report[route]
            for metric, value in part["served"].items():
                lines.append(f"{route:<10}{metric:<11}{value:>9.4f}{part['candidate'][metric]:>11.4f}"
                             f"{part['impressions']:>13}")
    for why, n in report["skipped"].items():
        lines.append(f"skipped {n}: {why}")
    return "\n".join(lines)
