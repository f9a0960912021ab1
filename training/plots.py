"""The PNG of a run's loss and validation curves, written next to its checkpoint."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_curves(history: list[dict], monitor: str, path: Path, title: str) -> Path:
    """Write the PNG to `path` and return `path`."""
    fig = curves_figure(history, monitor, title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curves_figure(history: list[dict], monitor: str, title: str) -> Figure:
    """Loss and validation metric per epoch, numbered from 1 as the training log numbers them."""
    epochs = [row["epoch"] + 1 for row in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [row["loss"] for row in history], marker="o")
    ax_loss.set(title="training loss", xlabel="epoch")
    ax_metric.plot(epochs, [row[f"valid_{monitor}"] for row in history], marker="o", color="tab:green")
    ax_metric.set(title=f"validation {monitor}", xlabel="epoch")
    for ax in (ax_loss, ax_metric):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # no epoch 0.5; 1 tick for 1 epoch
    fig.suptitle(title)
    fig.tight_layout()
    return fig
