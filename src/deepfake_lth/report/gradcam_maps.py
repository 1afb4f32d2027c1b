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
    Figure,
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


CELL = 72  # pixels per face in the Grad-CAM grid
LABEL = 120  # pixels of the grid's row labels


def _png_uri(array: np.ndarray) -> tuple[str, bytes]:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False)
    data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), data


def _cell(face: np.ndarray, heat: np.ndarray | None, wrong: bool) -> np.ndarray:
    """A face with its map over it (jet, half transparent), outlined red when misclassified."""
    from matplotlib import colormaps
    from PIL import Image

    img = faces_cell(face).astype(float)
    if heat is None:
        img = 0.35 * img + 0.65 * 235  # not run at this sparsity: the face greyed out
    else:
        h = np.asarray(Image.fromarray(np.nan_to_num(heat).astype(np.float32), mode="F")
                       .resize((CELL, CELL), Image.BILINEAR))
        img = 0.5 * img + 0.5 * 255 * colormaps["jet"](np.clip(h, 0, 1))[..., :3]
    out = img.astype(np.uint8)
    if wrong:
        out[:3], out[-3:], out[:, :3], out[:, -3:] = (220, 20, 20), (220, 20, 20), \
            (220, 20, 20), (220, 20, 20)
    return out


def _row(label: str, cells: list[np.ndarray]) -> np.ndarray:
    from PIL import Image, ImageDraw

    head = Image.new("RGB", (LABEL, CELL), "white")
    ImageDraw.Draw(head).multiline_text((4, CELL // 2 - 12), label, fill=(30, 30, 30))
    return np.concatenate([np.asarray(head)] + cells, axis=1)


def _maps_at(run: GradcamRun, target: float):
    """(maps, p(fake)) of ``run`` at its level nearest ``target`` (within 3 points), or None."""
    z = run.npz
    s = np.asarray(z["sparsities"], dtype=float)
    j = int(np.argmin(np.abs(s - target)))
    if abs(s[j] - target) > 0.03:
        return None
    probs = np.asarray(z["probs"][j]) if "probs" in z else None
    return np.asarray(z["norm"][j]), probs


def gradcam_grid(runs: list[GradcamRun], dataset: str, model: str, figures: Figures):
    """Fig. 3 with a slider: a frame per sparsity, each the faces, the dense network's maps and
    every method's maps at that sparsity; misclassified faces outlined red."""
    chosen = [r for r in runs if r.npz is not None]
    if not chosen:
        return None
    seed = min(r.seed for r in chosen)
    chosen = sorted((r for r in chosen if r.seed == seed), key=lambda r: method_key(r.method))
    z = chosen[0].npz
    faces, labels = np.asarray(z["images"]), np.asarray(z["labels"]).astype(int)
    order = np.r_[np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)][:16]
    if not len(order):
        return None
    levels = sorted({round(float(s), 3) for r in chosen for s in r.npz["sparsities"]
                     if float(s) > 0})
    dense = _maps_at(chosen[0], 0.0)

    def row(label, maps):
        heat, probs = maps if maps is not None else (None, None)
        return _row(label, [_cell(faces[i], None if heat is None else heat[i],
                                  probs is not None and (probs[i] > 0.5) != bool(labels[i]))
                            for i in order])

    top = _row("face\n(fakes, reals)", [faces_cell(faces[i]) for i in order])
    frames = []
    for s in levels or [0.0]:
        rows = [top, row("dense", dense)]
        rows += [row(f"{method_label(r.method)}\n{100 * s:.0f} % sparse", _maps_at(r, s))
                 for r in chosen]
        uri, data = _png_uri(np.concatenate(rows, axis=0))
        frames.append((f"{100 * s:.0f} % sparse", uri))
        if figures.out_dir and s == (levels or [0.0])[-1]:
            (figures.out_dir / f"gradcam_{safe_name(dataset)}_{safe_name(model)}.png"
             ).write_bytes(data)
    fig = Figure(frames[0][1], (
        f"Grad-CAM of {model} on {dataset} (seed {seed}): the {len(order)} sampled test faces "
        "(fakes first), the dense network's maps, and each method's maps at the sparsity the "
        "slider picks (grey: the method has no level there); each map scaled to [0, 1], jet "
        "over the face; a red outline: the network misclassifies the face (p(fake) on the "
        "wrong side of 0.5)."), f"gradcam_{safe_name(dataset)}_{safe_name(model)}",
        frames=frames)
    return fig


def faces_cell(face: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(face).resize((CELL, CELL), Image.NEAREST))


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
        fig = MplFigure(figsize=(FIGURE_WIDTH, 2.8), layout="constrained")
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
        part = Part(f"{key[0]} / {key[1]}", grid, figures=[delta_fig] if delta_fig else [])
        if grid is None:
            part.lines.append(f"{NOT_RUN}: no heatmaps.npz.")
        if delta_table is None:
            part.lines.append(f"{NOT_RUN}: no delta.csv.")
        else:
            part.lines.append(noise_floor_line(part_runs))
        sec.parts.append(part)
        if delta_table is not None:
            sec.parts.append(Part(f"{key[0]} / {key[1]}: ΔL, concentration and p(fake) per "
                                  "method and sparsity", tables=[delta_table], folded=True,
                                  group=key[0]))
    return sec
