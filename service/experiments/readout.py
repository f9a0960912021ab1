"""An experiment's readout from per-arm counts: CTR with a 95% Wilson interval per arm, and each arm's lift
against control (relative: CTR / control's CTR - 1) with the interval of that ratio, by statsmodels.

CTR here is attributed clicks per impression; an impression clicked twice counts two clicks, so the binomial
intervals assume clicks are rare next to impressions (clicks are capped at impressions for the intervals).
The same function reads the Redis counters (GET /experiments/NAME) and the log (`recserve experiments
report`); their counts differ where clicks name items the answer did not show or come from another user
(docs/deploy.md, "Experiments"). An interleaved experiment's readout (`interleaving`) adds wins, losses, ties
and the sign test."""
from __future__ import annotations

from collections.abc import Mapping

LEVEL = 0.95


def readout(name: str, control: str, arms: list[str], counts: Mapping[str, Mapping[str, int]]) -> dict:
    """{"experiment", "control", "level", "arms": {arm: {impressions, clicks, ctr, ctr_interval, lift,
    lift_interval}}}; figures are null where undefined (no impressions; for lift, a control without clicks)."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

    alpha = 1 - LEVEL
    base = counts.get(control, {})
    n0, c0 = int(base.get("impressions", 0)), min(int(base.get("clicks", 0)), int(base.get("impressions", 0)))
    out = {}
    for arm in arms:
        n = int(counts.get(arm, {}).get("impressions", 0))
        clicks = int(counts.get(arm, {}).get("clicks", 0))
        c = min(clicks, n)
        row = {"impressions": n, "clicks": clicks, "ctr": clicks / n if n else None, "ctr_interval": None,
               "lift": None, "lift_interval": None}
        if n:
            row["ctr_interval"] = [float(x) for x in proportion_confint(c, n, alpha=alpha, method="wilson")]
        if arm != control and n and n0 and c0:
            row["lift"] = (clicks / n) / (base["clicks"] / n0) - 1
            if c:
                low, high = confint_proportions_2indep(c, n, c0, n0, compare="ratio", alpha=alpha)
                row["lift_interval"] = [float(low) - 1, float(high) - 1]
        out[arm] = row
    return {"experiment": name, "control": control, "level": LEVEL, "arms": out}


def interleaving(control: str, arms: list[str], impressions: int, outcomes: Mapping) -> dict:
    """An interleaved experiment's readout from its impressions and outcomes ({"wins": {arm: n}, "ties": n,
    "clicks": {arm: n}}, wins.py): per arm its credited clicks and wins; for the arm against control its wins,
    losses (control's wins) and ties, the share of wins among decided impressions with its 95% (Clopper-Pearson)
    interval, and the two-sided sign test's p-value (ties left out, as the sign test does), by scipy."""
    from scipy.stats import binomtest

    other = next(a for a in arms if a != control)
    wins, losses = int(outcomes["wins"].get(other, 0)), int(outcomes["wins"].get(control, 0))
    decided = wins + losses
    row = {"impressions": impressions,
           "arms": {a: {"clicks": int(outcomes["clicks"].get(a, 0)), "wins": int(outcomes["wins"].get(a, 0))}
                    for a in arms},
           "arm": other, "wins": wins, "losses": losses, "ties": int(outcomes["ties"]),
           "win_share": wins / decided if decided else None, "win_share_interval": None, "p_value": None}
    if decided:
        test = binomtest(wins, decided, 0.5, alternative="two-sided")
        row["win_share_interval"] = [float(x) for x in test.proportion_ci(LEVEL, method="exact")]
        row["p_value"] = float(test.pvalue)
    return row
