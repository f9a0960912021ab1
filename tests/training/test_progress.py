"""What a run says while it runs: `epoch i/N` with the run's ETA, early stopping, and NRMS's slow steps."""
import logging
import re

import numpy as np
import pytest

from training.data.mind_synthetic import write_synthetic_mind
from training.data.synthetic import write_synthetic_atomic
from training.loop import _eta, fit
from training.progress import duration
from training.train import DataOptions, prepare, train_config


@pytest.fixture(scope="module")
def atomic(tmp_path_factory):
    return write_synthetic_atomic(tmp_path_factory.mktemp("atomic"), n_users=60, n_items=40, n_classes=3, seed=1)


DURATION = r"(\d+(\.\d)? s|\d+m\d\ds|\d+h\d\dm)"  # what training.progress.duration writes


def messages(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


@pytest.mark.parametrize("seconds, text", [(0.42, "0.4 s"), (42.4, "42 s"), (185, "3m05s"), (3725, "1h02m")])
def test_durations_read_as_people_write_them(seconds, text):
    assert duration(seconds) == text


def test_the_eta_is_the_mean_epoch_times_the_epochs_left():
    assert _eta([10.0, 20.0], 2) == "ETA 30 s for the run (2 epochs left at most)"
    assert _eta([70.0], 1) == "ETA 1m10s for the run (1 epoch left at most)"
    assert _eta([10.0], 0) == "last epoch"


def test_each_epoch_logs_its_number_of_all_and_the_runs_eta(atomic, tmp_path, caplog):
    _, task, _ = prepare("gru4recf", atomic, DataOptions(), seed=0)
    cfg = train_config("gru4recf", epochs=3, batch_size=64, patience=10, max_steps_per_epoch=2, progress=False)
    with caplog.at_level(logging.INFO, logger="training.loop"):
        fit(task, cfg, tmp_path)
    lines = [m for m in messages(caplog, "training.loop") if m.startswith("epoch ")]
    assert [m.split(":")[0] for m in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    eta = rf"\(train {DURATION}, eval {DURATION}\); ETA {DURATION} for the run \(2 epochs left at most\)$"
    assert re.search(eta, lines[0]), lines[0]
    assert lines[1].endswith("(1 epoch left at most)")
    assert lines[2].endswith("; last epoch")


def test_early_stopping_says_so_and_its_last_epoch_has_no_eta(atomic, tmp_path, caplog):
    # lr 0: nothing improves on epoch 1, so patience 1 ends the run after epoch 2 of 5.
    _, task, _ = prepare("gru4recf", atomic, DataOptions(), seed=0)
    cfg = train_config("gru4recf", lr=0.0, epochs=5, batch_size=64, patience=1, max_steps_per_epoch=1, progress=False)
    with caplog.at_level(logging.INFO, logger="training.loop"):
        result = fit(task, cfg, tmp_path)
    assert len(result.history) == 2 and result.stopped_early
    lines = messages(caplog, "training.loop")
    assert lines[0].startswith("epoch 1/5") and "(best so far)" in lines[0] and "(4 epochs left at most)" in lines[0]
    assert lines[1].startswith("epoch 2/5") and lines[1].endswith("; last epoch")
    assert lines[2] == ("stopping early: valid ndcg@10 has not beaten epoch 1's %.4f in the 1 epoch(s) since "
                        "(patience 1)" % result.best_metric)


def test_nrms_names_its_slow_steps_before_and_after_with_their_durations(tmp_path, caplog):
    data = write_synthetic_mind(tmp_path / "mind", n_news=60, n_users=40, seed=1)
    with caplog.at_level(logging.INFO):
        _, task, _ = prepare("nrms", data, DataOptions(), seed=0)
        next(task.train_batches(32, np.random.default_rng(0)))
        task.evaluate("valid")
    lines = messages(caplog, "training.data.mind") + messages(caplog, "training.news")
    for step in ("reading 2 MIND files from", "parsing news and fitting the tokenizer on their titles",
                 "parsing " + str(data / "behaviors.tsv"), "collecting user histories for the bundle",
                 "building this epoch's click samples", f"evaluating on {len(task.data.valid)} valid impressions"):
        before = [m for m in lines if m.startswith(step) and m.endswith(" ...")]
        after = [m for m in lines if m.startswith(step) and re.search(rf": done in {DURATION}( \(.+\))?$", m)]
        assert len(before) == 1 and len(after) == 1, (step, lines)
    assert any(re.search(rf"fitting the tokenizer on their titles: done in {DURATION} \(60 news, \d+ words\)$", m)
               for m in lines)
