"""Team-draft interleaving (Radlinski, Kurup & Joachims, "How does clickthrough data reflect retrieval quality?",
CIKM 2008): two rankings merged into one, each item credited to the team (arm) that picked it.

Per round the team with fewer picks so far picks next; when both have as many, a coin flip decides. A team
picks its highest ranked item not yet in the list. So on every prefix of the answer the teams' sizes differ by
at most one (while both have items left), and each team's items keep their order in its own ranking. Clicks
then credit the team of the clicked item: over many answers, the arm whose items get clicked more is the better
ranking, and each impression is a paired comparison (the same user, the same moment), which is why
interleaving needs far fewer impressions than an A/B split.

The coin flips come from a generator seeded by blake2b(salt, request id): a replay of a request id (a client's
own X-Request-ID) gets the same answer."""
from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence


def seed(salt: str, request_id: str) -> int:
    """The coin flips' seed for one request: 64 bits of blake2b keyed by the experiment's salt."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big")


def team_draft(a: Sequence[str], b: Sequence[str], n: int | None, coin: random.Random) -> tuple[list[str], list[int]]:
    """Interleave rankings `a` and `b` (best first, each without repeats) into at most `n` items (None: every
    item of either); returns (items, teams), teams[i] = 0 when `a` picked items[i], 1 when `b` did."""
    rankings = (a, b)
    limit = len(set(a) | set(b)) if n is None else n
    items: list[str] = []
    teams: list[int] = []
    placed: set[str] = set()
    next_of = [0, 0]  # each team's position in its own ranking: everything before it is placed
    picks = [0, 0]
    while len(items) < limit:
        for t in (0, 1):  # skip what the other team placed
            while next_of[t] < len(rankings[t]) and rankings[t][next_of[t]] in placed:
                next_of[t] += 1
        left = [next_of[t] < len(rankings[t]) for t in (0, 1)]
        if not any(left):
            break
        if not all(left):  # one ranking is used up: the other fills the list
            team = 0 if left[0] else 1
        elif picks[0] != picks[1]:
            team = 0 if picks[0] < picks[1] else 1
        else:
            team = coin.getrandbits(1)
        item = rankings[team][next_of[team]]
        items.append(item)
        teams.append(team)
        placed.add(item)
        picks[team] += 1
    return items, teams
