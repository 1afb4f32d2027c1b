"""The paper's own tables and Grad-CAM figures: results per dataset, Table I, Fig. 3, ΔL."""

from __future__ import annotations

import math

import numpy as np

from deepfake_lth.pruning.plan import pct
from deepfake_lth.report.collect import GradcamRun, planned
from deepfake_lth.report.common import (
    FIGURE_WIDTH,
    Figures,
    Table,
    int_text,
    mean_sd,
    method_key,
    method_label,
    millions,
    ordered,
    pct_text,
    safe_name,
    style,
)
from deepfake_lth.stages import methods

TARGET_WORDS = {
    "label": "the face's true class (the logit for a fake face, minus the logit for a real one)",
    "fake": "the fake logit",
    "real": "minus the fake logit (the real class)",
    "predicted": "the predicted class",
}


def test_set_words(df, kind: str | None) -> str:
    """"1,234 test images" or "6 test videos (240 frames)"."""
    frames = df["test_samples"].dropna()
    videos = df["test_videos"].dropna() if "test_videos" in df else []
    n = int(frames.iloc[0]) if len(frames) else None
    if kind == "videos":
        v = int(videos.iloc[0]) if len(videos) else None
        if v is not None and n is not None:
            return f"{v:,} test {'video' if v == 1 else 'videos'} ({n:,} frames)"
        return f"{n:,} test frames" if n is not None else "test set size unknown"
    return f"{n:,} test images" if n is not None else "test set size unknown"


def results_tables(runs, model_order: list[str] | None = None,
                   kinds: dict | None = None, flags: dict | None = None) -> dict[str, Table]:
    """A table per dataset: every network with its accuracy at the threshold 0.5 (the
    paper's) and at the threshold chosen on the validation split, its AUC, video accuracy
    (video sets only) and the share of dense accuracy."""
    kinds = kinds or {}
    flags = flags or {}
    out = {}
    for dataset, df in runs.groupby("dataset", sort=True):
        kind = kinds.get(dataset)
        dense = df[df["method"] == "dense"].groupby(["model", "seed"])["test_acc"].mean()
        table = Table(
            f"{dataset}: {test_set_words(df, kind)}",
            ["Model", "Method", "Sparsity (%)", "Params remaining", "Test acc at 0.5 (%)",
             "Test acc at val. threshold (%)", "AUC"]
            + (["Video acc (%)"] if kind == "videos" else [])
            + ["Retained (% of dense)", "Seeds"],
            note="Accuracy at 0.5: the paper's threshold on p(fake); at val. threshold: the "
            "threshold that maximises validation accuracy, applied to the test set. Retained: "
            "test accuracy at 0.5 over the dense network's (same model and seed). With several "
            "seeds: mean ± sd over seeds (95 % t-intervals in the section on seeds)."
            + (" Video acc: the share of test videos whose mean p(fake) is on the right side "
               "of 0.5." if kind == "videos" else ""),
            text_columns=2,
        )
        keys = []
        for (model, method, level), g in df.groupby(["model", "method", "level"]):
            keys.append((model, method_key(method), g["sparsity"].mean(), method, level, g))
        rank = {m: i for i, m in enumerate(ordered(df["model"], model_order))}
        for model, _, _, method, level, g in sorted(keys, key=lambda k: (rank[k[0]], *k[1:3])):
            ref = [dense.get((model, s), math.nan) for s in g["seed"]]
            retained = [a / r if r and np.isfinite(r) else math.nan
                        for a, r in zip(g["test_acc"], ref, strict=True)]
            flagged = method == "dense" and (dataset, model) in flags
            table.rows.append([
                model,
                method_label(method) + (" (miscalibrated: see below)" if flagged else ""),
                pct_text(g["sparsity"].mean()),  # seeds differ by a few weights at most
                int_text(g["params_nonzero"].mean()),
                mean_sd(g["test_acc"]),
                mean_sd(g["test_acc_val_threshold"]),
                mean_sd(g["test_auc"], scale=1.0, digits=3),
                *([mean_sd(g["video_acc"])] if kind == "videos" else []),
                mean_sd(retained),
                str(g["seed"].nunique()),
            ])
        if not df["test_acc_val_threshold"].notna().any():
            table.note += (" The accuracy at the validation threshold is not shown: these run "
                           "folders predate it (their metrics.json has no "
                           "test_acc_val_threshold).")
        out[dataset] = table.drop_empty_columns()
    return out


FINETUNED = methods.DENSE_FINETUNED  # the source's dense network fine-tuned on the target


def finetuned_gap(transfers, pair: str, model: str, method: str, pr: float,
                  kind: str | None):
    """Ticket − the source's dense network fine-tuned on the target, on the target's test
    split: paired by seed, and by test video on a video set (each run's predictions.csv);
    None when the fine-tuned baseline did not run."""
    from deepfake_lth.analysis.stats import estimate_diff

    part = transfers[(transfers["pair"] == pair) & (transfers["model"] == model)]
    ticket = f"{method}-sparsity{int(pr)}"
    if FINETUNED not in set(part["method"]) or ticket not in set(part["method"]):
        return None
    frame = part.assign(dataset=pair, level=part["method"])
    return estimate_diff(frame, pair, model, ticket, FINETUNED, [(ticket, FINETUNED)], kind)


def transfer_tables(transfers, config: dict, kinds: dict | None = None) -> list[Table]:
    """Table I per transfer pair: Model, PR (nominal and actual), Params (M), Base, the
    source's dense network fine-tuned on the target (when it ran), then one column per
    transferred method (IMP-Global, IMP-Local, One-shot Global …) and each ticket's
    difference from the fine-tuned baseline, paired by video."""
    kinds = kinds or {}
    out = []
    nominal = {}
    if planned(config):
        for s in config["transfer"]["sparsities"]:
            for m in config["transfer"]["methods"]:
                nominal[(m, pct(methods.transfer_level(config, m, s)))] = s
    for pair, df in transfers.groupby("pair", sort=True):
        src, dst = df["source"].iloc[0], df["target"].iloc[0]
        parsed = df["method"].str.extract(r"^(?P<src_method>.+)-sparsity(?P<pr>\d+)$")
        df = df.assign(src_method=parsed["src_method"], pr=parsed["pr"].astype(float))
        shown = sorted(df["src_method"].dropna().unique(), key=method_key)
        tuned = FINETUNED in set(df["method"])
        gaps = [f"{method_label(m)} − fine-tuned (pp)" for m in shown] if tuned else []
        table = Table(
            f"{src} → {dst}",
            ["Model", "PR", "Params (M)", "Base"] + (["Fine-tuned dense"] if tuned else [])
            + [method_label(m) for m in shown] + gaps,
            note=f"Test accuracy (%) on {dst}. Base: the dense network; the other columns: "
            f"tickets found on {src} (mask and weights) trained on {dst}. "
            "PR: pruning rate, the percentage of prunable weights removed: as configured, "
            "and in brackets the actual sparsity of the IMP round (or one-shot level) used."
            + (f" Fine-tuned dense: {src}'s dense network trained on {dst} the way the tickets "
               "are, so pretraining on the source is not mistaken for the ticket; the last "
               "columns are each ticket minus it with the 95 % interval, paired by seed and by "
               "test video." if tuned else ""),
        )
        for model in ordered(df["model"], list(config.get("models") or {})):
            part = df[df["model"] == model]
            dense = part[part["method"] == "dense"]
            blank = ["-"] * (len(shown) + len(gaps))
            base = part[part["method"] == FINETUNED]
            table.rows.append([model, "0 %", millions(dense["params_nonzero"]),
                               mean_sd(dense["test_acc"])]
                              + ([mean_sd(base["test_acc"])] if tuned else []) + blank)
            tickets = part.dropna(subset=["pr"])
            for pr in sorted(tickets["pr"].unique()):
                at = tickets[tickets["pr"] == pr]
                first = at[at["src_method"] == shown[0]] if shown else at
                params = first["params_nonzero"] if not first.empty else at["params_nonzero"]
                actual = at["sparsity"].dropna()
                actual_text = (f"{100 * actual.mean():.1f} %" if len(actual)
                               else f"{int(pr)} %")
                want = next((v for (m, p), v in nominal.items() if p == int(pr)), None)
                label = (f"{100 * want:.0f} % ({actual_text})" if want is not None
                         else actual_text)
                cells = [mean_sd(at[at["src_method"] == m]["test_acc"]) for m in shown]
                diffs = [finetuned_gap(df, pair, model, m, pr, kinds.get(dst)) for m in shown]
                cells += [("–" if d is None else d.text().replace(" pp", "")) for d in diffs
                          ] if tuned else []
                table.rows.append(["Ticket", label, millions(params), "-"]
                                  + (["-"] if tuned else []) + cells)
        out.append(table)
    return out


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


