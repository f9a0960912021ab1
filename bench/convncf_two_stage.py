"""ConvNCF through two stages against the exact ranking (issue #21). A measurement, not a test.

    python bench/convncf_two_stage.py --bundle <artifacts>/convncf --data ../shared/data/ml-100k [--rerank 50 100 500]

A trained ConvNCF bundle (`recserve train --model convncf --data ../shared/data/ml-100k`) and the data it was
trained on. For every test user of the leave-one-out split (the bundle's metrics are on the same split), as the
service answers /recommend (the user's earlier items excluded):

  exact      the CNN scorer over the whole catalog, top 10
  two-stage  the bundle's index: the best N items by the dot product of ConvNCF's own user and item embeddings,
             then the CNN over those N, top 10 (service/retrieval.py, `indexed`)

Reports, per N: how much of the exact top 10 the two stages keep (overlap@10), and NDCG@10 / hit@10 of the test
target both ways; and the first stage alone (the dot product's own top 10) for scale.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ndcg_hit(top: np.ndarray, target: int) -> tuple[float, float]:
    where = np.flatnonzero(top == target)
    return (1.0 / np.log2(where[0] + 2), 1.0) if where.size else (0.0, 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, required=True, help="a ConvNCF model folder (with LATEST) or bundle")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--rerank", type=int, nargs="+", default=[50, 100, 200, 500])
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    from service import retrieval
    from service.batch import load_for_batch
    from training.data.atomic import read_atomic
    from training.data.split import leave_one_out

    model = load_for_batch(args.bundle)
    if model.index is None:
        raise SystemExit(f"{args.bundle}: the bundle has no index; export it again")
    data = read_atomic(args.data)  # the training defaults: no rating or k-core filter
    if data.fingerprint != model.bundle.manifest.get("data_fingerprint"):
        raise SystemExit(f"{args.data} is not the data {args.bundle} was trained on")
    test = leave_one_out(data).test
    vectors = model.encode_users([[]] * len(test), test.user.tolist())

    def cnn(vector):
        return lambda rows: model.raw_scores(vector, model.catalog.matrix if rows is None else
                                             model.catalog.vectors(rows), 2048)

    start = time.perf_counter()
    exact = [retrieval.exact(model, v, 10, test.history(r), cnn(v))[0] for r, v in enumerate(vectors)]
    exact_s = time.perf_counter() - start
    first = [retrieval.indexed(model, v, 10, test.history(r), None, 0)[0] for r, v in enumerate(vectors)]
    rows = [{"ranking": "exact (CNN over the catalog)", "seconds_per_user": exact_s / len(test),
             **score(exact, exact, test.target)},
            {"ranking": "first stage alone (dot, top 10)", **score(first, exact, test.target)}]
    for n in args.rerank:
        start = time.perf_counter()
        two = [retrieval.indexed(model, v, 10, test.history(r), cnn(v), n)[0] for r, v in enumerate(vectors)]
        rows.append({"ranking": f"two stages, N={n}", "seconds_per_user": (time.perf_counter() - start) / len(test),
                     **score(two, exact, test.target)})
    print(f"{len(test)} test users, {model.catalog.size} items")
    print("| ranking | overlap@10 with exact | NDCG@10 | hit@10 | ms per user |\n|---|---:|---:|---:|---:|")
    for r in rows:
        ms = f"{1000 * r['seconds_per_user']:.2f}" if "seconds_per_user" in r else ""
        print(f"| {r['ranking']} | {r['overlap']:.3f} | {r['ndcg@10']:.4f} | {r['hit@10']:.4f} | {ms} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


def score(tops: list[np.ndarray], exact: list[np.ndarray], targets: np.ndarray) -> dict:
    overlap = np.mean([len(set(t.tolist()) & set(e.tolist())) / 10 for t, e in zip(tops, exact)])
    ndcg, hit = np.mean([ndcg_hit(t, int(target)) for t, target in zip(tops, targets)], axis=0)
    return {"overlap": float(overlap), "ndcg@10": float(ndcg), "hit@10": float(hit)}


if __name__ == "__main__":
    main()
