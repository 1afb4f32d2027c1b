"""Winning tickets and miscalibrated baselines, from the pruning-runs table.

* :func:`winning_tickets`: whether an IMP ticket is a *winning ticket* at each round: not
  worse than the dense network by the margin δ (the 95 % interval of ticket − dense above −δ)
  and better than the control whose training matches the ticket's (the paper's own a′ ≥ a is
  reported beside it);
* :func:`baseline_flags`: dense networks that rank well but are miscalibrated at 0.5;
* :func:`retained_share` and its standard error: a ticket's accuracy as a share of dense.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepfake_lth.analysis.stats import (
    GREATER,
    MARGIN,
    NEAR,
    Diff,
    Z,
    binomial_se,
    by_seed,
    estimate_diff,
    finite,
    levels_of,
    n_units,
)

# --------------------------------------------------------------------------- winning tickets


def winning_tickets(runs, imp_method: str, controls: Sequence[str] = (),
                    kinds: Mapping[str, str | None] | None = None,
                    matched: str = "random-chain", margin: float = MARGIN):
    """Per dataset × model × round of ``imp_method``: whether the ticket is a *winning ticket*.

    * ``paper``: the paper's own criterion a′ ≥ a (mean ticket accuracy ≥ mean dense);
    * ``within_margin``: the 95 % interval of ticket − dense (:func:`estimate_diff`: paired by
      seed, and by test video on a video set) lies above −``margin``: the ticket is not worse
      than dense by δ or more (non-inferiority with a fixed margin, whatever the test set's
      noise);
    * against the controls (``control-{name}`` of the same round): the *matched* control, when
      it ran, has had the ticket's training, so only the mask differs: ``vs_matched`` is
      ticket − matched control (its 95 % interval above 0: greater). Without it the other
      controls are used, by their means (``above_controls``), though their training differs.
    * ``winning``: within_margin and (beats the matched control, or above the other controls).
    """
    import pandas as pd

    kinds = kinds or {}
    rows = []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        kind = kinds.get(dataset)
        dense_acc = finite(by_seed(runs, dataset, model, "dense", "dense").values())
        dense = float(dense_acc.mean()) if len(dense_acc) else math.nan
        for level, s in sorted(levels_of(runs, dataset, model, imp_method).items(),
                               key=lambda kv: kv[1]):
            acc = finite(by_seed(runs, dataset, model, imp_method, level).values())
            if not len(acc):
                continue
            ticket = float(acc.mean())
            vs_dense = estimate_diff(runs, dataset, model, imp_method, "dense",
                                     [(level, "dense")], kind)
            row: dict[str, Any] = {
                "dataset": dataset, "model": model, "level": level, "sparsity": s,
                "ticket": ticket, "n_seeds": len(acc), "dense": dense,
                "vs_dense": vs_dense, "se": vs_dense.se if vs_dense else math.nan,
                "se_how": vs_dense.how if vs_dense else "no dense network",
                "paper": bool(np.isfinite(dense) and ticket >= dense),
                "within_margin": bool(vs_dense is not None and np.isfinite(vs_dense.low)
                                      and vs_dense.low > -margin),
            }
            present, above = [], True
            for name in controls:
                c = finite(by_seed(runs, dataset, model, f"control-{name}", level).values())
                row[name] = float(c.mean()) if len(c) else math.nan
                if len(c):
                    present.append(name)
                    if name != matched:
                        above = above and ticket > row[name]
            vs = (estimate_diff(runs, dataset, model, imp_method, f"control-{matched}",
                                [(level, level)], kind) if matched in present else None)
            row["vs_matched"] = vs
            row["matched_outcome"] = vs.outcome if vs else None
            row["above_controls"] = above
            row["controls_present"] = present
            if vs is not None:
                row["basis"] = "matched control"
                against = vs.outcome == GREATER
            elif present:
                row["basis"] = "controls with other training"
                against = above
            else:
                row["basis"] = "no control"
                against = True
            row["winning"] = row["within_margin"] and against
            rows.append(row)
    cols = ["dataset", "model", "level", "sparsity", "ticket", "n_seeds", "dense", "vs_dense",
            "se", "se_how", "paper", "within_margin", *controls, "vs_matched",
            "matched_outcome", "above_controls", "controls_present", "basis", "winning"]
    return pd.DataFrame.from_records(rows, columns=cols)


def winning_up_to(table) -> dict[tuple[str, str], float | None]:
    """Per (dataset, model): the highest sparsity up to which every level is a winning
    ticket (levels in order of sparsity from the first round); None if the first is not."""
    out: dict[tuple[str, str], float | None] = {}
    for (dataset, model), g in table.groupby(["dataset", "model"], sort=True):
        best = None
        for _, row in g.sort_values("sparsity").iterrows():
            if not row["winning"]:
                break
            best = float(row["sparsity"])
        out[(dataset, model)] = best
    return out


# --------------------------------------------------------------------------- calibration

CALIBRATION_GAP = 0.10  # accuracy at the validation threshold − at 0.5 that flags a baseline
AUC_GAP = 0.20  # AUC − accuracy at 0.5 that flags a baseline (ranks well, thresholds badly)


def baseline_flags(runs) -> dict[tuple[str, str], str]:
    """Dense networks whose accuracy at the threshold 0.5 understates what they can do: the
    accuracy at the threshold chosen on the validation split is more than 10 points higher,
    or the AUC exceeds the accuracy by more than 0.20. (dataset, model) → a sentence."""
    out = {}
    dense = runs[runs["method"] == "dense"]
    for (dataset, model), g in dense.groupby(["dataset", "model"], sort=True):
        acc = finite(g["test_acc"])
        if not len(acc):
            continue
        at_val = finite(g["test_acc_val_threshold"]) if "test_acc_val_threshold" in g else []
        auc = finite(g["test_auc"]) if "test_auc" in g else []
        a = float(acc.mean())
        reasons = []
        if len(at_val) and float(np.mean(at_val)) - a > CALIBRATION_GAP:
            reasons.append(f"{100 * float(np.mean(at_val)):.1f} % at the validation threshold")
        if len(auc) and float(np.mean(auc)) - a > AUC_GAP:
            reasons.append(f"AUC {float(np.mean(auc)):.3f}")
        if reasons:
            out[(dataset, model)] = (
                f"The dense {model} on {dataset} has {100 * a:.1f} % accuracy at the threshold "
                f"0.5 but {' and '.join(reasons)}: it ranks faces well and is miscalibrated. "
                "Shares of its accuracy (Retained) overstate the tickets, and verdicts that "
                "compare with it are weaker than they look.")
    return out


# --------------------------------------------------------------------------- retained share


def retained_share(runs, dataset: str, model: str, method: str, level: str
                   ) -> dict[int, float]:
    """Seed → the network's test accuracy over the same seed's dense accuracy."""
    dense = by_seed(runs, dataset, model, "dense", "dense")
    acc = by_seed(runs, dataset, model, method, level)
    return {s: acc[s] / dense[s] for s in acc if s in dense and dense[s] > 0}


def level_near(runs, dataset: str, model: str, method: str, target: float = 0.8
               ) -> str | None:
    """The level of ``method`` nearest ``target`` sparsity, if within 5 points."""
    levels = levels_of(runs, dataset, model, method)
    if not levels:
        return None
    level = min(levels, key=lambda k: abs(levels[k] - target))
    return level if abs(levels[level] - target) <= NEAR else None


def retained_se(runs, kinds: Mapping[str, str | None], dataset: str, model: str, method: str,
                level: str) -> float:
    """Binomial SE of a ticket's retained share acc/dense: SE(acc) / dense, over the test
    images, or the test videos on a video set."""
    acc = finite(by_seed(runs, dataset, model, method, level).values())
    dense = finite(by_seed(runs, dataset, model, "dense", "dense").values())
    if not len(acc) or not len(dense) or dense.mean() <= 0:
        return math.nan
    n, _ = n_units(runs, dataset, model, kinds.get(dataset))
    return binomial_se(float(acc.mean()), n) / float(dense.mean())


def unpaired_diff(a: np.ndarray, b: np.ndarray, se_a: float, se_b: float,
                  videos: bool = False) -> Diff:
    """A − B from independent samples: Welch-style SE over seeds (t quantile with the smaller
    sample's degrees of freedom) when both have two or more seeds (on a video set with the
    binomial SEs over test videos added), otherwise the binomial SEs ``se_a``, ``se_b`` and
    1.96. ``n_seeds`` is the smaller sample's."""
    from scipy import stats

    diff = float(a.mean() - b.mean())
    n = min(len(a), len(b))
    if n >= 2:
        units = se_a**2 + se_b**2 if videos else 0.0
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b) + units)
        return Diff(diff, se, float(stats.t.ppf(0.975, n - 1)), n,
                    f"Welch over {len(a)} and {len(b)} seeds", float(n - 1))
    return Diff(diff, math.hypot(se_a, se_b), Z, n, "one seed, binomial")
