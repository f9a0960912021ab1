"""Clicks posted at runtime (POST /users/{id}/events) for one model: in process for a bounded set of users
(`UserEvents`, one process without Redis), or in Redis, shared by every worker and replica (`SharedEvents`)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from service.state import RedisState


class UserEvents:
    """User id -> item ids clicked since the start (oldest first), for at most `max_users` users: appending for
    one more drops the least recently updated user, whose stored history falls back to the bundle's. Reading
    does not count as an update.

    The registry keeps one per model across bundle versions (RECSERVE_MAX_EVENT_USERS). The cap is what keeps
    a client from growing the process without bound by posting events for ever new user ids; a store outside
    the process (Redis) would replace this class and need no such cap."""

    def __init__(self, max_users: int):
        if max_users < 1:
            raise ValueError(f"max_users must be >= 1, got {max_users}")
        self.max_users = max_users
        self._users: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user_id: str) -> list[str] | None:
        """The user's clicks, oldest first; None when none are kept."""
        return self._users.get(user_id)

    def append(self, user_id: str, items: Sequence[str], keep: int) -> None:
        """Append `items` to the user's clicks and keep the last `keep` of them; the user becomes the most
        recently updated. A new list replaces the old one, so a list handed out by `get` never changes."""
        with self._lock:
            self._users[user_id] = [*self._users.get(user_id, ()), *items][-keep:]
            self._users.move_to_end(user_id)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def __len__(self) -> int:
        return len(self._users)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._users


class SharedEvents:
    """The same interface over Redis: every worker sees an append on its very next request, and the clicks
    outlive restarts and bundle versions. A read Redis cannot answer is None (the bundle's history serves);
    an append it cannot store raises StateUnavailable (503)."""

    def __init__(self, state: RedisState, model: str):
        self.state, self.model = state, model

    def get(self, user_id: str) -> list[str] | None:
        return self.state.events(self.model, user_id)

    def append(self, user_id: str, items: Sequence[str], keep: int) -> None:
        self.state.append_events(self.model, user_id, items, keep)
