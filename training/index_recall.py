"""Export-time calibration of the item index's search effort on the bundle's own users (bundle/ann.py,
`calibrate`): the effort that finds TARGET_RECALL of their exact top 10 goes into the manifest, with the recall
measured, and the service searches with it. Recall depends on where a model's users point among its items
(measured: 0.97 to 0.88 at the same effort for different models of one catalog, docs/benchmarks.md 6), so one
effort for every bundle would be either too slow for some or too inexact for others."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bundle.ann import INDEX_FILE, calibrate, exact_scan_cost, load_index, missed_target
from bundle.data import BundleData
from bundle.user_feeds import user_feeds
from training.bundle_data import ExportError

log = logging.getLogger(__name__)

USERS = 500        # users sampled: recall's standard error is then about 0.01 at 0.95
BATCH = 256        # users per user-encoder call


def user_vectors(folder: Path, data: BundleData, user_input: str, vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """The user vectors [<= USERS, D] of a sample of the bundle's users (their whole training histories, as
    the service encodes a known user), by the bundle's own user-encoder graph in `folder`."""
    from training.parity import ort_session, run  # onnxruntime, imported when needed

    rng = np.random.default_rng(seed)
    if user_input == "user_id":
        n_users = len(data.users or [])
        idx = rng.choice(np.arange(1, n_users + 1), size=min(USERS, n_users), replace=False)
        windows, user_idx = [[] for _ in idx], idx.tolist()
    else:
        row_of = {item: row for row, item in enumerate(data.items, start=1)}
        histories = [h for h in (data.histories or {}).values() if h]
        picked = rng.choice(len(histories), size=min(USERS, len(histories)), replace=False) if histories else []
        windows = [[row_of[i] for i in histories[p] if i in row_of][-data.max_history:] for p in picked]
        windows = [w for w in windows if w]
        user_idx = [None] * len(windows)
    if not windows:
        return np.zeros((0, vectors.shape[1]), np.float32)
    session = ort_session(folder / "user_encoder.onnx")
    parts = []
    for s in range(0, len(windows), BATCH):
        feeds = user_feeds(user_input, data.max_history, windows[s:s + BATCH], user_idx[s:s + BATCH],
                           lambda rows: np.asarray(vectors[rows]))
        parts.append(run(session, feeds))
    return np.concatenate(parts).astype(np.float32)


def calibrate_index(folder: Path, data: BundleData, user_input: str, vectors: np.ndarray, info: dict,
                    allow_low_recall: bool = False) -> dict:
    """`info` (the index's manifest entry) with the search effort calibrated on a sample of the bundle's
    users; unchanged for a bundle without users to sample. An index that misses its recall target even at the
    largest effort is refused (ExportError) unless `allow_low_recall`: served, it would answer /recommend with
    a fifth of the right items and look fine. Allowed, the bundle records the recall measured and the service
    scans the catalog exactly instead (service/model.py)."""
    queries = user_vectors(folder, data, user_input, vectors)
    if not len(queries):
        return info
    found = calibrate(load_index(folder / INDEX_FILE, info), vectors, queries)
    if not missed_target(found):
        return {**info, **found}
    problem = (f"item index: recall@10 {found['recall_at_10']:.3f} on {found['recall_users']} of the bundle's users "
               f"at the largest search effort ({found['expansion_search']}), below the target "
               f"{found['recall_target']:.2f}")
    if not allow_low_recall:
        raise ExportError(f"{problem} (untrained or collapsed item vectors?); train longer, or export anyway with "
                          "`recserve export --checkpoint <artifacts>/<model>/train/best.pt --allow-low-recall-index`: "
                          f"the service then serves {exact_scan_cost(*vectors.shape)}")
    log.warning("%s; exported as asked (--allow-low-recall-index): the service will not search it but serve %s",
                problem, exact_scan_cost(*vectors.shape))
    return {**info, **found}
