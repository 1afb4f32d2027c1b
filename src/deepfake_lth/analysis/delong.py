"""AUC differences with DeLong's standard error (DeLong et al. 1988), paired by test unit
within a seed and combined over seeds unit by unit: the generalisation and robustness
claims' statistics (:mod:`deepfake_lth.analysis.stats` holds the accuracy ones)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from deepfake_lth.analysis.stats import (
    Diff,
    Spread,
    Z,
    spread_diff,
    two_way,
    units_problem,
    welch,
)


def placements(fake_scores, real_scores) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values: each fake's share of the reals it outranks, each real's
    share of the fakes that outrank it (ties one half), by sorting: O(n log n), so an image
    set of thousands of test units costs no pairwise matrix."""
    f_sorted, r_sorted = np.sort(fake_scores), np.sort(real_scores)
    below = (np.searchsorted(r_sorted, fake_scores, "left")
             + np.searchsorted(r_sorted, fake_scores, "right")) / 2
    above = len(f_sorted) - (np.searchsorted(f_sorted, real_scores, "left")
                             + np.searchsorted(f_sorted, real_scores, "right")) / 2
    return below / len(r_sorted), above / len(f_sorted)


def delong_contrast(labels, scorings: Sequence, weights: Sequence[float], how: str
                    ) -> Diff | None:
    """Σ wᵢ·AUC(scoringᵢ) of scorings of the same test units, with DeLong's standard error
    (DeLong et al. 1988): each unit's placement values (the share of the other class it
    outranks, ties one half) combined with the weights, SE² = var(fakes')/m + var(reals')/n.
    One seed; ``units`` keeps the placements (indexed like ``labels``, a Series, or by
    position) so :func:`seeds_delong` can average them over seeds. None with fewer than two
    units of a class."""
    import pandas as pd

    index = labels.index if hasattr(labels, "index") else pd.RangeIndex(len(labels))
    y = np.asarray(labels, dtype=float) > 0.5
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        return None
    fakes, reals = np.zeros(m), np.zeros(n)
    for scores, w in zip(scorings, weights, strict=True):
        s = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(s).all():
            raise ValueError(f"non-finite scores ({how})")
        f, r = placements(s[y], s[~y])
        fakes += w * f
        reals += w * r
    se = math.sqrt(float(fakes.var(ddof=1)) / m + float(reals.var(ddof=1)) / n)
    units = (pd.Series(fakes, index=index[y]), pd.Series(reals, index=index[~y]))
    problem = units_problem(m, n, m + n, "units")
    if not problem and se <= 0:
        problem = "DeLong's variance is 0 (every unit ranked alike): no variance to judge by"
    return Diff(float(fakes.mean()), se, Z, 1, how, math.inf, problem, units)


def paired_auc_diff(labels, scores_a, scores_b) -> Diff | None:
    """AUC(A) − AUC(B) of two scorings of the same test videos, with DeLong's standard error
    (DeLong et al. 1988): each video's placement value (the share of the other class it
    outranks, ties one half) paired between A and B, SE² = var(Δ fakes)/m + var(Δ reals)/n.
    None with fewer than two videos of a class."""
    y = np.asarray(labels) > 0.5
    m, n = int(y.sum()), int((~y).sum())
    return delong_contrast(labels, [scores_a, scores_b], [1.0, -1.0],
                           f"DeLong, paired by video over {m + n} test videos")


def seeds_delong(per_seed: Sequence[Diff]) -> Diff:
    """Per-seed DeLong differences combined over seeds: each unit's placement differences
    averaged over the seeds (units every seed scored), then :func:`two_way` with the fakes
    and the reals as two blocks: the variance between seeds, plus DeLong's over the shared
    units, less their common residual. Without placements (older callers): the mean DeLong
    variance plus the variance between seeds, each / seeds."""
    n = len(per_seed)
    how = per_seed[0].how + (f" and {n} seeds" if n >= 2 else "")
    if all(x.units is not None for x in per_seed):
        fake_ids, real_ids = per_seed[0].units[0].index, per_seed[0].units[1].index
        for x in per_seed[1:]:
            fake_ids = fake_ids.intersection(x.units[0].index)
            real_ids = real_ids.intersection(x.units[1].index)
        if len(fake_ids) >= 2 and len(real_ids) >= 2:
            f = np.array([x.units[0].loc[fake_ids].to_numpy() for x in per_seed])
            r = np.array([x.units[1].loc[real_ids].to_numpy() for x in per_seed])
            spread = two_way([(f, np.ones(len(fake_ids))), (r, np.ones(len(real_ids)))])
            return spread_diff(spread, how, units_problem(len(fake_ids), len(real_ids),
                                                          len(fake_ids) + len(real_ids),
                                                          "units"))
    problem = next((x.problem for x in per_seed if x.problem), "")
    d = np.array([x.mean for x in per_seed])
    within = float(np.mean([x.se**2 for x in per_seed])) / n
    between = float(d.var(ddof=1)) / n if n >= 2 else 0.0
    df = welch([(between, n - 1)], within + between) if n >= 2 else math.inf
    return spread_diff(Spread(float(d.mean()), within + between, df, n, 0), how, problem)
