"""`recserve tune` on tiny synthetic data: trials, progress lines, a resumable study, pruning from the per-epoch
validation figure, and a best.yaml that `recserve train --config` takes."""
import json
import re

import optuna
import pytest
import yaml

from recserve.cli import main
from training.data.synthetic import write_synthetic_atomic
from training.settings import resolve
from training.tune import TuneJob, objective, open_study
from training.tune_spaces import DEFAULT_SPACES, check_space, load_space

QUICK = ["--set", "epochs=1", "--set", "max_steps_per_epoch=2", "--set", "batch_size=64", "--set", "progress=false"]


@pytest.fixture(scope="module")
def atomic(tmp_path_factory):
    return write_synthetic_atomic(tmp_path_factory.mktemp("atomic"), n_users=60, n_items=40, n_classes=4, seed=2)


@pytest.fixture
def small_space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("train.lr: {low: 1e-4, high: 1e-2, log: true}\nhidden_size: [8, 16]\nmodel.num_layers: {low: 1, high: 2}\n")
    return path


def trial_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"trial \d+ \[\d+/\d+\]: ", line)]


def test_three_trials_write_a_best_yaml_that_train_takes_and_a_rerun_continues(atomic, tmp_path, small_space, capsys):
    study = tmp_path / "study"
    args = ["tune", "--model", "gru4recf", "--data", str(atomic), "--study", str(study), "--space", str(small_space), *QUICK]
    assert main([*args, "--trials", "3"]) == 0
    out = capsys.readouterr().out
    lines = trial_lines(out)
    assert len(lines) == 3 and all("valid ndcg@10 0." in line and "hidden_size=" in line for line in lines), out
    assert (study / "study.db").is_file() and not [p for p in study.iterdir() if p.name.startswith("trial")]
    best = yaml.safe_load((study / "best.yaml").read_text())
    assert best["kind"] == "gru4recf" and best["model"]["hidden_size"] in (8, 16)
    assert 1e-4 <= best["train"]["lr"] <= 1e-2 and "device" not in best["train"] and "progress" not in best["train"]
    assert f"best settings: {study / 'best.yaml'}" in out

    # the same command with more trials runs only the missing one
    assert main([*args, "--trials", "4"]) == 0
    assert [line.split(":")[0] for line in trial_lines(capsys.readouterr().out)] == ["trial 3 [4/4]"]
    assert main([*args, "--trials", "4"]) == 0
    assert trial_lines(capsys.readouterr().out) == []

    # train takes the best settings as they are (the kind from the file)
    best = yaml.safe_load((study / "best.yaml").read_text())
    assert main(["train", "--config", str(study / "best.yaml"), "--data", str(atomic), "--out", str(tmp_path / "a"),
                 "--max-steps", "1"]) == 0
    capsys.readouterr()
    recorded = json.loads((tmp_path / "a/gru4recf/train/metrics.json").read_text())["settings"]
    assert recorded["model"] == best["model"]
    assert {k: recorded["train"][k] for k in ("lr", "batch_size", "epochs")} == \
        {k: best["train"][k] for k in ("lr", "batch_size", "epochs")}


def test_a_trial_is_pruned_after_the_epoch_its_figure_is_reported(atomic, tmp_path):
    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    base = resolve("bert4rec", assignments=["epochs=3", "max_steps_per_epoch=1", "batch_size=32", "progress=false",
                                            "hidden_size=16", "n_heads=2", "inner_size=16"]).as_dict()
    job = TuneJob("bert4rec", str(atomic), str(tmp_path), base, {"train.lr": {"low": 1e-3, "high": 1e-2}}, 1, None, 1)
    study = optuna.create_study(direction="maximize", pruner=Always())
    study.optimize(lambda t: objective(t, job), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["epochs"] == 1 and list(trial.intermediate_values) == [0]


def test_a_combination_the_model_refuses_is_a_pruned_trial_with_its_reason(atomic, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("model.n_heads: [3]\n")
    assert main(["tune", "--model", "bert4rec", "--data", str(atomic), "--study", str(tmp_path / "s"),
                 "--space", str(space), "--trials", "1", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "refused: model.n_heads: must divide model.hidden_size (64); got 3" in trial_lines(out)[0]
    assert "no trial completed" in out and not (tmp_path / "s/best.yaml").exists()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("recserve: error: "), err
    return lines[0]


@pytest.mark.parametrize("space, message", [
    ("model.hiden: [1]", "unknown setting 'model.hiden' for gru4recf"),
    ("model.dropout_prob: {low: 0.0, high: 1.5}", "model.dropout_prob: must be in [0, 1), got 1.5"),
    ("model.train_mode: {low: 0, high: 1}", "model.train_mode: a range needs a number setting"),
    ("model.hidden_size: 64", "model.hidden_size: expected a non-empty list of values or {low, high"),
    ("train.lr: {low: 0.1, high: 0.01}", "train.lr: low must be below high"),
])
def test_a_bad_space_is_refused_in_one_line(atomic, tmp_path, capsys, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(space + "\n")
    assert main(["tune", "--model", "gru4recf", "--data", str(atomic), "--study", str(tmp_path / "s"),
                 "--space", str(path), "--trials", "1"]) == 2
    assert one_error_line(capsys).startswith(f"recserve: error: --space {path}: {message}")


def test_a_study_folder_of_other_data_is_refused(atomic, tmp_path, capsys):
    base = resolve("gru4recf").as_dict()
    open_study(TuneJob("gru4recf", str(atomic), str(tmp_path / "s"), base, {}, 1, None, 1))
    # same folder, other data: refused before any trial
    assert main(["tune", "--model", "gru4recf", "--data", str(tmp_path), "--study", str(tmp_path / "s"),
                 "--trials", "1"]) == 2
    assert "holds a study of data" in one_error_line(capsys)


@pytest.mark.parametrize("kind", sorted(DEFAULT_SPACES))
def test_every_default_space_is_valid_for_its_kind(kind):
    assert check_space(kind, DEFAULT_SPACES[kind]) == load_space(kind)
    assert any(name.startswith("model.") for name in DEFAULT_SPACES[kind]) or kind == "convncf"


def test_a_diverged_trial_is_pruned_and_the_study_goes_on(atomic, tmp_path, monkeypatch):
    import training.loop

    def diverge(*args, **kwargs):
        raise FloatingPointError("loss became nan at epoch 1/1, step 1; lower --lr")

    monkeypatch.setattr(training.loop, "fit", diverge)
    base = resolve("gru4recf", assignments=["epochs=1", "progress=false"]).as_dict()
    job = TuneJob("gru4recf", str(atomic), str(tmp_path), base, {"train.lr": [0.5]}, 2, None, 1)
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: objective(t, job), n_trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert study.trials[0].user_attrs["why"].startswith("diverged: loss became nan")
