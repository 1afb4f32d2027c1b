"""The paper's claims checked against a run: each with a verdict computed by a stated rule.

Verdicts: *holds* (every comparison for the claim), *does not hold* (one against it), *not
enough evidence* (it ran, and some interval straddles 0 or the margin; or it rests on one
seed: "not enough evidence: one seed"), *not run* (nothing to compare: the method or data is
not in this run). Every comparison of trained networks needs two or more seeds: its interval
includes the variance between training runs (paired by seed, and by test video within a seed
on a video set, :func:`deepfake_lth.analysis.stats.estimate_diff`). Intervals are 95 %;
"keeps" claims are non-inferiority against a fixed margin δ (``claims.margin``, 2 points by
default); the comparisons of one claim are corrected with Holm's method
(:func:`deepfake_lth.analysis.stats.judge`). Method names and labels come from the methods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepfake_lth.analysis.claims_beyond import (
    claim_kd,
    claim_pai,
    claim_step_size,
)
from deepfake_lth.analysis.evidence import (
    Claim,
    baseline_caveats,
    compare_pairs,
    diff_at,
    imp_methods,
    main_imp,
    make_claim,
    margin_of,
    method_label,
    values_diff,
)
from deepfake_lth.analysis.stats import (
    FAILS,
    HOLDS,
    NOT_RUN,
    ONE_SEED,
    UNCLEAR,
    Diff,
    binomial_se,
    finite,
    non_inferiority,
    superiority,
)
from deepfake_lth.analysis.tickets import (
    baseline_flags,
    level_near,
    retained_se,
    retained_share,
    unpaired_diff,
    winning_tickets,
)
from deepfake_lth.data.dataset_kind import dataset_kind
from deepfake_lth.stages import methods

__all__ = ["FAILS", "HOLDS", "NOT_RUN", "ONE_SEED", "UNCLEAR", "Claim", "dataset_kind",
           "evaluate_claims"]


# --------------------------------------------------------------------------- the claims


def _claim_winning(runs, controls: Sequence[str], kinds, flags, margin: float) -> Claim:
    imp = main_imp(runs)
    text = "Deepfake detectors contain winning tickets at substantial sparsity (≥ 50 %)"
    matched = methods.MATCHED_CONTROL
    control = method_label(f"control-{matched}")
    rule = (f"Per dataset and model, at the first IMP round of 50 % sparsity or more: the "
            f"ticket is winning when ticket − dense is above −δ (δ = {100 * margin:.0f} "
            f"points: not worse than dense by the margin) and ticket − {control} is above 0 "
            "(the matched control: pruned at random with the ticket's per-layer counts and "
            "trained the same way, so only the choice of weights differs). Judged only where "
            "the matched control ran. The paper's own criterion, a′ ≥ a, is reported beside "
            "it.")
    comparisons, notes, used = [], [], []
    if imp is None:
        return make_claim(text, "Abstract, §VI", rule, [], ["No IMP ticket in this run."])
    table = winning_tickets(runs, imp, controls, kinds, matched, margin)
    for (dataset, model), g in table.groupby(["dataset", "model"], sort=True):
        used.append((dataset, model))  # its dense network is the claim's reference
        first = g[g["sparsity"] >= 0.5 - 1e-9].nsmallest(1, "sparsity")
        if first.empty:
            notes.append(f"{model} on {dataset}: the IMP rounds reach only "
                         f"{100 * g['sparsity'].max():.0f} % sparsity.")
            continue
        row = first.iloc[0]
        where = f"{model} on {dataset}, {row['level']} ({100 * row['sparsity']:.0f} %)"
        paper = "a′ ≥ a" if row["paper"] else "a′ < a"
        if row["vs_dense"] is None or row["vs_matched"] is None:
            missing = "the dense network" if row["vs_dense"] is None else "the matched control"
            notes.append(f"{where}: {missing} did not run, so the claim is not judged there "
                         f"(the paper's criterion: {paper}; config/controls.yaml runs the "
                         "controls).")
            continue
        comparisons.append(non_inferiority(
            f"{where}: {method_label(imp)} − dense = {row['vs_dense'].text()} "
            f"({row['vs_dense'].how}; paper: {paper})", row["vs_dense"], margin))
        comparisons.append(superiority(
            f"{where}: {method_label(imp)} − {control} = {row['vs_matched'].text()} "
            f"({row['vs_matched'].how})", row["vs_matched"]))
    if not comparisons and not notes:
        notes.append("No IMP ticket with its dense network in this run.")
    return make_claim(text, "Abstract, §VI", rule, comparisons, notes,
                  baseline_caveats(flags, used))


def _claim_retains(runs, kinds, flags, margin: float) -> Claim:
    imp = main_imp(runs)
    comparisons, notes, used = [], [], []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        if imp is None:
            break
        level = level_near(runs, dataset, model, imp)
        kept = retained_share(runs, dataset, model, imp, level) if level else {}
        if not kept:
            continue
        used.append((dataset, model))
        se = retained_se(runs, kinds, dataset, model, imp, level)
        diff = values_diff([v - 0.9 for v in kept.values()], se, kinds.get(dataset),
                            "share − 0.9")
        comparisons.append(non_inferiority(
            f"{model} on {dataset}: the {method_label(imp)} ticket at {level} keeps "
            f"{100 * float(np.mean(list(kept.values()))):.1f} % of the dense accuracy "
            f"(share − 0.9 = {diff.text()}, {diff.how})", diff, margin))
    if not comparisons:
        notes.append("No IMP level near 80 % with its dense network in this run.")
    return make_claim(
        "IMP tickets at 80 % sparsity keep about 90 % or more of the dense accuracy "
        "(MesoNet 56.2 / 62.6 on OpenForensic)", "Abstract, §V-A",
        f"Per dataset and model: the IMP ticket's accuracy at the level nearest 80 % over the "
        f"same seed's dense accuracy, minus 0.9, above −δ (δ = {100 * margin:.0f} points; on "
        "a video set the binomial SE over test videos is added to the variance over seeds).",
        comparisons, notes, baseline_caveats(flags, used))


def _claim_criterion(runs, kinds, config, kind, better, worse) -> Claim:
    datasets = [d for d in sorted(runs["dataset"].unique()) if kinds.get(d) == kind]
    configured = [d for d in (config.get("datasets") or {}) if kinds.get(d) == kind]
    comparisons, notes = [], []
    for dataset in datasets:
        for model in sorted(runs[runs["dataset"] == dataset]["model"].unique()):
            res = diff_at(runs, kinds, dataset, model, better, worse)
            if res:
                comparisons.append(superiority(res[1], res[0]))
    if not configured and not datasets:
        notes.append(f"No {kind[:-1]} set in this run.")
    elif not comparisons:
        notes.append(f"No {kind[:-1]} set with both {method_label(better)} and {method_label(worse)} "
                     "results in this run.")
    where = {"images": "the image set (OpenForensic)",
             "videos": "the video set (FaceForensics++)"}[kind]
    unit = "test video" if kind == "videos" else "test image (or seed)"
    return make_claim(
        f"{method_label(better)} beats {method_label(worse)} on {where}", "§V-A, Fig. 2",
        f"Per {kind[:-1]} set and model: {method_label(better)} − {method_label(worse)} test accuracy, "
        f"averaged over the IMP rounds both ran, paired by seed and by {unit}; for the claim "
        "when the interval lies above 0, against it when it lies below 0.",
        comparisons, notes)




def _claim_imp_vs_oneshot(runs, kinds) -> Claim:
    present = set(runs["method"])
    pairs = [(imp, f"oneshot-{methods.criterion_of(imp)}") for imp in imp_methods(runs)]
    comparisons = compare_pairs(runs, kinds, [p for p in pairs if p[1] in present], 0.8)
    return make_claim(
        "IMP ≥ one-shot pruning at 80 % sparsity (IMP outperforms one-shot)", "§V-B, §VI",
        "Per dataset, model and criterion: IMP − one-shot test accuracy at the shared level "
        "nearest 80 % (within 5 points), paired by seed (and by video on a video set); the "
        "cumulative epochs of training each network had since θ0 are shown beside (one-shot "
        "retrains for IMP's cumulative budget unless oneshot.budget says otherwise).",
        comparisons,
        [] if comparisons else ["No IMP and one-shot levels of one criterion near 80 % in "
                                "this run."])


def _claim_local_vs_oneshot(runs, kinds) -> Claim:
    oneshots = sorted(methods.with_role(runs["method"].unique(), methods.ONESHOT),
                      key=methods.sort_key)
    pairs = [("imp-local", o) for o in oneshots] if "imp-local" in set(runs["method"]) else []
    comparisons = compare_pairs(runs, kinds, pairs, 0.8)
    return make_claim(
        "IMP-Local beats one-shot pruning at 80 % sparsity on both datasets", "§V-B",
        "Per dataset, model and one-shot method: IMP-Local − one-shot test accuracy at the "
        "shared level nearest 80 %, paired by seed (and by video on a video set), with the "
        "cumulative epochs of each beside.",
        comparisons,
        [] if comparisons else ["IMP-Local and a one-shot method at about 80 % were not both "
                                "run."])


def _claim_resnet(runs, kinds) -> Claim:
    rule = ("Per dataset: the accuracy an IMP ticket keeps at the level nearest 80 %, as a "
            "share of the same seed's dense accuracy. For the claim when ResNet-18 keeps a "
            "larger share than every other model (the interval of the difference above 0, "
            "Welch-style over seeds); against it when another model keeps a larger share.")
    text = "ResNet-18 is the most robust model under pruning"
    imp = main_imp(runs)
    if imp is None or "resnet18" not in set(runs["model"]):
        return make_claim(text, "§V-C", rule, [],
                      ["ResNet-18 is not in this run." if "resnet18" not in set(runs["model"])
                       else "No IMP runs in this run."])
    comparisons = []
    for dataset in sorted(runs["dataset"].unique()):
        part = runs[runs["dataset"] == dataset]
        kept = {}
        for model in sorted(part["model"].unique()):
            level = level_near(runs, dataset, model, imp)
            if level:
                kept[model] = (finite(retained_share(runs, dataset, model, imp, level).values()),
                               retained_se(runs, kinds, dataset, model, imp, level))
        if "resnet18" not in kept or len(kept) < 2:
            continue
        a, se_a = kept["resnet18"]
        for other, (b, se_b) in kept.items():
            if other == "resnet18" or not len(a) or not len(b):
                continue
            diff = unpaired_diff(a, b, se_a, se_b, kinds.get(dataset) == "videos")
            comparisons.append(superiority(
                f"On {dataset}, ResNet-18 keeps {100 * a.mean():.1f} % of its dense accuracy "
                f"and {other} {100 * b.mean():.1f} % ({diff.how})", diff))
    return make_claim(text, "§V-C", rule, comparisons,
                  [] if comparisons else ["No dataset with ResNet-18 and another model at "
                                          "about 80 % sparsity."])


def _claim_gradcam(deltas) -> Claim:
    rule = ("Per dataset, model and method: the Grad-CAM concentration (share of the heat in "
            "the hottest 10 % of pixels) of each face at the highest sparsity minus at the "
            "dense level, averaged over the faces of each seed (paired by face); for the "
            "claim when the t-interval of the mean increase over seeds lies above 0, against "
            "it when it lies below 0.")
    text = "Pruned models narrow their Grad-CAM focus (concentration rises with sparsity)"
    if deltas is None or len(deltas) == 0 or "concentration" not in deltas:
        return make_claim(text, "§V-D, Fig. 3", rule, [], ["No Grad-CAM results in this run."])
    comparisons = []
    for (dataset, model, method), g in deltas.groupby(["dataset", "model", "group"], sort=True):
        lo, hi = g["sparsity"].min(), g["sparsity"].max()
        if hi <= lo:
            continue
        per_seed, faces = [], 0
        for _, gs in g.groupby("seed", sort=True):
            base = gs[gs["sparsity"] == lo].set_index("row")["concentration"]
            top = gs[gs["sparsity"] == hi].set_index("row")["concentration"]
            d = (top - base.reindex(top.index)).to_numpy(dtype=float)
            d = d[np.isfinite(d)]
            if len(d):  # faces with a defined concentration at both levels
                per_seed.append(float(d.mean()))
                faces += len(d)
        if not per_seed:
            continue
        # faces are paired within a seed; the interval is over seeds (one seed: not judged)
        diff = values_diff(per_seed, 0.0, None, "mean increase per seed")
        comparisons.append(superiority(
            f"{model} on {dataset} ({method_label(method)}): the concentration changes by "
            f"{diff.mean:+.3f} from 0 to {100 * hi:.0f} % sparsity over {faces} faces "
            f"({diff.how}{'' if len(per_seed) < 2 else f'; {diff.low:+.3f} to {diff.high:+.3f}'})",
            diff))
    return make_claim(text, "§V-D, Fig. 3", rule, comparisons,
                  [] if comparisons else ["No Grad-CAM folder with a pruned level."])


def _transfer_diff(g, dense: dict, method: str, n: float) -> Diff | None:
    """Ticket − target dense, paired by seed: the t-interval over seeds (one seed: the
    binomial SE over the target's test units)."""
    t = g[g["method"] == method]
    acc = {int(s): float(v) for s, v in zip(t["seed"], t["test_acc"], strict=True)}
    diffs = finite([acc[s] - dense[s] for s in acc if s in dense])
    if not len(diffs):
        return None
    se_one = math.hypot(binomial_se(float(np.mean(list(acc.values()))), n),
                        binomial_se(float(np.mean(list(dense.values()))), n))
    return values_diff(diffs, se_one if len(diffs) < 2 else 0.0, None, "paired by seed")


def _claim_transfer(transfers, kinds, flags, margin: float) -> Claim:
    rule = ("Per transfer pair, model and IMP ticket of 55–65 % sparsity: the ticket's test "
            "accuracy on the target minus the target's dense accuracy, paired by seed; for "
            f"the claim when its interval lies above −δ (δ = {100 * margin:.0f} points), "
            "against it when it lies below −δ. The dense network of the source fine-tuned on "
            "the target, where it ran, is compared beside (it separates pretraining on the "
            "source from the ticket).")
    text = "A ticket transferred at 60 % sparsity keeps the target's dense accuracy (Table I)"
    if transfers is None or len(transfers) == 0:
        return make_claim(text, "§V-E, Table I", rule, [], ["No transfer runs in this run."])
    comparisons, notes, used = [], [], []
    for (pair, model), g in transfers.groupby(["pair", "model"], sort=True):
        target = str(g["target"].iloc[0]) if "target" in g else ""
        kind = kinds.get(target)
        dense_rows = g[g["method"] == "dense"]
        dense = {int(s): float(v) for s, v in zip(dense_rows["seed"], dense_rows["test_acc"],
                                                   strict=True) if np.isfinite(v)}
        if not dense:
            continue
        n = math.nan
        if kind == "videos" and "test_videos" in g and g["test_videos"].notna().any():
            n = float(g["test_videos"].dropna().iloc[0])
        if not np.isfinite(n) and "test_samples" in g and g["test_samples"].notna().any():
            n = float(g["test_samples"].dropna().iloc[0])
        for method in sorted(set(g["method"]) - {"dense"}):
            src, _, pct = method.rpartition("-sparsity")
            if (not methods.with_role([src], methods.TICKET) or not pct.isdigit()
                    or not 55 <= int(pct) <= 65):
                continue
            diff = _transfer_diff(g, dense, method, n)
            if diff is None or not np.isfinite(diff.se):
                continue
            used.append((target, model))
            comparisons.append(non_inferiority(
                f"{model}, {pair}: the {method_label(src)} ticket at {pct} % − the target's dense "
                f"network = {diff.text()} ({diff.how})", diff, margin))
        finetuned = "dense-finetuned"
        if finetuned in set(g["method"]):
            base = g[g["method"] == finetuned]
            notes.append(f"{model}, {pair}: the source's dense network fine-tuned on the "
                         f"target reaches {100 * float(base['test_acc'].mean()):.1f} % "
                         f"(the target's own dense network "
                         f"{100 * float(np.mean(list(dense.values()))):.1f} %).")
    if not comparisons:
        notes.append("No IMP ticket of 55–65 % sparsity with a dense baseline and a known "
                     "test-set size.")
    return make_claim(text, "§V-E, Table I", rule, comparisons, notes,
                  baseline_caveats(flags, used))


def evaluate_claims(runs, transfers=None, deltas=None, config: Mapping[str, Any] | None = None,
                    kinds: Mapping[str, str | None] | None = None) -> list[Claim]:
    """The paper's claims with this run's verdicts. ``deltas``: the Grad-CAM delta.csv rows
    with ``dataset, model, group, seed, row, sparsity, concentration``; ``kinds``: dataset →
    images | videos (default: :func:`dataset_kind` of each dataset)."""
    import pandas as pd

    config = config or {}
    if runs is None or len(runs) == 0:
        runs = pd.DataFrame(columns=["dataset", "model", "seed", "method", "level", "sparsity",
                                     "test_acc", "test_samples"])
    names = set(config.get("datasets") or {}) | set(runs["dataset"].unique())
    if transfers is not None and len(transfers) and "target" in transfers:
        names |= set(transfers["target"].unique())
    kinds = dict(kinds) if kinds is not None else {}
    for name in names:
        kinds.setdefault(name, dataset_kind(config, name))
    present = set(runs["method"])
    controls = [c for c in (config.get("controls") or []) if f"control-{c}" in present]
    flags = baseline_flags(runs) if len(runs) else {}
    margin = margin_of(config)
    return [
        _claim_winning(runs, controls, kinds, flags, margin),
        _claim_retains(runs, kinds, flags, margin),
        _claim_criterion(runs, kinds, config, "images", "imp-global", "imp-local"),
        _claim_criterion(runs, kinds, config, "videos", "imp-local", "imp-global"),
        _claim_imp_vs_oneshot(runs, kinds),
        _claim_local_vs_oneshot(runs, kinds),
        _claim_resnet(runs, kinds),
        _claim_gradcam(deltas),
        _claim_transfer(transfers, kinds, flags, margin),
        claim_step_size(runs, kinds),
        claim_pai(runs, kinds),
        claim_kd(runs, kinds),
    ]
