"""Claims beyond the paper's own, judged by the same rule (:mod:`deepfake_lth.analysis.evidence`):
smaller pruning steps, IMP against pruning at initialization, knowledge distillation, and the
cross-dataset generalisation of tickets."""

from __future__ import annotations

from collections.abc import Sequence

from deepfake_lth.analysis.delong import seeds_delong
from deepfake_lth.analysis.evidence import (
    Claim,
    compare_pairs,
    diff_at,
    imp_methods,
    main_imp,
    make_claim,
    method_label,
)
from deepfake_lth.analysis.stats import (
    LEVEL_TOLERANCE,
    Diff,
    levels_of,
    non_inferiority,
    superiority,
)
from deepfake_lth.pruning.plan import parse_step_size_method
from deepfake_lth.stages import methods


def claim_step_size(runs, kinds) -> Claim:
    comparisons = []
    variants = sorted(methods.with_role(runs["method"].unique(), methods.STEP_SIZE))
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        for variant in variants:
            criterion, rate = parse_step_size_method(variant)
            base = f"imp-{criterion}"
            if rate >= 0.2 - 1e-9:
                continue
            levels = levels_of(runs, dataset, model, base)
            if not levels:
                continue
            final = max(levels.values())
            # ⌈…⌉ rounds overshoot the final sparsity by less than one round of the rate
            tol = max(LEVEL_TOLERANCE, rate * (1 - final) + 1e-9)
            res = diff_at(runs, kinds, dataset, model, variant, base, target=final, tol=tol)
            if res:
                comparisons.append(superiority(res[1], res[0]))
    notes = ([] if comparisons else
             ["No other step sizes in this run."] if not variants else
             ["No smaller rate has reached the config's final IMP sparsity yet."])
    return make_claim(
        "Smaller pruning steps (5–10 % per round) find better tickets at the same final "
        "sparsity than 20 %", "§VI (future work, after [25, 26])",
        "Per dataset, model and smaller rate: test accuracy of IMP at that rate minus IMP at "
        "the config's rate, at the config's final IMP sparsity (the smaller rate's last "
        "round overshoots it by less than one of its rounds), paired by seed (and video), "
        "with the cumulative epochs of each beside (the smaller rate has more rounds).",
        comparisons, notes)


def claim_pai(runs, kinds) -> Claim:
    present = sorted(methods.with_role(runs["method"].unique(), methods.PRUNE_INIT),
                     key=methods.sort_key)
    imp = main_imp(runs)
    pairs = [(imp, method) for method in present] if imp is not None else []
    comparisons = compare_pairs(runs, kinds, pairs, 0.8)
    notes = ([] if comparisons else ["SNIP and GraSP were not run."] if not present
             else ["No SNIP or GraSP level near 80 % shared with IMP."])
    return make_claim(
        "Iterative pruning (IMP) outperforms pruning at initialization (SNIP, GraSP)",
        "§VI (future work, after [6, 29])",
        "Per dataset, model and method: IMP − SNIP (or GraSP) test accuracy at the shared "
        "level nearest 80 %, paired by seed (and video), with the cumulative epochs of each "
        "beside.",
        comparisons, notes)


def claim_kd(runs, kinds) -> Claim:
    kds = sorted(methods.with_role(runs["method"].unique(), methods.DISTILLED),
                 key=methods.sort_key)
    present = set(runs["method"])
    pairs = [(kd, f"imp-{methods.criterion_of(kd)}") for kd in kds]
    comparisons = []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        for a, b in (p for p in pairs if p[1] in present):
            res = diff_at(runs, kinds, dataset, model, a, b)
            if res:
                comparisons.append(superiority(res[1], res[0]))
    notes = ([] if comparisons else
             ["Knowledge distillation (distill.models) was not run."] if not kds else
             ["No KD and IMP levels of one criterion at shared sparsities yet."])
    return make_claim(
        "IMP tickets retrained with the dense network as teacher (knowledge distillation) are "
        "more accurate than plain IMP tickets at the same sparsities",
        "compression review (Karathanasis et al. 2025)",
        "Per dataset, model and criterion: KD − IMP test accuracy averaged over the rounds both "
        "ran (the same sparsities), paired by seed (and video); for the claim when the "
        "interval lies above 0, against it when it lies below 0.",
        comparisons, notes)


KEEP_MARGIN = 0.05  # "keeps" the dense AUC: not lower by 5 AUC points or more
KEEP_UP_TO = 0.8


def seeds_auc_diff(per_seed: Sequence[Diff]) -> Diff:
    """Per-seed DeLong differences (paired by unit) combined over seeds: the placements
    averaged over seeds, the seeds' variance and the shared units' both counted
    (:func:`deepfake_lth.analysis.delong.seeds_delong`)."""
    return seeds_delong(per_seed)


def auc_margin_of(config) -> float:
    """``claims.auc_margin``: the margin of the AUC claims (generalisation), in AUC."""
    return float(((config or {}).get("claims") or {}).get("auc_margin", KEEP_MARGIN))


def claim_generalisation(cross, config=None) -> Claim:
    """IMP tickets keep the dense network's cross-dataset AUC up to 80 % sparsity. ``cross``:
    one row per run × zero-shot test set (dataset, model, seed, method, level, sparsity,
    test_set, zero_shot, manipulation, per_video: the test videos' mean p(fake) and label).
    The margin: ``claims.auc_margin`` of ``config`` (:func:`auc_margin_of`)."""
    from deepfake_lth.analysis.delong import paired_auc_diff

    text = "IMP tickets keep the dense network's cross-dataset AUC up to 80 % sparsity"
    margin = auc_margin_of(config)
    found: dict[tuple, list[Diff]] = {}
    sparsity: dict[tuple, float] = {}
    if cross is not None and len(cross):
        sets = cross[cross["zero_shot"].astype(bool) & (cross["manipulation"] == "")]
        for (dataset, model, seed, test_set), part in sets.groupby(
                ["dataset", "model", "seed", "test_set"], sort=True):
            dense = part[part["method"] == "dense"]
            base = dense.iloc[0]["per_video"] if not dense.empty else None
            if base is None:
                continue
            for method in imp_methods(part):
                rows = part[(part["method"] == method)
                            & (part["sparsity"] <= KEEP_UP_TO + LEVEL_TOLERANCE)]
                for _, r in rows.iterrows():
                    if r["per_video"] is None:
                        continue
                    joined = r["per_video"].join(base.add_suffix("_dense"), how="inner")
                    d = paired_auc_diff(joined["label"], joined["prob"], joined["prob_dense"])
                    if d is not None:
                        key = (dataset, model, test_set, method, r["level"])
                        found.setdefault(key, []).append(d)
                        sparsity[key] = float(r["sparsity"])
    comparisons = []
    for key in sorted(found, key=lambda k: (*k[:4], sparsity[k])):
        dataset, model, test_set, method, _ = key
        diff = seeds_auc_diff(found[key])
        comparisons.append(non_inferiority(
            f"{model} from {dataset} on {test_set}, {method_label(method)} at "
            f"{100 * sparsity[key]:.0f} %: video AUC − dense = {diff.mean:+.3f} "
            f"[{diff.low:+.3f}, {diff.high:+.3f}] ({diff.how})", diff, margin))
    return make_claim(
        text, "§VI (generalisation, after DeepfakeBench)",
        "Per source dataset, model, unseen test set and IMP round up to 80 % sparsity: "
        "ticket − dense video AUC (mean p(fake) per video) on the unseen set, DeLong's "
        "interval paired by video within a seed, combined over seeds; for the claim when the "
        f"interval lies above −{margin:.2f} (δ = {100 * margin:.0f} AUC points, "
        f"claims.auc_margin), against it when it lies below −{margin:.2f}.",
        comparisons,
        [] if comparisons else ["No zero-shot test set with the dense network and an IMP "
                                "ticket scored on it (generalisation:)."])
