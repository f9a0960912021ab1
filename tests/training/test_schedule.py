"""The learning-rate schedule and the wall-clock budget of a run (training/loop.py): cosine decay step by step
over the run's epochs, and no epoch started that would end past `max_minutes`."""
import logging
import math

import pytest
import torch

from models.limits import SettingError
from training.data.synthetic import write_synthetic_atomic
from training.loop import fit, scheduled_lr
from training.settings import resolve
from training.train import DataOptions, prepare, train_config


@pytest.fixture(scope="module")
def atomic(tmp_path_factory):
    return write_synthetic_atomic(tmp_path_factory.mktemp("atomic"), n_users=60, n_items=40, n_classes=3, seed=1)


def test_cosine_falls_from_lr_to_zero_over_the_epochs_and_constant_stays():
    cosine = train_config("gru4recf", lr=0.01, epochs=4, lr_schedule="cosine")
    assert [round(scheduled_lr(cosine, e), 6) for e in (0, 1, 2, 3, 4, 5)] == \
        [0.01, round(0.005 * (1 + math.cos(math.pi / 4)), 6), 0.005, round(0.005 * (1 - math.cos(math.pi / 4)), 6),
         0.0, 0.0]
    assert scheduled_lr(train_config("gru4recf", lr=0.01, epochs=4), 3.5) == 0.01


def test_a_cosine_run_ends_at_the_rate_of_its_last_step(atomic, tmp_path):
    _, task, _ = prepare("gru4recf", atomic, DataOptions(), seed=0)
    cfg = train_config("gru4recf", lr=0.01, epochs=2, batch_size=64, patience=5, max_steps_per_epoch=2,
                       progress=False, lr_schedule="cosine")
    fit(task, cfg, tmp_path)
    last = torch.load(tmp_path / "last.pt", weights_only=True)["optimizer"]["param_groups"][0]["lr"]
    assert last == pytest.approx(0.005 * (1 + math.cos(math.pi * 3 / 4)))  # step 4 of 4 began at 3/4 of the run


def test_no_epoch_starts_past_the_budget(atomic, tmp_path, caplog):
    _, task, _ = prepare("gru4recf", atomic, DataOptions(), seed=0)
    base = dict(epochs=3, batch_size=64, patience=5, max_steps_per_epoch=2, progress=False)
    with caplog.at_level(logging.INFO, logger="training.loop"):
        result = fit(task, train_config("gru4recf", max_minutes=1e-6, **base), tmp_path / "tight")
    assert len(result.history) == 1 and result.stopped_early
    assert any(r.getMessage().startswith("stopping: another epoch") for r in caplog.records)
    assert len(fit(task, train_config("gru4recf", max_minutes=60, **base), tmp_path / "ample").history) == 3


def test_the_schedule_and_budget_are_settings_with_checked_values():
    settings = resolve("bert4rec", assignments=["lr_schedule=cosine", "max_minutes=55"])
    assert settings.train["lr_schedule"] == "cosine" and settings.train["max_minutes"] == 55
    with pytest.raises(SettingError, match=r"^train\.lr_schedule: "):
        resolve("bert4rec", assignments=["lr_schedule=linear"])
    with pytest.raises(SettingError, match=r"^train\.max_minutes: "):
        resolve("bert4rec", assignments=["max_minutes=0"])
