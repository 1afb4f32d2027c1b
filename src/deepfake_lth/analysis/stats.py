"""Statistics over seeds and test units, winning tickets, and calibration flags.

Everything here works on the pruning-runs table of :func:`deepfake_lth.report.collect_metrics`
(one row per trained network: ``dataset, model, seed, method, level, sparsity, test_acc,
test_samples``, …, and ``per_video``: frames and correct frames per test video, read from
the run's predictions.csv), so it is testable without a results tree.

* :func:`mean_ci`: mean and 95 % t-interval over seeds (``scipy.stats.t``);
* :func:`paired_test`: paired t-test of two methods over the seeds they share
  (``scipy.stats.ttest_rel``); fewer than two pairs: "not enough seeds";
* :func:`estimate_diff`: the difference of two networks' accuracies with a standard error
  whose unit is the test *image* on an image set and the test *video* on a video set (the
  frames of one video are strongly correlated, so they are not independent draws);
* :func:`judge`: a claim's verdict from its comparisons (95 % intervals, Holm, two or more
  seeds).

Winning tickets and calibration flags are in :mod:`deepfake_lth.analysis.tickets`, the paper's claims
and their verdicts in :mod:`deepfake_lth.analysis.claims`.
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
        if not np.isfinite(self.mean) or not np.isfinite(self.se):
            return TIE
        if self.se == 0:
            return GREATER if self.mean > 0 else LESS if self.mean < 0 else TIE
        return GREATER if self.low > 0 else LESS if self.high < 0 else TIE

    def text(self) -> str:
        """"+2.1 pp [+0.4, +3.8]"."""
        if not np.isfinite(self.mean):
            return "no data"
        if not np.isfinite(self.se):
            return f"{100 * self.mean:+.1f} pp (no standard error)"
        return f"{100 * self.mean:+.1f} pp [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"


def satterthwaite(parts: Sequence[tuple[float, float]]) -> float:
    """Welch–Satterthwaite degrees of freedom of a sum of variance estimates [(variance,
    its degrees of freedom)]: (Σ vᵢ)² / Σ vᵢ²/dfᵢ; parts with no variance or no degrees of
    freedom drop out; inf when nothing is left (a normal quantile)."""
    used = [(v, d) for v, d in parts if np.isfinite(v) and v > 0 and d > 0]
    denominator = sum(v * v / d for v, d in used)  # 0 when every part's df is infinite
    if not used or denominator == 0:
        return math.inf
    return float(sum(v for v, _ in used) ** 2 / denominator)


def t_quantile(df: float) -> float:
    """The two-sided 95 % quantile of t with ``df`` degrees of freedom (normal when inf)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) if np.isfinite(df) else Z


def _one_sided(excess: float, se: float, df: float) -> float:
    """P(T ≥ excess / se) under the null, for the t (``df``) or normal distribution."""
    from scipy import stats

    if not np.isfinite(excess) or not np.isfinite(se):
        return math.nan
    if se == 0:
        return 0.0 if excess > 0 else 1.0
    z = excess / se
    return float(stats.norm.sf(z) if not np.isfinite(df) else stats.t.sf(z, df))


def _rows(runs, dataset: str, model: str, method: str, level: str) -> dict[int, Any]:
    part = runs[(runs["dataset"] == dataset) & (runs["model"] == model)
                & (runs["method"] == method) & (runs["level"] == level)]
    return {int(r["seed"]): r for _, r in part.iterrows() if np.isfinite(float(r["test_acc"]))}


def cluster_se(d, w) -> float:
    """Standard error of the weighted mean Σ wᵥdᵥ/Σ wᵥ of per-video values dᵥ with frame
    counts wᵥ (cluster-robust: √(V/(V−1) · Σ (wᵥ/W)² (dᵥ − D)²)); NaN with one video."""
    d, w = np.asarray(d, dtype=float), np.asarray(w, dtype=float)
    ok = np.isfinite(d) & np.isfinite(w) & (w > 0)
    d, w = d[ok], w[ok] / w[ok].sum() if ok.any() else w[ok]
    if len(d) < 2:
        return math.nan
    mean = float(np.sum(w * d))
    return math.sqrt(len(d) / (len(d) - 1) * float(np.sum(w**2 * (d - mean) ** 2)))


def estimate_diff(runs, dataset: str, model: str, a: str, b: str,
                  levels: Sequence[tuple[str, str]], kind: str | None = None) -> Diff | None:
    """A − B test accuracy over the level pairs ``levels`` [(level of a, level of b)] (averaged
    over them), paired by seed, with its standard error:

    * video set with predictions.csv: the per-video accuracies paired by video, their
      differences averaged over the seeds and level pairs; SE² = (cluster SE over the test
      videos)² + (variance of the per-seed differences)/seeds; interval ± 1.96 SE;
    * video set without predictions: the binomial SE over the test videos (each counted
      once) plus the same seed term;
    * image set: the 95 % t-interval over seeds, or with one seed the binomial SE of the
      difference over the test images and ± 1.96 SE.

    None when no seed has both."""
    import pandas as pd

    by_pair = [(_rows(runs, dataset, model, a, la), _rows(runs, dataset, model, b, lb))
               for la, lb in levels]
    seeds = sorted(set.intersection(*[set(x) & set(y) for x, y in by_pair])) if by_pair else []
    if not seeds:
        return None
    d_seed = np.array([np.mean([float(x[s]["test_acc"]) - float(y[s]["test_acc"])
                                for x, y in by_pair]) for s in seeds])
    n_seeds = len(seeds)
    seed_var = float(d_seed.var(ddof=1)) / n_seeds if n_seeds >= 2 else 0.0
    seed_words = f" and {n_seeds} seeds" if n_seeds >= 2 else ""
    # between-seed variance is estimated from n_seeds values: the t quantile with n − 1 degrees
    # of freedom; on a video set it is added to the test videos' (Welch–Satterthwaite)
    seed_df = float(n_seeds - 1) if n_seeds >= 2 else math.inf
    seed_q = t_quantile(seed_df)
    if kind == "videos":
        tables = [(per_video(x[s]), per_video(y[s])) for x, y in by_pair for s in seeds]
        if all(ta is not None and tb is not None for ta, tb in tables):
            diffs, weights = [], []
            for ta, tb in tables:
                joined = ta.add_suffix("_a").join(tb.add_suffix("_b"), how="inner")
                diffs.append((joined["correct_a"] / joined["n_a"])
                             - (joined["correct_b"] / joined["n_b"]))
                weights.append(joined["n_a"].astype(float))
            dv = pd.concat(diffs, axis=1).mean(axis=1)
            wv = pd.concat(weights, axis=1).mean(axis=1)
            video_se = cluster_se(dv.to_numpy(), wv.to_numpy())
            se = math.sqrt(video_se**2 + seed_var) if np.isfinite(video_se) else math.nan
            df = satterthwaite([(video_se**2, len(dv) - 1), (seed_var, n_seeds - 1)])
            return Diff(float(d_seed.mean()), se, t_quantile(df), n_seeds,
                        f"paired by video over {len(dv)} test videos{seed_words}", df)
        n, unit = n_units(runs, dataset, model, kind)
        pa = np.mean([float(x[s]["test_acc"]) for x, _ in by_pair for s in seeds])
        pb = np.mean([float(y[s]["test_acc"]) for _, y in by_pair for s in seeds])
        se = math.sqrt(se_diff(pa, pb, n) ** 2 + seed_var)
        if not np.isfinite(n):
            return Diff(float(d_seed.mean()), math.nan, Z, n_seeds,
                        "no standard error: no predictions.csv and the number of test videos "
                        "is unknown")
        df = satterthwaite([(se_diff(pa, pb, n) ** 2, n - 1), (seed_var, n_seeds - 1)])
        return Diff(float(d_seed.mean()), se, t_quantile(df), n_seeds,
                    f"binomial over {n:.0f} test {unit if n != 1 else unit[:-1]}{seed_words} "
                    "(no predictions.csv)", df)
    if n_seeds >= 2:
        sd = float(d_seed.std(ddof=1))
        return Diff(float(d_seed.mean()), sd / math.sqrt(n_seeds), seed_q, n_seeds,
                    f"t-interval over {n_seeds} seeds", seed_df)
    n = n_test(runs, dataset, model)
    ses = [se_diff(float(x[seeds[0]]["test_acc"]), float(y[seeds[0]]["test_acc"]), n)
           for x, y in by_pair]
    return Diff(float(d_seed[0]), float(np.mean(ses)), Z, 1,
                f"one seed, binomial over {n:.0f} test images" if np.isfinite(n)
                else "one seed and an unknown test-set size: no standard error")


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
    ``p_against`` the opposite (A − B < 0; A − B < −δ). ``text`` says what was compared."""

    text: str
    n_seeds: int
    p_for: float
    p_against: float
    outcome: str = TIE  # after the multiplicity rule: GREATER (for), LESS (against) or TIE


def superiority(text: str, diff: Diff) -> Comparison:
    """A beats B: the 95 % interval of A − B above 0 (for), below 0 (against)."""
    return Comparison(text, diff.n_seeds, diff.p_above(0.0), diff.p_below(0.0))


def non_inferiority(text: str, diff: Diff, margin: float = MARGIN) -> Comparison:
    """A keeps B's level: the 95 % interval of A − B above −δ (for), below −δ (against)."""
    return Comparison(text, diff.n_seeds, diff.p_above(-margin), diff.p_below(-margin))


def judge(comparisons: Sequence[Comparison], confidence: float = CONFIDENCE
          ) -> tuple[str, str]:
    """A claim's verdict and, when there is one, the reason in a few words.

    Each side is tested one-sided at (1 − confidence)/2 — the 95 % interval's — with Holm's
    correction over the claim's comparisons: *holds* when every comparison is for the claim,
    *does not hold* when one is against it, *not enough evidence* otherwise. A comparison of
    trained networks from one seed each measures one training run: the claim then says
    "not enough evidence: one seed". Sets each comparison's ``outcome``."""
    if not comparisons:
        return NOT_RUN, ""
    alpha = (1 - confidence) / 2
    for_ = holm([c.p_for for c in comparisons], alpha)
    against = holm([c.p_against for c in comparisons], alpha)
    for c, f, a in zip(comparisons, for_, against, strict=True):
        c.outcome = LESS if a else GREATER if f else TIE
    if any(c.n_seeds < 2 for c in comparisons):
        return UNCLEAR, ONE_SEED
    if any(against):
        return FAILS, ""
    if all(for_):
        return HOLDS, ""
    return UNCLEAR, ""


def paired_auc_diff(labels, scores_a, scores_b) -> Diff | None:
    """AUC(A) − AUC(B) of two scorings of the same test videos, with DeLong's standard error
    (DeLong et al. 1988): each video's placement value (the share of the other class it
    outranks, ties one half) paired between A and B, SE² = var(Δ fakes)/m + var(Δ reals)/n.
    None with fewer than two videos of a class."""
    y = np.asarray(labels) > 0.5
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        return None

    def placements(scores):
        s = np.asarray(scores, dtype=np.float64)
        wins = (s[y][:, None] > s[~y][None, :]) + 0.5 * (s[y][:, None] == s[~y][None, :])
        return wins.mean(axis=1), wins.mean(axis=0)

    (fa, ra), (fb, rb) = placements(scores_a), placements(scores_b)
    var = float((fa - fb).var(ddof=1)) / m + float((ra - rb).var(ddof=1)) / n
    return Diff(float(fa.mean() - fb.mean()), math.sqrt(var), Z, 1,
                f"DeLong, paired by video over {m + n} test videos")
