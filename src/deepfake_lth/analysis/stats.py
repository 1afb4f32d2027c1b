"""Statistics over seeds and test units, and the claims' decision rule.

Everything here works on the pruning-runs table of :func:`deepfake_lth.report.collect_metrics`
(one row per trained network: ``dataset, model, seed, method, level, sparsity, test_acc,
test_samples``, …, and ``per_video``: frames and correct frames per test unit, read from
the run's predictions.csv: a video on a video set, an image on an image set), so it is
testable without a results tree.

* :func:`mean_ci`: mean and 95 % t-interval over seeds (``scipy.stats.t``);
* :func:`paired_test`: paired t-test of two methods over the seeds they share
  (``scipy.stats.ttest_rel``); fewer than two pairs: "not enough seeds";
* :func:`two_way`: the variance of a difference measured by several seeds on the same test
  units: the seeds' term, plus the shared units' term, less the residual both count;
* :func:`estimate_diff`: the difference of two networks' accuracies, paired by seed and by
  test unit, with that variance; its ``problem`` says when it cannot decide (no variance,
  fewer than :data:`MIN_UNITS` test units of a class);
* :func:`judge`: a claim's verdict from its comparisons (:data:`RULE`: "holds" by
  intersection–union, each comparison at the 95 % interval's side; "does not hold" by Holm).

AUC differences (DeLong) are in :mod:`deepfake_lth.analysis.delong`, winning tickets and
shares of dense accuracy in :mod:`deepfake_lth.analysis.tickets`, the paper's claims and their
verdicts in :mod:`deepfake_lth.analysis.claims`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
NOT_ENOUGH_SEEDS = "not enough seeds"
HOLDS = "holds"
FAILS = "does not hold"
UNCLEAR = "not enough evidence"
NOT_RUN = "not run"  # nothing to compare: the method or data is not in this run
LEVEL_TOLERANCE = 0.01  # two methods' levels are compared when their sparsities differ ≤ 1 pt
NEAR = 0.05  # "at 80 %": the compared level lies within 5 points of 80 %
Z = 1.959963984540054  # two-sided 95 % normal quantile (one seed: binomial standard errors)
MARGIN = 0.02  # non-inferiority margin δ: "keeps dense accuracy" means not worse by δ or more
ONE_SEED = "one seed"  # a comparison of trained networks from one training run each


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with its two-sided t confidence interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int
    sd: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def finite(values: Iterable[Any]) -> np.ndarray:
    v = np.asarray([float(x) for x in values if x is not None], dtype=float)
    return v[np.isfinite(v)]


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean ± t-interval (``scipy.stats.t.interval`` with n − 1 degrees of freedom and scale
    sd/√n) of the finite ``values``; the bounds are NaN with fewer than two values."""
    from scipy import stats

    v = finite(values)
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(v.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1, math.nan)
    sd = float(v.std(ddof=1))
    if sd == 0:
        return Interval(mean, mean, mean, n, 0.0)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return Interval(mean, float(low), float(high), n, sd)


def ci_bounds(values: Iterable[float]) -> tuple[float, float]:
    """(low, high) of the 95 % t-interval, for seaborn's ``errorbar=`` (NaN with one value)."""
    ci = mean_ci(values)
    return ci.low, ci.high


def binomial_se(p: float, n: float) -> float:
    """Standard error √(p(1−p)/n) of an accuracy ``p`` measured on ``n`` test faces."""
    if p is None or n is None or not np.isfinite(p) or not np.isfinite(n) or n <= 0:
        return math.nan
    return math.sqrt(max(p * (1 - p), 0.0) / n)


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison of A − B over seeds."""

    n_pairs: int
    mean_diff: float
    low: float
    high: float
    t: float
    p: float
    note: str = ""

    @property
    def significant(self) -> bool:
        return bool(np.isfinite(self.p) and self.p < 1 - CONFIDENCE)


def paired_test(
    a: Mapping[Any, float], b: Mapping[Any, float], confidence: float = CONFIDENCE
) -> PairedTest:
    """Paired t-test (``scipy.stats.ttest_rel``) of ``a`` against ``b`` over their shared keys
    (seeds) with finite values, and the t-interval of the mean difference a − b."""
    from scipy import stats

    keys = sorted(k for k in set(a) & set(b) if np.isfinite(a[k]) and np.isfinite(b[k]))
    x = np.asarray([float(a[k]) for k in keys])
    y = np.asarray([float(b[k]) for k in keys])
    d = x - y
    if len(keys) < 2:
        mean = float(d.mean()) if len(d) else math.nan
        return PairedTest(len(keys), mean, math.nan, math.nan, math.nan, math.nan,
                          NOT_ENOUGH_SEEDS)
    ci = mean_ci(d, confidence)
    if ci.sd == 0:  # the same difference on every seed: t is undefined
        return PairedTest(len(keys), ci.mean, ci.low, ci.high, math.nan, math.nan,
                          "the same difference on every seed")
    res = stats.ttest_rel(x, y)
    return PairedTest(len(keys), ci.mean, ci.low, ci.high, float(res.statistic),
                      float(res.pvalue))


# --------------------------------------------------------------------------- tables


def summarize(runs, value: str = "test_acc", confidence: float = CONFIDENCE):
    """Mean and t-interval of ``value`` over seeds per dataset × model × method × level."""
    import pandas as pd

    cols = ["dataset", "model", "method", "level", "sparsity", "n", "mean", "sd", "low", "high"]
    rows = []
    for (dataset, model, method, level), g in runs.groupby(
        ["dataset", "model", "method", "level"], sort=False
    ):
        ci = mean_ci(g[value], confidence)
        rows.append([dataset, model, method, level, float(g["sparsity"].mean()), ci.n,
                     ci.mean, ci.sd, ci.low, ci.high])
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["dataset", "model", "method", "sparsity"], ignore_index=True)


def levels_of(runs, dataset: str, model: str, method: str) -> dict[str, float]:
    """Level name → mean measured sparsity of ``method`` (dense: ``{'dense': 0}``)."""
    part = runs[(runs["dataset"] == dataset) & (runs["model"] == model)
                & (runs["method"] == method)]
    return {str(k): float(v) for k, v in part.groupby("level")["sparsity"].mean().items()}


def by_seed(runs, dataset: str, model: str, method: str, level: str, value: str = "test_acc"
             ) -> dict[int, float]:
    part = runs[(runs["dataset"] == dataset) & (runs["model"] == model)
                & (runs["method"] == method) & (runs["level"] == level)]
    return {int(s): float(v) for s, v in zip(part["seed"], part[value], strict=True)}


def n_test(runs, dataset: str, model: str) -> float:
    """Test faces of a dataset (the same for every network of a model)."""
    if "test_samples" not in runs:
        return math.nan
    part = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]["test_samples"]
    part = part[np.isfinite(part.astype(float))]
    return float(part.iloc[0]) if len(part) else math.nan


def match_levels(runs, dataset: str, model: str, method_a: str, method_b: str,
                 tol: float = LEVEL_TOLERANCE) -> list[tuple[str, str, float]]:
    """Levels of ``method_a`` and ``method_b`` at the same sparsity (within ``tol``):
    (level_a, level_b, sparsity of a), by sparsity."""
    a = levels_of(runs, dataset, model, method_a)
    b = levels_of(runs, dataset, model, method_b)
    out = []
    for level_b, s_b in b.items():
        if not a:
            break
        level_a = min(a, key=lambda k: abs(a[k] - s_b))
        if abs(a[level_a] - s_b) <= tol:
            out.append((level_a, level_b, a[level_a]))
    return sorted(out, key=lambda t: t[2])


def paired_comparisons(runs, method_a: str, method_b: str, value: str = "test_acc",
                       tol: float = LEVEL_TOLERANCE):
    """Paired tests of ``method_a`` − ``method_b`` over seeds at every shared sparsity, per
    dataset and model."""
    import pandas as pd

    rows = []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        for level_a, level_b, s in match_levels(runs, dataset, model, method_a, method_b, tol):
            test = paired_test(by_seed(runs, dataset, model, method_a, level_a, value),
                               by_seed(runs, dataset, model, method_b, level_b, value))
            rows.append({"dataset": dataset, "model": model, "method_a": method_a,
                         "method_b": method_b, "level_a": level_a, "level_b": level_b,
                         "sparsity": s, "n_pairs": test.n_pairs, "mean_diff": test.mean_diff,
                         "low": test.low, "high": test.high, "t": test.t, "p": test.p,
                         "note": test.note})
    cols = ["dataset", "model", "method_a", "method_b", "level_a", "level_b", "sparsity",
            "n_pairs", "mean_diff", "low", "high", "t", "p", "note"]
    return pd.DataFrame.from_records(rows, columns=cols)


# --------------------------------------------------------------------------- decisions

GREATER, LESS, TIE = "greater", "less", "unclear"


def se_diff(pa: float, pb: float, n: float) -> float:
    """Binomial SE of the difference of two accuracies on the same n faces (as if
    independent; their positive correlation makes the true SE smaller)."""
    return math.hypot(binomial_se(pa, n), binomial_se(pb, n))


# --------------------------------------------------------------------------- test units


def per_video(run: Mapping[str, Any]) -> Any:
    """The run's table of test videos (index video_id; columns n, correct) or None."""
    table = run.get("per_video") if hasattr(run, "get") else None
    return table if table is not None and not isinstance(table, float) and len(table) else None


def n_units(runs, dataset: str, model: str, kind: str | None) -> tuple[float, str]:
    """The number of independent test units and their name: test videos on a video set (when
    known), test images otherwise."""
    part = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
    if kind == "videos" and "test_videos" in part:
        videos = part["test_videos"].astype(float)
        videos = videos[np.isfinite(videos)]
        if len(videos):
            return float(videos.iloc[0]), "videos"
    return n_test(runs, dataset, model), ("frames" if kind == "videos" else "images")


@dataclass(frozen=True)
class Diff:
    """Mean difference A − B of test accuracy with its standard error and quantile."""

    mean: float
    se: float
    q: float  # the interval is mean ± q · se
    n_seeds: int
    how: str  # where the standard error comes from, in words
    df: float = math.inf  # degrees of freedom of q (inf: the normal quantile)
    # why this difference cannot decide anything ("" when it can): no variance, too few
    # test units of a class, no standard error
    problem: str = ""
    # DeLong: the per-unit placement differences of one seed, (fakes, reals) as pandas
    # Series indexed by unit, so that seeds can be combined unit by unit
    units: Any = None

    def p_above(self, null: float = 0.0) -> float:
        """One-sided p-value of H0: A − B ≤ ``null`` (small: A − B is above ``null``)."""
        return _one_sided(self.mean - null, self.se, self.df)

    def p_below(self, null: float = 0.0) -> float:
        """One-sided p-value of H0: A − B ≥ ``null`` (small: A − B is below ``null``)."""
        return _one_sided(null - self.mean, self.se, self.df)

    @property
    def low(self) -> float:
        return self.mean - self.q * self.se

    @property
    def high(self) -> float:
        return self.mean + self.q * self.se

    @property
    def outcome(self) -> str:
        if not np.isfinite(self.mean) or not np.isfinite(self.se) or self.se <= 0:
            return TIE  # no variance: no certainty either way
        return GREATER if self.low > 0 else LESS if self.high < 0 else TIE

    def text(self) -> str:
        """"+2.1 pp [+0.4, +3.8]"."""
        if not np.isfinite(self.mean):
            return "no data"
        if not np.isfinite(self.se):
            return f"{100 * self.mean:+.1f} pp (no standard error)"
        return f"{100 * self.mean:+.1f} pp [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"


def t_quantile(df: float) -> float:
    """The two-sided 95 % quantile of t with ``df`` degrees of freedom (normal when inf)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) if np.isfinite(df) else Z


def _one_sided(excess: float, se: float, df: float) -> float:
    """P(T ≥ excess / se) under the null, for the t (``df``) or normal distribution."""
    from scipy import stats

    if not np.isfinite(excess) or not np.isfinite(se) or se <= 0:
        return math.nan  # an SE of 0 is no evidence (a network constant on the test set)
    z = excess / se
    return float(stats.norm.sf(z) if not np.isfinite(df) else stats.t.sf(z, df))


def runs_by_seed(runs, dataset: str, model: str, method: str, level: str) -> dict[int, Any]:
    part = runs[(runs["dataset"] == dataset) & (runs["model"] == model)
                & (runs["method"] == method) & (runs["level"] == level)]
    return {int(r["seed"]): r for _, r in part.iterrows() if np.isfinite(float(r["test_acc"]))}


@dataclass(frozen=True)
class Spread:
    """The mean of a seeds × units table of differences and its variance (two-way)."""

    mean: float
    var: float
    df: float
    seeds: int
    units: int


def two_way(blocks: Sequence[tuple[Any, Any]]) -> Spread:
    """Mean and variance of a difference measured by S seeds on the same V test units.

    ``blocks``: [(d, w)], d seeds × units, w the units' weights (DeLong: fakes and reals).
    Var = A + B − C: A = var of the per-seed means / S; B = V/(V−1) Σ πᵥ² (d̄ᵥ − D)² (units
    averaged over seeds); C = V/((S−1)(V−1)) Σ πᵥ² Σₛ rₛᵥ² / S (two-way residuals, counted
    in both); B − C taken as 0 when negative. Quantile: :func:`mls_df`. One seed: B."""
    parts, cs = [], []
    first = None
    for d, w in blocks:
        d = np.asarray(d, dtype=float)
        pi = np.asarray(w, dtype=float) / float(np.sum(w))
        s, v = d.shape
        per_seed = d @ pi
        if first is None:
            first = per_seed
        unit = d.mean(axis=0)
        mean = float(unit @ pi)
        b = v / (v - 1) * float(np.sum(pi**2 * (unit - mean) ** 2)) if v >= 2 else math.nan
        parts.append((b, v - 1.0))
        if s >= 2 and v >= 2:
            resid = d - unit[None, :] - per_seed[:, None] + mean
            cs.append((v / ((s - 1) * (v - 1)) * float(np.sum(pi**2 * (resid**2).sum(0))) / s,
                       (s - 1.0) * (v - 1.0)))
    n_seeds = len(first)
    n_units = int(sum(np.asarray(d).shape[1] for d, _ in blocks))
    mean = float(first.mean())
    if any(not np.isfinite(b) for b, _ in parts):
        return Spread(mean, math.nan, math.nan, n_seeds, n_units)
    b_total = sum(b for b, _ in parts)
    if n_seeds < 2:
        return Spread(mean, b_total, welch(parts, b_total), n_seeds, n_units)
    a = float(first.var(ddof=1)) / n_seeds
    c_total = sum(c for c, _ in cs)
    if b_total > c_total:
        var, terms = a + b_total - c_total, [(a, n_seeds - 1.0), *parts,
                                             *[(-c, k) for c, k in cs]]
    else:  # the shared units' own term (B − C) comes out negative: 0
        var, terms = a, [(a, n_seeds - 1.0)]
    return Spread(mean, var, mls_df(terms, var), n_seeds, n_units)


def mls_df(terms: Sequence[tuple[float, float]], total: float) -> float:
    """Degrees of freedom whose t quantile q gives q·√total = √(Σ qᵢ²·termᵢ), qᵢ each
    term's own t quantile: the modified large-sample interval (Graybill and Wang 1980)."""
    from scipy import optimize, stats

    if not np.isfinite(total) or total <= 0:
        return math.inf
    q2 = sum(t * t_quantile(k if k > 0 else math.inf) ** 2 for t, k in terms
             if np.isfinite(t)) / total
    if q2 <= Z * Z * (1 + 1e-9):
        return math.inf
    q = math.sqrt(q2)
    if stats.t.ppf(0.5 + CONFIDENCE / 2, 1e7) >= q:
        return math.inf
    return float(optimize.brentq(lambda k: stats.t.ppf(0.5 + CONFIDENCE / 2, k) - q, 0.05, 1e7))


def welch(terms: Sequence[tuple[float, float]], total: float) -> float:
    """Welch–Satterthwaite: total² / Σ termᵢ²/dfᵢ (terms may enter with either sign)."""
    denominator = sum(t * t / d for t, d in terms if d > 0 and np.isfinite(t))
    return float(total**2 / denominator) if denominator > 0 else math.inf


MIN_UNITS = 10  # test units per class below which a comparison decides nothing


def units_problem(n_fake: float | None, n_real: float | None, total: float, unit: str) -> str:
    """Why a comparison on these test units cannot decide: fewer than :data:`MIN_UNITS` of
    a class (or, classes unknown, fewer than twice as many in all); "" otherwise."""
    if n_fake is not None and n_real is not None and np.isfinite(n_fake) and np.isfinite(
            n_real):
        few = min(n_fake, n_real)
        if few < MIN_UNITS:
            cls = "fake" if n_fake <= n_real else "real"
            return (f"{few:.0f} {cls} test {unit} (fewer than {MIN_UNITS} per class)")
        return ""
    if np.isfinite(total) and total < 2 * MIN_UNITS:
        return f"{total:.0f} test {unit} (fewer than {2 * MIN_UNITS})"
    return ""


def spread_diff(spread: Spread, how: str, problem: str = "") -> Diff:
    """A :class:`Diff` from a :class:`Spread`: the t quantile of its degrees of freedom; a
    variance of 0 is a problem (nothing to tell the difference from)."""
    se = math.sqrt(spread.var) if np.isfinite(spread.var) and spread.var >= 0 else math.nan
    if not problem and not np.isfinite(se):
        problem = "no standard error"
    elif not problem and se <= 0:
        problem = (f"the difference is the same on every test unit and seed "
                   f"({100 * spread.mean:+.1f} pp): no variance to judge it by")
    df = spread.df if np.isfinite(spread.df) else math.inf
    return Diff(spread.mean, se, t_quantile(df), spread.seeds, how, df, problem)


def unit_accuracy(run: Mapping[str, Any]) -> Any:
    """The run's test units (video_id; an image on an image set) as a table of accuracy
    ``acc``, frames ``n`` and ``fake`` (when known), or None without predictions.csv."""
    table = per_video(run)
    if table is None:
        return None
    out = table.assign(acc=table["correct"].astype(float) / table["n"].astype(float))
    if not np.isfinite(out["acc"].to_numpy(dtype=float)).all():
        raise ValueError(f"non-finite per-unit accuracy in the predictions of "
                         f"{run.get('method')}/{run.get('level')} seed {run.get('seed')}")
    return out


def unit_matrix(pairs_by_seed: Sequence[Sequence[tuple[Any, Any]]]):
    """Seeds × units of A − B accuracy (each seed's level pairs averaged), over the units
    every table has, with the units' frame counts and fake/real counts: (d, w, n_fake,
    n_real); None when a table is missing."""
    tables = [t for seed in pairs_by_seed for pair in seed for t in pair]
    if not tables or any(t is None for t in tables):
        return None
    common = tables[0].index
    for t in tables[1:]:
        common = common.intersection(t.index)
    d = np.array([np.mean([ta.loc[common, "acc"].to_numpy() - tb.loc[common, "acc"].to_numpy()
                           for ta, tb in seed], axis=0) for seed in pairs_by_seed])
    w = tables[0].loc[common, "n"].to_numpy(dtype=float)
    if "fake" in tables[0]:
        fake = tables[0].loc[common, "fake"].to_numpy(dtype=float) > 0.5
        return d, w, float(fake.sum()), float((~fake).sum())
    return d, w, None, None


def estimate_diff(runs, dataset: str, model: str, a: str, b: str,
                  levels: Sequence[tuple[str, str]], kind: str | None = None) -> Diff | None:
    """A − B test accuracy over the level pairs ``levels`` [(level of a, level of b)] (averaged
    over them), paired by seed, with its standard error:

    * with each run's predictions.csv: the per-unit accuracy differences (the unit: a test
      video on a video set, an image on an image set, each seed scored on the same units)
      as a seeds × units table, its variance from :func:`two_way` (the seeds', plus the
      shared test units', less their common residual) and the t quantile of its
      Welch–Satterthwaite degrees of freedom;
    * without predictions: the binomial SE over the test units (each counted once, as if the
      two networks erred independently: conservative) plus the variance over seeds / seeds.

    The result's ``problem`` says why it cannot decide: fewer than :data:`MIN_UNITS` test
    units of a class, or no variance. None when no seed has both."""
    by_pair = [(runs_by_seed(runs, dataset, model, a, la), runs_by_seed(runs, dataset, model, b, lb))
               for la, lb in levels]
    seeds = sorted(set.intersection(*[set(x) & set(y) for x, y in by_pair])) if by_pair else []
    if not seeds:
        return None
    unit = "videos" if kind == "videos" else "images"
    seed_words = f" and {len(seeds)} seeds" if len(seeds) >= 2 else ", one seed"
    found = unit_matrix([[(unit_accuracy(x[s]), unit_accuracy(y[s])) for x, y in by_pair]
                         for s in seeds])
    if found is not None:
        d, w, n_fake, n_real = found
        spread = two_way([(d, w)])
        # the mean over units weighted by frames is the accuracy difference over frames
        return spread_diff(spread, f"paired by {unit[:-1]} over {d.shape[1]} test "
                           f"{unit}{seed_words}",
                           units_problem(n_fake, n_real, d.shape[1], unit))
    d_seed = np.array([np.mean([float(x[s]["test_acc"]) - float(y[s]["test_acc"])
                                for x, y in by_pair]) for s in seeds])
    n_seeds = len(seeds)
    seed_var = float(d_seed.var(ddof=1)) / n_seeds if n_seeds >= 2 else 0.0
    n, name = n_units(runs, dataset, model, kind)
    if not np.isfinite(n):  # metrics.json without test_samples (very old run folders)
        if n_seeds < 2:
            return Diff(float(d_seed.mean()), math.nan, Z, n_seeds,
                        "no standard error: no predictions.csv and the number of test units "
                        "is unknown", math.inf, "no standard error")
        return spread_diff(Spread(float(d_seed.mean()), seed_var, n_seeds - 1.0, n_seeds, 0),
                           f"t-interval over {n_seeds} seeds only (no predictions.csv and no "
                           "test-set size: the test units' variance is left out)")
    pa = np.mean([float(x[s]["test_acc"]) for x, _ in by_pair for s in seeds])
    pb = np.mean([float(y[s]["test_acc"]) for _, y in by_pair for s in seeds])
    binom = se_diff(pa, pb, n) ** 2
    var = binom + seed_var
    df = welch([(binom, n - 1), (seed_var, n_seeds - 1)], var) if var > 0 else math.inf
    spread = Spread(float(d_seed.mean()), var, df, n_seeds, int(n))
    return spread_diff(spread, f"binomial over {n:.0f} test {name if n != 1 else name[:-1]}"
                       f"{seed_words} (no predictions.csv)",
                       units_problem(None, None, n, name))


# --------------------------------------------------------------------------- verdicts


def holm(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections at family-wise level ``alpha``: sorted p₍₁₎ ≤ … ≤ p₍ₘ₎,
    reject H₍ᵢ₎ while p₍ᵢ₎ ≤ α / (m − i + 1); NaN is never rejected."""
    p = [float(x) if x is not None and np.isfinite(x) else math.inf for x in pvalues]
    order = sorted(range(len(p)), key=lambda i: p[i])
    out = [False] * len(p)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        out[i] = True
    return out


@dataclass
class Comparison:
    """One comparison of a claim: A − B with the p-values for and against the claim.

    ``p_for`` tests the claim's side (superiority: A − B > 0; non-inferiority: A − B > −δ),
    ``p_against`` the opposite (A − B < 0; A − B < −δ). ``text`` says what was compared;
    ``problem`` why it cannot decide ("" when it can)."""

    text: str
    n_seeds: int
    p_for: float
    p_against: float
    outcome: str = TIE  # after the decision rule: GREATER (for), LESS (against) or TIE
    problem: str = ""


def superiority(text: str, diff: Diff) -> Comparison:
    """A beats B: the 95 % interval of A − B above 0 (for), below 0 (against)."""
    return Comparison(text, diff.n_seeds, diff.p_above(0.0), diff.p_below(0.0),
                      problem=diff.problem)


def non_inferiority(text: str, diff: Diff, margin: float = MARGIN) -> Comparison:
    """A keeps B's level: the 95 % interval of A − B above −δ (for), below −δ (against)."""
    return Comparison(text, diff.n_seeds, diff.p_above(-margin), diff.p_below(-margin),
                      problem=diff.problem)


RULE = ("Decision: \"holds\" when every comparison is for the claim, each tested one-sided at "
        "2.5 % (the 95 % interval's side: an intersection–union test, which needs no "
        "correction); \"does not hold\" when a comparison is against it with Holm's "
        "correction over the claim's comparisons (one-sided, family-wise 2.5 %). A "
        "comparison of trained networks needs two or more seeds, its interval including the "
        "variance between seeds and between the shared test units; with one seed, no "
        f"variance, or fewer than {MIN_UNITS} test units of a class it decides nothing "
        "(\"not enough evidence\" with the reason).")


def judge(comparisons: Sequence[Comparison], confidence: float = CONFIDENCE
          ) -> tuple[str, str]:
    """A claim's verdict and, when there is one, the reason in a few words (:data:`RULE`).

    *holds*: every comparison is for the claim at (1 − confidence)/2 one-sided
    (intersection–union: the claim is the intersection of the comparisons' alternatives, so
    each is tested at the full level); *does not hold*: a comparison is against it after
    Holm's step-down over the claim's comparisons; *not enough evidence* otherwise, with
    the reason: "one seed" (:data:`ONE_SEED`) when a comparison rests on one training run
    each, else the first comparison's ``problem`` (no variance, too few test units). Sets
    each comparison's ``outcome``."""
    if not comparisons:
        return NOT_RUN, ""
    alpha = (1 - confidence) / 2
    against = holm([c.p_against for c in comparisons], alpha)
    for_ = [bool(np.isfinite(c.p_for) and c.p_for <= alpha) for c in comparisons]
    for c, f, a in zip(comparisons, for_, against, strict=True):
        c.outcome = LESS if a else GREATER if f else TIE
    if any(c.n_seeds < 2 for c in comparisons):
        return UNCLEAR, ONE_SEED
    if any(against):
        return FAILS, ""
    problems = [c.problem for c in comparisons if c.problem]
    if problems:
        return UNCLEAR, problems[0]
    if all(for_):
        return HOLDS, ""
    return UNCLEAR, ""
