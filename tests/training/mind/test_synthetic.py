import numpy as np

from training.data.mind import click_counts, read_mind
from training.data.mind_synthetic import write_synthetic_mind


def test_synthetic_mind_parses_splits_and_is_deterministic(tmp_path):
    a = write_synthetic_mind(tmp_path / "a", n_news=120, n_users=40, seed=7)
    b = write_synthetic_mind(tmp_path / "b", n_news=120, n_users=40, seed=7)
    c = write_synthetic_mind(tmp_path / "c", n_news=120, n_users=40, seed=8)
    for name in ("news.tsv", "behaviors.tsv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "behaviors.tsv").read_bytes() != (c / "behaviors.tsv").read_bytes()

    data = read_mind(a)
    assert data.news.n_news == 120 and data.missing_news == 0
    assert len(data.train) > 0 and len(data.valid) > 0
    last = data.valid.time.astype("datetime64[D]")
    assert (last == last.max()).all() and data.train.time.max() < data.valid.time.min()
    assert set(data.news.category[1:]) == {"sports", "finance", "health", "travel", "music", "science"}
    counts = click_counts(data.train)
    assert counts["skipped"] == 0 and counts["usable"] >= len(data.train)
    lens = np.diff(data.train.cand_indptr)
    assert lens.min() >= 5 and lens.max() <= 15


def test_synthetic_clicks_follow_content(tmp_path):
    """A bag-of-words user profile (no learning) ranks clicked news above the others."""
    data = read_mind(write_synthetic_mind(tmp_path, seed=1))
    tokens = data.news.title_tokens
    bow = np.zeros((len(tokens), data.tokenizer.vocab_size))
    np.put_along_axis(bow, tokens, 1.0, axis=1)
    bow[:, 0] = 0
    imps, aucs = data.valid, []
    for i in range(len(imps)):
        hist = imps.history_items[imps.history_indptr[i]:imps.history_indptr[i + 1]]
        cands = imps.cand_items[imps.cand_indptr[i]:imps.cand_indptr[i + 1]]
        y = imps.cand_labels[imps.cand_indptr[i]:imps.cand_indptr[i + 1]].astype(bool)
        if len(hist) == 0 or y.all() or not y.any():
            continue
        s = bow[cands] @ bow[hist].sum(0)
        aucs.append(np.mean((s[y][:, None] > s[~y][None]) + 0.5 * (s[y][:, None] == s[~y][None])))
    assert np.mean(aucs) > 0.65
