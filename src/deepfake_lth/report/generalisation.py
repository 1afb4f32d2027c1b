"""The Generalisation section: the runs scored zero-shot on unseen test sets (cross-dataset and
per manipulation, ``analysis/generalisation.py``): AUC vs sparsity per model, a table in
DeepfakeBench's shape and the claim that IMP tickets keep the dense network's cross-dataset AUC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from markupsafe import Markup

from deepfake_lth.analysis.generalisation import CROSS, read_cross
from deepfake_lth.report.chart import TICKS
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
    shared_ylim,
    style,
)

COLUMNS = ["dataset", "model", "seed", "method", "level", "sparsity", "test_set", "zero_shot",
           "manipulation", "auc", "video_auc", "eer", "video_eer", "ap",
           "acc_val_threshold", "per_video"]


def run_folder(results_dir: Path, r) -> Path:
    base = Path(results_dir) / r["dataset"] / r["model"] / f"seed{int(r['seed'])}"
    return base / "dense" if r["method"] == "dense" else base / r["method"] / r["level"]


def video_table(path: Path):
    """A test set's videos from its predictions.csv: index video_id, mean prob, label."""
    import pandas as pd

    try:
        pred = pd.read_csv(path, dtype={"video_id": str})
    except (OSError, ValueError):
        return None
    return pred.groupby("video_id").agg(prob=("prob", "mean"), label=("label", "max"))


def collect_cross(results_dir: Path, runs):
    """One row per planned run × test set: the in-domain test split (from the run's own
    metrics.json, ``zero_shot`` False) and every cross/ test set it was scored on."""
    import pandas as pd

    rows = []
    for _, r in runs.iterrows():
        key = {k: r[k] for k in ("dataset", "model", "seed", "method", "level", "sparsity")}
        folder = run_folder(results_dir, r)
        rows.append(key | {"test_set": f"{r['dataset']} (in-domain)", "zero_shot": False,
                           "manipulation": "", "auc": r["test_auc"],
                           "video_auc": r.get("video_auc", np.nan),
                           "eer": r.get("test_eer", np.nan),
                           "video_eer": r.get("video_eer", np.nan),
                           "ap": r.get("test_ap", np.nan),
                           "acc_val_threshold": r.get("test_acc_val_threshold", np.nan),
                           "per_video": video_table(folder / "predictions.csv")})
        for m in read_cross(folder):
            if m.get("held_out"):  # a manipulation left out of training: say so in its name
                m = m | {"test_set": f"{m['test_set']} (held out of training)"}
            rows.append(key | {k: m.get(k) for k in COLUMNS[6:-1]} | {
                "per_video": video_table(folder / CROSS / m["test_set"].removesuffix(
                    " (held out of training)") / "predictions.csv")})
    return pd.DataFrame.from_records(rows, columns=COLUMNS)


def _test_sets(part) -> list[str]:
    """In-domain first (the whole test split, then its manipulations), then the unseen sets."""
    sets = part[["test_set", "zero_shot"]].drop_duplicates("test_set")
    return sorted(sets["test_set"], key=lambda t: (
        bool(sets.set_index("test_set").loc[t, "zero_shot"]), not t.endswith("(in-domain)"), t))


def auc_figure(cross, dataset: str, model_order: list[str] | None):
    """AUC vs sparsity of the runs of ``dataset``: a row of panels per model, one panel per
    test set (in-domain first), one line per method starting at the dense network."""
    from matplotlib.figure import Figure as MplFigure

    part = cross[cross["dataset"] == dataset]
    models = ordered(part["model"], model_order)
    sets = _test_sets(part)
    if part.empty or not sets:
        return None
    with style():
        fig = MplFigure(figsize=(FIGURE_WIDTH, 2.6 * len(models) + 0.6), layout="constrained")
        axes = fig.subplots(len(models), len(sets), squeeze=False)
        for i, model in enumerate(models):
            for j, test_set in enumerate(sets):
                ax = axes[i][j]
                cell = part[(part["model"] == model) & (part["test_set"] == test_set)]
                dense = cell[cell["method"] == "dense"]
                base = dense["auc"].mean()
                if np.isfinite(base):
                    ax.axhline(base, color="0.3", linestyle="--", linewidth=1, label="dense")
                for k, method in enumerate(sorted(set(cell["method"]) - {"dense"},
                                                  key=method_key)):
                    line = (cell[cell["method"] == method].groupby("sparsity")["auc"].mean())
                    ax.plot(1 - np.asarray(line.index), line.values, marker="osD^vx"[k % 6],
                            markersize=4, fillstyle="none", label=method_label(method))
                ax.axhline(0.5, color="0.6", linestyle=":", linewidth=1, label="chance")
                ax.set_xscale("log")
                ax.invert_xaxis()
                left = float(part["sparsity"].rsub(1).min())
                if np.isfinite(left) and left > 0:
                    ax.set_xlim(1.05, 0.85 * left)
                    ticks = [t for t in TICKS if t >= 0.85 * left]
                    ax.set_xticks(ticks, [f"{100 * (1 - t):g}" for t in ticks])
                ax.minorticks_off()
                ax.set_title(f"{model}: {test_set}", fontsize=9)
                ax.set_xlabel("sparsity (%), log of the weights left")
                ax.set_ylabel("frame AUC")
        shared_ylim(axes.ravel())
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", frameon=False,
                       ncols=min(len(labels), 5))
    return fig


METRICS = [("auc", "Frame AUC"), ("video_auc", "Video AUC"), ("eer", "Frame EER"),
           ("ap", "Frame AP")]
EER_WORDS = ("EER: the error rate where false positives equal false negatives, on the ROC "
             "curve interpolated linearly between its points (DeepfakeBench takes the ROC point "
             "nearest to the crossing; on few test units the two differ by up to a step of "
             "the curve).")


def set_header(part, test_set: str) -> str:
    """A test set's column header with its real / fake videos (or images)."""
    pv = part[(part["test_set"] == test_set)]["per_video"].dropna()
    if not len(pv):
        return test_set
    labels = pv.iloc[0]["label"]
    return f"{test_set} ({int((labels == 0).sum())} real / {int((labels == 1).sum())} fake)"


def bench_tables(cross, dataset: str, model_order: list[str] | None) -> list[Table]:
    """DeepfakeBench's shape, a table per metric (frame AUC, video AUC, EER, AP): rows model ·
    method · sparsity, a column per test set (the mean over seeds) and their mean."""
    part = cross[cross["dataset"] == dataset]
    if part.empty:
        return []
    sets = _test_sets(part)
    unseen = [s for s in sets if not s.endswith("(in-domain)")]
    heads = [set_header(part, s) for s in sets]
    means = part.groupby(["model", "method", "level", "test_set"])[
        [m for m, _ in METRICS] + ["sparsity"]].mean()
    rank = {m: i for i, m in enumerate(ordered(part["model"], model_order))}
    keys = sorted({k[:3] for k in means.index},
                  key=lambda k: (rank[k[0]], method_key(k[1]) if k[1] != "dense" else (-1,),
                                 means.loc[k].iloc[0]["sparsity"]))
    out = []
    for metric, name in METRICS:
        table = Table(f"Trained on {dataset}: {name} per test set (real / fake videos)",
                      ["Model", "Method", "Sparsity (%)", *heads,
                       "Mean of unseen" if unseen else "Mean"], text_columns=2,
                      note=(EER_WORDS + " " if "eer" in metric else "")
                      + "Mean over seeds; the last column is the mean over the test sets "
                      "never trained on. In-domain: the run's own test split, the "
                      "manipulations trained on; a video's score is the mean p(fake) of its "
                      "faces; a manipulation column holds that manipulation's fakes and every "
                      "real video of the split.")
        for model, method, level in keys:
            values = [means.loc[(model, method, level, s)][metric]
                      if (model, method, level, s) in means.index else np.nan for s in sets]
            pool = [v for s, v in zip(sets, values, strict=True)
                    if (s in unseen or not unseen) and np.isfinite(v)]
            sparsity = float(means.loc[(model, method, level)]["sparsity"].iloc[0])
            table.rows.append([model, "dense" if method == "dense" else method_label(method),
                               f"{100 * sparsity:.1f}",
                               *[f"{v:.3f}" if np.isfinite(v) else "–" for v in values],
                               f"{np.mean(pool):.3f}" if pool else "–"])
        out.append(table)
    return out


def section(results_dir: Path, runs, config: dict, figures: Figures,
            model_order: list[str] | None) -> Section | None:
    """The Generalisation section; None when the config asks for no zero-shot evaluation."""
    from deepfake_lth.analysis.claims_beyond import claim_generalisation

    if not config.get("generalisation"):
        return None
    cross = collect_cross(results_dir, runs)
    sources = list(dict.fromkeys(e["from"] for e in config["generalisation"]))
    sec = Section(
        "generalisation", "Generalisation",
        Markup("Every planned run scored, without training, on test sets it has never seen "
               "(<code>generalisation</code> in the config): other datasets' test splits and "
               "each manipulation on its own, the protocol of DeepfakeBench. The decision "
               "threshold for accuracy is the one chosen on the source's validation split, "
               "applied unchanged; AUC needs none. Per-run files: "
               "<code>cross/{dataset}[/{manipulation}]/</code> in each run folder; tickets "
               "transferred to a dataset are scored too (results/generalisation/…/seed*.csv "
               "lists every run). The claim below is decided from the per-video predictions."),
        claims=[claim_generalisation(cross)])
    for dataset in sources:
        part = cross[cross["dataset"] == dataset]
        if part.empty or not part["zero_shot"].astype(bool).any() and len(_test_sets(part)) < 2:
            sec.parts.append(Part(f"Trained on {dataset}", notrun="no zero-shot scores yet "
                                  f"(the runs' cross/ folders of {dataset})."))
            continue
        fig = auc_figure(cross, dataset, model_order)
        figure = None if fig is None else figures.add(
            fig, f"generalisation_{safe_name(dataset)}",
            f"Frame AUC vs sparsity of the networks trained on {dataset}, in-domain and on "
            "each unseen test set; a marker where a method ran, the x-axis the log of the "
            "weights left; dashed: the dense network, dotted: chance.")
        sec.parts.append(Part(f"Trained on {dataset}", figure,
                              bench_tables(cross, dataset, model_order), switch=True))
    return sec


def shown(ctx) -> Section | None:
    """The section from the report's context; None without ``generalisation``."""
    return section(ctx.results_dir, ctx.runs, ctx.config, ctx.figures, ctx.model_order)
