"""Training data that cannot train is refused in one `recserve: error:` line naming the file, before any
bundle is written; a partly short dataset still trains."""
from pathlib import Path

import pytest

from recserve.cli import main
from tests.training.test_cli import one_error_line

QUICK = ["--max-steps", "2", "--epochs", "1", "--no-progress"]


def write_inter(folder: Path, counts: list[int], rating: float = 5.0) -> Path:
    """`folder/d.inter` where user k has counts[k] interactions, each with a distinct item, in time order."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, t = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"], 0
    for user, n in enumerate(counts):
        for j in range(n):
            t += 1
            rows.append(f"u{user}\ti{(user + j) % 7}\t{rating}\t{t}")
    (folder / "d.inter").write_text("\n".join(rows) + "\n")
    return folder / "d.inter"


def train(data: Path, out: Path, model: str, *extra: str) -> int:
    return main(["train", "--model", model, "--data", str(data), "--out", str(out), *QUICK, *extra])


@pytest.mark.parametrize("model", ["convncf", "bert4rec"])
def test_users_with_two_interactions_or_fewer_are_one_error_naming_the_inter_file(tmp_path, capsys, model):
    inter = write_inter(tmp_path / "data", [2, 1, 2, 2, 1])
    assert train(inter.parent, tmp_path / "out", model) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"recserve: error: {inter}: no user has the 3 or more interactions")
    assert "of 5 users: 3 with 2, 2 with 1" in line and "nothing is left to validate on" in line
    assert "--k-core cannot help" in line
    assert not (tmp_path / "out" / model).exists()


def test_min_rating_that_leaves_users_short_is_named_as_what_would_help(tmp_path, capsys):
    data = tmp_path / "data"
    inter = write_inter(data, [5, 5], rating=2.0)
    rated = inter.read_text().splitlines()
    inter.write_text("\n".join(rated[:1] + [r.replace("\t2.0\t", "\t4.0\t") for r in rated[1:3]] + rated[3:]) + "\n")
    assert train(data, tmp_path / "out", "convncf", "--min-rating", "3") == 2
    line = one_error_line(capsys)
    assert f"{inter}: no user has the 3 or more" in line
    assert "--min-rating 3 dropped the interactions rated lower: a lower one, or none, keeps more" in line


def test_a_sequence_model_with_no_user_of_four_interactions_has_nothing_to_train_on(tmp_path, capsys):
    inter = write_inter(tmp_path / "data", [3, 3, 2, 1])
    assert train(inter.parent, tmp_path / "out", "bert4rec") == 2
    line = one_error_line(capsys)
    assert line.startswith(f"recserve: error: {inter}: bert4rec learns from the order of each user's training items")
    assert "of 4 users: 2 with 3, none with more" in line and "nothing is left to train on" in line
    assert not (tmp_path / "out" / "bert4rec").exists()


def test_some_short_users_only_drop_out_of_validation_and_test(tmp_path, capsys):
    inter = write_inter(tmp_path / "data", [4, 3, 2, 1])
    assert train(inter.parent, tmp_path / "out", "convncf") == 0
    assert (tmp_path / "out" / "convncf" / "LATEST").is_file()


# --- MIND data with nothing to learn from or score, and models whose metric is not a number ----------------

def previous_latest(out: Path, kind: str) -> Path:
    """An artifacts folder whose LATEST names an earlier bundle, which a refused run must leave alone."""
    (out / kind).mkdir(parents=True)
    (out / kind / "LATEST").write_text("earlier-version\n")
    return out / kind / "LATEST"


def assert_untouched(latest: Path) -> None:
    """LATEST still names the earlier bundle, and no bundle folder was added beside the run's train/."""
    assert latest.read_text() == "earlier-version\n"
    assert {p.name for p in latest.parent.iterdir()} <= {"LATEST", "train"}


@pytest.fixture
def mind(tmp_path) -> Path:
    from training.data.mind_synthetic import write_synthetic_mind

    return write_synthetic_mind(tmp_path / "mind", n_news=40, n_users=20, seed=0)


def rewrite_behaviors(folder: Path, change) -> Path:
    """Apply `change(line, is_last_day)` to every line of folder/behaviors.tsv."""
    path = folder / "behaviors.tsv"
    lines = path.read_text().splitlines()
    days = [line.split("\t")[2].split(" ")[0] for line in lines]
    last = max(days, key=lambda d: tuple(int(x) for x in reversed(d.split("/"))))
    path.write_text("\n".join(change(line, day == last) for line, day in zip(lines, days)) + "\n")
    return path


def test_mind_behaviors_naming_no_news_of_news_tsv_are_refused_when_read(tmp_path, mind, capsys):
    # The reported case: it trained on nothing, scored NaN, exported, and LATEST moved to the NaN bundle.
    behaviors = rewrite_behaviors(mind, lambda line, _: line.replace("\tN", "\tX").replace(" N", " X"))
    latest = previous_latest(tmp_path / "out", "nrms")
    assert train(mind, tmp_path / "out", "nrms") == 2
    line = one_error_line(capsys)
    assert line.startswith(f"recserve: error: {behaviors}: none of its ")
    assert "impressions has a candidate news of news.tsv" in line and "e.g. X1" in line
    assert_untouched(latest)


@pytest.mark.parametrize("part", ["training", "validation"])
def test_mind_with_no_impression_to_learn_from_or_score_is_one_error(tmp_path, mind, capsys, part):
    # Every candidate clicked: no impression has a non-clicked news to learn or rank against.
    behaviors = rewrite_behaviors(mind, lambda line, last: line.replace("-0", "-1")
                                  if last == (part == "validation") else line)
    assert train(mind, tmp_path / "out", "nrms") == 2
    line = one_error_line(capsys)
    assert line.startswith(f"recserve: error: {behaviors}: none of its ")
    assert f"{part} " in line and "impressions has both a clicked and a non-clicked news of news.tsv" in line
    assert ("nothing to train on" if part == "training" else "--valid-behaviors") in line
    assert not (tmp_path / "out" / "nrms").exists()


def test_a_nan_validation_metric_is_not_exported(tmp_path, mind, capsys, monkeypatch):
    # Whatever makes the monitored metric NaN (data the checks above miss, a model that diverged), the
    # service must not be pointed at the model.
    import training.news

    monkeypatch.setattr(training.news, "impression_metrics",
                        lambda labels, scores: dict.fromkeys(["group_auc", "mrr", "ndcg@5", "ndcg@10"], float("nan")))
    latest = previous_latest(tmp_path / "out", "nrms")
    assert train(mind, tmp_path / "out", "nrms") == 2
    line = one_error_line(capsys)
    assert line.startswith("recserve: error: not exporting nrms: its validation group_auc is nan; likely cause: ")
    assert "LATEST unchanged" in line
    assert_untouched(latest)


@pytest.fixture
def atomic(tmp_path) -> Path:
    from training.data.synthetic import write_synthetic_atomic

    return write_synthetic_atomic(tmp_path / "atomic", n_users=30, n_items=20, interactions_per_user=(5, 8))


def test_an_interaction_model_that_diverged_is_not_exported(tmp_path, atomic, capsys):
    # One step at an absurd rate leaves weights whose scores are NaN; the loss of that step was still finite.
    latest = previous_latest(tmp_path / "out", "convncf")
    assert train(atomic, tmp_path / "out", "convncf", "--max-steps", "1", "--batch-size", "16", "--lr", "1e30") == 2
    line = one_error_line(capsys)
    assert line.startswith("recserve: error: not exporting convncf: its validation ndcg@10 is ")
    assert "training diverged" in line and "--lr" in line
    assert_untouched(latest)


def test_a_nan_loss_is_one_line_and_not_exported(tmp_path, atomic, capsys):
    latest = previous_latest(tmp_path / "out", "convncf")
    assert train(atomic, tmp_path / "out", "convncf", "--max-steps", "3", "--batch-size", "16", "--lr", "1e30") == 2
    line = one_error_line(capsys)
    assert line.startswith("recserve: error: not exporting convncf: loss became nan at epoch 1/1, step 2; lower --lr")
    assert_untouched(latest)
