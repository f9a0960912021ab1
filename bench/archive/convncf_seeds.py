"""Pair up ConvNCF runs of bench/train_vs_recbole.py by seed and test the quality gap between the two sides.

    .venv/bin/python bench/archive/convncf_seeds.py bench/out/tvr_convncf_3ep_seed*.json \
        --known bench/archive/recbole_convncf_3ep.json

Each JSON may hold both sides or one (`--sides`). RecBole's side is deterministic for a seed on this machine
(seed 4 rerun gave the same figures), so our side rerun alone pairs with RecBole's recorded figures (`--known`,
which a report's own figures override; bench/archive/recbole_convncf_3ep.json and bench/archive/ours_convncf_3ep.json
hold every seed recorded). When a seed has several runs of one side, the newest is used.
Only seeds with both sides are compared.

The test is on the paired differences (ours - RecBole) of test NDCG@10: their mean, standard deviation and t,
its 95% t interval, and a sign-flip p (two-sided): under "no difference" each difference is as likely negative
as positive, so p is the share of the 2^n sign patterns whose mean is at least as far from 0 (sampled beyond
16 seeds). No distribution assumed. Also Welch's unpaired t, for when the pairing carries little.
Pairing by seed is meaningful: both sides build the CNN from the same torch seed in the same order, so the
seed's effect is shared.

With `--data`, also the NDCG@10 of a popularity ranking (training counts, known items excluded) on the same
split, as a floor to read the figures against.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]  # this file is in bench/archive/


def figures(result: dict) -> dict:
    return {"valid_ndcg": result["valid"]["ndcg@10"], "test_ndcg": result["test"]["ndcg@10"],
            "test_recall": result["test"]["recall@10"], "best_epoch": result["best_epoch"]}


def side_runs(paths: list[Path], known: list[Path]) -> dict[int, dict[str, dict]]:
    """seed -> side -> that side's figures (the newest report wins, then the known figures)."""
    runs: dict[int, dict[str, dict]] = {}
    loaded = [json.loads(p.read_text()) for p in paths]
    for report in sorted(loaded, key=lambda r: r["date"], reverse=True):
        for side, result in report["models"].get("convncf", {}).items():
            if side in ("recbole", "ours"):
                runs.setdefault(report["seed"], {}).setdefault(side, figures(result))
    for path in known:
        record = json.loads(path.read_text())
        for seed, recorded in record["seeds"].items():
            runs.setdefault(int(seed), {}).setdefault(record.get("side", "recbole"), {"best_epoch": "-", **recorded})
    return runs


def sign_flip_p(diffs: np.ndarray, draws: int = 200_000) -> float:
    """Two-sided p of the mean of paired differences under random signs: exact up to 16 seeds, else from
    `draws` random sign patterns (seeded, so a rerun prints the same p)."""
    observed = abs(diffs.mean())
    if len(diffs) <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(diffs))))
    else:
        signs = np.random.default_rng(0).choice((1.0, -1.0), size=(draws, len(diffs)))
    return float((np.abs(signs @ diffs / len(diffs)) >= observed - 1e-12).mean())


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom, by the Cornish-Fisher expansion
    (within 0.004 of the exact value from 5 degrees of freedom, 0.001 from 9)."""
    z = 1.959964
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def popularity_ndcg(data_dir: Path) -> dict[str, float]:
    """Valid and test NDCG@10 of ranking by training popularity on our leave-one-out split of `data_dir`."""
    import sys

    sys.path.insert(0, str(REPO))
    from training.data.atomic import read_atomic
    from training.data.split import leave_one_out
    from training.evaluate import popularity_metrics

    data = read_atomic(data_dir)
    split = leave_one_out(data)
    return {phase: popularity_metrics(split.train_item, len(data.items), getattr(split, phase))["ndcg@10"]
            for phase in ("valid", "test")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="*", type=Path,
                        help="JSON reports of bench/train_vs_recbole.py or bench/archive/convncf_recbole_seeds.py")
    parser.add_argument("--known", type=Path, nargs="*", default=[],
                        help="recorded figures per seed (JSON; its \"side\": recbole, the default, or ours)")
    parser.add_argument("--data", type=Path, default=None, help="the runs' atomic files, for the popularity floor")
    args = parser.parse_args()
    runs = {seed: sides for seed, sides in side_runs(args.reports, args.known).items() if len(sides) == 2}
    if len(runs) < 2:
        raise SystemExit("need at least two seeds with both sides")
    print("| seed | valid NDCG@10 RecBole / ours | test NDCG@10 RecBole / ours | test Recall@10 RecBole / ours | "
          "best epoch RecBole / ours |")
    print("|---|---|---|---|---|")
    rows = []
    for seed, sides in sorted(runs.items()):
        rb, us = sides["recbole"], sides["ours"]
        rows.append((rb["test_ndcg"], us["test_ndcg"]))
        print(f"| {seed} | {rb['valid_ndcg']:.4f} / {us['valid_ndcg']:.4f} | {rb['test_ndcg']:.4f} / {us['test_ndcg']:.4f} | "
              f"{rb['test_recall']:.4f} / {us['test_recall']:.4f} | {rb['best_epoch']} / {us['best_epoch']} |")
    recbole, ours = np.array(rows).T
    diffs = ours - recbole
    sd = diffs.std(ddof=1)
    print(f"\n{len(diffs)} seeds: test NDCG@10 RecBole {recbole.mean():.4f}, ours {ours.mean():.4f} "
          f"({ours.mean() / recbole.mean() - 1:+.1%}); ours below on {(diffs < 0).sum()}, above on {(diffs > 0).sum()}")
    half_width = t_quantile_975(len(diffs) - 1) * sd / np.sqrt(len(diffs))
    print(f"paired differences: mean {diffs.mean():+.4f} (95% interval {diffs.mean() - half_width:+.4f} to "
          f"{diffs.mean() + half_width:+.4f}), sd {sd:.4f}, t {diffs.mean() / (sd / np.sqrt(len(diffs))):.2f} "
          f"on {len(diffs) - 1} df, sign-flip p {sign_flip_p(diffs):.3f}")
    se = np.sqrt(ours.var(ddof=1) / len(ours) + recbole.var(ddof=1) / len(recbole))
    gap = ours.mean() - recbole.mean()
    print(f"unpaired (Welch): difference of means {gap:+.4f}, t {gap / se:.2f}; "
          f"sd per seed RecBole {recbole.std(ddof=1):.4f}, ours {ours.std(ddof=1):.4f}")

    if args.data is not None:
        pop = popularity_ndcg(args.data)
        print(f"popularity ranking on the same split: valid NDCG@10 {pop['valid']:.4f}, test {pop['test']:.4f}")


if __name__ == "__main__":
    main()
