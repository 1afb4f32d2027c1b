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
    mls_df,
    spread_diff,
    units_problem,
    welch,
)

PAIRS_MAX = 4_000_000  # fakes × reals up to which the pair term is kept (seeds_delong)


def pair_term(h: np.ndarray) -> float:
    """The pair-level variance of a two-sample U-statistic's kernel h (fakes × reals) over
    m·n: what DeLong's variance counts beyond the unbiased one (σ²(pair)/(mn))."""
    m, n = h.shape
    resid = h - h.mean(1, keepdims=True) - h.mean(0, keepdims=True) + h.mean()
    return float((resid**2).sum()) / ((m - 1) * (n - 1)) / (m * n)


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
    pairs = np.zeros((m, n)) if m * n <= PAIRS_MAX else None
    for scores, w in zip(scorings, weights, strict=True):
        s = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(s).all():
            raise ValueError(f"non-finite scores ({how})")
        f, r = placements(s[y], s[~y])
        fakes += w * f
        reals += w * r
        if pairs is not None:
            sf, sr = s[y][:, None], s[~y][None, :]
            pairs += w * ((sf > sr) + 0.5 * (sf == sr))
    se = math.sqrt(float(fakes.var(ddof=1)) / m + float(reals.var(ddof=1)) / n)
    units = (pd.Series(fakes, index=index[y]), pd.Series(reals, index=index[~y]), pairs)
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
    """Per-seed DeLong differences combined over seeds, unit by unit (units every seed
    scored). With the AUC difference of seed s = θ + seed effect + U + Wₛ (U: the shared
    test units' sampling error, Wₛ: the seed's own scores' given the units):

        Var = A + B − C,  A = var over seeds of the per-seed differences / S,
                          B = DeLong's variance of the placements averaged over seeds
                              (U + W̄: var(fakes)/m + var(reals)/n),
                          C = (mean per-seed DeLong variance − B)/(S − 1) (W's variance / S,
                              counted in both A and B),

    B − C taken as 0 when negative; the quantile weighs each term by its own t
    (:func:`deepfake_lth.analysis.stats.mls_df`). For accuracies the same identity is
    :func:`deepfake_lth.analysis.stats.two_way`'s residual term; here it comes from DeLong's
    own variances, as a placement depends on every unit of the other class. Without
    placements (older callers): the mean DeLong variance plus the variance between seeds,
    each / seeds."""
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
            problem = units_problem(len(fake_ids), len(real_ids), len(fake_ids) + len(real_ids),
                                    "units")
            pairs = None
            if all(len(x.units) > 2 and x.units[2] is not None for x in per_seed):
                pairs = np.array([x.units[2][np.ix_(x.units[0].index.get_indexer(fake_ids),
                                                     x.units[1].index.get_indexer(real_ids))]
                                  for x in per_seed])
            return spread_diff(_combine(f, r, pairs), how, problem)
    problem = next((x.problem for x in per_seed if x.problem), "")
    d = np.array([x.mean for x in per_seed])
    within = float(np.mean([x.se**2 for x in per_seed])) / n
    between = float(d.var(ddof=1)) / n if n >= 2 else 0.0
    df = welch([(between, n - 1)], within + between) if n >= 2 else math.inf
    return spread_diff(Spread(float(d.mean()), within + between, df, n, 0), how, problem)


def _combine(f: np.ndarray, r: np.ndarray, pairs: np.ndarray | None) -> Spread:
    """:func:`seeds_delong`'s variance from seeds × fakes and seeds × reals placements and,
    where kept, seeds × fakes × reals kernels: DeLong's variances less their pair-level term
    (unbiased for the U-statistic; DeLong's own overstates it when the two scorings agree on
    most pairs, as a ticket and its dense network do)."""
    seeds, m, n = f.shape[0], f.shape[1], r.shape[1]
    per_seed = f.mean(axis=1)
    b = float(f.mean(0).var(ddof=1)) / m + float(r.mean(0).var(ddof=1)) / n
    per = f.var(axis=1, ddof=1) / m + r.var(axis=1, ddof=1) / n
    if pairs is not None:
        b = max(b - pair_term(pairs.mean(axis=0)), 0.0)
        per = np.maximum(per - np.array([pair_term(h) for h in pairs]), 0.0)
    df_units = float(min(m, n) - 1)
    if seeds < 2:
        return Spread(float(per_seed.mean()), b, mls_df([(b, df_units)], b), 1, m + n)
    a = float(per_seed.var(ddof=1)) / seeds
    within = float(np.mean(per))
    c = max(within - b, 0.0) / (seeds - 1)
    if b > c:
        var, terms = a + b - c, [(a, seeds - 1.0), (b, df_units), (-c, math.inf)]
    else:  # the shared units' own term (B − C) comes out negative: 0
        var, terms = a, [(a, seeds - 1.0)]
    return Spread(float(per_seed.mean()), var, mls_df(terms, var), seeds, m + n)
