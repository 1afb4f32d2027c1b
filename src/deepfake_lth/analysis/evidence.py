"""How a claim's evidence is gathered and judged: the :class:`Claim` record, the comparisons
of two methods at shared levels (paired by seed and by test unit), and the stated decision
rule (:func:`deepfake_lth.analysis.stats.judge`: "holds" by intersection–union, each
comparison at the 95 % interval's side; "does not hold" by Holm; two or more seeds, some
variance and enough test units of each class). The claims themselves are in
:mod:`deepfake_lth.analysis.claims` (the paper's) and :mod:`deepfake_lth.analysis.claims_beyond`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepfake_lth.analysis.stats import (
    FAILS,
    GREATER,
    HOLDS,
    LESS,
    LEVEL_TOLERANCE,
    MARGIN,
    MIN_UNITS,
    NEAR,
    NOT_RUN,
    ONE_SEED,
    RULE,
    TIE,
    Comparison,
    Diff,
    Z,
    estimate_diff,
    finite,
    judge,
    match_levels,
    superiority,
)
from deepfake_lth.stages import methods

SAY = {GREATER: "which counts for the claim", LESS: "which counts against it",
       TIE: "which is within the noise"}
DECISION = RULE
SEEDS_NEEDED = "needs ≥ 2 seeds (3 or more for a useful interval): seeds: [0, 1, 2]"


@dataclass
class Claim:
    """One of the paper's claims with this run's verdict."""

    text: str
    source: str
    verdict: str
    rule: str
    evidence: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)  # e.g. a miscalibrated dense baseline
    why: str = ""  # the verdict's reason in a few words, e.g. "one seed"
    needs: str = ""  # what would decide it, e.g. "needs the matched control: controls: […]"


# --------------------------------------------------------------------------- helpers


def method_label(method: str) -> str:
    return methods.label(method)


def imp_methods(runs) -> list[str]:
    return sorted(methods.with_role(runs["method"].unique(), methods.TICKET),
                  key=methods.sort_key)


def main_imp(runs) -> str | None:
    imps = imp_methods(runs)
    return imps[0] if imps else None


def margin_of(config: Mapping[str, Any] | None) -> float:
    return float(((config or {}).get("claims") or {}).get("margin", MARGIN))


def said(c: Comparison) -> str:
    if c.n_seeds < 2:
        return f"{c.text}, from one seed: a single training run each, not judged."
    if c.problem and c.outcome == TIE:
        return f"{c.text}, which decides nothing: {c.problem}."
    return f"{c.text}, {SAY[c.outcome]}."


def needs_of(verdict: str, why: str) -> str:
    """What would decide a claim, from its verdict and reason ("" once decided)."""
    if verdict in (HOLDS, FAILS):
        return ""
    if why == ONE_SEED:
        return SEEDS_NEEDED
    if "Grad-CAM faces" in why:
        return (f"needs ≥ {MIN_UNITS} Grad-CAM faces: gradcam.samples_per_class: "
                f"{(MIN_UNITS + 1) // 2}")
    if "per class" in why or "fewer than" in why:
        return (f"needs ≥ {MIN_UNITS} test units of each class: a larger test split "
                "(faces.split) or more data")
    if "variance" in why or "standard error" in why:
        return ("needs networks whose predictions vary over test units or seeds (here they "
                "give identical differences)")
    if verdict == NOT_RUN:
        return "needs the runs it compares (the evidence says which)"
    return ("needs more seeds or test units: an interval still straddles 0 or the margin "
            "(BENCHMARKS.md: the power by seeds)")


def make_claim(text: str, source: str, rule: str, comparisons: Sequence[Comparison],
               notes: Sequence[str] = (), caveats: Sequence[str] = (), needs: str | None = None
               ) -> Claim:
    """A claim judged over ``comparisons`` (:func:`judge`); ``notes``: evidence besides them
    (what did not run); ``needs``: what would decide it, when the claim knows better than
    :func:`needs_of`."""
    verdict, why = judge(comparisons)
    if needs is None or verdict in (HOLDS, FAILS):
        needs = needs_of(verdict, why)
    evidence = [said(c) for c in comparisons] + list(notes)
    return Claim(text, source, verdict, f"{rule} {DECISION}", evidence, list(caveats), why,
                 needs)


def cumulative_epochs_of(runs, dataset, model, method, level) -> str:
    """"cumulative epochs 21" of a run (its weights' training since θ0), or ""."""
    if "cumulative_epochs" not in runs:
        return ""
    part = runs[(runs["dataset"] == dataset) & (runs["model"] == model)
                & (runs["method"] == method) & (runs["level"] == level)]
    v = finite(part["cumulative_epochs"])
    return f"{v.mean():.0f}" if len(v) else ""


def budgets_text(runs, dataset, model, a, b, level_a, level_b) -> str:
    ea, eb = (cumulative_epochs_of(runs, dataset, model, a, level_a),
              cumulative_epochs_of(runs, dataset, model, b, level_b))
    return f"; cumulative epochs {ea} vs {eb}" if ea and eb else ""


def diff_at(runs, kinds, dataset, model, a, b, target=None, tol=LEVEL_TOLERANCE
             ) -> tuple[Diff, str] | None:
    """A − B and its description: at the shared level (sparsities within ``tol``) nearest
    ``target`` (within 5 points) or, with no target, averaged over every shared level."""
    matched = match_levels(runs, dataset, model, a, b, tol)
    if target is not None:
        matched = [m for m in matched if abs(m[2] - target) <= NEAR]
        matched = [min(matched, key=lambda m: abs(m[2] - target))] if matched else []
    if not matched:
        return None
    diff = estimate_diff(runs, dataset, model, a, b, [(la, lb) for la, lb, _ in matched],
                         kinds.get(dataset))
    if diff is None:
        return None
    where = (f"at {100 * matched[0][2]:.0f} % sparsity" if target is not None
             else f"averaged over {len(matched)} shared levels")
    budget = (budgets_text(runs, dataset, model, a, b, matched[0][0], matched[0][1])
              if target is not None else "")
    return diff, (f"{model} on {dataset}, {where}: {method_label(a)} − {method_label(b)} = "
                  f"{diff.text()} ({diff.how}{budget})")


def values_diff(values: Sequence[float], se_unit: float, kind: str | None, how: str) -> Diff:
    """The mean of per-seed ``values`` with its SE: the variance over seeds / seeds plus
    ``se_unit``² (the shared test units' term, when known; conservative as it also holds
    the residual), t with Welch–Satterthwaite degrees of freedom; one seed: ± 1.96 se_unit.
    For values without per-unit data (older run folders)."""
    from deepfake_lth.analysis.stats import Spread, spread_diff

    v = finite(values)
    unit = se_unit**2 if np.isfinite(se_unit) else 0.0
    if len(v) >= 2:
        seed = float(v.var(ddof=1)) / len(v)
        var = seed + unit
        df = var**2 / (seed**2 / (len(v) - 1)) if seed > 0 else math.inf
        return spread_diff(Spread(float(v.mean()), var, df, len(v), 0),
                           f"{how} over {len(v)} seeds")
    return Diff(float(v.mean()) if len(v) else math.nan, se_unit, Z, len(v), f"{how}, one seed")


def baseline_caveats(flags, pairs) -> list[str]:
    return [flags[p] for p in sorted(set(pairs)) if p in flags]


def compare_pairs(runs, kinds, pairs, target: float) -> list[Comparison]:
    """A − B at the level nearest ``target`` for every dataset × model and every (a, b) in
    ``pairs`` that both ran there."""
    out = []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        for a, b in pairs:
            res = diff_at(runs, kinds, dataset, model, a, b, target=target)
            if res:
                out.append(superiority(res[1], res[0]))
    return out

