"""Grad-CAM under pruning (the paper's Fig. 3 and ΔL): the map grid, the noise floor of ΔL,
ΔL and concentration vs sparsity, and their section."""

from __future__ import annotations

import math

import numpy as np
from markupsafe import Markup

from deepfake_lth.report.collect import GradcamRun
from deepfake_lth.report.common import (
    FIGURE_WIDTH,
    NOT_RUN,
    Context,
    Figures,
    Part,
    Section,
    Table,
    mean_sd,
    method_key,
    method_label,
    safe_name,
    style,
)

TARGET_WORDS = {
    "label": "the face's true class (the logit for a fake face, minus the logit for a real one)",
    "fake": "the fake logit",
    "real": "minus the fake logit (the real class)",
    "predicted": "the predicted class",
}


def gradcam_grid(runs: list[GradcamRun], dataset: str, model: str, figures: Figures):
    """Fig. 3: per method a fake and a real face, the face and its map at each sparsity."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure as MplFigure

    chosen = [r for r in runs if r.npz is not None]
    if not chosen:
        return None
    seed = min(r.seed for r in chosen)
    chosen = sorted((r for r in chosen if r.seed == seed), key=lambda r: method_key(r.method))
    rows = []  # (label text, image, [(title, map)])
    for run in chosen:
        z = run.npz
        labels = np.asarray(z["labels"])
        shown = z["methods"] if "methods" in z else [run.method] * len(z["sparsities"])
        for label, word in ((1, "fake"), (0, "real")):
            idx = np.flatnonzero(labels == label)
            if len(idx) == 0:
                continue
            i = int(idx[0])
            cols = []
            for j, s in enumerate(np.asarray(z["sparsities"], dtype=float)):
                p = float(z["probs"][j, i]) if "probs" in z else math.nan
                title = f"{100 * s:.0f}% sparse" + ("" if str(shown[j]) != "dense" else
                                                    " (dense)")
                if np.isfinite(p):
                    title += f"\np(fake) = {p:.2f}"
                cols.append((title, np.asarray(z["norm"][j, i])))
            rows.append((f"{method_label(run.method)}\n{word}", np.asarray(z["images"][i]), cols))
    if not rows:
        return None
    ncols = 1 + max(len(c) for _, _, c in rows)
    cmap = colormaps["jet"]
    fig = MplFigure(figsize=(1.9 * ncols + 0.8, 2.0 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (text, image, cols) in enumerate(rows):
        h, w = image.shape[:2]
        axes[r, 0].imshow(image, interpolation="nearest")
        axes[r, 0].set_ylabel(text, fontsize=8)
        axes[r, 0].set_title("face" if r == 0 else "", fontsize=8)
        for c, (title, heat) in enumerate(cols, start=1):
            ax = axes[r, c]
            ax.imshow(image, extent=(0, w, h, 0), interpolation="nearest")
            ax.imshow(heat, cmap=cmap, vmin=0, vmax=1, alpha=0.5, extent=(0, w, h, 0),
                      interpolation="bilinear")
            ax.set_title(title, fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[r, 1 + len(cols):]:
            ax.set_axis_off()
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=axes, shrink=0.6,
                 label="Grad-CAM (normalised)")
    fig.suptitle(f"{dataset} / {model}: Grad-CAM (seed {seed})")
    return figures.add(
        fig, f"gradcam_{safe_name(dataset)}_{safe_name(model)}",
        f"Grad-CAM of {model} on {dataset}: a fake and a real test face (rows) and their "
        "maps at each sparsity (columns), each map scaled to [0, 1], jet colours over the face.",
    )


def noise_floor(runs: list[GradcamRun]) -> dict[str, float] | None:
    """ΔL between the dense networks of two seeds on the same faces: how far two training
    runs' maps differ with no pruning at all, the floor under which ΔL says nothing. Mean
    over seed pairs and shared faces of ||L₀(seed a) − L₀(seed b)||_F, raw, raw per pixel
    (÷ √(H·W)) and normalised; None with fewer than two seeds or no shared face."""
    import itertools

    dense = {}
    for r in runs:
        npz = r.npz
        if npz is None or r.seed in dense or "raw" not in npz or "rows" not in npz:
            continue
        at0 = np.flatnonzero(np.asarray(npz["sparsities"], dtype=float) == 0)
        if len(at0):
            dense[r.seed] = (np.asarray(npz["rows"]), np.asarray(npz["raw"])[at0[0]],
                             np.asarray(npz["norm"])[at0[0]])
    raw_d, norm_d, pixels = [], [], math.nan
    for a, b in itertools.combinations(sorted(dense), 2):
        (rows_a, raw_a, norm_a), (rows_b, raw_b, norm_b) = dense[a], dense[b]
        shared, ia, ib = np.intersect1d(rows_a, rows_b, return_indices=True)
        if not len(shared) or raw_a.shape[1:] != raw_b.shape[1:]:
            continue
        pixels = float(raw_a.shape[-1] * raw_a.shape[-2])
        raw_d += list(np.linalg.norm((raw_a[ia] - raw_b[ib]).reshape(len(shared), -1), axis=1))
        norm_d += list(np.linalg.norm((norm_a[ia] - norm_b[ib]).reshape(len(shared), -1),
                                      axis=1))
    if not raw_d:
        return None
    return {"raw": float(np.mean(raw_d)), "raw_per_pixel": float(np.mean(raw_d)) /
            math.sqrt(pixels), "norm": float(np.mean(norm_d)), "faces": len(raw_d),
            "seeds": len(dense)}


def noise_floor_line(runs: list[GradcamRun]) -> str:
    floor = noise_floor(runs)
    if floor is None:
        return ("Noise floor of ΔL: needs the dense networks of two or more seeds (ΔL "
                "between two training runs with no pruning); this run has one.")
    return (f"Noise floor of ΔL (the dense networks of {floor['seeds']} seeds, "
            f"{floor['faces']} face pairs): raw {floor['raw']:.3g}, raw per pixel "
            f"{floor['raw_per_pixel']:.3g}, normalised {floor['norm']:.3g}. A pruned network's "
            "ΔL below these says no more than a second training run would.")


def delta_figure(runs: list[GradcamRun], dataset: str, model: str, figures: Figures):
    """ΔL and heat concentration vs sparsity, a line per method (mean ± sd over faces)."""
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure

    frames = [r.delta.assign(Method=method_label(r.method), seed=r.seed)
              for r in runs if r.delta is not None and not r.delta.empty]
    if not frames:
        return None, None
    data = pd.concat(frames, ignore_index=True)
    data["sparsity_pct"] = 100 * data["sparsity"]
    hue_order = [method_label(m) for m in sorted({r.method for r in runs}, key=method_key)]
    hue_order = [h for h in hue_order if h in set(data["Method"])]
    with style():
        fig = MplFigure(figsize=(FIGURE_WIDTH, 3.4), layout="constrained")
        panels = [(c, y) for c, y in (
            ("delta_l_raw", "raw ΔL = ||L₀ − L_p||_F (the paper's)"),
            ("delta_l", "normalised ΔL (maps scaled to [0, 1])"),
            ("concentration", "heat in hottest 10 % of pixels")) if c in data]
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (column, ylabel) in zip(axes, panels, strict=True):
            sns.lineplot(data=data, x="sparsity_pct", y=column, hue="Method", style="Method",
                         hue_order=hue_order, style_order=hue_order, markers=True, dashes=False,
                         errorbar="sd", ax=ax, legend=ax is axes[-1])
            ax.set_xlabel("sparsity (%)")
            ax.set_ylabel(ylabel)
        if axes[-1].get_legend():
            sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
        fig.suptitle(f"{dataset} / {model}: change of attention under pruning")
    figure = figures.add(
        fig, f"delta_{safe_name(dataset)}_{safe_name(model)}",
        f"Raw ΔL (the paper's: Frobenius distance between the dense and the pruned network's "
        f"Grad-CAM maps of the same face), the same distance between the maps scaled to "
        f"[0, 1], and the concentration of the heat for {model} on {dataset}; mean ± sd over "
        "the faces (and seeds).",
    )
    table = Table(
        f"{dataset} / {model}",
        ["Method", "Sparsity (%)", "Faces", "Raw ΔL", "Raw ΔL per pixel", "Normalised ΔL",
         "Concentration",
         "p(fake), real faces", "p(fake), fake faces", "Empty maps"],
        note="Raw ΔL: the paper's ||L₀ − L_p||_F on the maps as computed; per pixel: divided by "
        "√(H·W), comparable across input sizes; normalised: on the maps scaled to [0, 1]. p(fake): the network's mean probability of fake, per true "
        "class. Empty maps: faces whose map has no positive evidence at all (concentration "
        "undefined).",
    )
    has_label = "label" in data and "prob_fake" in data
    for (method, s), g in data.groupby(["Method", "sparsity"], sort=False):
        table.rows.append([
            method, f"{100 * s:.1f}", str(len(g)),
            mean_sd(g["delta_l_raw"], scale=1.0, digits=3) if "delta_l_raw" in g else "–",
            (mean_sd(g["delta_l_raw_per_pixel"], scale=1.0, digits=4)
             if "delta_l_raw_per_pixel" in g else "–"),
            mean_sd(g["delta_l"], scale=1.0, digits=2),
            mean_sd(g["concentration"], scale=1.0, digits=3),
            mean_sd(g[g["label"] == 0]["prob_fake"], 1.0, 2) if has_label else "–",
            mean_sd(g[g["label"] == 1]["prob_fake"], 1.0, 2) if has_label else "–",
            str(int(g["concentration"].isna().sum())),
        ])
    order = {h: i for i, h in enumerate(hue_order)}
    table.rows.sort(key=lambda row: (order.get(row[0], 99), float(row[1])))
    return figure, table.drop_empty_columns()


def section(ctx: Context) -> Section:
    """Grad-CAM under pruning: the maps, ΔL and concentration per dataset and model."""
    runs = ctx.gradcam_runs
    targets = sorted({TARGET_WORDS.get(str(r.npz["target"]), str(r.npz["target"]))
                      for r in runs if r.npz is not None and "target" in r.npz})
    intro = Markup(
        "Grad-CAM maps L = ReLU(&Sigma;<sub>k</sub> &alpha;<sub>k</sub> A<sup>k</sup>) of each "
        "model's last convolutional stage for the same test faces at every sparsity (the "
        "paper's Fig. 3), and the change of attention &Delta;L(p) = ||L<sub>0</sub> &minus; "
        "L<sub>p</sub>||<sub>F</sub> between the dense network's map and the pruned "
        "network's, raw (the paper's) and on maps scaled to [0, 1]. Concentration is the share "
        "of a map's heat in its hottest 10&nbsp;% of pixels (0.1 for a uniform map, 1 for a "
        "single spot).") if runs else ""
    if targets:
        intro += Markup(" Explained score: {}.").format(", ".join(targets))
    sec = Section("gradcam", "Grad-CAM under pruning", intro,
                  empty="no Grad-CAM results yet (results/gradcam/).")
    for key in sorted({(r.dataset, r.model) for r in runs}):
        part_runs = [r for r in runs if (r.dataset, r.model) == key]
        grid = gradcam_grid(part_runs, *key, ctx.figures)
        delta_fig, delta_table = delta_figure(part_runs, *key, ctx.figures)
        part = Part(f"{key[0]} / {key[1]}", grid, [delta_table] if delta_table else [],
                    figures=[delta_fig] if delta_fig else [])
        if grid is None:
            part.lines.append(f"{NOT_RUN}: no heatmaps.npz.")
        if delta_table is None:
            part.lines.append(f"{NOT_RUN}: no delta.csv.")
        else:
            part.lines.append(noise_floor_line(part_runs))
        sec.parts.append(part)
    return sec
