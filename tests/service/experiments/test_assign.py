"""Assignment (service/experiments/assign.py): sticky, weighted, and a weight change moves only whom it must."""
from __future__ import annotations

import pytest

from service.experiments import assign

USERS = [f"user-{i}" for i in range(20_000)]


def arms_of(weights: list[float], salt: str = "s1") -> list[int]:
    upper = assign.bounds(weights)
    return [assign.pick(upper, assign.point(salt, u)) for u in USERS]


def test_shares_follow_the_weights():
    got = arms_of([70, 20, 10])
    shares = [got.count(i) / len(got) for i in range(3)]
    assert shares == pytest.approx([0.7, 0.2, 0.1], abs=0.015)


def test_a_user_keeps_an_arm_and_salts_reshuffle():
    assert arms_of([1, 1]) == arms_of([1, 1])
    same = sum(a == b for a, b in zip(arms_of([1, 1], "s1"), arms_of([1, 1], "s2"))) / len(USERS)
    assert same == pytest.approx(0.5, abs=0.03)  # another salt: independent of the first


def test_moving_five_percent_between_two_arms_moves_five_percent_of_users():
    before, after = arms_of([50, 50]), arms_of([45, 55])
    moved = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(moved) / len(USERS) == pytest.approx(0.05, abs=0.01)
    assert set(moved) == {(0, 1)}  # only from the arm that shrank to the one that grew


def test_with_three_arms_a_transfer_between_neighbours_leaves_the_third_alone():
    before, after = arms_of([40, 40, 20]), arms_of([40, 30, 30])
    moved = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(moved) / len(USERS) == pytest.approx(0.10, abs=0.01) and set(moved) == {(1, 2)}
    assert all(b == 0 for a, b in zip(before, after) if a == 0)


def test_a_new_last_arm_takes_only_from_the_arm_before_it():
    before, after = arms_of([50, 50, 0]), arms_of([50, 45, 5])
    moved = {(a, b) for a, b in zip(before, after) if a != b}
    assert moved == {(1, 2)} and 2 not in before


def test_an_arm_of_weight_zero_is_never_picked():
    assert 0 not in arms_of([0, 1, 1]) and 1 not in arms_of([1, 0, 1])


def test_points_are_uniform_and_fixed():
    points = [assign.point("s", u) for u in USERS]
    assert all(0 <= p < 1 for p in points) and sum(points) / len(points) == pytest.approx(0.5, abs=0.01)
    assert assign.point("s", "user-1") == assign.point("s", "user-1") != assign.point("t", "user-1")
