"""Sticky, weighted assignment of a user (or, without one, a request) to an arm.

A user's point is blake2b(salt, user id) read as a number in [0, 1): the same on every worker and replica and
across restarts. The arms split [0, 1) into consecutive ranges in the file's order, each as wide as its share
of the weights; the user gets the arm whose range holds the point.

What a weight change moves: a user changes arm only when a boundary between ranges passes its point, so the
share moved is at most the sum of how far each boundary moved. Moving weight between two neighbouring arms
(in file order) moves exactly that share, and only between those two arms; so does adding an arm at the end
with weight taken from the arm before it. Moving weight between arms that are not neighbours also shifts the
boundaries between them (users in the arms in between move along): keep the arm that grows next to the one it
takes from."""
from __future__ import annotations

import hashlib
from bisect import bisect_right
from itertools import accumulate

SCALE = float(1 << 64)


def point(salt: str, key: str) -> float:
    """The key's place in [0, 1) for this salt (64 bits of blake2b)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / SCALE


def bounds(weights: list[float]) -> list[float]:
    """The upper end of each arm's range but the last (which ends at 1), from the weights in order."""
    total = sum(weights)
    return [c / total for c in accumulate(weights)][:-1]


def pick(upper: list[float], at: float) -> int:
    """The index of the arm whose range holds `at` (ranges with weight 0 are empty and never picked)."""
    return bisect_right(upper, at)
