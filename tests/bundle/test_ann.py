"""bundle/ann.py: the item index for /recommend's inner-product top-k (issue #21)."""
import threading

import numpy as np
import pytest

from bundle.ann import INDEX_FILE, build_index, load_index

N, D = 2000, 16


def exact_top(vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ q
    scores[0] = -np.inf
    return np.argsort(-scores, kind="stable")[:k]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """2,000 x 16 vectors like a trained model's: clustered, all-positive bias column (the case where a
    graph on the raw inner product leaves items unreachable), row 0 padding."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, D - 1)).astype(np.float32)
    vectors = np.zeros((N + 1, D), np.float32)
    vectors[1:, :-1] = centres[rng.integers(0, 20, N)] + 0.5 * rng.standard_normal((N, D - 1))
    vectors[1:, -1] = rng.exponential(1.0, N)
    path = tmp_path_factory.mktemp("ann") / INDEX_FILE
    info = build_index(vectors, path, threads=1, dtype="f32")  # f32: its order is the exact one, compared below
    queries = np.concatenate([rng.standard_normal((50, D - 1)), np.ones((50, 1))], axis=1).astype(np.float32)
    return vectors, path, info, queries


def test_manifest_entry_describes_the_file(catalog):
    vectors, path, info, _ = catalog
    assert info["n"] == N and info["dim"] == D and info["file"] == INDEX_FILE
    assert info["library"] == "usearch" and info["metric"] == "inner_product"
    assert info["bytes"] == path.stat().st_size
    import json
    json.dumps(info)   # goes into the manifest


def test_full_recall_settings_equal_the_exact_top_k(catalog):
    vectors, path, info, queries = catalog
    index = load_index(path, info, expansion=N)
    for q in queries:
        for k in (1, 10, 100):
            assert index.search(q, k).tolist() == exact_top(vectors, q, k).tolist()
        assert index.search(q, 10, exact=True).tolist() == exact_top(vectors, q, 10).tolist()


def test_every_item_is_reachable_and_row_0_never_returned(catalog):
    vectors, path, info, queries = catalog
    index = load_index(path, info, expansion=N)
    rows = index.search(queries[0], N + 50)     # more than the catalog: all of it, once each
    assert rows.dtype == np.int64 and sorted(rows.tolist()) == list(range(1, N + 1))
    assert index.search(queries[0], 0).size == 0


def test_default_effort_recall(catalog):
    vectors, path, info, queries = catalog
    index = load_index(path, info)
    assert index.expansion == info["expansion_search"]
    hits = [len(set(index.search(q, 10).tolist()) & set(exact_top(vectors, q, 10).tolist())) for q in queries]
    assert np.mean(hits) / 10 >= 0.95


def test_concurrent_searches_agree_with_sequential(catalog):
    vectors, path, info, queries = catalog
    index = load_index(path, info)
    expected = [index.search(q, 20).tolist() for q in queries]
    got = {}

    def work(t):
        got[t] = [index.search(q, 20).tolist() for q in queries for _ in range(5)][::5]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(g == expected for g in got.values())


def test_single_thread_build_is_deterministic(catalog, tmp_path):
    vectors, path, info, _ = catalog
    build_index(vectors, tmp_path / INDEX_FILE, threads=1, dtype="f32")
    assert (tmp_path / INDEX_FILE).read_bytes() == path.read_bytes()


def test_a_small_catalog_builds_the_same_index_whatever_threads_were_asked(catalog, tmp_path):
    vectors, path, _, _ = catalog
    info = build_index(vectors, tmp_path / INDEX_FILE, threads=0, dtype="f32")
    assert info["build_threads"] == 1 and (tmp_path / INDEX_FILE).read_bytes() == path.read_bytes()


def test_missing_truncated_corrupt_or_mismatched_files_are_refused(catalog, tmp_path):
    vectors, path, info, _ = catalog
    with pytest.raises(ValueError, match="missing"):
        load_index(tmp_path / INDEX_FILE, info)
    data = path.read_bytes()
    cut = tmp_path / "cut.usearch"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.usearch"):
        load_index(cut, info)
    with pytest.raises(ValueError, match="cut.usearch.*corrupt"):
        load_index(cut, {k: v for k, v in info.items() if k != "bytes"})   # caught without the size too
    junk = tmp_path / "junk.usearch"
    junk.write_bytes(np.random.default_rng(1).bytes(len(data)))
    with pytest.raises(ValueError, match="junk.usearch"):
        load_index(junk, info)
    with pytest.raises(ValueError, match="dimensions"):
        load_index(path, {**info, "dim": D + 1})
    with pytest.raises(ValueError, match="items"):
        load_index(path, {**info, "n": N - 1})
    index = load_index(path, info)
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(D + 1, np.float32), 10)


def test_bad_vectors_are_refused(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        build_index(np.zeros((1, 4), np.float32), tmp_path / INDEX_FILE)
    bad = np.ones((5, 4), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_index(bad, tmp_path / INDEX_FILE)


def test_ip_space_round_trip(catalog, tmp_path):
    vectors, _, _, queries = catalog
    info = build_index(vectors, tmp_path / INDEX_FILE, threads=1, space="ip")
    assert info["space"] == "ip"
    index = load_index(tmp_path / INDEX_FILE, info, expansion=N)
    for q in queries[:10]:
        assert index.search(q, 10, exact=True).tolist() == exact_top(vectors, q, 10).tolist()
    with pytest.raises(ValueError, match="space"):
        load_index(tmp_path / INDEX_FILE, {**info, "space": "l2-reduction"})


def test_exact_top_in_blocks_equals_one_full_sort(catalog):
    from bundle.ann import exact_top as blocked_top

    vectors, _, _, queries = catalog
    got = blocked_top(vectors, queries, 10, block=97)  # blocks that split the catalog unevenly
    assert np.array_equal(got, np.stack([exact_top(vectors.copy(), q, 10) for q in queries]))


@pytest.fixture(scope="module")
def weak_index(tmp_path_factory):
    """A sparse graph over isotropic vectors: the case where the search effort decides the recall."""
    rng = np.random.default_rng(1)
    vectors = np.zeros((8001, 24), np.float32)
    vectors[1:] = rng.standard_normal((8000, 24))
    path = tmp_path_factory.mktemp("weak") / INDEX_FILE
    info = build_index(vectors, path, threads=1, connectivity=3, expansion_add=8)
    return vectors, load_index(path, info), rng.standard_normal((60, 24)).astype(np.float32)


def test_calibration_takes_the_cheapest_effort_that_meets_the_target(weak_index):
    from bundle.ann import EXPANSIONS, calibrate, exact_top as blocked_top, recall_at

    vectors, index, queries = weak_index
    truth = blocked_top(vectors, queries, 10)
    by_effort = {}
    for expansion in EXPANSIONS:
        index.expansion = expansion
        by_effort[expansion] = recall_at(index, vectors, queries, truth)
    assert by_effort[EXPANSIONS[0]] < by_effort[EXPANSIONS[-1]]  # the effort matters here
    target = (by_effort[EXPANSIONS[0]] + by_effort[EXPANSIONS[-1]]) / 2
    cheapest = next(e for e in EXPANSIONS if by_effort[e] >= target)
    found = calibrate(index, vectors, queries, target=target)
    assert found == {"expansion_search": cheapest, "recall_at_10": round(by_effort[cheapest], 4),
                     "recall_target": target, "recall_users": 60}
    assert index.expansion == cheapest and cheapest > EXPANSIONS[0]


def test_calibration_that_cannot_meet_the_target_says_so_at_the_largest_effort(weak_index):
    from bundle.ann import EXPANSIONS, calibrate

    vectors, index, queries = weak_index
    found = calibrate(index, vectors, queries, target=1.01)
    assert found["expansion_search"] == EXPANSIONS[-1] and found["recall_at_10"] < 1.01


def test_a_process_that_builds_an_index_first_can_still_load_onnxruntime(tmp_path):
    """Loading usearch's library before onnxruntime's crashes the process at `import onnxruntime`; the
    index module loads onnxruntime first."""
    import subprocess
    import sys

    script = ("import numpy as np; from pathlib import Path; from bundle.ann import build_index; "
              f"build_index(np.ones((3, 4), np.float32), Path({str(tmp_path / INDEX_FILE)!r}), threads=1); "
              "import onnxruntime; print('loaded')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "loaded", (done.returncode, done.stderr[-500:])


def test_half_precision_storage_finds_the_exact_top_k_once_re_scored(catalog, tmp_path):
    """f16 orders the candidates only about right; re-scored from the f32 vectors as /recommend does, a
    full-effort search gives the exact top 10 here. Vectors past f16's range are stored in f32."""
    from bundle.ann import exact_top as blocked_top, recall_at

    vectors, _, _, queries = catalog
    info = build_index(vectors, tmp_path / INDEX_FILE, threads=1, dtype="f16")
    assert info["dtype"] == "f16" and info["bytes"] < catalog[2]["bytes"]
    index = load_index(tmp_path / INDEX_FILE, info, expansion=N)
    assert recall_at(index, vectors, queries, blocked_top(vectors, queries, 10)) == 1.0
    assert build_index(vectors * 1e5, tmp_path / "big.usearch", threads=1, dtype="f16")["dtype"] == "f32"


def test_head_rows_are_the_largest_vectors_largest_first():
    from bundle.ann import head_rows

    vectors = np.zeros((8, 2), np.float32)
    vectors[1:] = [[1, 0], [0, 3], [2, 0], [0, -3], [5, 0], [0, 1], [4, 0]]
    assert head_rows(vectors, 4).tolist() == [5, 7, 2, 4]    # norms 5, 4, 3, 3 (a tie: the lower row first)
    assert head_rows(vectors, 100).tolist() == [5, 7, 2, 4, 3, 1, 6]
    assert head_rows(vectors, 0).size == 0


def test_the_head_is_a_share_of_the_catalog_and_listed_in_the_manifest_entry(catalog, tmp_path):
    from bundle.ann import HEAD_SHARE, head_rows

    vectors, _, info, _ = catalog
    assert info["head"] == head_rows(vectors, N // HEAD_SHARE).tolist() and len(info["head"]) == N // HEAD_SHARE
    assert build_index(vectors, tmp_path / INDEX_FILE, threads=1, head=0)["head"] == []


def skewed(n: int = 3000, d: int = 12, heads: int = 40, seed: int = 3):
    """Vectors where a few items (rows 1..heads) are ten times longer than the rest: every query's top 10
    are among them, as popular items with long embeddings dominate an inner-product top k."""
    rng = np.random.default_rng(seed)
    vectors = np.zeros((n + 1, d), np.float32)
    vectors[1:] = rng.standard_normal((n, d))
    vectors[1:heads + 1] *= 10
    return vectors, rng.standard_normal((50, d)).astype(np.float32)


def test_the_head_finds_the_long_vectors_the_graph_search_misses(tmp_path):
    """At the smallest effort the graph alone misses some of the top 10 (the long vectors sit at the edge of
    the reduced space); with them in the head, the search returns the exact top 10 every time."""
    vectors, queries = skewed()
    truth = np.stack([exact_top(vectors, q, 10) for q in queries])
    found = {}
    for head in (0, 40):
        path = tmp_path / f"head{head}.usearch"
        # f32: its scores order the merged rows exactly, compared below
        index = load_index(path, build_index(vectors, path, threads=1, head=head, dtype="f32"), expansion=1)
        found[head] = [index.search(q, 10) for q in queries]
        assert all(len(rows) == 10 == len(set(rows.tolist())) for rows in found[head])
    hits = {h: np.mean([len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found[h], truth)]) for h in found}
    assert hits[0] < 10 and hits[40] == 10
    assert all(f.tolist() == t.tolist() for f, t in zip(found[40], truth))   # best first, merged by score


def test_a_manifest_head_outside_the_catalog_is_refused(catalog):
    vectors, path, info, _ = catalog
    for head in ([0], [N + 1], [3, 3], ["7"], 7):
        with pytest.raises(ValueError, match="head must list distinct item rows"):
            load_index(path, {**info, "head": head})
    assert len(load_index(path, {k: v for k, v in info.items() if k != "head"}).head) == 0  # older bundles
