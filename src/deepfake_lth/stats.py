"""Statistics over seeds, winning tickets, and the paper's claims checked against a run.

Everything here works on the pruning-runs table of :func:`deepfake_lth.report.collect_metrics`
(one row per trained network: ``dataset, model, seed, method, level, sparsity, test_acc,
test_samples``, …), so it is testable without a results tree.

* :func:`mean_ci`: mean and 95 % t-interval over seeds (``scipy.stats.t``);
* :func:`paired_test`: paired t-test of two methods over the seeds they share
  (``scipy.stats.ttest_rel``); fewer than two pairs: "not enough seeds";
* :func:`winning_tickets`: whether an IMP ticket is a *winning ticket* at each sparsity;
  its test accuracy within one standard error of the dense network's (the standard error
  over seeds, or with one seed the binomial √(p(1−p)/n_test)) and above both controls;
* :func:`evaluate_claims`: the paper's claims, each with a verdict (holds / does not hold /
  not enough evidence) computed from this run's numbers by a stated rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CONFIDENCE = 0.95
NOT_ENOUGH_SEEDS = "not enough seeds"
HOLDS = "holds"
FAILS = "does not hold"
UNCLEAR = "not enough evidence"
LEVEL_TOLERANCE = 0.01  # two methods' levels are compared when their sparsities differ ≤ 1 pt
NEAR = 0.05  # "at 80 %": the compared level lies within 5 points of 80 %
Z = 1.959963984540054  # two-sided 95 % normal quantile (one seed: binomial standard errors)


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


def _finite(values: Iterable[Any]) -> np.ndarray:
    v = np.asarray([float(x) for x in values if x is not None], dtype=float)
    return v[np.isfinite(v)]


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean ± t-interval (``scipy.stats.t.interval`` with n − 1 degrees of freedom and scale
    sd/√n) of the finite ``values``; the bounds are NaN with fewer than two values."""
    from scipy import stats

    v = _finite(values)
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


def _levels(runs, dataset: str, model: str, method: str) -> dict[str, float]:
    """Level name → mean measured sparsity of ``method`` (dense: ``{'dense': 0}``)."""
    part = runs[(runs["dataset"] == dataset) & (runs["model"] == model)
                & (runs["method"] == method)]
    return {str(k): float(v) for k, v in part.groupby("level")["sparsity"].mean().items()}


def _by_seed(runs, dataset: str, model: str, method: str, level: str, value: str = "test_acc"
             ) -> dict[int, float]:
    part = runs[(runs["dataset"] == dataset) & (runs["model"] == model)
                & (runs["method"] == method) & (runs["level"] == level)]
    return {int(s): float(v) for s, v in zip(part["seed"], part[value], strict=True)}


def _n_test(runs, dataset: str, model: str) -> float:
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
    a = _levels(runs, dataset, model, method_a)
    b = _levels(runs, dataset, model, method_b)
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
            test = paired_test(_by_seed(runs, dataset, model, method_a, level_a, value),
                               _by_seed(runs, dataset, model, method_b, level_b, value))
            rows.append({"dataset": dataset, "model": model, "method_a": method_a,
                         "method_b": method_b, "level_a": level_a, "level_b": level_b,
                         "sparsity": s, "n_pairs": test.n_pairs, "mean_diff": test.mean_diff,
                         "low": test.low, "high": test.high, "t": test.t, "p": test.p,
                         "note": test.note})
    cols = ["dataset", "model", "method_a", "method_b", "level_a", "level_b", "sparsity",
            "n_pairs", "mean_diff", "low", "high", "t", "p", "note"]
    return pd.DataFrame.from_records(rows, columns=cols)


# --------------------------------------------------------------------------- winning tickets


@dataclass(frozen=True)
class DenseReference:
    """The dense network's accuracy and the standard error a ticket is held to."""

    mean: float
    se: float
    kind: str  # "seeds" (sd/√n over seeds) or "binomial" (one seed: √(p(1−p)/n_test))
    n_seeds: int


def dense_reference(runs, dataset: str, model: str) -> DenseReference:
    """Mean dense test accuracy and its standard error: over seeds (sd/√n) with two or more
    seeds, the binomial √(p(1−p)/n_test) of the test accuracy with one."""
    acc = _finite(_by_seed(runs, dataset, model, "dense", "dense").values())
    if len(acc) == 0:
        return DenseReference(math.nan, math.nan, "none", 0)
    if len(acc) >= 2:
        return DenseReference(float(acc.mean()), float(acc.std(ddof=1) / math.sqrt(len(acc))),
                              "seeds", len(acc))
    p = float(acc[0])
    return DenseReference(p, binomial_se(p, _n_test(runs, dataset, model)), "binomial", 1)


def winning_tickets(runs, imp_method: str, controls: Sequence[str] = ()):
    """Per dataset × model × level of ``imp_method``: the ticket's mean accuracy, the dense
    mean ± SE, the controls' means at that level (``control-{name}`` folders of the same round),
    and ``winning`` = within one SE of dense (or above) and above every control present."""
    import pandas as pd

    rows = []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        ref = dense_reference(runs, dataset, model)
        for level, s in sorted(_levels(runs, dataset, model, imp_method).items(),
                               key=lambda kv: kv[1]):
            acc = _finite(_by_seed(runs, dataset, model, imp_method, level).values())
            if not len(acc):
                continue
            row: dict[str, Any] = {"dataset": dataset, "model": model, "level": level,
                                   "sparsity": s, "ticket": float(acc.mean()),
                                   "n_seeds": len(acc), "dense": ref.mean, "dense_se": ref.se,
                                   "se_kind": ref.kind}
            within = bool(np.isfinite(ref.se) and row["ticket"] >= ref.mean - ref.se)
            above = True
            for name in controls:
                c = _finite(_by_seed(runs, dataset, model, f"control-{name}", level).values())
                row[name] = float(c.mean()) if len(c) else math.nan
                if len(c):
                    above = above and row["ticket"] > row[name]
            row["within_se"] = within
            row["above_controls"] = above
            row["controls_present"] = [n for n in controls if np.isfinite(row[n])]
            row["winning"] = within and above
            rows.append(row)
    cols = ["dataset", "model", "level", "sparsity", "ticket", "n_seeds", "dense", "dense_se",
            "se_kind", *controls, "within_se", "above_controls", "controls_present", "winning"]
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


# --------------------------------------------------------------------------- decisions

GREATER, LESS, TIE = "greater", "less", "unclear"
WORDS = {GREATER: "for", LESS: "against", TIE: "undecided"}  # an outcome in the evidence


def decide(diffs: Sequence[float], se_single: float = math.nan) -> str:
    """Whether A − B (per-seed differences ``diffs``) is positive, negative or undecided:
    with two or more seeds by the 95 % t-interval of the mean difference (it excludes 0);
    with one seed by |d| > 1.96 · ``se_single`` (the binomial SE of the difference)."""
    d = _finite(diffs)
    if len(d) >= 2:
        ci = mean_ci(d)
        if ci.low > 0:
            return GREATER
        if ci.high < 0:
            return LESS
        return TIE
    if len(d) == 1 and np.isfinite(se_single) and se_single > 0:
        if d[0] > Z * se_single:
            return GREATER
        if d[0] < -Z * se_single:
            return LESS
    elif len(d) == 1 and se_single == 0 and d[0] != 0:
        return GREATER if d[0] > 0 else LESS
    return TIE


def verdict(outcomes: Sequence[str]) -> str:
    """holds: A > B in every comparison; does not hold: B > A in at least one; otherwise
    (some undecided, or nothing to compare) not enough evidence."""
    if not outcomes:
        return UNCLEAR
    if any(o == LESS for o in outcomes):
        return FAILS
    if all(o == GREATER for o in outcomes):
        return HOLDS
    return UNCLEAR


def _se_diff(pa: float, pb: float, n: float) -> float:
    """Binomial SE of the difference of two accuracies on the same n faces (as if
    independent; their positive correlation makes the true SE smaller)."""
    return math.hypot(binomial_se(pa, n), binomial_se(pb, n))


def _fmt_diff(d: Sequence[float], unit: float = 100.0, what: str = "pp") -> str:
    v = _finite(d)
    if not len(v):
        return "no data"
    ci = mean_ci(v)
    text = f"{unit * ci.mean:+.1f} {what}"
    if ci.n >= 2:
        text += f" [{unit * ci.low:+.1f}, {unit * ci.high:+.1f}] over {ci.n} seeds"
    else:
        text += " (one seed)"
    return text


# --------------------------------------------------------------------------- claims


@dataclass
class Claim:
    """One of the paper's claims with this run's verdict."""

    text: str
    source: str
    verdict: str
    rule: str
    evidence: list[str] = field(default_factory=list)


def dataset_kind(config: Mapping[str, Any], dataset: str) -> str | None:
    """``images`` or ``videos`` for a configured dataset (its ``kind``, its source's ``kind``,
    or the layout of a known set); None when the config does not say."""
    cfg = (config.get("datasets") or {}).get(dataset) or {}
    source = cfg.get("source") or {}
    kind = cfg.get("kind") or source.get("kind")
    if kind in ("images", "videos"):
        return kind
    layout = source.get("layout")
    if layout == "openforensics":
        return "images"
    if layout in ("faceforensics", "celebdf"):
        return "videos"
    if source.get("type") == "synthetic":
        return "videos"  # the generator's default kind
    return None


def _imp_methods(runs) -> list[str]:
    return sorted(m for m in runs["method"].unique() if m in ("imp-global", "imp-local"))


def _pairs_near(runs, dataset, model, a, b, target, near=NEAR, tol=LEVEL_TOLERANCE):
    matched = match_levels(runs, dataset, model, a, b, tol)
    matched = [m for m in matched if abs(m[2] - target) <= near]
    return min(matched, key=lambda m: abs(m[2] - target)) if matched else None


def _compare_at(runs, dataset, model, a, b, target=None, tol=LEVEL_TOLERANCE):
    """Outcome and evidence of A vs B: at the shared level (sparsities within ``tol``)
    nearest ``target`` or, with no target, averaged over every shared level (per seed)."""
    if target is None:
        matched = match_levels(runs, dataset, model, a, b, tol)
    else:
        one = _pairs_near(runs, dataset, model, a, b, target, tol=tol)
        matched = [one] if one else []
    if not matched:
        return None
    n = _n_test(runs, dataset, model)
    per_seed: dict[int, list[float]] = {}
    ses = []
    for level_a, level_b, _ in matched:
        xa = _by_seed(runs, dataset, model, a, level_a)
        xb = _by_seed(runs, dataset, model, b, level_b)
        for seed in set(xa) & set(xb):
            if np.isfinite(xa[seed]) and np.isfinite(xb[seed]):
                per_seed.setdefault(seed, []).append(xa[seed] - xb[seed])
                ses.append(_se_diff(xa[seed], xb[seed], n))
    diffs = [float(np.mean(v)) for v in per_seed.values()]
    if not diffs:
        return None
    outcome = decide(diffs, float(np.mean(ses)) if ses else math.nan)
    where = (f"{100 * matched[0][2]:.0f} %" if target is not None
             else f"mean over {len(matched)} levels")
    return outcome, f"{dataset}/{model} ({where}): {_fmt_diff(diffs)} → {WORDS[outcome]}"


def _claim_criterion(runs, config, kind, better, worse) -> Claim:
    datasets = [d for d in sorted(runs["dataset"].unique()) if dataset_kind(config, d) == kind]
    outcomes, evidence = [], []
    for dataset in datasets:
        for model in sorted(runs[runs["dataset"] == dataset]["model"].unique()):
            res = _compare_at(runs, dataset, model, better, worse)
            if res:
                outcomes.append(res[0])
                evidence.append(res[1])
    if not datasets:
        evidence.append(f"no {kind} dataset in this run")
    elif not outcomes:
        evidence.append(f"no {kind} dataset and model with both {better} and {worse}")
    label = {"imp-global": "IMP-Global", "imp-local": "IMP-Local"}
    where = {"images": "the image set (OpenForensic)",
             "videos": "the video set (FaceForensics++)"}[kind]
    return Claim(
        f"{label[better]} beats {label[worse]} on {where}",
        "§V-A, Fig. 2",
        verdict(outcomes),
        f"Per {kind} dataset and model: the difference {label[better]} − {label[worse]} of test "
        "accuracy, averaged over the IMP rounds both ran, per seed. A model counts for the "
        "claim when the 95 % t-interval over seeds lies above 0 (one seed: the difference "
        "exceeds 1.96 binomial standard errors), against it when the interval lies below 0. "
        "Holds when every model counts for it; does not hold when one counts against it.",
        evidence,
    )


def _claim_imp_vs_oneshot(runs) -> Claim:
    outcomes, evidence = [], []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        for imp in _imp_methods(runs):
            oneshot = "oneshot-" + imp.partition("-")[2]
            res = _compare_at(runs, dataset, model, imp, oneshot, target=0.8)
            if res:
                outcomes.append(res[0])
                evidence.append(f"{imp} vs {oneshot}, {res[1]}")
    if not outcomes:
        evidence.append("no IMP and one-shot levels of one criterion near 80 %")
    return Claim(
        "IMP ≥ one-shot pruning at 80 % sparsity (IMP outperforms one-shot)",
        "§V-B, §VI",
        verdict(outcomes),
        "Per dataset, model and criterion: IMP − one-shot test accuracy at the shared level "
        "nearest 80 % (within 5 points), paired by seed; decided as above (95 % t-interval "
        "over seeds, or 1.96 binomial SE with one seed).",
        evidence,
    )


def _retained(runs, dataset, model, method, level) -> dict[int, float]:
    dense = _by_seed(runs, dataset, model, "dense", "dense")
    acc = _by_seed(runs, dataset, model, method, level)
    return {s: acc[s] / dense[s] for s in acc if s in dense and dense[s] > 0}


def _level_near(runs, dataset, model, method, target=0.8):
    levels = _levels(runs, dataset, model, method)
    if not levels:
        return None
    level = min(levels, key=lambda k: abs(levels[k] - target))
    return level if abs(levels[level] - target) <= NEAR else None


def _retained_se(runs, dataset, model, method, level) -> float:
    """Binomial SE of a ticket's retained share acc/dense with one seed: SE(acc) / dense."""
    acc = _finite(_by_seed(runs, dataset, model, method, level).values())
    dense = _finite(_by_seed(runs, dataset, model, "dense", "dense").values())
    if not len(acc) or not len(dense) or dense.mean() <= 0:
        return math.nan
    return binomial_se(float(acc.mean()), _n_test(runs, dataset, model)) / float(dense.mean())


def _decide_unpaired(a: np.ndarray, b: np.ndarray, se_a: float, se_b: float) -> str:
    """A vs B from independent samples: Welch-style SE over seeds (t quantile with the
    smaller sample's degrees of freedom) when both have two or more seeds, otherwise the
    binomial SEs ``se_a``, ``se_b`` and 1.96."""
    from scipy import stats

    diff = float(a.mean() - b.mean())
    if len(a) >= 2 and len(b) >= 2:
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        q = float(stats.t.ppf(0.5 + CONFIDENCE / 2, min(len(a), len(b)) - 1))
    else:
        se, q = math.hypot(se_a, se_b), Z
    if not np.isfinite(se):
        return TIE
    if diff - q * se > 0 or (se == 0 and diff > 0):
        return GREATER
    if diff + q * se < 0 or (se == 0 and diff < 0):
        return LESS
    return TIE


def _main_imp(runs) -> str | None:
    methods = _imp_methods(runs)
    return "imp-global" if "imp-global" in methods else (methods[0] if methods else None)


def _claim_resnet(runs) -> Claim:
    rule = ("Per dataset: the accuracy an IMP ticket (IMP-Global) keeps at the level nearest "
            "80 %, as a share of the same seed's dense accuracy. Holds when ResNet-18 keeps a "
            "larger share than every other model (the 95 % interval of the difference above "
            "0, Welch-style over seeds; one seed: 1.96 binomial SE); does not hold when "
            "another model keeps a larger share by that rule.")
    text = "ResNet-18 is the most robust model under pruning"
    imp = _main_imp(runs)
    models = set(runs["model"].unique())
    if imp is None or "resnet18" not in models:
        return Claim(text, "§V-C", UNCLEAR, rule,
                     ["ResNet-18 is not in this run" if "resnet18" not in models
                      else "no IMP runs"])
    outcomes, evidence = [], []
    for dataset in sorted(runs["dataset"].unique()):
        part = runs[runs["dataset"] == dataset]
        kept = {}
        for model in sorted(part["model"].unique()):
            level = _level_near(runs, dataset, model, imp)
            if level:
                kept[model] = (_finite(_retained(runs, dataset, model, imp, level).values()),
                               _retained_se(runs, dataset, model, imp, level))
        if "resnet18" not in kept or len(kept) < 2:
            continue
        a, se_a = kept["resnet18"]
        for other, (b, se_b) in kept.items():
            if other == "resnet18" or not len(a) or not len(b):
                continue
            outcome = _decide_unpaired(a, b, se_a, se_b)
            outcomes.append(outcome)
            evidence.append(f"{dataset}: resnet18 keeps {100 * a.mean():.1f} %, {other} "
                            f"{100 * b.mean():.1f} % of dense → {WORDS[outcome]}")
    if not outcomes:
        evidence.append("no dataset with ResNet-18 and another model at ~80 % sparsity")
    return Claim(text, "§V-C", verdict(outcomes), rule, evidence)


def _claim_retains(runs) -> Claim:
    imp = _main_imp(runs)
    outcomes, evidence = [], []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        if imp is None:
            break
        level = _level_near(runs, dataset, model, imp)
        if not level:
            continue
        kept = _retained(runs, dataset, model, imp, level)
        diffs = [v - 0.9 for v in kept.values()]
        dense = _finite(_by_seed(runs, dataset, model, "dense", "dense").values())
        acc = _finite(_by_seed(runs, dataset, model, imp, level).values())
        se = (binomial_se(float(acc.mean()), _n_test(runs, dataset, model)) / dense.mean()
              if len(acc) and len(dense) else math.nan)
        outcome = decide(diffs, se)
        outcomes.append(outcome)
        mean = float(np.mean(list(kept.values()))) if kept else math.nan
        evidence.append(f"{dataset}/{model}: {imp} keeps {100 * mean:.1f} % of dense at "
                        f"{level} → {WORDS[outcome]}")
    if not outcomes:
        evidence.append("no IMP level near 80 % with its dense network")
    return Claim(
        "IMP tickets at 80 % sparsity keep about 90 % or more of the dense accuracy "
        "(MesoNet 56.2 / 62.6 on OpenForensic)",
        "Abstract, §V-A",
        verdict(outcomes),
        "Per dataset and model: the IMP-Global ticket's accuracy at the level nearest 80 % "
        "over the same seed's dense accuracy, minus 0.9; decided by the 95 % t-interval over "
        "seeds (one seed: 1.96 binomial SE).",
        evidence,
    )


def _claim_gradcam(deltas) -> Claim:
    rule = ("Per dataset, model and method: the Grad-CAM concentration (share of the heat in "
            "the hottest 10 % of pixels) of each face at the highest sparsity minus at the "
            "dense level, paired by face (and seed). Holds when the 95 % t-interval of the "
            "mean increase lies above 0 for every group; does not hold when it lies below 0 "
            "for one.")
    text = "Pruned models narrow their Grad-CAM focus (concentration rises with sparsity)"
    if deltas is None or len(deltas) == 0 or "concentration" not in deltas:
        return Claim(text, "§V-D, Fig. 3", UNCLEAR, rule, ["no Grad-CAM results"])
    outcomes, evidence = [], []
    for (dataset, model, method), g in deltas.groupby(["dataset", "model", "group"], sort=True):
        lo, hi = g["sparsity"].min(), g["sparsity"].max()
        if hi <= lo:
            continue
        key = ["seed", "row"]
        base = g[g["sparsity"] == lo].set_index(key)["concentration"]
        top = g[g["sparsity"] == hi].set_index(key)["concentration"]
        d = (top - base.reindex(top.index)).to_numpy(dtype=float)
        d = d[np.isfinite(d)]
        outcome = decide(d) if len(d) >= 2 else TIE
        outcomes.append(outcome)
        ci = mean_ci(d)
        evidence.append(f"{dataset}/{model}/{method}: {ci.mean:+.3f} [{ci.low:+.3f}, "
                        f"{ci.high:+.3f}] from 0 to {100 * hi:.0f} % over {ci.n} faces "
                        f"→ {WORDS[outcome]}")
    if not outcomes:
        evidence.append("no Grad-CAM folder with a pruned level")
    return Claim(text, "§V-D, Fig. 3", verdict(outcomes), rule, evidence)


def _claim_transfer(transfers) -> Claim:
    rule = ("Per transfer pair, model and IMP ticket of 55–65 % sparsity: the ticket's test "
            "accuracy on the target minus the target's dense accuracy, paired by seed. A "
            "ticket counts for the claim when its mean is at least the dense mean minus one "
            "standard error (over seeds; one seed: binomial), against it when it is below by "
            "more than 1.96 standard errors of the difference.")
    text = "A ticket transferred at 60 % sparsity keeps the target's dense accuracy (Table I)"
    if transfers is None or len(transfers) == 0:
        return Claim(text, "§V-E, Table I", UNCLEAR, rule, ["no transfer runs"])
    outcomes, evidence = [], []
    for (pair, model), g in transfers.groupby(["pair", "model"], sort=True):
        dense = {int(s): float(v) for s, v in zip(g[g["method"] == "dense"]["seed"],
                                                   g[g["method"] == "dense"]["test_acc"],
                                                   strict=True)}
        d_acc = _finite(dense.values())
        if not len(d_acc):
            continue
        sizes = g["test_samples"].dropna() if "test_samples" in g else []
        n = float(sizes.iloc[0]) if len(sizes) else math.nan
        se = (float(d_acc.std(ddof=1) / math.sqrt(len(d_acc))) if len(d_acc) >= 2
              else binomial_se(float(d_acc[0]), n))
        for method, t in g[g["method"] != "dense"].groupby("method", sort=True):
            src, _, pct = method.rpartition("-sparsity")
            if not src.startswith("imp-") or not pct.isdigit() or not 55 <= int(pct) <= 65:
                continue
            acc = {int(s): float(v) for s, v in zip(t["seed"], t["test_acc"], strict=True)}
            diffs = _finite([acc[s] - dense[s] for s in acc if s in dense])
            if not len(diffs) or not np.isfinite(se):
                continue
            mean = float(diffs.mean())
            if mean >= -se:
                outcome = GREATER
            else:
                worse = decide(list(diffs), _se_diff(float(np.mean(list(acc.values()))),
                                                     float(d_acc.mean()), n))
                outcome = LESS if worse == LESS else TIE
            outcomes.append(outcome)
            evidence.append(f"{pair}/{model} {method}: {_fmt_diff(diffs)} vs dense "
                            f"(SE {100 * se:.1f} pp) → {WORDS[outcome]}")
    if not outcomes:
        evidence.append("no IMP ticket of 55–65 % sparsity with a dense baseline and a known "
                        "test-set size")
    return Claim(text, "§V-E, Table I", verdict(outcomes), rule, evidence)


def _claim_step_size(runs) -> Claim:
    from deepfake_lth.plan import parse_step_size_method

    outcomes, evidence = [], []
    variants = sorted(m for m in runs["method"].unique() if parse_step_size_method(m))
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        for variant in variants:
            criterion, rate = parse_step_size_method(variant)
            base = f"imp-{criterion}"
            if rate >= 0.2 - 1e-9:
                continue
            levels = _levels(runs, dataset, model, base)
            if not levels:
                continue
            final = max(levels.values())
            # ⌈…⌉ rounds overshoot the final sparsity by less than one round of the rate
            tol = max(LEVEL_TOLERANCE, rate * (1 - final) + 1e-9)
            res = _compare_at(runs, dataset, model, variant, base, target=final, tol=tol)
            if res:
                outcomes.append(res[0])
                evidence.append(f"{variant} vs {base}, {res[1]}")
    if not variants:
        evidence.append("no other step sizes in this run")
    elif not outcomes:
        evidence.append("no smaller rate reached the config's final IMP sparsity yet")
    return Claim(
        "Smaller pruning steps (5–10 % per round) find better tickets at the same final "
        "sparsity than 20 %",
        "§VI (future work, after [25, 26])",
        verdict(outcomes),
        "Per dataset, model and smaller rate: test accuracy of IMP at that rate minus IMP at "
        "the config's rate, at the config's final IMP sparsity (the smaller rate's last "
        "round overshoots it by less than one of its rounds), paired by seed; decided by the "
        "95 % t-interval (one seed: 1.96 binomial SE).",
        evidence,
    )


def _claim_pai(runs) -> Claim:
    outcomes, evidence = [], []
    present = [m for m in ("snip", "grasp") if m in set(runs["method"])]
    imp = _main_imp(runs)
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        for method in present:
            if imp is None:
                continue
            res = _compare_at(runs, dataset, model, imp, method, target=0.8)
            if res:
                outcomes.append(res[0])
                evidence.append(f"{imp} vs {method}, {res[1]}")
    if not present:
        evidence.append("SNIP and GraSP were not run")
    elif not outcomes:
        evidence.append("no SNIP or GraSP level near 80 % shared with IMP")
    return Claim(
        "Iterative pruning (IMP) outperforms pruning at initialization (SNIP, GraSP)",
        "§VI (future work, after [6, 29])",
        verdict(outcomes),
        "Per dataset, model and method: IMP-Global − SNIP (or GraSP) test accuracy at the "
        "shared level nearest 80 %, paired by seed; decided as above.",
        evidence,
    )


def _claim_winning(runs, controls: Sequence[str]) -> Claim:
    imp = _main_imp(runs)
    outcomes, evidence = [], []
    if imp is not None:
        table = winning_tickets(runs, imp, controls)
        for (dataset, model), s in winning_up_to(table).items():
            levels = table[(table["dataset"] == dataset) & (table["model"] == model)]["sparsity"]
            upto = [x for x in levels if x <= 0.5 + LEVEL_TOLERANCE]
            required = max(upto) if upto else min(levels)
            outcome = GREATER if s is not None and s >= required - 1e-9 else LESS
            outcomes.append(outcome)
            evidence.append(f"{dataset}/{model}: {imp} is a winning ticket up to "
                            f"{'no level' if s is None else f'{100 * s:.0f} %'} → {WORDS[outcome]}")
    if not outcomes:
        evidence.append("no IMP runs")
    against = (f"above both controls ({', '.join(controls)})" if controls
               else "(no controls were run, so only the first condition applies)")
    return Claim(
        "Deepfake detectors contain winning tickets at substantial sparsity (≥ 50 %)",
        "Abstract, §VI",
        verdict(outcomes),
        "A ticket is winning at a level when its mean test accuracy is within one standard "
        "error of the dense accuracy (SE over seeds; one seed: binomial √(p(1−p)/n_test)) "
        f"and {against}. Holds when, for every dataset and model, every IMP-Global level up "
        "to 50 % sparsity is winning; does not hold otherwise.",
        evidence,
    )


def evaluate_claims(runs, transfers=None, deltas=None, config: Mapping[str, Any] | None = None
                    ) -> list[Claim]:
    """The paper's claims with this run's verdicts. ``deltas``: the Grad-CAM delta.csv rows
    with ``dataset, model, group, seed, row, sparsity, concentration``."""
    config = config or {}
    if runs is None or len(runs) == 0:
        import pandas as pd

        runs = pd.DataFrame(columns=["dataset", "model", "seed", "method", "level", "sparsity",
                                     "test_acc", "test_samples"])
    controls = [c for c in (config.get("controls") or []) if f"control-{c}" in set(runs["method"])]
    return [
        _claim_winning(runs, controls),
        _claim_retains(runs),
        _claim_criterion(runs, config, "images", "imp-global", "imp-local"),
        _claim_criterion(runs, config, "videos", "imp-local", "imp-global"),
        _claim_imp_vs_oneshot(runs),
        _claim_resnet(runs),
        _claim_gradcam(deltas),
        _claim_transfer(transfers),
        _claim_step_size(runs),
        _claim_pai(runs),
    ]
