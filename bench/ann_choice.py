"""Which approximate nearest-neighbour library serves `/recommend` on dot-product models (issue #21).

    # synthetic 1M x 65 catalog shaped like a trained recommender's (clusters + a skewed bias column)
    flock /tmp/recserve-heavy.lock python bench/ann_choice.py --data clustered --n 1000000 --workdir /tmp/ann
    # the hard case: i.i.d. Gaussian items and queries, no structure for a graph or a k-means to use
    flock /tmp/recserve-heavy.lock python bench/ann_choice.py --data uniform --n 1000000 --workdir /tmp/ann
    # a real bundle's item vectors (row 0 = padding); queries from a file, or sums of random item vectors
    python bench/ann_choice.py --vectors BUNDLE/item_vectors.npy [--queries Q.npy] --workdir /tmp/ann-ml100k

Libraries (`--libs`): usearch (HNSW, metric "ip", f32 and f16 storage), hnswlib (HNSW, space "ip"), faiss
HNSW-flat IP and IVF-flat IP; usearch-l2 is usearch on the MIPS -> L2 reduction (a column
sqrt(max|x|^2 - |x|^2) appended to each item, 0 to the query: L2 order = inner-product order). Each index is built once over rows 1..N (keys = row numbers) and saved in
`--workdir`; a second run reuses the file and its recorded build time (`--rebuild` to redo). Each saved
index is then measured in a fresh subprocess: load time, whether it was memory-mapped (view) rather than
read into memory, resident memory added by the load and after the queries, single-threaded query latency
p50/p99 at k=10, 100 and 500, and recall@10 against the exact top-10 (a numpy scan) at several search-effort
settings. `--thread-n` (default 100,000) also times a 1-thread and a 2-thread build on the first rows.
Prints markdown tables.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HNSW_M = 16           # graph degree (usearch "connectivity", hnswlib/faiss "M")
HNSW_EF_BUILD = 128   # construction beam (usearch "expansion_add", hnswlib "ef_construction", faiss efConstruction)
IVF_LISTS = 1024      # faiss IVF: k-means lists at 1M (scaled as 4 * sqrt(N) below that)
HNSW_EFFORTS = (16, 32, 64, 128, 256)
IVF_EFFORTS = (4, 8, 16, 32, 64)


# ---------------------------------------------------------------------------------------------- data

def clustered(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Item vectors [n+1, dim+1] (row 0 zero padding) and queries [q, dim+1] like a trained recommender's.

    Items: a mixture of Gaussians around 1,000 centres of unequal size (Zipf-weighted), the last column a
    bias drawn skewed (log of a Zipf popularity, so a few items carry a large bias). Queries: near one centre
    or between two (a user with two tastes), last column 1, as BERT4Rec's [hidden, 1]."""
    rng = np.random.default_rng(seed)
    n_centres = 1000
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32)
    weights = 1.0 / np.arange(1, n_centres + 1) ** 0.7
    assign = rng.choice(n_centres, size=n, p=weights / weights.sum())
    emb = centres[assign] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    popularity = rng.zipf(1.3, size=n).astype(np.float64)
    bias = np.log(np.minimum(popularity, 1e6)).astype(np.float32)
    bias = (bias - bias.mean()) / (bias.std() + 1e-9)
    items = np.zeros((n + 1, dim + 1), np.float32)
    items[1:, :dim] = emb * (1.0 / np.sqrt(dim))
    items[1:, dim] = bias
    return items, _clustered_queries(centres, 1000, dim, rng)


def _clustered_queries(centres, q, dim, rng):
    a = centres[rng.integers(0, len(centres), q)]
    b = centres[rng.integers(0, len(centres), q)]
    mix = rng.uniform(0.5, 1.0, (q, 1)).astype(np.float32)
    u = mix * a + (1 - mix) * b + 0.5 * rng.standard_normal((q, dim)).astype(np.float32)
    return np.concatenate([u * (3.0 / np.sqrt(dim)), np.ones((q, 1), np.float32)], axis=1).astype(np.float32)


def uniform(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    items = np.zeros((n + 1, dim + 1), np.float32)
    items[1:] = rng.standard_normal((n, dim + 1), dtype=np.float32)
    return items, rng.standard_normal((1000, dim + 1), dtype=np.float32)


def queries_from_items(items: np.ndarray, q: int, seed: int) -> np.ndarray:
    """A user-like query per row: the sum of 5 random item vectors (a short history, mean-pooled)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, len(items), (q, 5))
    return np.asarray(items[rows].sum(axis=1), np.float32)


def exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows by inner product (row 0 excluded), best first."""
    out = np.empty((len(queries), k), np.int64)
    for s in range(0, len(queries), 64):
        scores = queries[s:s + 64] @ items.T
        scores[:, 0] = -np.inf
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        out[s:s + 64] = np.take_along_axis(part, order, axis=1)
    return out


# ---------------------------------------------------------------------------------------------- libraries

def build(lib: str, items: np.ndarray, path: Path, threads: int) -> None:
    data = np.ascontiguousarray(items[1:], dtype=np.float32)
    n, dim = data.shape
    keys = np.arange(1, n + 1, dtype=np.int64)
    if lib.startswith("usearch"):
        from usearch.index import Index
        metric = "ip"
        if lib == "usearch-l2":   # MIPS -> nearest neighbour: append sqrt(max|x|^2 - |x|^2), query gets 0
            sq = np.einsum("ij,ij->i", data, data)
            data = np.concatenate([data, np.sqrt(np.maximum(sq.max() - sq, 0))[:, None]], axis=1)
            data, dim, metric = data.astype(np.float32), dim + 1, "l2sq"
        index = Index(ndim=dim, metric=metric, dtype="f16" if lib == "usearch-f16" else "f32",
                      connectivity=HNSW_M, expansion_add=HNSW_EF_BUILD)
        index.add(keys.astype(np.uint64), data, threads=threads)
        index.save(str(path))
    elif lib == "hnswlib":
        import hnswlib
        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(max_elements=n, M=HNSW_M, ef_construction=HNSW_EF_BUILD, random_seed=0)
        index.set_num_threads(threads or os.cpu_count())
        index.add_items(data, keys)
        index.save_index(str(path))
    elif lib.startswith("faiss"):
        import faiss
        faiss.omp_set_num_threads(threads or os.cpu_count())
        if lib == "faiss-hnsw":
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_BUILD
            index.add(data)   # ids 0..n-1 = row - 1
        else:
            nlist = min(IVF_LISTS, max(16, int(4 * np.sqrt(n))))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            index.train(data[rng.choice(n, min(n, 64 * nlist), replace=False)])
            index.add(data)
        faiss.write_index(index, str(path))
    else:
        raise ValueError(lib)


class Loaded:
    def __init__(self, lib: str, path: Path, dim: int):
        self.lib = lib
        self.mapped = False
        if lib.startswith("usearch"):
            from usearch.index import Index
            self.index = Index.restore(str(path), view=True)
            self.mapped = True
        elif lib == "hnswlib":
            import hnswlib
            self.index = hnswlib.Index(space="ip", dim=dim)
            self.index.load_index(str(path))
            self.index.set_num_threads(1)
        else:
            import faiss
            faiss.omp_set_num_threads(1)
            try:
                self.index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
                self.mapped = True
            except RuntimeError:
                self.index = faiss.read_index(str(path))

    def set_effort(self, effort: int) -> None:
        if self.lib.startswith("usearch"):
            self.index.expansion_search = effort
        elif self.lib == "hnswlib":
            self._ef = effort
        elif self.lib == "faiss-hnsw":
            self.index.hnsw.efSearch = effort
        else:
            self.index.nprobe = effort

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        if self.lib.startswith("usearch"):
            if self.lib == "usearch-l2":
                q = np.append(q, np.float32(0))
            m = self.index.search(q, k, threads=1)
            return m.keys[:len(m)].astype(np.int64)
        if self.lib == "hnswlib":
            self.index.set_ef(max(self._ef, k))
            labels, _ = self.index.knn_query(q[None, :], k=k)
            return labels[0].astype(np.int64)
        if self.lib == "faiss-hnsw":
            efs = self.index.hnsw.efSearch
            self.index.hnsw.efSearch = max(efs, k)
            _, ids = self.index.search(q[None, :], k)
            self.index.hnsw.efSearch = efs
        else:
            _, ids = self.index.search(q[None, :], k)
        ids = ids[0]
        return ids[ids >= 0].astype(np.int64) + 1


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory (VmRSS), or its private part (RssAnon: what each further worker adds; file pages
    of a memory-mapped index are shared through the page cache)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def probe(args, tag: str = "") -> None:
    """In a fresh process: load one index, measure memory, latency and recall; print one JSON line."""
    work = Path(args.workdir)
    queries = np.load(work / "queries.npy")
    truth = np.load(work / "truth10.npy")
    lib = args.probe
    import_first = {"usearch": "usearch.index", "hnswlib": "hnswlib", "faiss": "faiss"}
    __import__(import_first[lib.split("-")[0]])
    base, base_anon = rss_mb(), rss_mb("RssAnon")
    t0 = time.perf_counter()
    idx = Loaded(lib, work / f"{lib}{tag}.index", queries.shape[1])
    load_s = time.perf_counter() - t0
    rss_load = rss_mb() - base
    efforts = IVF_EFFORTS if lib == "faiss-ivf" else HNSW_EFFORTS
    recall, effort_lat = {}, {}
    for e in efforts:
        idx.set_effort(e)
        hits, times = [], []
        for q, t in zip(queries, truth):
            t0 = time.perf_counter()
            got = idx.search(q, 10)
            times.append((time.perf_counter() - t0) * 1e3)
            hits.append(len(np.intersect1d(got, t)))
        recall[e] = float(np.mean(hits)) / 10
        effort_lat[e] = (float(np.percentile(times, 50)), float(np.percentile(times, 99)))
    effort = args.effort or (32 if lib == "faiss-ivf" else 128)
    idx.set_effort(effort)
    lat = {}
    for k in (10, 100, 500):
        for q in queries[:50]:
            idx.search(q, k)   # warm
        times = []
        for q in queries[:500]:
            t = time.perf_counter()
            idx.search(q, k)
            times.append((time.perf_counter() - t) * 1e3)
        lat[k] = (float(np.percentile(times, 50)), float(np.percentile(times, 99)))
    print(json.dumps({"lib": lib + tag, "load_s": load_s, "mapped": idx.mapped, "rss_load_mb": rss_load,
                      "rss_after_mb": rss_mb() - base,
                      "anon_after_mb": rss_mb("RssAnon") - base_anon, "recall": recall, "effort_lat": effort_lat, "effort": effort, "lat": lat}))


# ---------------------------------------------------------------------------------------------- driver

def main() -> None:
    global HNSW_M, HNSW_EF_BUILD
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=["clustered", "uniform"], default="clustered")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64, help="embedding width (a bias column is added)")
    p.add_argument("--vectors", help="a bundle's item_vectors.npy (row 0 padding) instead of synthetic data")
    p.add_argument("--queries", help="query vectors .npy [Q, D]; default: sums of 5 random item vectors")
    p.add_argument("--libs", default="usearch,usearch-f16,usearch-l2,hnswlib,faiss-hnsw,faiss-ivf")
    p.add_argument("--workdir", required=True)
    p.add_argument("--threads", type=int, default=2, help="build threads for the measured index")
    p.add_argument("--thread-n", type=int, default=100_000, help="rows for the 1- vs 2-thread build timing (0: skip)")
    p.add_argument("--effort", type=int, default=0, help="search effort for the latency rows (0: per-library default)")
    p.add_argument("--m", type=int, default=HNSW_M, help="HNSW graph degree (connectivity)")
    p.add_argument("--ef-build", type=int, default=HNSW_EF_BUILD, help="HNSW construction beam")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe", help=argparse.SUPPRESS)
    args = p.parse_args()
    HNSW_M, HNSW_EF_BUILD = args.m, args.ef_build
    tag = "" if (args.m, args.ef_build) == (16, 128) else f".m{args.m}-ef{args.ef_build}"
    if args.probe:
        return probe(args, tag)

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.vectors:
        items = np.load(args.vectors, mmap_mode="r")
        queries = np.load(args.queries).astype(np.float32) if args.queries else queries_from_items(items, 1000, args.seed)
        name = Path(args.vectors).resolve().parent.name
    else:
        items_path = work / "items.npy"
        if items_path.exists() and not args.rebuild:
            items = np.load(items_path, mmap_mode="r")
            queries = np.load(work / "queries.npy")
        else:
            items, queries = (clustered if args.data == "clustered" else uniform)(args.n, args.dim, args.seed)
            np.save(items_path, items)
        name = f"{args.data} {len(items) - 1:,} x {items.shape[1]}"
    items = np.ascontiguousarray(items, dtype=np.float32)
    np.save(work / "queries.npy", queries)
    truth_path = work / "truth10.npy"
    if args.vectors or args.rebuild or not truth_path.exists():
        t = time.perf_counter()
        np.save(truth_path, exact_top(items, queries, 10))
        print(f"exact numpy scan {(time.perf_counter() - t) * 1e3 / len(queries):.1f} ms/query (batched 64)",
              file=sys.stderr, flush=True)
    print(f"## {name}: {len(queries)} queries\n", flush=True)

    rows = []
    for lib in args.libs.split(","):
        path, meta = work / f"{lib}{tag}.index", work / f"{lib}{tag}.build.json"
        if args.rebuild or not path.exists() or not meta.exists():
            t = time.perf_counter()
            build(lib, items, path, args.threads)
            meta.write_text(json.dumps({"build_s": time.perf_counter() - t, "threads": args.threads}))
            print(f"built {lib} in {json.loads(meta.read_text())['build_s']:.1f} s", file=sys.stderr, flush=True)
        built = json.loads(meta.read_text())
        scaling = {}
        if args.thread_n and args.thread_n < len(items):
            sub = items[:args.thread_n + 1]
            for th in (1, 2):
                t = time.perf_counter()
                build(lib, sub, work / f"{lib}.sub.index", th)
                scaling[th] = time.perf_counter() - t
            (work / f"{lib}.sub.index").unlink()
        out = subprocess.run([sys.executable, __file__, "--probe", lib, "--workdir", str(work),
                              "--effort", str(args.effort), "--m", str(args.m), "--ef-build", str(args.ef_build)], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{lib}: probe failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r.update(build_s=built["build_s"], threads=built["threads"], size_mb=path.stat().st_size / 2**20,
                 scaling=scaling)
        rows.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)

    tn = f"{args.thread_n // 1000}k" if args.thread_n else ""
    print(f"| library | build {len(items) - 1:,} ({args.threads} thr) | build {tn} 1 thr / 2 thr | file MB | "
          "load s | mmap view | RSS after load / after queries MB (private) | effort | k=10 p50/p99 ms | k=100 p50/p99 | "
          "k=500 p50/p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sc = r["scaling"]
        sc_txt = f"{sc['1']:.1f} / {sc['2']:.1f} s" if sc and "1" in sc else (
            f"{sc[1]:.1f} / {sc[2]:.1f} s" if sc else "-")
        lat = {int(k): v for k, v in r["lat"].items()}
        print(f"| {r['lib']} | {r['build_s']:.1f} s | {sc_txt} | {r['size_mb']:.0f} | {r['load_s']:.2f} | "
              f"{'yes' if r['mapped'] else 'no'} | {r['rss_load_mb']:.0f} / {r['rss_after_mb']:.0f} ({r['anon_after_mb']:.0f}) | {r['effort']} | "
              + " | ".join(f"{lat[k][0]:.2f} / {lat[k][1]:.2f}" for k in (10, 100, 500)) + " |")
    print("\nrecall@10 against the exact top-10 (k=10 p50 / p99 ms), by search effort (HNSW: ef / expansion_search; IVF: nprobe):\n")
    print("| library | " + " | ".join(f"effort {i + 1}" for i in range(5)) + " |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['lib']} | " + " | ".join(
            f"{e}: {v:.3f} ({r['effort_lat'][e][0]:.2f} / {r['effort_lat'][e][1]:.2f} ms)"
            for e, v in r["recall"].items()) + " |")


if __name__ == "__main__":
    main()
