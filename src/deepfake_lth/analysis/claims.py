"""The paper's claims checked against a run: each with a verdict computed by a stated rule.

Verdicts (:func:`deepfake_lth.analysis.stats.judge`): *holds* when every comparison of the
claim is for it, each one-sided at 2.5 % (the 95 % interval's side; an intersection–union
test, so no correction is due); *does not hold* when one is against it after Holm's
correction over the claim's comparisons; *not enough evidence* otherwise (an interval
straddles 0 or the margin, or a comparison cannot decide: one seed, no variance, fewer than
:data:`~deepfake_lth.analysis.stats.MIN_UNITS` test units of a class), with the reason in
``why``; *not run* when there is nothing to compare.

Every comparison of trained networks is paired by seed and by test unit (a video on a video
set, an image on an image set, a face for Grad-CAM, every seed scored on the same units): its
variance is the seeds' plus the shared test units' (:func:`~deepfake_lth.analysis.stats.
two_way`); AUC differences average DeLong's placements over seeds; shares of dense accuracy
("keeps 90 %") use the delta method. "Keeps" claims are non-inferiority against a fixed
margin δ in the claim's own unit (``claims.margin`` for accuracy and shares,
``claims.auc_margin`` for AUC).

Each :class:`~deepfake_lth.analysis.evidence.Claim` carries ``needs``: one short line saying
what would decide it when it is not decided ("needs ≥ 2 seeds (…): seeds: [0, 1, 2]",
"needs the matched control: controls: [random-chain]", "needs ≥ 10 test units of each
class …"), "" once it holds or does not; the report shows it beside the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepfake_lth.analysis.claims_beyond import (
    claim_kd,
    claim_pai,
    claim_step_size,
)
from deepfake_lth.analysis.claims_lowrank import claim_lowrank
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
)
from deepfake_lth.analysis.stats import (
    FAILS,
    HOLDS,
    MIN_UNITS,
    NOT_RUN,
    ONE_SEED,
    UNCLEAR,
    Diff,
    estimate_diff,
    non_inferiority,
    spread_diff,
    superiority,
    two_way,
)
from deepfake_lth.analysis.tickets import (
    baseline_flags,
    level_near,
    share_contrast,
    share_diff,
    ticket_method,
    winning_tickets,
)
from deepfake_lth.data.dataset_kind import dataset_kind
from deepfake_lth.stages import methods

__all__ = ["FAILS", "HOLDS", "NOT_RUN", "ONE_SEED", "UNCLEAR", "Claim", "dataset_kind",
           "evaluate_claims"]


# --------------------------------------------------------------------------- the claims


def _claim_winning(runs, controls: Sequence[str], kinds, flags, margin: float,
                   imp: str | None) -> Claim:
    text = "Deepfake detectors contain winning tickets at substantial sparsity (≥ 50 %)"
    matched = methods.MATCHED_CONTROL
    control = method_label(f"control-{matched}")
    rule = (f"Per dataset and model, at the first round of 50 % sparsity or more of the "
            f"ticket the controls are of ({method_label(imp) if imp else 'IMP'}): the "
            f"ticket is winning when ticket − dense is above −δ (δ = {100 * margin:.0f} "
            f"points: not worse than dense by the margin) and ticket − {control} is above 0 "
            "(the matched control: pruned at random with the ticket's per-layer counts and "
            "trained the same way, so only the choice of weights differs). Judged only where "
            "the matched control ran. The paper's own criterion, a′ ≥ a, is reported beside "
            "it.")
    comparisons, notes, used, missing_control = [], [], [], False
    if imp is None:
        return make_claim(text, "Abstract, §VI", rule, [], ["No IMP ticket in this run."],
                          needs="needs an IMP ticket: prune.criteria")
    table = winning_tickets(runs, imp, controls, kinds, matched, margin)
    one_seed_models = set()
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
            missing_control |= row["vs_matched"] is None
            notes.append(f"{where}: {missing} did not run, so the claim is not judged there "
                         f"(the paper's criterion: {paper}; config/controls.yaml runs the "
                         "controls).")
            continue
        if row["n_seeds"] < 2:
            one_seed_models.add(model)
        comparisons.append(non_inferiority(
            f"{where}: {method_label(imp)} − dense = {row['vs_dense'].text()} "
            f"({row['vs_dense'].how}; paper: {paper})", row["vs_dense"], margin))
        comparisons.append(superiority(
            f"{where}: {method_label(imp)} − {control} = {row['vs_matched'].text()} "
            f"({row['vs_matched'].how})", row["vs_matched"]))
    if not comparisons and not notes:
        notes.append("No IMP ticket with its dense network in this run.")
    needs = None
    if not comparisons and missing_control:
        needs = (f"needs the matched control: controls: [{matched}] (or, for one dataset and "
                 "model, claims.winning_ticket)")
    elif one_seed_models:
        model = sorted(one_seed_models)[0]
        needs = (f"needs ≥ 2 seeds (3 or more for power): models.{model}.seeds: [0, 1, 2], or "
                 f"claims.winning_ticket: {{dataset: …, model: {model}, seeds: [0, 1, 2]}}")
    return make_claim(text, "Abstract, §VI", rule, comparisons, notes,
                      baseline_caveats(flags, used), needs)


def _claim_retains(runs, kinds, flags, margin: float, imp: str | None) -> Claim:
    comparisons, notes, used = [], [], []
    for (dataset, model), _ in runs.groupby(["dataset", "model"], sort=True):
        if imp is None:
            break
        level = level_near(runs, dataset, model, imp)
        diff = share_diff(runs, kinds, dataset, model, imp, level, 0.9) if level else None
        if diff is None:
            continue
        used.append((dataset, model))
        comparisons.append(non_inferiority(
            f"{model} on {dataset}: the {method_label(imp)} ticket at {level} keeps "
            f"{100 * (diff.mean + 0.9):.1f} % of the dense accuracy "
            f"(share − 0.9 = {diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}], "
            f"{diff.how})", diff, margin))
    if not comparisons:
        notes.append("No IMP level near 80 % with its dense network in this run.")
    return make_claim(
        "IMP tickets at 80 % sparsity keep about 90 % or more of the dense accuracy "
        "(MesoNet 56.2 / 62.6 on OpenForensic)", "Abstract, §V-A",
        "Per dataset and model: the IMP ticket's accuracy at the level nearest 80 % as a share "
        "of the same seeds' dense accuracy on the same test units (a ratio of means, its SE "
        "by the delta method over seeds and test units), minus 0.9, above −δ with δ in the "
        f"share's unit (δ = {margin:.2f}: {100 * margin:.0f} % of the dense accuracy).",
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


def _claim_resnet(runs, kinds, imp: str | None) -> Claim:
    rule = ("Per dataset: the accuracy an IMP ticket keeps at the level nearest 80 %, as a "
            "share of the same seeds' dense accuracy (delta method). For the claim when "
            "ResNet-18 keeps a larger share than every other model (the interval of the "
            "difference above 0, paired by seed and test unit: the models share the test "
            "set); against it when another model keeps a larger share.")
    text = "ResNet-18 is the most robust model under pruning"
    if imp is None or "resnet18" not in set(runs["model"]):
        return make_claim(text, "§V-C", rule, [],
                          ["ResNet-18 is not in this run." if "resnet18" not in set(runs["model"])
                           else "No IMP runs in this run."],
                          needs="needs ResNet-18 and another model: models: {resnet18: …}")
    comparisons = []
    for dataset in sorted(runs["dataset"].unique()):
        part = runs[runs["dataset"] == dataset]
        levels = {m: level_near(runs, dataset, m, imp) for m in sorted(part["model"].unique())}
        levels = {m: lv for m, lv in levels.items() if lv}
        if "resnet18" not in levels or len(levels) < 2:
            continue
        for other in levels:
            if other == "resnet18":
                continue
            diff = share_contrast(runs, kinds, dataset, ("resnet18", imp, levels["resnet18"]),
                                  (other, imp, levels[other]))
            if diff is None:
                continue
            comparisons.append(superiority(
                f"On {dataset}, ResNet-18 − {other} share of dense accuracy kept = "
                f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] ({diff.how})", diff))
    return make_claim(text, "§V-C", rule, comparisons,
                      [] if comparisons else ["No dataset with ResNet-18 and another model at "
                                              "about 80 % sparsity."])


def gradcam_diff(g) -> tuple[Diff, int] | None:
    """Concentration at the highest sparsity − at the lowest, per face and seed (the same
    faces on every seed): :func:`two_way` over seeds × faces; (diff, faces) or None."""
    lo, hi = g["sparsity"].min(), g["sparsity"].max()
    if hi <= lo:
        return None
    rows = {}
    for seed, gs in g.groupby("seed", sort=True):
        base = gs[gs["sparsity"] == lo].groupby("row")["concentration"].mean()
        top = gs[gs["sparsity"] == hi].groupby("row")["concentration"].mean()
        d = (top - base.reindex(top.index)).astype(float)
        rows[int(seed)] = d[np.isfinite(d)]
    rows = {s: d for s, d in rows.items() if len(d)}
    if not rows:
        return None
    faces = None
    for d in rows.values():
        faces = d.index if faces is None else faces.intersection(d.index)
    if faces is None or len(faces) == 0:
        return None
    matrix = np.array([d.loc[faces].to_numpy() for d in rows.values()])
    problem = (f"{len(faces)} Grad-CAM faces (fewer than {MIN_UNITS})"
               if len(faces) < MIN_UNITS else "")
    seeds = f"{len(rows)} seeds" if len(rows) >= 2 else "one seed"
    return spread_diff(two_way([(matrix, np.ones(len(faces)))]),
                       f"paired by face over {len(faces)} faces and {seeds}", problem), \
        len(faces) * len(rows)


def _claim_gradcam(deltas) -> Claim:
    rule = ("Per dataset, model and method: the Grad-CAM concentration (share of the heat in "
            "the hottest 10 % of pixels) of each face at the highest sparsity minus at the "
            "dense level, paired by face and seed (every seed explains the same faces: the "
            "faces' variance and the seeds' both count); for the claim when the interval of "
            "the mean increase lies above 0, against it when it lies below 0.")
    text = "Pruned models narrow their Grad-CAM focus (concentration rises with sparsity)"
    if deltas is None or len(deltas) == 0 or "concentration" not in deltas:
        return make_claim(text, "§V-D, Fig. 3", rule, [], ["No Grad-CAM results in this run."],
                          needs="needs Grad-CAM runs: gradcam.sparsities")
    comparisons = []
    for (dataset, model, method), g in deltas.groupby(["dataset", "model", "group"], sort=True):
        found = gradcam_diff(g)
        if found is None:
            continue
        diff, _ = found
        hi = g["sparsity"].max()
        comparisons.append(superiority(
            f"{model} on {dataset} ({method_label(method)}): the concentration changes by "
            f"{diff.mean:+.3f} from 0 to {100 * hi:.0f} % sparsity ({diff.how}"
            f"{'' if diff.n_seeds < 2 else f'; {diff.low:+.3f} to {diff.high:+.3f}'})", diff))
    return make_claim(text, "§V-D, Fig. 3", rule, comparisons,
                      [] if comparisons else ["No Grad-CAM folder with a pruned level."])


FINETUNED = methods.DENSE_FINETUNED  # the source's dense network fine-tuned on the target


def _transfer_diff(g, pair: str, method: str, base: str, kind: str | None) -> Diff | None:
    """Ticket − a baseline on the target's test split, paired by seed and by test unit
    (:func:`estimate_diff` over the transfer rows: each run's predictions.csv)."""
    frame = g.assign(dataset=pair, level=g["method"])
    if "test_samples" not in frame:
        frame = frame.assign(test_samples=np.nan)
    return estimate_diff(frame, pair, str(g["model"].iloc[0]), method, base,
                         [(method, base)], kind)


def _claim_transfer(transfers, kinds, flags, margin: float) -> Claim:
    rule = ("Per transfer pair, model and IMP ticket of 55–65 % sparsity: the ticket's test "
            "accuracy on the target minus each baseline's, paired by seed and by test unit: "
            "the target's dense network trained from scratch and the source's dense network "
            "fine-tuned on the target (it separates pretraining on the source from the "
            f"ticket). For the claim when every interval lies above −δ (δ = "
            f"{100 * margin:.0f} points), against it when one lies below −δ.")
    text = "A ticket transferred at 60 % sparsity keeps the target's dense accuracy (Table I)"
    if transfers is None or len(transfers) == 0:
        return make_claim(text, "§V-E, Table I", rule, [], ["No transfer runs in this run."],
                          needs="needs transfer runs: transfer.pairs")
    comparisons, notes, used, no_finetuned = [], [], [], False
    for (pair, model), g in transfers.groupby(["pair", "model"], sort=True):
        target = str(g["target"].iloc[0]) if "target" in g else ""
        kind = kinds.get(target)
        present = set(g["method"])
        if "dense" not in present:
            continue
        for method in sorted(present - {"dense", FINETUNED}):
            src, _, pct = method.rpartition("-sparsity")
            if (not methods.with_role([src], methods.TICKET) or not pct.isdigit()
                    or not 55 <= int(pct) <= 65):
                continue
            for base, name in (("dense", "the target's dense network"),
                               (FINETUNED, "the source's dense network fine-tuned on the "
                                           "target")):
                if base not in present:
                    no_finetuned = True
                    continue
                diff = _transfer_diff(g, pair, method, base, kind)
                if diff is None:
                    continue
                used.append((target, model))
                comparisons.append(non_inferiority(
                    f"{model}, {pair}: the {method_label(src)} ticket at {pct} % − {name} = "
                    f"{diff.text()} ({diff.how})", diff, margin))
    if no_finetuned:
        notes.append("The source's dense network fine-tuned on the target did not run: the "
                     "ticket is judged against the target's dense network only.")
    if not comparisons:
        notes.append("No IMP ticket of 55–65 % sparsity with a dense baseline.")
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
    if f"control-{methods.MATCHED_CONTROL}" in present and methods.MATCHED_CONTROL not in controls:
        controls.append(methods.MATCHED_CONTROL)  # claims.winning_ticket runs it alone
    flags = baseline_flags(runs) if len(runs) else {}
    margin = margin_of(config)
    imp = ticket_method(runs, config) if len(runs) else None
    if imp is not None and imp not in present:
        imp = main_imp(runs)
    return [
        _claim_winning(runs, controls, kinds, flags, margin, imp),
        _claim_retains(runs, kinds, flags, margin, imp),
        _claim_criterion(runs, kinds, config, "images", "imp-global", "imp-local"),
        _claim_criterion(runs, kinds, config, "videos", "imp-local", "imp-global"),
        _claim_imp_vs_oneshot(runs, kinds),
        _claim_local_vs_oneshot(runs, kinds),
        _claim_resnet(runs, kinds, imp),
        _claim_gradcam(deltas),
        _claim_transfer(transfers, kinds, flags, margin),
        claim_step_size(runs, kinds),
        claim_pai(runs, kinds),
        claim_kd(runs, kinds),
        claim_lowrank(runs, kinds),
    ]
