"""The approximate nearest-neighbour index over a bundle's item vectors, for `/recommend` on dot-product models.

Torch-free: the exporter builds the index (`build_index`), the service loads it (`load_index`). The choice of
library and of the defaults below is measured in `bench/ann_choice.py` (docs/benchmarks.md, section 6.1).

Scores are inner products `item_vector . user_vector` over vectors that are not normalised (BERT4Rec's item
vectors end in a bias, its user vectors in a 1). A graph built directly on the inner product leaves items
that no other item links to, so some items can never be returned whatever the search effort (measured: 1,302
of 2,000 random all-positive 16-d vectors unreachable). The index therefore uses by default (`space="l2-reduction"`)
the standard reduction of maximum
inner product search to nearest-neighbour search: each item vector x gets one more coordinate
sqrt(R - |x|^2), R = max |x|^2 over the catalog, the query gets 0, and the squared L2 distance
|q|^2 + R - 2 q.x orders items exactly as -q.x does. The graph is then an ordinary L2 graph in which every
item is reachable.

Library: usearch (HNSW). The saved file is memory-mapped read-only at load (`Index.restore(view=True)`): load
is instant whatever the catalog size and every worker process on a machine shares the same page-cache
pages. The file must stay in place while the index is in use, and a viewed index cannot take new items
(items added while serving are scanned exactly by the caller).

Keys are the bundle's item row numbers 1..N; row 0 (padding) is never indexed, so never returned.

The head: the items of largest norm (up to HEAD_MAX, 1/HEAD_SHARE of the catalog), listed in the manifest
entry and scanned exactly beside every graph search, the two merged by inner product. Inner-product top-k
lists are dominated by the largest vectors (a popular item's long embedding, a large output bias), and those
sit at the edge of the reduced space, where a graph search reaches them last: on the 1M bench catalog the
400 users' exact top 10s held only 193 distinct items, 90% of the graph's misses were among the 4,000
largest vectors, and merging the 2,000 largest raised recall@10 at effort 96 from 0.885 to 0.985
(docs/benchmarks.md 6.6). The scan costs one [H, D] x [D, B] product per batch of queries.

Thread safety: `ItemIndex.search` may be called from several threads at once (usearch gives each concurrent
search its own context). Set `expansion` once, before serving; changing it during searches is not
synchronised.

Determinism: a build with `threads=1` inserts the rows in order and gives the same graph every time; with
more threads the graph (and so the approximate results, never the exact ones) depends on scheduling.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

INDEX_FILE = "item_index.usearch"
LIBRARY = "usearch"
METRIC = "inner_product"    # what the index ranks by (through the L2 reduction above)

# Defaults, chosen in bench/ann_choice.py on a clustered 1M x 65 catalog (docs/benchmarks.md, section 6.1).
CONNECTIVITY = 16           # graph degree (HNSW M)
EXPANSION_ADD = 128         # construction beam width (HNSW ef_construction)
EXPANSION_SEARCH = 128      # search beam width (HNSW ef); a search for count > expansion uses count
# Stored scalar type: half the bytes a search reads per vector. At 1M items on the bench catalog's users, f16
# finds the same share of the exact top 10 as f32 at every effort (0.985 against 0.987 at 96) with searches
# ~0.88x as long (docs/benchmarks.md 6.6), and the file is 0.7x the size. The index only finds candidates:
# /recommend re-scores them from the float32 vectors. (f16 was put back once, on a CI failure that came from
# multi-threaded builds of tiny catalogs, SINGLE_THREAD_BELOW, not from f16.)
DTYPE = "f16"
F16_MAX = 65504.0           # beyond it f16 holds infinity: such a catalog is indexed in f32 whatever was asked
SPACE = "l2-reduction"      # "l2-reduction" (above) or "ip": a graph on the raw inner product (see below)
SPACES = ("l2-reduction", "ip")
# "ip" finds more of the exact top-10 on isotropic (uniform random) vectors, where the reduction flattens the
# space (bench, expansion 128, Gaussian items: 0.72 against 0.25 at 100k, 0.90 against 0.56 at 20k), but
# may leave items unreachable; on clustered, recommender-like vectors the two are about equal or the
# reduction is ahead (docs/benchmarks.md, section 6.1).


# The recall@10 that export-time calibration (`calibrate`) aims at on the bundle's own users: above the 0.95
# promised (docs/deploy.md, "Large catalogs"), with room for a sample of a few hundred users' error.
TARGET_RECALL = 0.96
# The search efforts calibration tries, cheapest first. The floor (64) keeps a small catalog's searches
# exhaustive in practice whatever its users; 1024 is about 4x the cost of 128 (log-like growth past it). Steps
# of a sixth or so up to 192: recall climbs in cliffs whose place varies from build to build (1M bench
# builds needed 96 and 128), and a search's cost grows with the effort.
EXPANSIONS = (64, 80, 96, 112, 128, 160, 192, 256, 384, 512, 768, 1024)


def _usearch():
    """usearch's module and Index class, with onnxruntime loaded first: a process that loads usearch's library
    before onnxruntime's crashes (SIGSEGV) when it then imports onnxruntime (usearch 2.26, onnxruntime 1.31;
    the other order works), and every process that searches or builds an index also runs graphs."""
    import onnxruntime  # noqa: F401
    import usearch
    from usearch.index import Index

    return usearch, Index


def _squared_norms(data: np.ndarray) -> np.ndarray:
    """|row|^2 of each row, in float64, computed in chunks (no float64 copy of the whole matrix)."""
    sq = np.empty(len(data), np.float64)
    for s in range(0, len(data), 65536):
        chunk = np.asarray(data[s:s + 65536], dtype=np.float64)
        sq[s:s + 65536] = np.einsum("ij,ij->i", chunk, chunk)
    return sq


def _reduced(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """Rows 1..N of `vectors` with the MIPS -> L2 column appended, and R = the largest squared norm."""
    data = np.asarray(vectors[1:], dtype=np.float32)
    sq = _squared_norms(data)
    r = float(sq.max()) if len(sq) else 0.0
    out = np.empty((data.shape[0], data.shape[1] + 1), np.float32)
    out[:, :-1] = data
    out[:, -1] = np.sqrt(np.maximum(r - sq, 0.0))
    return out, r


# The head (see the module's docstring): the catalog's 1/HEAD_SHARE largest vectors, at most HEAD_MAX. A share,
# so that a small catalog's index is not all head (its graph would then never matter); a cap, as the scan's
# cost grows with it.
HEAD_SHARE = 64
HEAD_MAX = 2048


def head_rows(vectors: np.ndarray, size: int) -> np.ndarray:
    """Rows 1..N of `vectors` with the `size` largest norms, largest first (ties: the lower row), int64."""
    n = vectors.shape[0] - 1
    size = min(int(size), n)
    if size <= 0:
        return np.empty(0, np.int64)
    sq = _squared_norms(vectors[1:])
    top = np.argpartition(-sq, size - 1)[:size] if size < n else np.arange(n)
    return (top[np.lexsort((top, -sq[top]))] + 1).astype(np.int64)


# Below this many items a build runs on one thread whatever was asked: threads buy nothing there (~10 ms),
# and a multi-threaded build's graph varies from run to run, at times leaving an item of a tiny catalog that
# no search reaches (seen: a 39-item export whose index found 0.94 of the exact top 10 at every effort).
SINGLE_THREAD_BELOW = 10_000


def build_index(vectors: np.ndarray, path: Path, threads: int = 0, *, connectivity: int = CONNECTIVITY,
                expansion_add: int = EXPANSION_ADD, expansion_search: int = EXPANSION_SEARCH,
                dtype: str = DTYPE, space: str = SPACE, head: int | None = None) -> dict:
    """Index rows 1..N of `vectors` ([N+1, D] float, row 0 = padding; keys = row numbers), save it to `path`,
    and return the manifest entry that `load_index` checks the file against. `threads`: 0 = all cores;
    1 = deterministic (always, below SINGLE_THREAD_BELOW items). `space`: "l2-reduction" (default) or "ip".
    `head`: how many of the largest vectors are scanned exactly beside each search (default: N / HEAD_SHARE,
    at most HEAD_MAX; 0: none)."""
    usearch, Index = _usearch()
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] < 2 or vectors.shape[1] < 1:
        raise ValueError(f"item vectors must be [N+1, D] with N >= 1 (row 0 padding), got shape {vectors.shape}")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise ValueError(f"item vectors must be floating point, got {vectors.dtype}")
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    n, dim = vectors.shape[0] - 1, vectors.shape[1]
    if n < SINGLE_THREAD_BELOW:
        threads = 1
    t0 = time.perf_counter()
    if space == "ip":
        data, r = np.ascontiguousarray(vectors[1:], dtype=np.float32), 0.0
    else:
        data, r = _reduced(vectors)
    if not np.isfinite(data).all():
        raise ValueError("item vectors contain NaN or infinity")
    if dtype == "f16" and float(np.abs(data).max(initial=0.0)) >= F16_MAX:
        dtype = "f32"
    index = Index(ndim=data.shape[1], metric="l2sq" if space == "l2-reduction" else "ip", dtype=dtype,
                  connectivity=connectivity,
                  expansion_add=expansion_add, expansion_search=expansion_search)
    index.add(np.arange(1, n + 1, dtype=np.uint64), data, threads=threads)
    path = Path(path)
    index.save(str(path))
    seconds = time.perf_counter() - t0
    size = min(n // HEAD_SHARE, HEAD_MAX) if head is None else head
    return {"file": path.name, "library": LIBRARY, "version": usearch.__version__, "metric": METRIC,
            "space": space, "dtype": dtype,
            "connectivity": connectivity, "expansion_add": expansion_add, "expansion_search": expansion_search,
            "n": n, "dim": dim, "max_sq_norm": r, "bytes": path.stat().st_size,
            "build_seconds": round(seconds, 3), "build_threads": threads,
            "head": head_rows(vectors, size).tolist()}


class ItemIndex:
    """A loaded (memory-mapped) index: `search(query, count)` -> item row numbers, best first."""

    def __init__(self, index, path: Path, n: int, dim: int, expansion: int, reduced: bool = True,
                 max_sq_norm: float = 0.0, head: np.ndarray | None = None):
        self._index = index
        self._reduced = reduced
        self._max_sq_norm = max_sq_norm
        self.path = path
        self.n = n
        self.dim = dim
        self.expansion = expansion
        # The head (module docstring): its rows and their vectors, as the index stores them (a private copy:
        # 2,048 x 65 float32 is 0.5 MB).
        self.head = np.empty(0, np.int64) if head is None else np.asarray(head, np.int64)
        stored = np.asarray(index.get(self.head.astype(np.uint64)), np.float32).reshape(len(self.head), -1) \
            if len(self.head) else np.zeros((0, dim + int(reduced)), np.float32)
        self._head_vectors = np.ascontiguousarray(stored[:, :dim])

    @property
    def expansion(self) -> int:
        """Search effort (HNSW ef): larger = better recall, slower. A search for `count` > expansion explores
        at least `count` candidates."""
        return int(self._index.expansion_search)

    @expansion.setter
    def expansion(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"expansion must be >= 1, got {value}")
        self._index.expansion_search = int(value)

    def _query(self, q: np.ndarray) -> np.ndarray:
        """Queries [B, dim] as the graph takes them: with the reduction's 0 column appended."""
        return np.concatenate([q, np.zeros((len(q), 1), np.float32)], axis=1) if self._reduced else q

    def _inner_products(self, q: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """`item . q` [B, C] from the graph's distances [B, C] to the queries q [B, D]: |q|^2 + R - 2 q.x in the
        reduced space, 1 - q.x for "ip"."""
        distances = np.asarray(distances, np.float64)
        if self._reduced:
            return (np.einsum("ij,ij->i", q, q)[:, None] + self._max_sq_norm - distances) / 2
        return 1.0 - distances

    def _answers(self, q: np.ndarray, keys: np.ndarray, distances: np.ndarray, found: np.ndarray,
                 count: int) -> list[np.ndarray]:
        """Each query's rows: the graph's (`keys` [B, C], the first `found` valid), merged with the head's best by
        inner product when there is a head; for a whole batch in a few array operations."""
        keys = np.asarray(keys, np.int64).reshape(len(q), -1)
        found = np.asarray(found, np.int64).reshape(-1)
        if not len(self.head):
            return [keys[i, :found[i]] for i in range(len(q))]
        valid = np.arange(keys.shape[1])[None, :] < found[:, None]
        keys = np.where(valid, keys, -1)
        scores = np.where(valid, self._inner_products(q, np.asarray(distances).reshape(keys.shape)), -np.inf)
        head_scores = (self._head_vectors @ q.T).T   # [H, D] x [D, B]: measured ~1.5x faster than q @ H.T
        take = min(count, len(self.head))
        best = np.argpartition(-head_scores, take - 1, axis=1)[:, :take] if take < len(self.head) \
            else np.broadcast_to(np.arange(take), (len(q), take))
        head_rows = self.head[best]
        # a head row the graph found too counts once (the graph's)
        repeated = (head_rows[:, :, None] == keys[:, None, :]).any(axis=2)
        head_scores = np.where(repeated, -np.inf, np.take_along_axis(head_scores, best, axis=1))
        rows = np.concatenate([keys, head_rows], axis=1)
        merged = np.concatenate([scores, head_scores], axis=1)
        order = np.argsort(-merged, axis=1, kind="stable")[:, :count]
        rows, merged = np.take_along_axis(rows, order, axis=1), np.take_along_axis(merged, order, axis=1)
        return [rows[i][np.isfinite(merged[i])] for i in range(len(q))]

    def search(self, query: np.ndarray, count: int, *, exact: bool = False) -> np.ndarray:
        """The `count` items (or all N if fewer) with the largest `item . query`, as int64 row numbers in
        1..N, best first, approximately: the graph's answer merged with the head's; `exact=True` scans every
        item instead (for tests and checks)."""
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if q.shape[1] != self.dim:
            raise ValueError(f"query has {q.shape[1]} dimensions, the index {self.dim}")
        count = min(int(count), self.n)
        if count <= 0:
            return np.empty(0, np.int64)
        matches = self._index.search(self._query(q)[0], count, threads=1, exact=exact)
        found = len(matches)
        if exact:
            return np.asarray(matches.keys[:found], dtype=np.int64)
        return self._answers(q, matches.keys[None, :found], matches.distances[None, :found], np.array([found]),
                             count)[0]

    def search_many(self, queries: np.ndarray, count: int, threads: int = 1) -> list[np.ndarray]:
        """`search` for each row of `queries` [B, D], as one call that usearch spreads over `threads` threads of
        its own: the way to search in parallel from Python, as usearch holds the GIL for the whole call."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be [B, {self.dim}], got shape {q.shape}")
        if len(q) == 1:  # usearch answers a one-row batch as a single search
            return [self.search(q[0], count)]
        count = min(int(count), self.n)
        if count <= 0 or not len(q):
            return [np.empty(0, np.int64) for _ in q]
        matches = self._index.search(self._query(q), count, threads=max(1, min(int(threads), len(q))))
        return self._answers(q, matches.keys, matches.distances, matches.counts, count)

    def __len__(self) -> int:
        return self.n


def fetch_count(want: int, excluded: int) -> int:
    """How many rows /recommend asks the index for, to keep `want` after `excluded` exclusions: room for some,
    not all, as most of a long history is far from the top (service/retrieval.py asks again for twice as
    many when too few survive), since a search for more costs more (HNSW explores at least that many)."""
    return want + min(excluded, want) + 10


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 16384) -> np.ndarray:
    """The rows (1..N) of the k largest `vectors[row] . query` for each query [Q, D]: int64 [Q, k], by one
    matrix product per block of rows (the vectors may be a memory map larger than RAM)."""
    q = np.asarray(queries, dtype=np.float32)
    rows, scores = np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
    for start in range(1, vectors.shape[0], block):
        part = np.asarray(vectors[start:start + block], dtype=np.float32) @ q.T      # [rows of block, Q]
        take = min(k, part.shape[0])
        top = np.argpartition(-part, take - 1, axis=0)[:take]
        rows = np.concatenate([rows, (top + start).T], axis=1)
        scores = np.concatenate([scores, np.take_along_axis(part, top, axis=0).T], axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        rows, scores = np.take_along_axis(rows, keep, axis=1), np.take_along_axis(scores, keep, axis=1)
    return rows


def recall_at(index: ItemIndex, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top k (`truth` [Q, k]) in the index's answer as /recommend uses it for
    a user with a history to exclude: its best `fetch_count(k, k)` rows, re-scored from `vectors`, the top k."""
    k, count, found = truth.shape[1], fetch_count(truth.shape[1], truth.shape[1]), 0
    for q, t in zip(queries, truth):
        rows = index.search(q, count)
        top = rows[np.argsort(-(np.asarray(vectors[rows], dtype=np.float32) @ q), kind="stable")[:k]]
        found += len(set(top.tolist()) & set(t.tolist()))
    return found / truth.size if truth.size else 1.0


def calibrate(index: ItemIndex, vectors: np.ndarray, queries: np.ndarray, k: int = 10,
              target: float = TARGET_RECALL) -> dict:
    """The smallest search effort of EXPANSIONS at which the index finds `target` of the exact top k of
    `queries` (user vectors of the bundle's own users), as the manifest's index entry records it: recall is
    a property of the catalog and of where its users point, not of the library alone (docs/benchmarks.md, 6).
    The largest effort when none reaches it. Leaves `index.expansion` at the chosen effort."""
    truth = exact_top(vectors, queries, k)
    for expansion in EXPANSIONS:
        index.expansion = expansion
        recall = recall_at(index, vectors, queries, truth)
        if recall >= target:
            break
    return {"expansion_search": expansion, f"recall_at_{k}": round(recall, 4), "recall_target": target,
            "recall_users": int(len(queries))}


def missed_target(info: dict) -> bool:
    """Whether the index of a manifest's `index` entry found less than its recall target of its users' exact top
    10 at calibration (an untrained or badly spread catalog): such an index is not served (service/model.py)."""
    return "recall_at_10" in info and info["recall_at_10"] < info.get("recall_target", TARGET_RECALL)


def exact_scan_cost(n_items: int, dim: int) -> str:
    """What an exact scan of the catalog costs a /recommend, in words: about 3 multiply-adds per ns on one core
    (a 100k x 64 catalog's scan and top 10 took 2.1 ms, docs/benchmarks.md)."""
    return f"an exact scan of {n_items:,} x {dim} per /recommend, about {max(n_items * dim / 3e6, 0.1):.1f} ms of CPU"


def load_index(path: Path, info: dict, expansion: int | None = None, opened=None) -> ItemIndex:
    """Memory-map the index saved by `build_index`, checked against its manifest entry `info` (n, dim, bytes).
    `expansion`: the search effort (default: the one recorded at build time, else EXPANSION_SEARCH).
    `opened`: the file already open (the descriptor the bundle's hash was checked through): on Linux it is
    mapped through /proc/self/fd, so a file put at `path` since is not the one searched.
    Raises ValueError naming the file when it is missing, truncated, not an index, or disagrees with `info`.
    (Contents altered at the same size are the bundle hash check's to catch.)"""
    _, Index = _usearch()
    path = Path(path)
    source = path
    if opened is not None and Path("/proc/self/fd").is_dir():
        source = Path(f"/proc/self/fd/{opened.fileno()}")
    if not source.is_file():
        raise ValueError(f"{path}: item index file is missing")
    size = source.stat().st_size
    if "bytes" in info and size != int(info["bytes"]):
        raise ValueError(f"{path}: item index is {size} bytes, the manifest says {info['bytes']} "
                         "(truncated or replaced?)")
    try:
        meta = Index.metadata(str(source))
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a readable usearch index ({exc})") from exc
    if meta is None:
        raise ValueError(f"{path}: not a readable usearch index")
    space = info.get("space", SPACE)
    if space not in SPACES:
        raise ValueError(f"{path}: unknown index space {space!r} in the manifest (expected one of {SPACES})")
    reduced = space == "l2-reduction"
    want = "L2sq" if reduced else "IP"
    if getattr(meta["kind_metric"], "name", "") != want:
        raise ValueError(f"{path}: item index uses metric {meta['kind_metric']}, "
                         f"the manifest's space {space!r} needs {want}")
    n, dim, extra = int(info["n"]), int(info["dim"]), int(reduced)
    if int(meta["dimensions"]) != dim + extra:
        raise ValueError(f"{path}: item index has {int(meta['dimensions']) - extra} dimensions, "
                         f"the manifest says {dim}")
    if int(meta["count_present"]) != n:
        raise ValueError(f"{path}: item index holds {meta['count_present']} items, the manifest says {n}")
    try:
        index = Index.restore(str(source), view=True)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: corrupt item index ({exc})") from exc
    if index is None or index.size != n or index.ndim != dim + extra:
        raise ValueError(f"{path}: corrupt item index")
    head = info.get("head", [])
    if (not isinstance(head, list) or not all(type(r) is int and 1 <= r <= n for r in head)
            or len(set(head)) != len(head)):
        raise ValueError(f"{path}: the manifest's index head must list distinct item rows in 1..{n}")
    return ItemIndex(index, path, n, dim, expansion or int(info.get("expansion_search", EXPANSION_SEARCH)), reduced,
                     float(info.get("max_sq_norm", 0.0)), np.asarray(head, np.int64))
