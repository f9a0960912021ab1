"""The curves PNG: whole-epoch ticks, numbered as the training log numbers epochs."""
import matplotlib.pyplot as plt
import pytest

from training.plots import curves_figure, plot_curves


def history(n: int) -> list[dict]:
    return [{"epoch": e, "loss": 1.0 / (e + 1), "valid_ndcg@10": 0.1 * e} for e in range(n)]


def visible_ticks(ax) -> list[float]:
    low, high = ax.get_xlim()
    return [t for t in ax.get_xticks() if low <= t <= high]


@pytest.mark.parametrize("epochs", [1, 3, 12])
def test_the_epoch_axis_has_whole_number_ticks(epochs):
    fig = curves_figure(history(epochs), "ndcg@10", "test")
    fig.canvas.draw()
    try:
        for ax in fig.axes:
            ticks = visible_ticks(ax)
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
            assert [line.get_xdata().tolist() for line in ax.get_lines()] == [list(range(1, epochs + 1))]
    finally:
        plt.close(fig)


def test_plot_curves_writes_a_png(tmp_path):
    path = plot_curves(history(3), "ndcg@10", tmp_path / "curves.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
