"""The training loop: seeded epochs, early stopping, best checkpoint, resume."""
import pytest
import torch

from training.data.synthetic import write_synthetic_atomic
from training.loop import load_checkpoint
from training.train import DataOptions, prepare, run, train_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_atomic(tmp_path_factory.mktemp("atomic"), n_users=60, n_items=40, n_classes=3, seed=1)


def settings(**kw):
    return train_config("gru4recf", batch_size=64, lr=3e-3, patience=10, progress=False, **kw)


def test_resume_repeats_the_epochs_an_uninterrupted_run_would_have(data, tmp_path):
    straight = run("gru4recf", data, tmp_path / "a", settings(epochs=3), DataOptions())
    run("gru4recf", data, tmp_path / "b", settings(epochs=2), DataOptions())
    resumed = run("gru4recf", data, tmp_path / "b", settings(epochs=3), DataOptions(), resume=True)
    assert [h["epoch"] for h in resumed.metrics["history"]] == [0, 1, 2]
    for a, b in zip(straight.metrics["history"], resumed.metrics["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert resumed.metrics["test"] == pytest.approx(straight.metrics["test"], rel=1e-5)


def test_best_checkpoint_holds_the_best_validation_epoch_and_loads_safely(data, tmp_path):
    result = run("gru4recf", data, tmp_path, settings(epochs=3), DataOptions())
    best = max(result.metrics["history"], key=lambda h: h["valid_ndcg@10"])
    state = load_checkpoint(result.run_dir / "best.pt")  # weights_only=True: no code runs on load
    assert state["epoch"] == best["epoch"] == result.metrics["best_epoch"]
    assert result.metrics["valid"]["ndcg@10"] == pytest.approx(best["valid_ndcg@10"], rel=1e-5)


def test_early_stopping_stops_after_patience_epochs_without_improvement(data, tmp_path):
    # lr 0: the loss cannot improve the model, so validation never beats epoch 0.
    result = run("gru4recf", data, tmp_path, train_config("gru4recf", lr=0.0, epochs=10, patience=2,
                                                          batch_size=64, progress=False), DataOptions())
    assert [h["epoch"] for h in result.metrics["history"]] == [0, 1, 2]
    assert result.metrics["best_epoch"] == 0


def test_a_diverging_loss_stops_with_a_clear_error(data, tmp_path):
    model, task, _ = prepare("gru4recf", data, DataOptions(), seed=0)
    with torch.no_grad():
        model.item_embedding.weight.fill_(float("nan"))
    from training.loop import fit

    with pytest.raises(FloatingPointError, match="lower --lr"):
        fit(task, settings(epochs=1), tmp_path)
