"""The paper's claims checked against a run: each with a verdict computed by a stated rule.

Verdicts: *holds* (every comparison for the claim), *does not hold* (one against it), *not
enough evidence* (it ran, and some interval straddles zero), *not run* (nothing to compare:
the method or data is not in this run). On a video set the unit of every standard error is
the test video (:func:`deepfake_lth.analysis.stats.estimate_diff`); whether a dataset is a video set
is :func:`dataset_kind`'s to say. Method names and labels come from the method registry.
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
    NEAR,
    NOT_RUN,
    TIE,
    UNCLEAR,
    binomial_se,
    decide,
    decide_values,
    estimate_diff,
    finite,
    levels_of,
    match_levels,
    mean_ci,
    verdict,
)
from deepfake_lth.analysis.tickets import (
    baseline_flags,
    decide_unpaired,
    level_near,
    retained_se,
    retained_share,
    winning_tickets,
    winning_up_to,
)
from deepfake_lth.data.kinds import dataset_kind
from deepfake_lth.pruning import methods as registry
from deepfake_lth.pruning.plan import parse_step_size_method

__all__ = ["FAILS", "HOLDS", "NOT_RUN", "UNCLEAR", "Claim", "dataset_kind", "evaluate_claims"]

SAY = {GREATER: "which counts for the claim", LESS: "which counts against it",
       TIE: "which is within the noise"}


@dataclass
class Claim:
    """One of the paper's claims with this run's verdict."""

    text: str
    source: str
    verdict: str
    rule: str
    evidence: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)  # e.g. a miscalibrated dense baseline


# --------------------------------------------------------------------------- helpers


def _label(method: str) -> str:
    return registry.label(method)


def _imp_methods(runs) -> list[str]:
    return sorted(registry.with_role(runs["method"].unique(), registry.TICKET),
                  key=registry.sort_key)


def _main_imp(runs) -> str | None:
    imps = _imp_methods(runs)
    return imps[0] if imps else None


def _compare_at(runs, kinds, dataset, model, a, b, target=None, tol=LEVEL_TOLERANCE):
    """Outcome and evidence of A vs B: at the shared level (sparsities within ``tol``)
    nearest ``target`` (within 5 points) or, with no target, averaged over every shared
    level."""
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
    outcome = diff.outcome
    return outcome, (f"{model} on {dataset}, {where}: {_label(a)} − {_label(b)} = "
                     f"{diff.text()} ({diff.how}), {SAY[outcome]}.")


def _baseline_caveats(flags, pairs) -> list[str]:
    return [flags[p] for p in sorted(set(pairs)) if p in flags]


# --------------------------------------------------------------------------- the claims


def _claim_winning(runs, controls: Sequence[str], kinds, flags) -> Claim:
    imp = _main_imp(runs)
    outcomes, evidence, used = [], [], []
    text = "Deepfake detectors contain winning tickets at substantial sparsity (≥ 50 %)"
    if imp is not None:
        table = winning_tickets(runs, imp, controls, kinds, registry.MATCHED_CONTROL)
        for (dataset, model), best in winning_up_to(table).items():
            g = table[(table["dataset"] == dataset) & (table["model"] == model)]
            if "dense" not in set(runs[(runs["dataset"] == dataset)
                                       & (runs["model"] == model)]["method"]):
                continue
            used.append((dataset, model))
            upto = g[g["sparsity"] <= 0.5 + LEVEL_TOLERANCE]
            if upto.empty:
                upto = g.nsmallest(1, "sparsity")
            reached = float(g["sparsity"].max())
            if reached < 0.5 - NEAR:
                outcome = TIE  # the run stops short of the claim's sparsity
            elif bool(upto["winning"].all()):
                outcome = GREATER
            elif (~upto["within_se"]).any() or (upto["matched_outcome"] == LESS).any():
                outcome = LESS
            else:
                outcome = TIE
            outcomes.append(outcome)
            words = {"matched control": "judged against the matched control",
                     "controls with shorter training": "judged against controls with shorter "
                     "training, as the matched control did not run",
                     "no control": "judged without a control, as none ran"}
            basis = "; ".join(words.get(x, x) for x in sorted(set(g["basis"])))
            if best is None:
                first = g.nsmallest(1, "sparsity").iloc[0]
                said = (f"{_label(imp)} is not a winning ticket even at its first round "
                        f"({100 * first['sparsity']:.0f} % sparsity)")
            else:
                said = (f"{_label(imp)} is a winning ticket at every round up to "
                        f"{100 * best:.0f} % sparsity")
            paper = g[g["paper"]]["sparsity"]
            paper_words = (f"by the paper's a′ ≥ a up to {100 * paper.max():.0f} %"
                           if len(paper) else "by the paper's a′ ≥ a at no round")
            short = (f"; its rounds reach only {100 * reached:.0f} % sparsity"
                     if reached < 0.5 - NEAR else "")
            evidence.append(f"{model} on {dataset}: {said} ({basis}; {paper_words}{short}), "
                            f"{SAY[outcome]}.")
    if not outcomes:
        evidence.append("No IMP ticket with its dense network in this run.")
    matched_words = (f"beats the matched control ({_label('control-' + registry.MATCHED_CONTROL)}:"
                     " the ticket's own previous round pruned at random and retrained the same "
                     "way, so only the mask differs; the 95 % interval of the difference above "
                     "0)")
    return Claim(
        text, "Abstract, §VI", verdict(outcomes),
        "A ticket is winning at a round when its accuracy minus the dense accuracy is above "
        "−1 standard error (SE of the paired difference: over test videos on a video set, "
        f"over images or seeds otherwise) and it {matched_words}; when the matched control "
        "did not run, it must lie above the other controls (whose training is shorter). Holds "
        "when, for every dataset and model, every IMP round up to 50 % sparsity is winning; "
        "does not hold when one of them is more than 1 SE below dense or below the matched "
        "control. The paper's own criterion, a′ ≥ a, is reported beside it.",
        evidence, _baseline_caveats(flags, used),
    )


def _claim_retains(runs, kinds, flags) -> Claim:
    imp = _main_imp(runs)
    outcomes, evidence, used = [], [], []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        if imp is None:
            break
        level = level_near(runs, dataset, model, imp)
        kept = retained_share(runs, dataset, model, imp, level) if level else {}
        if not kept:
            continue
        used.append((dataset, model))
        se = retained_se(runs, kinds, dataset, model, imp, level)
        outcome = decide_values([v - 0.9 for v in kept.values()], se, kinds.get(dataset))
        outcomes.append(outcome)
        evidence.append(f"{model} on {dataset}: the {_label(imp)} ticket at {level} keeps "
                        f"{100 * float(np.mean(list(kept.values()))):.1f} % of the dense "
                        f"accuracy, {SAY[outcome]}.")
    if not outcomes:
        evidence.append("No IMP level near 80 % with its dense network in this run.")
    return Claim(
        "IMP tickets at 80 % sparsity keep about 90 % or more of the dense accuracy "
        "(MesoNet 56.2 / 62.6 on OpenForensic)",
        "Abstract, §V-A", verdict(outcomes),
        "Per dataset and model: the IMP ticket's accuracy at the level nearest 80 % over the "
        "same seed's dense accuracy, minus 0.9; decided by the 95 % t-interval over seeds (one "
        "seed: 1.96 binomial SE; on a video set the binomial SE over test videos, added to the "
        "variance over seeds).",
        evidence, _baseline_caveats(flags, used),
    )


def _claim_criterion(runs, kinds, config, kind, better, worse) -> Claim:
    datasets = [d for d in sorted(runs["dataset"].unique()) if kinds.get(d) == kind]
    configured = [d for d in (config.get("datasets") or {}) if kinds.get(d) == kind]
    outcomes, evidence = [], []
    for dataset in datasets:
        for model in sorted(runs[runs["dataset"] == dataset]["model"].unique()):
            res = _compare_at(runs, kinds, dataset, model, better, worse)
            if res:
                outcomes.append(res[0])
                evidence.append(res[1])
    if not configured and not datasets:
        evidence.append(f"No {kind[:-1]} set in this run.")
    elif not outcomes:
        evidence.append(f"No {kind[:-1]} set with both {_label(better)} and {_label(worse)} "
                        "results in this run.")
    where = {"images": "the image set (OpenForensic)",
             "videos": "the video set (FaceForensics++)"}[kind]
    unit = "test video" if kind == "videos" else "test image (or seed)"
    return Claim(
        f"{_label(better)} beats {_label(worse)} on {where}", "§V-A, Fig. 2", verdict(outcomes),
        f"Per {kind[:-1]} set and model: {_label(better)} − {_label(worse)} test accuracy, "
        f"averaged over the IMP rounds both ran, paired by seed and by {unit}. A model counts "
        "for the claim when the 95 % interval lies above 0, against it when it lies below 0. "
        "Holds when every model counts for it; does not hold when one counts against it.",
        evidence,
    )


def _compare_pairs(runs, kinds, pairs, target: float) -> tuple[list, list]:
    """Outcomes and evidence of ``a`` − ``b`` at the level nearest ``target``, for every
    dataset × model and every (a, b) in ``pairs`` that both ran there."""
    outcomes, evidence = [], []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        for a, b in pairs:
            res = _compare_at(runs, kinds, dataset, model, a, b, target=target)
            if res:
                outcomes.append(res[0])
                evidence.append(res[1])
    return outcomes, evidence


def _claim_imp_vs_oneshot(runs, kinds) -> Claim:
    present = set(runs["method"])
    pairs = [(imp, f"oneshot-{registry.criterion_of(imp)}") for imp in _imp_methods(runs)]
    outcomes, evidence = _compare_pairs(runs, kinds, [p for p in pairs if p[1] in present], 0.8)
    if not outcomes:
        evidence.append("No IMP and one-shot levels of one criterion near 80 % in this run.")
    return Claim(
        "IMP ≥ one-shot pruning at 80 % sparsity (IMP outperforms one-shot)", "§V-B, §VI",
        verdict(outcomes),
        "Per dataset, model and criterion: IMP − one-shot test accuracy at the shared level "
        "nearest 80 % (within 5 points), paired by seed (and by video on a video set); decided "
        "by its 95 % interval.",
        evidence,
    )


def _claim_local_vs_oneshot(runs, kinds) -> Claim:
    oneshots = sorted(registry.with_role(runs["method"].unique(), registry.ONESHOT),
                      key=registry.sort_key)
    pairs = [("imp-local", o) for o in oneshots] if "imp-local" in set(runs["method"]) else []
    outcomes, evidence = _compare_pairs(runs, kinds, pairs, 0.8)
    if not outcomes:
        evidence.append("IMP-Local and a one-shot method at about 80 % were not both run.")
    return Claim(
        "IMP-Local beats one-shot pruning at 80 % sparsity on both datasets", "§V-B",
        verdict(outcomes),
        "Per dataset, model and one-shot method: IMP-Local − one-shot test accuracy at the "
        "shared level nearest 80 %, paired by seed (and by video on a video set); decided by "
        "its 95 % interval.",
        evidence,
    )


def _claim_resnet(runs, kinds) -> Claim:
    rule = ("Per dataset: the accuracy an IMP ticket keeps at the level nearest 80 %, as a "
            "share of the same seed's dense accuracy. Holds when ResNet-18 keeps a larger share "
            "than every other model (the 95 % interval of the difference above 0, Welch-style "
            "over seeds; one seed: 1.96 binomial SE over test images, or videos); does not hold "
            "when another model keeps a larger share by that rule.")
    text = "ResNet-18 is the most robust model under pruning"
    imp = _main_imp(runs)
    if imp is None or "resnet18" not in set(runs["model"]):
        return Claim(text, "§V-C", NOT_RUN, rule,
                     ["ResNet-18 is not in this run." if "resnet18" not in set(runs["model"])
                      else "No IMP runs in this run."])
    outcomes, evidence = [], []
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
            outcome = decide_unpaired(a, b, se_a, se_b, kinds.get(dataset) == "videos")
            outcomes.append(outcome)
            evidence.append(f"On {dataset}, ResNet-18 keeps {100 * a.mean():.1f} % of its dense "
                            f"accuracy and {other} {100 * b.mean():.1f} %, {SAY[outcome]}.")
    if not outcomes:
        evidence.append("No dataset with ResNet-18 and another model at about 80 % sparsity.")
    return Claim(text, "§V-C", verdict(outcomes), rule, evidence)


def _claim_gradcam(deltas) -> Claim:
    rule = ("Per dataset, model and method: the Grad-CAM concentration (share of the heat in "
            "the hottest 10 % of pixels) of each face at the highest sparsity minus at the "
            "dense level, paired by face (and seed). Holds when the 95 % t-interval of the "
            "mean increase lies above 0 for every group; does not hold when it lies below 0 "
            "for one.")
    text = "Pruned models narrow their Grad-CAM focus (concentration rises with sparsity)"
    if deltas is None or len(deltas) == 0 or "concentration" not in deltas:
        return Claim(text, "§V-D, Fig. 3", NOT_RUN, rule, ["No Grad-CAM results in this run."])
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
        if not len(d):  # no face with a defined concentration at both levels
            continue
        outcome = decide(d) if len(d) >= 2 else TIE
        outcomes.append(outcome)
        ci = mean_ci(d)
        evidence.append(f"{model} on {dataset} ({_label(method)}): the concentration changes by "
                        f"{ci.mean:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] from 0 to "
                        f"{100 * hi:.0f} % sparsity over {ci.n} faces, {SAY[outcome]}.")
    if not outcomes:
        evidence.append("No Grad-CAM folder with a pruned level.")
    return Claim(text, "§V-D, Fig. 3", verdict(outcomes), rule, evidence)


def _claim_transfer(transfers, kinds, flags) -> Claim:
    rule = ("Per transfer pair, model and IMP ticket of 55–65 % sparsity: the ticket's test "
            "accuracy on the target minus the target's dense accuracy, paired by seed. A "
            "ticket counts for the claim when its mean is at least the dense mean minus one "
            "standard error (over seeds; one seed: binomial over the target's test images, or "
            "videos), against it when it is below by more than 1.96 standard errors.")
    text = "A ticket transferred at 60 % sparsity keeps the target's dense accuracy (Table I)"
    if transfers is None or len(transfers) == 0:
        return Claim(text, "§V-E, Table I", NOT_RUN, rule, ["No transfer runs in this run."])
    outcomes, evidence, used = [], [], []
    for (pair, model), g in transfers.groupby(["pair", "model"], sort=True):
        target = str(g["target"].iloc[0]) if "target" in g else ""
        kind = kinds.get(target)
        dense_rows = g[g["method"] == "dense"]
        dense = {int(s): float(v) for s, v in zip(dense_rows["seed"], dense_rows["test_acc"],
                                                   strict=True)}
        d_acc = finite(dense.values())
        if not len(d_acc):
            continue
        n = math.nan
        if kind == "videos" and "test_videos" in g:
            n = float(g["test_videos"].dropna().iloc[0]) if g["test_videos"].notna().any() \
                else math.nan
        if not np.isfinite(n) and "test_samples" in g and g["test_samples"].notna().any():
            n = float(g["test_samples"].dropna().iloc[0])
        se = (float(d_acc.std(ddof=1) / math.sqrt(len(d_acc))) if len(d_acc) >= 2
              else binomial_se(float(d_acc[0]), n))
        for method, t in g[g["method"] != "dense"].groupby("method", sort=True):
            src, _, pct = method.rpartition("-sparsity")
            if (not registry.with_role([src], registry.TICKET) or not pct.isdigit()
                    or not 55 <= int(pct) <= 65):
                continue
            acc = {int(s): float(v) for s, v in zip(t["seed"], t["test_acc"], strict=True)}
            diffs = finite([acc[s] - dense[s] for s in acc if s in dense])
            if not len(diffs) or not np.isfinite(se):
                continue
            used.append((target, model))
            mean = float(diffs.mean())
            if mean >= -se:
                outcome = GREATER
            else:
                worse = decide(list(diffs), math.hypot(
                    binomial_se(float(np.mean(list(acc.values()))), n),
                    binomial_se(float(d_acc.mean()), n)))
                outcome = LESS if worse == LESS else TIE
            outcomes.append(outcome)
            evidence.append(f"{model}, {pair}: the {_label(src)} ticket at {pct} % differs from "
                            f"the target's dense network by {100 * mean:+.1f} pp (SE "
                            f"{100 * se:.1f} pp), {SAY[outcome]}.")
    if not outcomes:
        evidence.append("No IMP ticket of 55–65 % sparsity with a dense baseline and a known "
                        "test-set size.")
    return Claim(text, "§V-E, Table I", verdict(outcomes), rule, evidence,
                 _baseline_caveats(flags, used))


def _claim_step_size(runs, kinds) -> Claim:
    outcomes, evidence = [], []
    variants = sorted(registry.with_role(runs["method"].unique(), registry.STEP_SIZE))

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
            res = _compare_at(runs, kinds, dataset, model, variant, base, target=final, tol=tol)
            if res:
                outcomes.append(res[0])
                evidence.append(res[1])
    if not variants:
        evidence.append("No other step sizes in this run.")
    elif not outcomes:
        evidence.append("No smaller rate has reached the config's final IMP sparsity yet.")
    return Claim(
        "Smaller pruning steps (5–10 % per round) find better tickets at the same final "
        "sparsity than 20 %", "§VI (future work, after [25, 26])", verdict(outcomes),
        "Per dataset, model and smaller rate: test accuracy of IMP at that rate minus IMP at "
        "the config's rate, at the config's final IMP sparsity (the smaller rate's last "
        "round overshoots it by less than one of its rounds), paired by seed (and video); "
        "decided by its 95 % interval.",
        evidence,
    )


def _claim_pai(runs, kinds) -> Claim:
    outcomes, evidence = [], []
    present = sorted(registry.with_role(runs["method"].unique(), registry.PAI),
                     key=registry.sort_key)
    imp = _main_imp(runs)
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        for method in present:
            if imp is None:
                continue
            res = _compare_at(runs, kinds, dataset, model, imp, method, target=0.8)
            if res:
                outcomes.append(res[0])
                evidence.append(res[1])
    if not present:
        evidence.append("SNIP and GraSP were not run.")
    elif not outcomes:
        evidence.append("No SNIP or GraSP level near 80 % shared with IMP.")
    return Claim(
        "Iterative pruning (IMP) outperforms pruning at initialization (SNIP, GraSP)",
        "§VI (future work, after [6, 29])", verdict(outcomes),
        "Per dataset, model and method: IMP − SNIP (or GraSP) test accuracy at the shared "
        "level nearest 80 %, paired by seed (and video); decided by its 95 % interval.",
        evidence,
    )


KEEP_MARGIN = 0.05  # "keeps" the dense AUC: the ticket's is at most 5 AUC points lower
KEEP_UP_TO = 0.8


def claim_generalisation(cross) -> Claim:
    """IMP tickets keep the dense network's cross-dataset AUC up to 80 % sparsity. ``cross``:
    one row per run × zero-shot test set (dataset, model, seed, method, level, sparsity,
    test_set, zero_shot, manipulation, per_video: the test videos' mean p(fake) and label)."""
    from deepfake_lth.analysis.stats import paired_auc_diff

    text = "IMP tickets keep the dense network's cross-dataset AUC up to 80 % sparsity"
    outcomes, evidence = [], []
    if cross is not None and len(cross):
        sets = cross[cross["zero_shot"].astype(bool) & (cross["manipulation"] == "")]
        for (dataset, model, seed, test_set), part in sets.groupby(
                ["dataset", "model", "seed", "test_set"], sort=True):
            dense = part[part["method"] == "dense"]
            if dense.empty:
                continue
            base = dense.iloc[0]["per_video"]
            for method in _imp_methods(part):
                rows = part[(part["method"] == method)
                            & (part["sparsity"] <= KEEP_UP_TO + LEVEL_TOLERANCE)]
                for _, r in rows.sort_values("sparsity").iterrows():
                    if r["per_video"] is None or base is None:
                        continue
                    joined = r["per_video"].join(base.add_suffix("_dense"), how="inner")
                    d = paired_auc_diff(joined["label"], joined["prob"], joined["prob_dense"])
                    if d is None:
                        continue
                    outcome = (GREATER if d.low > -KEEP_MARGIN
                               else LESS if d.high < 0 else TIE)
                    outcomes.append(outcome)
                    evidence.append(
                        f"{model} (seed {seed}) from {dataset} on {test_set}, {_label(method)} "
                        f"at {100 * r['sparsity']:.0f} %: video AUC {d.mean:+.3f} "
                        f"[{d.low:+.3f}, {d.high:+.3f}] against dense ({d.how}), "
                        f"{SAY[outcome]}.")
    return Claim(
        text, "§VI (generalisation, after DeepfakeBench)", verdict(outcomes),
        "Per source dataset, model, seed, unseen test set and IMP round up to 80 % sparsity: "
        "ticket − dense video AUC (mean p(fake) per video) with its 95 % DeLong interval, "
        "paired by video. For: the interval lies above −0.05 (5 AUC points); against: it "
        "lies below 0 and reaches past −0.05; otherwise undecided.",
        evidence,
    )


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
    return [
        _claim_winning(runs, controls, kinds, flags),
        _claim_retains(runs, kinds, flags),
        _claim_criterion(runs, kinds, config, "images", "imp-global", "imp-local"),
        _claim_criterion(runs, kinds, config, "videos", "imp-local", "imp-global"),
        _claim_imp_vs_oneshot(runs, kinds),
        _claim_local_vs_oneshot(runs, kinds),
        _claim_resnet(runs, kinds),
        _claim_gradcam(deltas),
        _claim_transfer(transfers, kinds, flags),
        _claim_step_size(runs, kinds),
        _claim_pai(runs, kinds),
    ]
