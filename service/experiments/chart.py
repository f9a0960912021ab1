"""The readout as a PNG chart (`recserve experiments report NAME --png FILE`): per arm CTR with its 95% interval
(arms with impressions), and for an interleaved experiment the impressions each arm won and the ties, with the
sign test's p-value. matplotlib (the `charts` extra; `train` has it too) is imported here only, with its Agg
backend (no display), so the service never needs it."""
from __future__ import annotations

from pathlib import Path

from service.experiments.config import ExperimentsError


def write_png(body: dict, path: Path) -> None:
    """Draw `body` (a readout: readout.py) into `path`; ExperimentsError (one line) when matplotlib is missing
    or the file cannot be written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        raise ExperimentsError("--png: matplotlib is not installed (pip install 'recserve[charts]')") from None
    ab = {arm: row for arm, row in body["arms"].items() if row.get("impressions")}
    inter = body.get("interleaving")
    panels = [p for p, on in (("ab", bool(ab)), ("interleaving", bool(inter and inter["impressions"]))) if on]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.5 * max(len(panels), 1), 4), squeeze=False)
    try:
        if not panels:
            axes[0][0].text(0.5, 0.5, "no impressions", ha="center", va="center")
            axes[0][0].set_axis_off()
        for ax, panel in zip(axes[0], panels):
            if panel == "ab":
                _ctr(ax, ab, body["control"])
            else:
                _wins(ax, inter, body["control"])
        fig.suptitle(f"experiment {body['experiment']}")
        fig.tight_layout()
        try:
            fig.savefig(path, format="png", dpi=100)
        except OSError as exc:
            raise ExperimentsError(f"--png: cannot write {path} ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)


def _ctr(ax, arms: dict, control: str) -> None:
    names = list(arms)
    ctr = [arms[a]["ctr"] for a in names]
    low = [c - arms[a]["ctr_interval"][0] for a, c in zip(names, ctr)]
    high = [arms[a]["ctr_interval"][1] - c for a, c in zip(names, ctr)]
    colors = ["tab:gray" if a == control else "tab:blue" for a in names]
    ax.bar(names, ctr, yerr=[low, high], capsize=6, color=colors)
    for i, a in enumerate(names):
        ax.annotate(f"n={arms[a]['impressions']}", (i, 0), textcoords="offset points", xytext=(0, 3), ha="center",
                    fontsize=8, color="white")
    ax.set_ylabel("CTR (clicks per impression), 95% interval")
    ax.set_title("A/B: CTR per arm (gray: control)")


def _wins(ax, row: dict, control: str) -> None:
    labels = [f"{row['arm']} wins", f"{control} wins", "ties"]
    values = [row["wins"], row["losses"], row["ties"]]
    ax.bar(labels, values, color=["tab:blue", "tab:gray", "tab:olive"])
    p = "n/a" if row["p_value"] is None else f"{row['p_value']:.3g}"
    ax.set_ylabel("impressions")
    ax.set_title(f"interleaving: {row['impressions']} impressions, sign test p={p}")
