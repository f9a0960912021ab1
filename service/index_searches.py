"""The item-index searches of concurrent /recommend requests, run together as one usearch call.

usearch holds the GIL for the whole of a search (~0.3-1 ms at a million items), so two requests' searches
never overlap, whether on the event loop or in a thread pool (measured: two threads take as long as one
after the other). One call with many queries does overlap them: usearch spreads a batch over threads of its
own, in C++ (at 1M items, effort 256: 0.70 ms a query one by one, 0.39 ms a query in batches of 8 on 2
threads; docs/benchmarks.md 6.6).

So /recommend awaits `IndexSearches.search`. The first query queued schedules a run at the end of the event
loop's current turn; by then every request that arrived with it has queued its query too (uvicorn starts the
requests read in one turn together), and the run answers them all with one call per distinct count. The run
is on the loop's thread: a worker thread would add a hand-off and still hold the GIL. A request alone waits
one loop turn (tens of microseconds).
"""
from __future__ import annotations

import asyncio
import os

import numpy as np

MAX_BATCH = 64  # queries per usearch call: bounds the wait of a batch's first request


def default_threads() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class IndexSearches:
    """Batches `index.search(query, count)` calls made by concurrent tasks of one event loop."""

    def __init__(self, index, threads: int = 0):
        self.index = index
        self.threads = threads or default_threads()
        self._queue: list[tuple[np.ndarray, int, asyncio.Future]] = []

    async def search(self, query: np.ndarray, count: int) -> np.ndarray:
        """The index's `count` best rows for `query` (as `ItemIndex.search`), searched with the queries of the
        requests queued in the same turn of the event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((query, count, future))
        if len(self._queue) == 1:
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        queue, self._queue = self._queue, []
        by_count: dict[int, list[tuple[np.ndarray, asyncio.Future]]] = {}
        for query, count, future in queue:
            if not future.done():  # a request cancelled meanwhile (its client went away) needs no search
                by_count.setdefault(count, []).append((query, future))
        for count, waiting in by_count.items():
            for start in range(0, len(waiting), MAX_BATCH):
                part = waiting[start:start + MAX_BATCH]
                try:
                    found = self.index.search_many(np.stack([q for q, _ in part]), count, self.threads)
                except Exception as exc:  # every request of the batch gets the error, none waits forever
                    for _, future in part:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), rows in zip(part, found):
                    if not future.done():
                        future.set_result(rows)
