"""How a claim's evidence is gathered and judged: the :class:`Claim` record, the comparisons
of two methods at shared levels (paired by seed, and by test video on a video set), and the
stated decision rule (:func:`deepfake_lth.analysis.stats.judge`: 95 % intervals, Holm over a
claim's comparisons, two or more seeds). The claims themselves are in
:mod:`deepfake_lth.analysis.claims` (the paper's) and :mod:`deepfake_lth.analysis.claims_beyond`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepfake_lth.analysis.stats import (
    GREATER,
    LESS,
    LEVEL_TOLERANCE,
    MARGIN,
    NEAR,
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
DECISION = ("Decision: 95 % intervals; each side of a comparison is tested one-sided at 2.5 % with "
            "Holm's correction over the claim's comparisons (datasets × models × levels). A "
            "comparison of trained networks needs two or more seeds, its interval including "
            "the variance between seeds; with one seed the verdict is \"not enough evidence: "
            "one seed\".")


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
    return f"{c.text}, {SAY[c.outcome]}."


def make_claim(text: str, source: str, rule: str, comparisons: Sequence[Comparison],
           notes: Sequence[str] = (), caveats: Sequence[str] = ()) -> Claim:
    """A claim judged over ``comparisons`` (Holm); ``notes``: evidence besides them (what
    did not run)."""
    verdict, why = judge(comparisons)
    evidence = [said(c) for c in comparisons] + list(notes)
    return Claim(text, source, verdict, f"{rule} {DECISION}", evidence, list(caveats), why)


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
    """The mean of per-seed ``values`` with its SE: the t-interval over seeds (on a video set
    with ``se_unit``, the binomial SE over the test videos, added); one seed: ± 1.96 se_unit."""
    from scipy import stats

    v = finite(values)
    if len(v) >= 2:
        unit = (se_unit if np.isfinite(se_unit) else 0.0) if kind == "videos" else 0.0
        se = math.sqrt(float(v.var(ddof=1)) / len(v) + unit**2)
        return Diff(float(v.mean()), se, float(stats.t.ppf(0.975, len(v) - 1)), len(v),
                    f"{how} over {len(v)} seeds", float(len(v) - 1))
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

