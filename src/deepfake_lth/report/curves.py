"""Curves: test accuracy vs sparsity (the paper's Fig. 2) and per-layer sparsity per round."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepfake_lth.report.common import (
    FIGURE_WIDTH,
    Context,
    Figure,
    Figures,
    Part,
    Section,
    asks_for,
    method_key,
    method_label,
    ordered,
    safe_name,
    seeds_words,
    shared_ylim,
    sparsity_ticks,
    style,
)
from deepfake_lth.stages import methods


def curves_figure(runs, dataset: str, methods: list[str], title: str,
                  model_order: list[str] | None = None, margin: float | None = None,
                  rate: float | None = None, rounds: int | None = None):
    """Test accuracy vs sparsity on ``dataset``: a panel per model, a line per method of
    ``methods`` (each starting at its model's dense network), the mean over seeds with a band
    of the 95 % t-interval when there are several seeds. ``margin`` shades the band from dense
    − δ to dense: where a ticket's mean lies when it is within the non-inferiority margin
    (the verdicts use its interval, not its mean). The panels share one y-range; with ``rate`` and
    ``rounds`` the sparsity axis names the IMP round beside the percentage. None when none
    of ``methods`` has a run on ``dataset``."""
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure

    from deepfake_lth.analysis.stats import ci_bounds

    df = runs[runs["dataset"] == dataset]
    pruned = df[df["method"].isin(methods) & (df["method"] != "dense")]
    dense = df[df["method"] == "dense"]
    if pruned.empty and ("dense" not in methods or dense.empty):
        return None
    models = ordered(df["model"], model_order)
    # every curve starts at the dense network (sparsity 0) of its model and seed
    lines = [pruned]
    for (model, method), _ in pruned.groupby(["model", "method"]):
        lines.append(dense[dense["model"] == model].assign(method=method))
    data = pd.concat(lines, ignore_index=True)
    data = data.assign(
        sparsity_pct=100 * data["sparsity"].fillna(0.0),
        accuracy=100 * data["test_acc"],
        Method=data["method"].map(method_label),
    )
    hue_order = [method_label(m) for m in sorted(data["method"].unique(), key=method_key)]
    several_seeds = df["seed"].nunique() > 1
    right = min(100.0, float(data["sparsity_pct"].max()) + 5.0)
    legend: dict[str, Any] = {}
    band = f"dense − δ ({100 * margin:.0f} pp) to dense" if margin else ""
    extra = [band] if margin else []
    with style():
        fig = MplFigure(figsize=(FIGURE_WIDTH, 4.0), layout="constrained")
        axes = fig.subplots(1, len(models), squeeze=False)[0]
        for ax, model in zip(axes, models, strict=True):
            part = data[data["model"] == model]
            if not part.empty:
                sns.lineplot(
                    data=part, x="sparsity_pct", y="accuracy", hue="Method",
                    hue_order=hue_order, style="Method", style_order=hue_order,
                    markers=True, dashes=False, errorbar=ci_bounds if several_seeds else None,
                    ax=ax,
                )
            base = dense[dense["model"] == model]["test_acc"].mean()
            if np.isfinite(base):
                ax.axhline(100 * base, color="0.3", linestyle="--", linewidth=1,
                           label="dense baseline")
            if margin and np.isfinite(base):
                ax.axhspan(100 * (base - margin), 100 * base, color="0.6", alpha=0.25,
                           linewidth=0, label=band)
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
            if ax.get_legend():
                ax.get_legend().remove()
            ax.set_title(model)
            ax.set_xlabel("IMP round and sparsity (%)" if rate and rounds else "sparsity (%)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_xlim(-2, right)
            sparsity_ticks(ax, rate, rounds)
        shared_ylim(axes)
        labels = [h for h in hue_order + ["dense baseline"] + extra if h in legend]
        if labels:
            fig.legend([legend[h] for h in labels], labels, loc="outside lower center",
                       frameon=False, ncols=min(len(labels), 5))
        fig.suptitle(title)
    return fig

def curves(runs, dataset: str, shown: list[str], title: str, figures: Figures, name: str,
           caption: str, model_order: list[str] | None = None, margin: float | None = None,
           rate: float | None = None, rounds: int | None = None) -> Figure | None:
    """Test accuracy vs sparsity as an inline, interactive chart (and, where figures are
    written to files, the same as a PNG); None when none of ``shown`` ran on ``dataset``."""
    from markupsafe import Markup

    from deepfake_lth.report.chart import curves_chart

    counts = figures.counts.get(dataset)
    svg = curves_chart(runs, dataset, shown, model_order, counts, margin)
    if svg is None:
        return None
    fig = (curves_figure(runs, dataset, shown, title, model_order, margin, rate, rounds)
           if figures.out_dir else None)
    head = Markup('<p class="chart-title">{}{}</p>').format(
        title, f" — {counts.words()}" if counts else "")
    unit = counts.unit if counts else "test samples"
    return figures.add(fig, name, caption + (
        f" Bands and whiskers: 95 % intervals, the t-interval over seeds, or with one seed the "
        f"binomial (Wilson) interval over the {unit}. Hover a point for its value; click a "
        "legend entry to hide or show it."), svg=head + svg)


def accuracy_figures(runs, figures: Figures, model_order: list[str] | None = None,
                     exclude: set[str] | frozenset[str] = frozenset(),
                     rate: float | None = None, rounds: int | None = None) -> dict[str, Figure]:
    """Fig. 2: test accuracy vs sparsity per dataset, a panel per model, a line per method
    (but those in ``exclude``: the methods a section of their own plots)."""
    out = {}
    for dataset, df in runs.groupby("dataset", sort=True):
        shown = sorted((m for m in set(df["method"]) if m not in exclude), key=method_key)
        figure = curves(runs, dataset, shown, f"{dataset}: accuracy vs sparsity", figures,
                        f"accuracy_{safe_name(dataset)}",
                        f"Test accuracy vs sparsity on {dataset} ({seeds_words(df)}); the "
                        "dashed line is the dense network, dotted is chance, orange the "
                        "accuracy of always answering the larger class.",
                        model_order, rate=rate, rounds=rounds)
        if figure is not None:
            out[dataset] = figure
    return out


def layer_sparsity_figure(runs, dataset: str, model: str, figures: Figures) -> Figure | None:
    """Per-layer sparsity of the IMP tickets at each round (§III-C: where the pruned weights
    are), a panel per IMP criterion, a line per round; None without ``layer_sparsity``."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure as MplFigure

    part = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
    imps = sorted(methods.with_role(part["method"].unique(), methods.TICKET), key=method_key)
    panels = []
    for method in imps:
        rows = part[(part["method"] == method) & part["layer_sparsity"].notna()]
        if rows.empty:
            continue
        seed = rows["seed"].min()
        rows = rows[rows["seed"] == seed].sort_values("sparsity")
        panels.append((method, rows))
    if not panels:
        return None
    layers = list(panels[0][1]["layer_sparsity"].iloc[0])
    with style():
        fig = MplFigure(figsize=(FIGURE_WIDTH, 3.6), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (method, rows) in zip(axes, panels, strict=True):
            cmap = colormaps["viridis"]
            for i, (_, r) in enumerate(rows.iterrows()):
                values = [100 * float(r["layer_sparsity"].get(name, np.nan)) for name in layers]
                ax.plot(range(len(layers)), values, marker="o", markersize=3,
                        color=cmap(0.85 * i / max(1, len(rows) - 1)),
                        label=f"{r['level']} ({100 * r['sparsity']:.0f} %)")
            ax.set_title(method_label(method))
            ax.set_xticks(range(len(layers)))
            ax.set_xticklabels([n.removesuffix(".weight") for n in layers], rotation=60,
                               ha="right", fontsize=7)
            ax.set_ylabel("weights pruned in the layer (%)")
            ax.set_ylim(-2, 102)
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=7)
        fig.suptitle(f"{dataset} / {model}: where IMP prunes, round by round")
    return figures.add(
        fig, f"layers_{safe_name(dataset)}_{safe_name(model)}",
        f"Share of each layer's weights removed after each IMP round for {model} on {dataset} "
        "(one seed), global against local criterion: a local criterion removes the same share "
        "everywhere, a global one prunes the large layers hardest (§III-C).")


def section(ctx: Context) -> Section:
    """Fig. 2 per dataset, and per model where IMP prunes layer by layer."""
    own: set[str] = set()  # methods plotted in a section of their own, not in Fig. 2
    if asks_for(ctx.config, "pai"):
        own |= set(methods.with_role(ctx.runs["method"].unique(), methods.PRUNE_INIT))
    if asks_for(ctx.config, "step-sizes"):
        own |= set(methods.with_role(ctx.runs["method"].unique(), methods.STEP_SIZE))
    prune = ctx.config.get("prune") or {}
    figs = (accuracy_figures(ctx.runs, ctx.figures, ctx.model_order, own, prune.get("rate"),
                             prune.get("rounds")) if not ctx.runs.empty else {})
    sec = Section("accuracy", "Accuracy vs sparsity",
                  "Test accuracy of each model against the fraction of prunable weights "
                  "removed, one line per pruning method (the paper's Fig. 2); then, per "
                  "model, where IMP prunes: the share of each layer removed at each round.",
                  empty="no metrics.json found.")
    for d in ctx.datasets:
        sec.parts.append(Part(d, figs.get(d), notrun="" if d in figs else
                              f"no trained networks for {d} yet."))
        layers = Part(f"{d}: where IMP prunes, layer by layer", folded=True, group=d)
        for model in ctx.model_order or sorted(ctx.runs["model"].unique()):
            fig = layer_sparsity_figure(ctx.runs, d, model, ctx.figures)
            if fig is not None:
                layers.figures.append(fig)
        if layers.figures:
            sec.parts.append(layers)
    return sec
