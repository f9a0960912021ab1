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
