"""A small synthetic MIND data set (``news.tsv`` + ``behaviors.tsv`` in the real format) that a content
model can learn from.

Each topic has its own vocabulary (real English words, so pretrained GloVe vectors cover them); a title
is a few words of its topic plus common words; the category is the topic's name. Users have tastes over
topics (Dirichlet, mostly one or two topics), their histories are drawn from those tastes, and in each
impression the clicked candidates are those of the user's favourite topics, so the news title predicts the
click (group AUC well above 0.5). Impression times spread over ``days`` consecutive days, so
``read_mind`` makes the last day the validation split. Deterministic per seed.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

__all__ = ["write_synthetic_mind", "TOPICS"]

TOPICS: dict[str, list[str]] = {
    "sports": "game team coach season win score player league football basketball playoff quarterback "
              "tournament champion match goal injury stadium".split(),
    "finance": "stock market investor bank rate economy profit shares fund earnings inflation dollar "
               "trade price budget tax debt wall".split(),
    "health": "doctor diet sleep heart cancer vaccine hospital weight exercise patient disease study "
              "brain vitamin flu symptoms therapy nurse".split(),
    "travel": "beach hotel flight island resort vacation airport cruise trip city mountain tourist "
              "passport destination road museum tour village".split(),
    "music": "album song concert singer band guitar tour grammy rapper lyrics festival pop rock "
             "jazz record stage piano chart".split(),
    "science": "space planet nasa telescope climate scientist research fossil species ocean galaxy "
               "robot physics moon mars energy discovery lab".split(),
    "food": "recipe chicken cheese dinner restaurant chef pizza salad dessert coffee wine bread "
            "soup breakfast cookie baking grill taco".split(),
    "autos": "car truck engine electric tesla driver highway ford sedan suv motor recall speed "
             "dealer hybrid wheel crash fuel".split(),
}
COMMON = ("the a new how why what this best top after says could will more your about first "
          "year week report inside big real here").split()
PUNCT = ["", "", "", "?", "!", ":", ","]


def _fmt_time(t: datetime) -> str:
    hour = t.hour % 12 or 12
    half = "AM" if t.hour < 12 else "PM"
    return f"{t.month}/{t.day}/{t.year} {hour}:{t.minute:02d}:{t.second:02d} {half}"


def _topic_words(n_topics: int) -> tuple[list[str], list[list[str]]]:
    names = list(TOPICS)[:n_topics]
    words = [TOPICS[n] for n in names]
    for t in range(len(names), n_topics):                      # more topics than we wrote: made-up words
        names.append(f"topic{t}")
        words.append([f"t{t}word{j}" for j in range(18)])
    return names, words


def write_synthetic_mind(dest: str | os.PathLike, *, n_news: int = 400, n_users: int = 200,
                         n_topics: int = 6, days: int = 3, impressions_per_user: tuple[int, int] = (2, 5),
                         candidates: tuple[int, int] = (5, 15), seed: int = 0) -> Path:
    """Write ``dest/news.tsv`` and ``dest/behaviors.tsv``; returns ``dest``.

    ``impressions_per_user`` and ``candidates`` are inclusive (low, high) ranges. Every impression has at
    least one click and one non-click; about 5% of users have an empty history.
    """
    if n_topics < 1 or n_news < 2 or n_users < 1 or days < 1:
        raise ValueError("need n_topics >= 1, n_news >= 2, n_users >= 1, days >= 1")
    if candidates[0] < 2 or candidates[1] < candidates[0]:
        raise ValueError(f"candidates must be a range (low, high) with 2 <= low <= high, got {candidates}")
    if impressions_per_user[0] < 1 or impressions_per_user[1] < impressions_per_user[0]:
        raise ValueError(f"impressions_per_user must be (low, high) with 1 <= low <= high")
    rng = np.random.default_rng(seed)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    names, vocab = _topic_words(n_topics)

    # ---- news
    topic = np.arange(n_news) % n_topics                      # balanced topics, shuffled
    rng.shuffle(topic)
    news_ids = [f"N{i + 1}" for i in range(n_news)]
    by_topic = [np.flatnonzero(topic == t) for t in range(n_topics)]
    lines = []
    for i, t in enumerate(topic):
        n_topic, n_common = int(rng.integers(3, 6)), int(rng.integers(2, 5))
        words = list(rng.choice(vocab[t], n_topic, replace=False)) + list(rng.choice(COMMON, n_common))
        rng.shuffle(words)
        title = " ".join(words).capitalize() + PUNCT[int(rng.integers(len(PUNCT)))]
        abstract = "" if rng.random() < 0.3 else \
            "A story about " + " and ".join(rng.choice(vocab[t], 3, replace=False)) + "."
        sub = f"{names[t]}{int(rng.integers(1, 4))}" if rng.random() < 0.8 else ""
        lines.append("\t".join([news_ids[i], names[t], sub, title, abstract,
                                f"https://example.com/{news_ids[i]}.html", "[]", "[]"]))
    (dest / "news.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # ---- users and impressions
    start = datetime(2019, 11, 9)
    span = days * 86400
    rows = []
    imp_id = 0
    for u in range(n_users):
        taste = rng.dirichlet(np.full(n_topics, 0.3))
        n_hist = 0 if rng.random() < 0.05 else int(rng.integers(3, 25))
        hist_topics = rng.choice(n_topics, n_hist, p=taste)
        history = [news_ids[rng.choice(by_topic[t])] for t in hist_topics if len(by_topic[t])]
        for _ in range(int(rng.integers(impressions_per_user[0], impressions_per_user[1] + 1))):
            imp_id += 1
            when = start + timedelta(seconds=int(rng.integers(span)))
            m = min(int(rng.integers(candidates[0], candidates[1] + 1)), n_news)
            cands = rng.choice(n_news, m, replace=False)
            affinity = taste[topic[cands]] / taste.max()
            p = 0.02 + 0.6 * affinity ** 2
            clicked = rng.random(m) < p
            if not clicked.any():
                clicked[np.argmax(affinity + 0.1 * rng.random(m))] = True
            if clicked.all():
                clicked[np.argmin(affinity + 0.1 * rng.random(m))] = False
            tokens = " ".join(f"{news_ids[c]}-{int(k)}" for c, k in zip(cands, clicked))
            rows.append("\t".join([str(imp_id), f"U{u + 1}", _fmt_time(when), " ".join(history), tokens]))
    (dest / "behaviors.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return dest
