"""Sections that measure the networks beyond accuracy: separability and CPU latency."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfake_lth.report.collect import collect_latency, collect_separability
from deepfake_lth.report.common import (
    FIGURE_WIDTH,
    Context,
    Figures,
    Part,
    Section,
    Table,
    asks_for,
    ci_text,
    int_text,
    mean_text,
    method_key,
    method_label,
    pct_text,
    safe_name,
    seeds_words,
    style,
)
from deepfake_lth.stages import methods


def separability_section(results_dir: Path, config: dict, figures: Figures) -> Section:
    """Linear-probe accuracy and silhouette of the penultimate features vs sparsity."""
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure

    from deepfake_lth.analysis.stats import ci_bounds, mean_ci

    data = collect_separability(results_dir, config)
    section = Section(
        "separability", "Model separability",
        "How well the penultimate features of the dense network and of each ticket separate "
        "real from fake test faces, after the &ldquo;model separability&rdquo; of the "
        "related work on pre-trained models for deepfake detection: the accuracy of a "
        "linear probe (logistic regression on standardised features, 5-fold stratified "
        "cross-validation, the folds grouped by video on a video set) and the silhouette score of the real/fake labels (1: tight, "
        "distant classes; 0: overlapping).",
        empty="no separability results yet (results/separability/).",
    )
    for (dataset, model), df in data.groupby(["dataset", "model"], sort=True):
        df = df.assign(sparsity_pct=100 * df["sparsity"], probe_pct=100 * df["probe_acc"],
                       Method=df["group"].map(method_label))
        hue_order = [method_label(m) for m in sorted(df["group"].unique(), key=method_key)]
        several = df["seed"].nunique() > 1
        with style():
            fig = MplFigure(figsize=(FIGURE_WIDTH, 3.4), layout="constrained")
            axes = fig.subplots(1, 2)
            for ax, column, ylabel in ((axes[0], "probe_pct", "linear probe accuracy (%)"),
                                       (axes[1], "silhouette", "silhouette (real vs fake)")):
                sns.lineplot(data=df, x="sparsity_pct", y=column, hue="Method", style="Method",
                             hue_order=hue_order, style_order=hue_order, markers=True,
                             dashes=False, errorbar=ci_bounds if several else None, ax=ax,
                             legend=ax is axes[1])
                ax.set_xlabel("sparsity (%)")
                ax.set_ylabel(ylabel)
            if axes[1].get_legend():
                sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
            fig.suptitle(f"{dataset} / {model}: separability of the penultimate features")
        figure = figures.add(
            fig, f"separability_{safe_name(dataset)}_{safe_name(model)}",
            f"Linear-probe accuracy and silhouette of {model}'s penultimate features on the "
            f"{dataset} test faces vs sparsity ({seeds_words(df)}).")
        table = Table(f"{dataset} / {model}",
                      ["Method", "Level", "Sparsity (%)", "Seeds", "Probe acc (%)",
                       "95 % CI (%)", "± sd over folds (pp)", "Silhouette"], text_columns=2)
        for (group, level), g in sorted(df.groupby(["group", "level"]),
                                        key=lambda kv: (method_key(kv[0][0]),
                                                        kv[1]["sparsity"].mean())):
            ci = mean_ci(g["probe_acc"])
            table.rows.append([method_label(group), str(level), pct_text(g["sparsity"].mean()),
                               str(ci.n), pct_text(ci.mean), ci_text(ci),
                               mean_text(g["probe_acc_std"]),
                               mean_text(g["silhouette"], 1.0, 3)])
        section.parts.append(Part(f"{dataset} / {model}", figure, [table]))
    return section


def latency_section(results_dir: Path, config: dict) -> Section:
    """CPU latency of the dense network and the tickets, per dataset and model."""
    data = collect_latency(results_dir, config)
    threads = sorted({int(t) for t in data["threads"]}) if not data.empty else []
    section = Section(
        "latency", "Latency of the tickets on CPU",
        "Median time of one forward pass on CPU "
        f"({', '.join(map(str, threads)) or 'fixed'} torch thread(s)) of the dense network "
        "and of each ticket, all timed side by side in one job (round-robin, so other load "
        "falls on all alike). The speed-up is the dense median over the ticket's; its spread "
        "is the 2.5th–97.5th percentile of the per-round ratios, and a speed-up whose spread "
        "contains 1 reads <em>no difference</em>. An unstructured ticket is a masked dense "
        "network and does the same work as the dense one; a structured ticket is compacted "
        "first (its pruned channels removed), as it would be deployed. MMACs: "
        "multiply-accumulates of one image.",
        empty="no latency results yet (results/latency/).",
    )
    for (dataset, model), df in data.groupby(["dataset", "model"], sort=True):
        batches = sorted({int(b) for b in df["batch"]})
        structured = bool(methods.with_role(df["method"].unique(), methods.STRUCTURED))
        table = Table(
            f"{dataset} / {model}: CPU latency",
            ["Method", "Level", "Sparsity (%)"]
            + (["Channels pruned (%)", "Params", "MMACs"] if structured else [])
            + [f"batch {b}: ms (speed-up)" for b in batches],
            text_columns=2,
            note=(f"Times and speed-ups are means over {df['seed'].nunique()} seeds of each "
                  "seed's median." if df["seed"].nunique() > 1 else "One seed.")
            + (" –: does not apply (an unstructured ticket keeps every channel, and its "
               "parameters and MACs are the dense network's)." if structured else
               " Params and MACs are those of the dense network for every unstructured "
               "ticket, so they are not shown."),
        )
        levels = df.groupby(["method", "level"], sort=False)
        order = sorted(levels.groups, key=lambda key: (
            key[0] != "dense", method_key(key[0]),
            float(levels.get_group(key)["sparsity"].mean())))
        for method, level in order:
            g = levels.get_group((method, level))
            cells = [method_label(method), str(level), pct_text(g["sparsity"].mean())]
            compacted = method == "dense" or methods.with_role([method], methods.STRUCTURED)
            if structured:
                cells += ([pct_text(g["channel_sparsity"].mean()), int_text(g["params"].mean()),
                           f"{g['macs'].mean() / 1e6:.2f}"] if compacted else ["–"] * 3)
            for b in batches:
                gb = g[g["batch"] == b]
                cells.append("–" if gb.empty else speedup_text(gb, method))
            table.rows.append(cells)
        quiet = within_noise(df)
        if quiet:
            section.parts.append(Part(f"{dataset} / {model}", lines=[quiet]))
            section.parts.append(Part(f"{dataset} / {model}: the times", None, [table],
                                      folded=True))
        else:
            section.parts.append(Part(f"{dataset} / {model}", None, [table]))
    return section


def within_noise(df) -> str:
    """One line when no ticket's latency differs from the dense network's beyond the timer's
    own spread (or does the dense network's work: unstructured), else ""."""
    tickets = df[df["method"] != "dense"]
    if tickets.empty:
        return ""
    for (method, _, _), g in tickets.groupby(["method", "level", "batch"]):
        if not methods.with_role([method], methods.STRUCTURED):
            continue
        low = g["speedup_low"].mean() if "speedup_low" in g else np.nan
        high = g["speedup_high"].mean() if "speedup_high" in g else np.nan
        if not (np.isfinite(low) and np.isfinite(high) and low <= 1.0 <= high):
            return ""
    dense = df[(df["method"] == "dense")]
    first = dense[dense["batch"] == dense["batch"].min()]["median_ms"].mean() \
        if not dense.empty else np.nan
    return ("No ticket is faster or slower than the dense network beyond the timer's own "
            "spread (every speed-up's interval contains 1×, or the ticket does the dense "
            "network's work)" + (f"; dense: {first:.2f} ms per pass." if np.isfinite(first)
                                 else "."))


def speedup_text(rows, method: str) -> str:
    """"2.04 ms (0.98×, no difference)" or "1.00 ms (2.00× [1.9, 2.1])"."""
    ms = rows["median_ms"].mean()
    ratio = rows["speedup_vs_dense"].mean()
    if method == "dense":
        return f"{ms:.2f} (1.00×)"
    low = rows["speedup_low"].mean() if "speedup_low" in rows else np.nan
    high = rows["speedup_high"].mean() if "speedup_high" in rows else np.nan
    spread = (f" [{low:.2f}, {high:.2f}]" if np.isfinite(low) and np.isfinite(high) else "")
    if spread and low <= 1.0 <= high:
        return f"{ms:.2f} (no difference: {ratio:.2f}×{spread})"
    if not methods.with_role([method], methods.STRUCTURED):
        # the same work as the dense network: a measured ratio is load or cache, not a speed-up
        return f"{ms:.2f} (no speed-up: same work as dense; {ratio:.2f}×{spread} measured)"
    return f"{ms:.2f} ({ratio:.2f}×{spread or ', spread not recorded'})"


def separability(ctx: Context) -> Section | None:
    if not asks_for(ctx.config, "separability"):
        return None
    return separability_section(ctx.results_dir, ctx.config, ctx.figures)


def latency(ctx: Context) -> Section | None:
    if not asks_for(ctx.config, "latency"):
        return None
    return latency_section(ctx.results_dir, ctx.config)
