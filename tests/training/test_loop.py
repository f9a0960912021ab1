"""The training loop: seeded epochs, early stopping, best checkpoint, resume."""
import pytest
import torch

from training.data.synthetic import write_synthetic_atomic
from training.loop import epoch_rng, load_checkpoint
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


def draws(seed: int, epoch: int) -> tuple[list[float], list[float]]:
    """What an epoch's numpy generator and torch draw first."""
    rng = epoch_rng(seed, epoch)
    return rng.random(4).tolist(), torch.rand(4).tolist()


def test_epoch_streams_repeat_for_the_same_seed_and_epoch_and_are_shared_by_no_other():
    assert draws(7, 1) == draws(7, 1)
    # seed + epoch gave seed 7's epoch 1 the streams of seed 8's epoch 0
    numpy_a, torch_a = draws(7, 1)
    numpy_b, torch_b = draws(8, 0)
    assert numpy_a != numpy_b and torch_a != torch_b
    # and replayed the stream that initialised the model in epoch 0
    torch.manual_seed(7)
    init = torch.rand(4).tolist()
    assert draws(7, 0)[1] != init


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


def test_train_refuses_a_negative_seed(capsys):
    from recserve.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--model", "convncf", "--data", "data", "--seed", "-1"])
    assert "--seed: expected a whole number at least 0, got '-1'" in capsys.readouterr().err
