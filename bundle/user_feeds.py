"""The user encoder's inputs for a batch of users, as docs/bundle.md describes them (`user_input`). Torch-free:
the service encodes its users with it, the exporter the users it measures the item index on."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def user_feeds(user_input: str, max_history: int, windows: Sequence[Sequence[int]], user_idx: Sequence[int | None],
               item_vectors: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """Feeds for B users: catalog rows of each user's history window (oldest first, at most `max_history`),
    or the users' indices for a model of user ids. Inputs are padded to `max_history` as in training.
    `item_vectors(rows)`: the vectors [len(rows), D] of catalog rows (news models encode users from them)."""
    if user_input == "user_id":
        return {"user_idx": np.asarray(user_idx, dtype=np.int64)}
    b = len(windows)
    seq = np.zeros((b, max_history), dtype=np.int64)
    for row, window in enumerate(windows):
        seq[row, : len(window)] = window
    lengths = np.array([len(w) for w in windows], dtype=np.int64)
    if user_input == "sequence":
        return {"item_seq": seq, "seq_len": np.maximum(lengths, 1)}
    mask = (np.arange(max_history)[None, :] < lengths[:, None]).astype(np.float32)
    vectors = item_vectors(seq.ravel()).reshape(b, max_history, -1)
    return {"history_vectors": vectors * mask[..., None], "history_mask": mask}
