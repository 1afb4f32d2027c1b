"""Winning tickets and miscalibrated baselines, from the pruning-runs table.

* :func:`winning_tickets`: whether an IMP ticket is a *winning ticket* at each round: not
  worse than the dense network by the margin δ (the 95 % interval of ticket − dense above −δ)
  and better than the control whose training matches the ticket's, judged by the claims'
  rule (:func:`deepfake_lth.analysis.stats.judge`: two or more seeds; the paper's own
  a′ ≥ a is reported beside it);
* :func:`ticket_method`: the IMP method the controls are of, everywhere;
* :func:`baseline_flags`: dense networks that rank well but are miscalibrated at 0.5;
* :func:`share_diff`: a ticket's accuracy as a share of dense, with its delta-method SE.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepfake_lth.analysis.stats import (
    HOLDS,
    MARGIN,
    NEAR,
    NOT_RUN,
    Diff,
    Spread,
    Z,
    binomial_se,
    by_seed,
    estimate_diff,
    finite,
    judge,
    levels_of,
    n_units,
    non_inferiority,
    runs_by_seed,
    spread_diff,
    superiority,
    two_way,
    unit_accuracy,
    units_problem,
)
from deepfake_lth.stages import methods

# --------------------------------------------------------------------------- winning tickets


def ticket_method(runs, config: Mapping[str, Any] | None = None) -> str | None:
    """The IMP method whose tickets the controls are of: the config's
    (:func:`deepfake_lth.stages.control.control_ticket_method`, ``imp-{prune.criteria[0]}``)
    when it names criteria, else the registry's first IMP method in ``runs``. The claims and
    the report's controls section both ask here, so they judge the ticket that was
    controlled for."""
    if ((config or {}).get("prune") or {}).get("criteria"):
        return methods.control_ticket_method(config)
    imps = sorted(methods.with_role(runs["method"].unique(), methods.TICKET),
                  key=methods.sort_key)
    return imps[0] if imps else None


def winning_tickets(runs, imp_method: str, controls: Sequence[str] = (),
                    kinds: Mapping[str, str | None] | None = None,
                    matched: str = "random-chain", margin: float = MARGIN):
    """Per dataset × model × round of ``imp_method``: whether the ticket is a *winning ticket*.

    * ``paper``: the paper's own criterion a′ ≥ a (mean ticket accuracy ≥ mean dense);
    * ``vs_dense``: ticket − dense (:func:`estimate_diff`: paired by seed and by test unit);
      ``within_margin``: its 95 % interval lies above −``margin`` (not worse than dense by δ);
    * ``vs_matched``: ticket − the *matched* control (``control-{matched}`` of the same
      round, trained like the ticket, so only the mask differs); the other controls are
      shown by their means (``above_controls``), their training differs;
    * ``verdict``: :func:`judge` of the two comparisons (non-inferiority to dense,
      superiority to the matched control): "holds" needs two or more seeds, some variance
      and enough test units; "not run" without the matched control. ``why`` its reason;
    * ``winning``: the verdict is "holds".
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
            vs_dense = estimate_diff(runs, dataset, model, imp_method, "dense",
                                     [(level, "dense")], kind)
            row: dict[str, Any] = {
                "dataset": dataset, "model": model, "level": level, "sparsity": s,
                "ticket": float(acc.mean()), "n_seeds": len(acc), "dense": dense,
                "vs_dense": vs_dense, "se": vs_dense.se if vs_dense else math.nan,
                "se_how": vs_dense.how if vs_dense else "no dense network",
                "paper": bool(np.isfinite(dense) and float(acc.mean()) >= dense),
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
                        above = above and row["ticket"] > row[name]
            vs = (estimate_diff(runs, dataset, model, imp_method, f"control-{matched}",
                                [(level, level)], kind) if matched in present else None)
            row.update(vs_matched=vs, matched_outcome=vs.outcome if vs else None,
                       above_controls=above, controls_present=present,
                       basis="matched control" if vs is not None else
                       "controls with other training" if present else "no control")
            if vs is None or vs_dense is None:
                row["verdict"], row["why"] = NOT_RUN, ("no matched control" if vs is None
                                                       else "no dense network")
            else:
                row["verdict"], row["why"] = judge([non_inferiority("", vs_dense, margin),
                                                    superiority("", vs)])
            row["winning"] = row["verdict"] == HOLDS
            rows.append(row)
    cols = ["dataset", "model", "level", "sparsity", "ticket", "n_seeds", "dense", "vs_dense",
            "se", "se_how", "paper", "within_margin", *controls, "vs_matched",
            "matched_outcome", "above_controls", "controls_present", "basis", "verdict", "why",
            "winning"]
    return pd.DataFrame.from_records(rows, columns=cols)


def winning_up_to(table) -> dict[tuple[str, str], float | None]:
    """Per (dataset, model): the highest sparsity up to which every level is a winning
    ticket by the verdict (levels in order of sparsity from the first round); None if the
    first is not."""
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


# --------------------------------------------------------------------------- share of dense


def share_linearization(ta, da, w) -> tuple[float, np.ndarray] | None:
    """R = T̄/D̄ of seeds × units accuracies ``ta`` (ticket) and ``da`` (dense) with unit
    weights ``w``, and its delta-method linearization z = (t − R·d)/D̄ (seeds × units): the
    variance of R is that of the weighted mean of z. None when D̄ is not positive."""
    pi = np.asarray(w, dtype=float) / float(np.sum(w))
    t_bar, d_bar = float((ta @ pi).mean()), float((da @ pi).mean())
    if not d_bar > 0:
        return None
    r = t_bar / d_bar
    return r, (ta - r * da) / d_bar


def share_units(runs, dataset: str, model: str, method: str, level: str):
    """A ticket's accuracy as a share of the same seeds' dense accuracy on the same test
    units, R = T̄/D̄ (means over seeds and units, units weighted by frames), with its
    delta-method linearization zₛᵥ = (tₛᵥ − R·dₛᵥ)/D̄ (seeds × units, a DataFrame): the
    variance of R is that of the mean of z (:func:`two_way`). (R, z, weights, n_fake,
    n_real), or None without every run's predictions.csv."""
    import pandas as pd

    t = runs_by_seed(runs, dataset, model, method, level)
    d = runs_by_seed(runs, dataset, model, "dense", "dense")
    seeds = sorted(set(t) & set(d))
    tables = [(unit_accuracy(t[s]), unit_accuracy(d[s])) for s in seeds]
    if not seeds or any(a is None or b is None for a, b in tables):
        return None
    common = tables[0][0].index
    for a, b in tables:
        common = common.intersection(a.index).intersection(b.index)
    ta = np.array([a.loc[common, "acc"].to_numpy(dtype=float) for a, _ in tables])
    da = np.array([b.loc[common, "acc"].to_numpy(dtype=float) for _, b in tables])
    w = tables[0][0].loc[common, "n"].to_numpy(dtype=float)
    found = share_linearization(ta, da, w)
    if found is None:
        return None
    r, z = found[0], pd.DataFrame(found[1], index=seeds, columns=common)
    fake = tables[0][0].loc[common, "fake"] if "fake" in tables[0][0] else None
    n_fake = float((fake > 0.5).sum()) if fake is not None else None
    n_real = float((fake <= 0.5).sum()) if fake is not None else None
    return r, z, w, n_fake, n_real


def share_diff(runs, kinds: Mapping[str, str | None], dataset: str, model: str, method: str,
               level: str, minus: float = 0.0) -> Diff | None:
    """The ticket's share of dense accuracy minus ``minus``, with its delta-method SE: from
    the per-unit linearization (:func:`share_units`) over seeds and shared test units; without
    predictions, the variance of the per-seed shares over seeds plus the binomial SE of the
    share (SE(acc)/dense). None without a seed of both."""
    unit = "videos" if kinds.get(dataset) == "videos" else "images"
    found = share_units(runs, dataset, model, method, level)
    if found is not None:
        r, z, w, n_fake, n_real = found
        spread = two_way([(z.to_numpy(), w)])
        seeds = f"{len(z)} seeds" if len(z) >= 2 else "one seed"
        return spread_diff(Spread(r - minus, spread.var, spread.df, spread.seeds,
                                  spread.units),
                           f"delta method over {z.shape[1]} test {unit} and {seeds}",
                           units_problem(n_fake, n_real, z.shape[1], unit))
    kept = retained_share(runs, dataset, model, method, level)
    if not kept:
        return None
    v = finite(kept.values())
    se_unit = retained_se(runs, kinds, dataset, model, method, level)
    var = (float(v.var(ddof=1)) / len(v) if len(v) >= 2 else 0.0) + (
        se_unit**2 if np.isfinite(se_unit) else math.nan)
    df = (var**2 / ((float(v.var(ddof=1)) / len(v)) ** 2 / (len(v) - 1))
          if len(v) >= 2 and v.var() > 0 else math.inf)
    n, _ = n_units(runs, dataset, model, kinds.get(dataset))
    return spread_diff(Spread(float(v.mean()) - minus, var, df, len(v), 0),
                       f"per-seed shares and the binomial SE over {n:.0f} test {unit} "
                       "(no predictions.csv)", units_problem(None, None, n, unit))


def share_contrast(runs, kinds: Mapping[str, str | None], dataset: str, a: tuple[str, str, str],
                   b: tuple[str, str, str]) -> Diff | None:
    """Share of dense kept by ``a`` = (model, method, level) minus by ``b``, on the same test
    units: the difference of their delta-method linearizations, paired by seed and unit
    (:func:`two_way`); without predictions, Welch over seeds with the binomial SEs added.
    None when either has no seed."""
    ua, ub = share_units(runs, dataset, *a), share_units(runs, dataset, *b)
    unit = "videos" if kinds.get(dataset) == "videos" else "images"
    if ua is not None and ub is not None:
        seeds = ua[1].index.intersection(ub[1].index)
        cols = ua[1].columns.intersection(ub[1].columns)
        if len(seeds) and len(cols):
            z = ua[1].loc[seeds, cols].to_numpy() - ub[1].loc[seeds, cols].to_numpy()
            w = np.ones(len(cols)) if unit == "images" else ua[2][
                ua[1].columns.get_indexer(cols)]
            spread = two_way([(z, w)])
            return spread_diff(Spread(ua[0] - ub[0], spread.var, spread.df, spread.seeds,
                                      spread.units),
                               f"delta method over {len(cols)} test {unit} and "
                               f"{len(seeds)} seeds", units_problem(ua[3], ua[4], len(cols),
                                                                    unit))
    sa = finite(retained_share(runs, dataset, *a).values())
    sb = finite(retained_share(runs, dataset, *b).values())
    if not len(sa) or not len(sb):
        return None
    return unpaired_diff(sa, sb, retained_se(runs, kinds, dataset, *a),
                         retained_se(runs, kinds, dataset, *b), True)
