"""The Robustness section: the dense network and the tickets of ``robustness.methods`` scored
on their test split under perturbations (``analysis/robustness.py``): AUC against severity per
sparsity, the mean AUC over perturbations (DeeperForensics-1.0's summary), the claim that IMP
tickets keep the dense network's robustness, and what the tickets forget
(``analysis/forgetting.py``): the share of test units whose modal prediction pruning changes,
and the most-forgotten faces with their Grad-CAM maps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from markupsafe import Markup

from deepfake_lth.analysis import forgetting
from deepfake_lth.analysis import robustness as robust
from deepfake_lth.data.perturbations import PERTURBATIONS
from deepfake_lth.report.common import (
    FIGURE_WIDTH,
    Figures,
    Part,
    Section,
    Table,
    method_key,
    method_label,
    ordered,
    safe_name,
    style,
)
from deepfake_lth.report.generalisation import run_folder

GALLERY = 6  # faces in the forgetting gallery of a dataset × model


def records(results_dir: Path, config: dict, runs) -> list[dict]:
    """The collected runs a robustness job covers, each with its run folder (``path``)."""
    if runs is None or runs.empty:
        return []
    out = []
    for _, r in runs.iterrows():
        covered = robust.covered_methods(config, r["model"])
        if covered and (r["method"] == "dense" or r["method"] in covered):
            out.append({k: r[k] for k in ("dataset", "model", "method", "level", "sparsity")}
                       | {"seed": int(r["seed"]), "path": run_folder(results_dir, r)})
    return out


def collect_scores(recs: list[dict], runs):
    """One row per run × condition: frame and video AUC, clean (level 0, the run's own
    metrics.json) and under each perturbation and level scored (its robust/ folders)."""
    import pandas as pd

    clean = {(r["dataset"], r["model"], int(r["seed"]), r["method"], r["level"]):
             (r["test_auc"], r.get("video_auc", np.nan)) for _, r in runs.iterrows()}
    rows = []
    for rec in recs:
        key = {k: rec[k] for k in ("dataset", "model", "seed", "method", "level", "sparsity")}
        auc, vauc = clean[(rec["dataset"], rec["model"], rec["seed"], rec["method"],
                           rec["level"])]
        rows.append(key | {"perturbation": "", "severity": 0, "auc": auc, "video_auc": vauc})
        rows += [key | {"perturbation": m["perturbation"], "severity": int(m["level"]),
                        "auc": m.get("auc"), "video_auc": m.get("video_auc")}
                 for m in robust.read_robust(rec["path"])]
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "method", "level", "sparsity",
                                       "perturbation", "severity", "auc", "video_auc"])


def _networks(part):
    """(method, level, sparsity) of the networks in ``part``: dense first, by method and
    sparsity."""
    keys = part.groupby(["method", "level"])["sparsity"].mean()
    return sorted(((m, lv, s) for (m, lv), s in keys.items()),
                  key=lambda k: (method_key(k[0]), k[2]))


def severity_figure(scores, dataset: str, model: str, figures: Figures):
    """Small multiples: per method (rows) and perturbation (columns) the frame AUC against
    the level (0: clean), one line per sparsity (the dense network in black)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure as MplFigure

    part = scores[(scores["dataset"] == dataset) & (scores["model"] == model)]
    names = [p for p in PERTURBATIONS if p in set(part["perturbation"])]
    tickets = sorted(set(part["method"]) - {"dense"}, key=method_key)
    if not names or not tickets:
        return None
    means = part.groupby(["method", "level", "perturbation", "severity"])["auc"].mean()
    cmap = colormaps["viridis"]
    top = max(float(part["sparsity"].max()), 1e-9)
    with style():
        fig = MplFigure(figsize=(FIGURE_WIDTH, 2.3 * len(tickets) + 0.8), layout="constrained")
        axes = fig.subplots(len(tickets), len(names), squeeze=False, sharey=True)
        for i, method in enumerate(tickets):
            for j, name in enumerate(names):
                ax = axes[i][j]
                for m, level, s in _networks(part[part["method"].isin(["dense", method])]):
                    xs = [0, *(sorted(means[(m, level, name)].index)
                               if (m, level, name) in means.index else [])]
                    ys = [means.get((m, level, "", 0), np.nan),
                          *[means[(m, level, name, x)] for x in xs[1:]]]
                    ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2,
                            color="black" if m == "dense" else cmap(0.9 * s / top),
                            label="dense" if m == "dense" else f"{100 * s:.0f} %")
                ax.set_title(f"{method_label(method)}: {PERTURBATIONS[name].label}", fontsize=8)
                ax.set_xticks(sorted(set(part["severity"])))
                ax.set_xlabel("level (0: clean)", fontsize=8)
                ax.set_ylabel("frame AUC" if j == 0 else "")
                ax.axhline(0.5, color="0.6", linestyle=":", linewidth=1)
            handles, labels = axes[i][0].get_legend_handles_labels()
            axes[i][-1].legend(handles, labels, fontsize=7, loc="center left",
                               bbox_to_anchor=(1.02, 0.5), frameon=False, title="sparsity")
    return figures.add(
        fig, f"robustness_{safe_name(dataset)}_{safe_name(model)}",
        f"Frame AUC of {model} trained on {dataset} on its test split under each perturbation "
        "against its level (0: unperturbed); one line per sparsity, the dense network in "
        "black; mean over seeds; dotted: chance.")


def summary_table(scores, dataset: str, model: str) -> Table | None:
    """DeeperForensics' summary: per network the clean AUC, the mean AUC over every
    perturbation and level, and each perturbation's mean over its levels."""
    part = scores[(scores["dataset"] == dataset) & (scores["model"] == model)]
    names = [p for p in PERTURBATIONS if p in set(part["perturbation"])]
    if part.empty or not names:
        return None
    table = Table(f"{model} on {dataset}: frame AUC under perturbation",
                  ["Method", "Sparsity (%)", "Clean", "Mean over perturbations",
                   *[PERTURBATIONS[n].label for n in names]], text_columns=1,
                  note="Frame AUC, the mean over seeds; a perturbation's column is the mean "
                  "over its levels scored (robustness.levels), the mean over perturbations "
                  "the mean over every perturbation and level (DeeperForensics-1.0's "
                  "summary). Clean: the run's own test split.")
    for method, level, s in _networks(part):
        net = part[(part["method"] == method) & (part["level"] == level)]
        perturbed = net[net["perturbation"] != ""]
        cells = [net[net["perturbation"] == ""]["auc"].mean(), perturbed["auc"].mean(),
                 *[net[net["perturbation"] == n]["auc"].mean() for n in names]]
        table.rows.append([method_label(method), f"{100 * s:.1f}",
                           *["–" if not np.isfinite(v) else f"{v:.3f}" for v in cells]])
    return table


def forgetting_table(share_table, dataset: str, model: str) -> Table | None:
    """PIEs per sparsity: clean over every unit and per manipulation, and under each
    perturbation (the mean over its levels), in % of the test units."""
    part = share_table[(share_table["dataset"] == dataset) & (share_table["model"] == model)]
    if part.empty:
        return None
    clean = part[part["condition"] == forgetting.CLEAN]
    manips = sorted(set(clean["manipulation"]) - {forgetting.ALL},
                    key=lambda m: (m != forgetting.REAL, m))  # real first
    perturbed = part[(part["condition"] != forgetting.CLEAN)
                     & (part["manipulation"] == forgetting.ALL)]
    perturbed = perturbed.assign(name=perturbed["condition"].str.partition("/")[0])
    names = [p for p in PERTURBATIONS if p in set(perturbed["name"])]
    table = Table(f"{model} on {dataset}: what the tickets forget (% of test units)",
                  ["Method", "Sparsity (%)", "Units", "PIEs", "Forgotten",
                   *[f"PIEs: {m}" for m in manips],
                   *[f"PIEs: {PERTURBATIONS[n].label}" for n in names]], text_columns=1,
                  note="A pruning-identified exemplar (PIE, Hooker et al. 2019) is a test "
                  "unit (a video; an image on an image set) whose modal prediction over the "
                  "seeds' tickets differs from the modal prediction over the seeds' dense "
                  "networks (a unit's prediction: its mean p(fake) at 0.5); forgotten: the "
                  "dense networks are right and the tickets wrong. Per manipulation: the "
                  "share among that manipulation's units (real: the real units); under a "
                  "perturbation: both sides scored on the same perturbed faces, the mean "
                  "over its levels.")
    for (method, level), g in clean.groupby(["method", "level"]):
        whole = g[g["manipulation"] == forgetting.ALL].iloc[0]
        per = g.set_index("manipulation")
        mine = perturbed[(perturbed["method"] == method) & (perturbed["level"] == level)]
        table.rows.append([
            method_label(method), f"{100 * whole['sparsity']:.1f}", f"{int(whole['units'])}",
            f"{100 * whole['pie']:.1f}", f"{100 * whole['forgotten']:.1f}",
            *[f"{100 * per.loc[m, 'pie']:.1f}" if m in per.index else "–" for m in manips],
            *[f"{100 * mine[mine['name'] == n]['pie'].mean():.1f}" for n in names]])
    table.rows.sort(key=lambda r: (r[0], float(r[1])))
    return table


def manipulation_map(results_dir: Path, datasets) -> dict[tuple[str, str], str]:
    """(dataset, video_id) → the manipulation of its fakes, from the packed faces' manifests."""
    from deepfake_lth.core.errors import UserError
    from deepfake_lth.data.store import load_manifest

    out = {}
    for dataset in datasets:
        try:
            manifest = load_manifest(Path(results_dir) / dataset / "faces")
        except UserError:
            continue
        fakes = manifest[(manifest["label"] == 1) & (manifest["manipulation"] != "")]
        out.update({(dataset, v): m for v, m in zip(fakes["video_id"], fakes["manipulation"],
                                                     strict=True)})
    return out


def gallery_picks(pie_table, recs: list[dict], dataset: str, model: str) -> list[dict]:
    """The most-forgotten units of one dataset × model with the run folders that explain them
    (the dense network and the ticket that first forgets it, of the first seed with both)."""
    part = pie_table[(pie_table["dataset"] == dataset) & (pie_table["model"] == model)]
    folders = {(r["seed"], r["method"], r["level"]): r["path"] for r in recs
               if r["dataset"] == dataset and r["model"] == model}
    picks = []
    for _, u in forgetting.most_forgotten(part, GALLERY).iterrows():
        seeds = sorted(s for s, m, lv in folders if (m, lv) == (u["method"], u["level"])
                       and (s, "dense", "dense") in folders)
        if seeds:
            s = seeds[0]
            picks.append({"video_id": u["video_id"], "manipulation": u["manipulation"],
                          "method": u["method"], "sparsity": u["sparsity"], "seed": s,
                          "times": int(u["times"]), "dense": folders[(s, "dense", "dense")],
                          "ticket": folders[(s, u["method"], u["level"])]})
    return picks


def gallery_figure(faces, dataset: str, model: str, figures: Figures):
    """The forgotten faces (columns): the face, its Grad-CAM in the dense network and in the
    ticket that first forgets it (rows)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure as MplFigure

    if not faces:
        return None
    cmap = colormaps["jet"]
    fig = MplFigure(figsize=(min(FIGURE_WIDTH, 1.8 * len(faces) + 0.8), 6.0),
                    layout="constrained")
    axes = fig.subplots(3, len(faces), squeeze=False)
    for c, f in enumerate(faces):
        h, w = f.image.shape[:2]
        kind = "real" if f.label == 0 else f.manipulation
        axes[0, c].imshow(f.image, interpolation="nearest")
        axes[0, c].set_title(f"{f.video_id}\n({kind})", fontsize=7)
        for r, (heat, p, who) in enumerate(((f.dense_map, f.dense_prob, "dense"),
                                            (f.ticket_map, f.ticket_prob,
                                             f"{100 * f.sparsity:.0f} % sparse")), start=1):
            axes[r, c].imshow(f.image, extent=(0, w, h, 0), interpolation="nearest")
            axes[r, c].imshow(heat, cmap=cmap, vmin=0, vmax=1, alpha=0.5, extent=(0, w, h, 0),
                              interpolation="bilinear")
            axes[r, c].set_title(f"{who}: p(fake) {p:.2f}", fontsize=7)
        for ax in axes[:, c]:
            ax.set_xticks([])
            ax.set_yticks([])
    seeds = sorted({f.seed for f in faces})
    return figures.add(
        fig, f"forgotten_{safe_name(dataset)}_{safe_name(model)}",
        f"The test faces {model} trained on {dataset} forgets most: units the dense networks "
        "get right (modal prediction over seeds) and the tickets wrong, at the most sparsities; "
        "per unit the face whose p(fake) moves furthest from its class, with the Grad-CAM map "
        "(scaled to [0, 1]) of the dense network and of the ticket at the lowest sparsity that "
        f"forgets it (seed {', '.join(map(str, seeds))}).")


def _part(ctx, scores, shares, pie_table, recs, dataset: str, model: str) -> Part:
    figure = severity_figure(scores, dataset, model, ctx.figures)
    tables = [t for t in (summary_table(scores, dataset, model),
                          forgetting_table(shares, dataset, model)) if t is not None]
    size = (ctx.config.get("models") or {}).get(model, {}).get("input_size")
    faces = forgetting.gallery(Path(ctx.results_dir) / dataset / "faces", model, size,
                               gallery_picks(pie_table, recs, dataset, model))
    gallery = gallery_figure(faces, dataset, model, ctx.figures)
    part = Part(f"{model} trained on {dataset}", figure, tables,
                figures=[gallery] if gallery else [])
    if figure is None:
        part.notrun = "no perturbed scores yet (the runs' robust/ folders)."
    elif gallery is None:
        part.lines.append("No test unit is forgotten: the tickets' modal predictions on the "
                          "clean test split agree with the dense networks' wherever those are "
                          "right.")
    return part


def section(ctx) -> Section | None:
    """The Robustness section; None when the config scores no perturbation."""
    config = ctx.config
    settings = robust.settings(config)
    if not robust.jobs(config):
        return None
    recs = records(ctx.results_dir, config, ctx.runs)
    scores = collect_scores(recs, ctx.runs)
    conditions = [f"{p}/{level}" for p, level in robust.conditions(config)]
    units = forgetting.unit_table(recs, conditions)
    pie_table = forgetting.pies(forgetting.modal(units),
                                manipulation_map(ctx.results_dir, config["datasets"]))
    sec = Section(
        "robustness", "Robustness",
        Markup("The dense network and every level of <code>robustness.methods</code> scored on "
               "their own test split under perturbations applied alike to real and fake faces "
               "(<code>robustness</code> in the config): DeeperForensics-1.0's seven "
               "distortions at its levels, JPEG and down-up resizing, video compression as "
               "H.264 re-encoding of each video's face crops. Then what the tickets forget: "
               "the test units whose modal prediction over seeds pruning changes "
               "(pruning-identified exemplars, Hooker et al. 2019), and the faces forgotten "
               "most with their Grad-CAM maps. Per-run files: "
               "<code>robust/{perturbation}/{level}/</code> in each run folder "
               "(results/robustness/…/seed*.csv lists them)."),
        claims=[robust.claim_robustness(units, float(settings.get("margin", 0.05)),
                                        float(settings.get("max_sparsity", 0.8)))])
    rank = {m: i for i, m in enumerate(ordered({r["model"] for r in recs}, ctx.model_order))}
    pairs = sorted({(r["dataset"], r["model"]) for r in recs}, key=lambda k: (k[0], rank[k[1]]))
    shares = forgetting.shares(pie_table)
    for dataset, model in pairs:
        sec.parts.append(_part(ctx, scores, shares, pie_table, recs, dataset, model))
    if not pairs:
        sec.parts.append(Part("", notrun="no trained networks that robustness.methods covers "
                              "yet."))
    return sec
