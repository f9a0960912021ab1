"""The index searches of concurrent /recommend requests run as one usearch call (service/index_searches.py)."""
import asyncio

import httpx
import numpy as np
import pytest

from bundle.ann import build_index, load_index
from service.index_searches import IndexSearches

N, D = 3000, 8


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    vectors = np.random.default_rng(0).normal(size=(N + 1, D)).astype(np.float32)
    path = tmp_path_factory.mktemp("index") / "items.usearch"
    return load_index(path, build_index(vectors, path, threads=1), expansion=64)


class Spy:
    """The index, recording the queries of each batched call."""

    def __init__(self, index, fail: bool = False):
        self.index, self.fail, self.calls = index, fail, []

    def search_many(self, queries, count, threads):
        self.calls.append((len(queries), count, threads))
        if self.fail:
            raise RuntimeError("index gone")
        return self.index.search_many(queries, count, threads)


def queries(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


def test_search_many_answers_as_one_search_per_query(index):
    q = queries(7)
    many = index.search_many(q, 25, threads=2)
    assert [rows.tolist() for rows in many] == [index.search(row, 25).tolist() for row in q]
    assert [len(rows) for rows in index.search_many(q[:2], N + 10)] == [N, N]  # capped at the catalog
    with pytest.raises(ValueError, match="queries must be"):
        index.search_many(q[:, :3], 10)


def test_searches_queued_together_run_as_one_call(index):
    spy, q = Spy(index), queries(5)
    searches = IndexSearches(spy, threads=2)

    async def together():
        return await asyncio.gather(*(searches.search(row, 20) for row in q))

    found = asyncio.run(together())
    assert spy.calls == [(5, 20, 2)]
    assert [rows.tolist() for rows in found] == [index.search(row, 20).tolist() for row in q]


def test_one_call_per_count_and_a_lone_search_is_answered(index):
    spy, q = Spy(index), queries(4)
    searches = IndexSearches(spy, threads=2)

    async def mixed():
        return await asyncio.gather(searches.search(q[0], 10), searches.search(q[1], 30),
                                    searches.search(q[2], 10), searches.search(q[3], 30))

    found = asyncio.run(mixed())
    assert sorted(spy.calls) == [(2, 10, 2), (2, 30, 2)]
    assert [len(rows) for rows in found] == [10, 30, 10, 30]
    assert found[1].tolist() == index.search(q[1], 30).tolist()
    spy.calls.clear()
    assert asyncio.run(searches.search(q[0], 10)).tolist() == index.search(q[0], 10).tolist()
    assert spy.calls == [(1, 10, 2)]


def test_a_failed_search_fails_every_request_of_its_batch_and_the_next_batch_runs(index):
    spy, q = Spy(index, fail=True), queries(3)
    searches = IndexSearches(spy, threads=1)

    async def together():
        return await asyncio.gather(*(searches.search(row, 10) for row in q), return_exceptions=True)

    results = asyncio.run(together())
    assert [str(r) for r in results] == ["index gone"] * 3
    spy.fail = False
    assert len(asyncio.run(searches.search(q[0], 10))) == 10


def test_a_cancelled_request_is_left_out_of_the_batch(index):
    spy, q = Spy(index), queries(3)
    searches = IndexSearches(spy, threads=1)

    async def one_cancelled():
        tasks = [asyncio.create_task(searches.search(row, 10)) for row in q]
        await asyncio.sleep(0)    # each task has queued its query; the run is scheduled after them
        tasks[1].cancel()
        await asyncio.sleep(0)    # the cancellation lands before the run
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(one_cancelled())
    assert isinstance(results[1], asyncio.CancelledError)
    assert spy.calls == [(2, 10, 1)] and all(len(results[i]) == 10 for i in (0, 2))


def test_concurrent_recommend_requests_share_searches_and_answer_as_alone(make_client, models):
    """Through the app: requests served together get what each gets alone, from batched calls."""
    client = make_client(retrieval_min_items=0, index_expansion=200)
    model = client.app.state.registry.get("bert4rec")
    spy = Spy(model.index)
    model.searches.index = spy
    bodies = [{"model": "bert4rec", "user_id": f"u{u}", "k": 5 + u} for u in range(1, 9)]
    alone = [client.post("/recommend", json=body).json()["results"] for body in bodies]
    spy.calls.clear()

    async def together():
        transport = httpx.ASGITransport(app=client.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*(http.post("/recommend", json=body) for body in bodies))

    responses = asyncio.run(together())
    assert [r.json()["results"] for r in responses] == alone
    assert sum(n for n, _, _ in spy.calls) == len(bodies)
    assert max(n for n, _, _ in spy.calls) > 1, spy.calls
