"""`recserve train` trains on what `recserve logs export` writes, and exports a bundle: NRMS on a model's
behaviors.tsv + news.tsv (with --news, the bundle's own news.tsv), an interaction model on its .inter."""
from __future__ import annotations

from pathlib import Path

from recserve.cli import main
from tests.service.feedback.logs import log_of_atomic, log_of_mind, write_files
from training.data.mind_synthetic import write_synthetic_mind
from training.data.synthetic import write_synthetic_atomic

QUICK = ["--epochs", "1", "--max-steps", "2", "--no-progress"]


def test_news_and_interaction_models_train_on_the_export(tmp_path, capsys):
    mind = write_synthetic_mind(tmp_path / "mind", n_news=60, n_users=30, days=2)
    atomic = write_synthetic_atomic(tmp_path / "atomic", name="s", n_users=30, n_items=40,
                                    interactions_per_user=(5, 10))
    write_files(tmp_path / "log", {1: log_of_mind(mind), 2: log_of_atomic(atomic / "s.inter", "bert4rec")})
    out = tmp_path / "out"
    assert main(["logs", "export", "--source", str(tmp_path / "log"), "--out", str(out),
                 "--news", f"nrms={mind / 'news.tsv'}"]) == 0
    # The export is MIND's own lines back (request ids for impression ids), and the .inter's interactions.
    original = sorted(line.split("\t", 1)[1] for line in (mind / "behaviors.tsv").read_text().splitlines())
    exported = sorted(line.split("\t", 1)[1] for line in (out / "nrms" / "behaviors.tsv").read_text().splitlines())
    assert exported == original
    assert len((out / "bert4rec" / "bert4rec.inter").read_text().splitlines()) == \
        len((atomic / "s.inter").read_text().splitlines())
    for kind in ("nrms", "bert4rec"):
        assert main(["train", "--model", kind, "--data", str(out / kind), "--out", str(tmp_path / "art"), *QUICK]) == 0
        bundle = Path(capsys.readouterr().out.split("bundle: ")[1].split("\n")[0])
        assert (bundle / "manifest.json").is_file() and bundle.parent == tmp_path / "art" / kind
