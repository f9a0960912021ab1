"""Comparing answers: every /rank and /recommend answer has its own request_id, so two answers that should be
the same are compared without it."""
from __future__ import annotations


def ranking(response) -> dict:
    """The answer's JSON body without its request_id (a response, or a body already decoded)."""
    body = response if isinstance(response, dict) else response.json()
    assert body.get("request_id"), body  # every ranking answer carries one
    return {key: value for key, value in body.items() if key != "request_id"}
