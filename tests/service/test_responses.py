"""`ranking_json` must write exactly what orjson writes for the same response as plain dicts."""
import json
import random

import numpy as np
import orjson
import pytest

from service.catalog import Catalog
from service.responses import ranking_json


def as_dicts(model: str, version: str, ids: list[str], rows: list[int], scores: np.ndarray,
             unknown: list[str]) -> bytes:
    results = [{"item_id": ids[row], "score": score, "rank": rank}
               for rank, (row, score) in enumerate(zip(rows, scores), start=1)]
    return orjson.dumps({"model": model, "version": version, "results": results, "unknown": unknown},
                        option=orjson.OPT_SERIALIZE_NUMPY)


# ids that JSON must escape, and scores orjson writes in every form it has (exponents, integral, negative zero)
IDS = ["N1", 'quote"d', "back\\slash", "tab\there", "naïve ☕", "\u2028", "12", "new\nline"]
SCORES = [0.5, -1.25, 1e-30, -3.4e38, 1e16, 2.0, -0.0, 0.1 + 0.2, 123456.789]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # raw scores, probabilities
@pytest.mark.parametrize("n", [0, 1, 2, len(IDS)])
def test_ranking_json_equals_dict_encoding(n, dtype):
    catalog = Catalog.of(IDS, np.zeros((len(IDS), 2), dtype=np.float32))
    rows = list(range(1, n + 1))[::-1]
    scores = np.array(SCORES[:n], dtype=dtype)
    unknown = ["x,y", "ü"][: n % 3]
    body = ranking_json('m"1', "v/2", catalog.heads, rows, scores, unknown)
    assert body == as_dicts('m"1', "v/2", ["", *IDS], rows, scores, unknown)
    results = json.loads(body)["results"]
    assert [r["rank"] for r in results] == list(range(1, n + 1))
    assert [r["item_id"] for r in results] == [IDS[row - 1] for row in rows]
    assert np.array([r["score"] for r in results], dtype=dtype).tolist() == scores.tolist()  # read back exactly


def test_ranking_json_random_float32_scores_and_long_lists():
    rng = np.random.default_rng(0)
    ids = [f"item-{i}" for i in range(3000)]
    catalog = Catalog.of(ids, np.zeros((len(ids), 2), dtype=np.float32))
    for n in (7, 999, 1000, 1500):  # past the 1,000 rank tails made up front
        rows = random.Random(n).sample(range(1, len(ids) + 1), n)
        scores = (rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)).astype(np.float32)
        expected = as_dicts("m", "v", ["", *ids], rows, scores, [])
        body = ranking_json("m", "v", catalog.heads, rows, scores, [])
        assert body == expected
        assert np.array([r["score"] for r in json.loads(body)["results"]], dtype=np.float32).tolist() == scores.tolist()


def test_catalog_result_heads_follow_upserts():
    catalog = Catalog.of(["a", "b"], np.zeros((2, 2), dtype=np.float32))
    catalog.upsert(["b", 'c"', "d"], np.ones((3, 2), dtype=np.float32))
    ids = catalog.ids_of(range(1, catalog.size + 1))
    assert [catalog.heads[r] for r in range(1, 5)] == [b'{"item_id":' + orjson.dumps(i) + b',"score":' for i in ids]
    assert ids == ["a", "b", 'c"', "d"]


@pytest.mark.parametrize("fallback", [None, "popularity"])
def test_the_fallback_flag_is_written_last_and_only_when_given(fallback):
    catalog = Catalog.of(IDS, np.zeros((len(IDS), 2), dtype=np.float32))
    scores = np.array([1.0, 0.5])
    body = ranking_json("m", "v", catalog.heads, [3, 1], scores, ["x"], fallback)
    expected = as_dicts("m", "v", ["", *IDS], [3, 1], scores, ["x"])
    if fallback is not None:  # a model's answer is unchanged; a fallback answer adds the flag
        expected = expected[:-1] + b',"fallback":"popularity"}'
    assert body == expected
    assert json.loads(body).get("fallback") == fallback


def test_unknown_history_is_written_after_the_fallback_flag_and_only_when_given():
    catalog = Catalog.of(IDS, np.zeros((len(IDS), 2), dtype=np.float32))
    scores = np.array([1.0, 0.5])
    expected = as_dicts("m", "v", ["", *IDS], [3, 1], scores, ["x"])[:-1]
    body = ranking_json("m", "v", catalog.heads, [3, 1], scores, ["x"], "popularity", unknown_history=["h", 'h"2'])
    assert body == expected + b',"fallback":"popularity","unknown_history":["h","h\\"2"]}'
    assert ranking_json("m", "v", catalog.heads, [3, 1], scores, ["x"], None, unknown_history=["h"]) == (
        expected + b',"unknown_history":["h"]}')
