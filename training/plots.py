"""The PNG of a run's loss and validation curves, written next to its checkpoint."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], monitor: str, path: Path, title: str) -> Path:
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [row["loss"] for row in history], marker="o")
    ax_loss.set(title="training loss", xlabel="epoch")
    ax_metric.plot(epochs, [row[f"valid_{monitor}"] for row in history], marker="o", color="tab:green")
    ax_metric.set(title=f"validation {monitor}", xlabel="epoch")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
