"""The study's report: one self-contained HTML file (figures embedded as PNG data URIs).

Reads the results tree of DESIGN.md (every ``metrics.json``, the Grad-CAM ``heatmaps.npz`` /
``delta.csv``, the faces' ``manifest.csv`` / ``extraction_log.csv``) and Snakemake benchmark
files, and renders ``templates/report.html.j2`` with jinja2. Sections: accuracy vs sparsity
(the paper's Fig. 2), result tables, transfer tickets (Table I), Grad-CAM (Fig. 3 and ΔL),
then the sections beyond the paper that the config asks for (controls and winning tickets,
SNIP/GraSP, pruning step sizes, seeds with confidence intervals, model separability), the
paper's claims with this run's verdicts, and provenance. A part that has not been run shows a
short "not run" line.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import math
import platform
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from deepfake_lth.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_TITLE = "Lottery tickets in deepfake detectors"
SYNTHETIC_SENTENCE = (
    "These results come from the embedded synthetic demo sets, not from the paper's data; "
    "the numbers are not the paper's numbers."
)
METHOD_ORDER = [
    "dense",
    "imp-global",
    "imp-local",
    "oneshot-global",
    "oneshot-local",
    "control-reinit",
    "control-random-mask",
]
PAI_LABELS = {"snip": "SNIP", "grasp": "GraSP"}  # pruning at initialization
PACKAGES = [
    "deepfake-lth", "torch", "torchvision", "snakemake", "facenet-pytorch", "numpy",
    "pandas", "scikit-learn", "opencv-python-headless", "matplotlib", "seaborn", "jinja2",
]
NOT_RUN = "not run"
TARGET_WORDS = {
    "label": "the face's true class (the logit for a fake face, minus the logit for a real one)",
    "fake": "the fake logit",
    "real": "minus the fake logit (the real class)",
    "predicted": "the predicted class",
}


def method_label(method: str) -> str:
    """Folder name → the paper's words: ``imp-global`` → ``IMP-Global``."""
    from deepfake_lth.plan import parse_step_size_method

    step = parse_step_size_method(method)
    if step:
        return f"IMP-{step[0].capitalize()} (rate {step[1]:g})"
    if method in PAI_LABELS:
        return PAI_LABELS[method]
    kind, _, rest = method.partition("-")
    if kind == "dense":
        return "Dense"
    if kind == "imp":
        return f"IMP-{rest.capitalize()}"
    if kind == "oneshot":
        return f"One-shot {rest.capitalize()}"
    if kind == "control":
        return {"reinit": "Control: random re-init", "random-mask": "Control: random mask"}.get(
            rest, f"Control: {rest}"
        )
    if kind == "structured":
        return f"Structured-{rest.capitalize()}"
    return method


def _method_key(method: str) -> tuple[int, str]:
    """Sort key: the paper's methods in METHOD_ORDER, SNIP and GraSP after them, and a step-size
    variant right after its IMP method (``imp-global-rate0.05`` after ``imp-global``)."""
    from deepfake_lth.plan import parse_step_size_method

    order = METHOD_ORDER + ["structured-global", "structured-local"] + list(PAI_LABELS)
    step = parse_step_size_method(method)
    base = f"imp-{step[0]}" if step else method
    return (order.index(base) if base in order else len(order), method)


# --------------------------------------------------------------------------- reading


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
    if not isinstance(data, dict):
        log.warning("skipping %s: not a JSON object", path)
        return None
    return data


def _num(value: Any) -> float:
    """A metric as float; NaN for missing / null / non-numeric."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _seed(part: str) -> int | None:
    m = re.fullmatch(r"seed(\d+)", part)
    return int(m.group(1)) if m else None


def _split_pair(name: str, config: dict) -> tuple[str, str] | None:
    for pair in (config.get("transfer") or {}).get("pairs", []) or []:
        if name == f"{pair['from']}-to-{pair['to']}":
            return pair["from"], pair["to"]
    if "-to-" in name:
        a, _, b = name.partition("-to-")
        return a, b
    return None


def _metric_record(data: dict) -> dict[str, Any]:
    return {
        "sparsity": _num(data.get("sparsity")),
        "params_total": _num(data.get("params_total")),
        "params_nonzero": _num(data.get("params_nonzero")),
        "test_acc": _num(data.get("test_acc")),
        "test_auc": _num(data.get("test_auc")),
        "video_acc": _num(data.get("video_acc")),
        "val_acc": _num(data.get("val_acc")),
        "epochs": _num(data.get("epochs")),
        "train_seconds": _num(data.get("train_seconds")),
        "device": data.get("device"),
        "test_samples": _num(data.get("test_samples")),
        "control_of": data.get("control_of"),
    }


def _wanted(config: dict) -> tuple[set | None, set | None, set | None]:
    datasets = set(config["datasets"]) if isinstance(config.get("datasets"), dict) else None
    models = set(config["models"]) if isinstance(config.get("models"), dict) else None
    seeds = set(config["seeds"]) if isinstance(config.get("seeds"), list) else None
    return datasets, models, seeds


def collect_metrics(results_dir: str | Path, config: dict | None = None):
    """Two DataFrames from every metrics.json under ``results_dir``: the pruning runs
    (dataset, model, seed, method, level, …) and the transfer runs (pair, source, target, …).

    With a ``config``, runs of datasets, models or seeds it does not name are left out (stale
    results of an earlier config).
    """
    import pandas as pd

    results_dir = Path(results_dir)
    config = config or {}
    datasets, models, seeds = _wanted(config)
    runs, transfers = [], []
    for path in sorted(results_dir.rglob("metrics.json")):
        parts = path.relative_to(results_dir).parts[:-1]
        if parts and parts[0] == "gradcam":
            continue
        if parts and parts[0] == "transfer":
            if len(parts) != 5 or _seed(parts[3]) is None:
                log.debug("not a transfer path: %s", path)
                continue
            pair = _split_pair(parts[1], config)
            if pair is None:
                continue
            rec = {"pair": parts[1], "source": pair[0], "target": pair[1], "model": parts[2],
                   "seed": _seed(parts[3]), "method": parts[4]}
            if (datasets and not set(pair) <= datasets) or (models and rec["model"] not in models):
                continue
            if seeds and rec["seed"] not in seeds:
                continue
            data = _read_json(path)
            if data is not None:
                transfers.append(rec | _metric_record(data))
            continue
        if len(parts) == 4 and parts[3] == "dense":
            method, level = "dense", "dense"
        elif len(parts) == 5:
            method, level = parts[3], parts[4]
        else:
            log.debug("not a run path: %s", path)
            continue
        if _seed(parts[2]) is None:
            continue
        rec = {"dataset": parts[0], "model": parts[1], "seed": _seed(parts[2]),
               "method": method, "level": level}
        if (datasets and rec["dataset"] not in datasets) or (models and rec["model"] not in models):
            continue
        if seeds and rec["seed"] not in seeds:
            continue
        data = _read_json(path)
        if data is not None:
            runs.append(rec | _metric_record(data))
    run_cols = ["dataset", "model", "seed", "method", "level"]
    tr_cols = ["pair", "source", "target", "model", "seed", "method"]
    rest = list(_metric_record({}))
    return (
        pd.DataFrame.from_records(runs, columns=run_cols + rest),
        pd.DataFrame.from_records(transfers, columns=tr_cols + rest),
    )


# --------------------------------------------------------------------------- formatting


def _pct(x: float, digits: int = 1) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def _mean_sd(values, scale: float = 100.0, digits: int = 1) -> str:
    """"61.2" or "61.2 ± 0.4" (several seeds); "–" when nothing is known."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "–"
    text = f"{scale * v.mean():.{digits}f}"
    if len(v) > 1:
        text += f" ± {scale * v.std(ddof=1):.{digits}f}"
    return text


def _int(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{round(x):,}"


@dataclass
class Table:
    """A table for the template: header cells and rows of text cells."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""
    text_columns: int = 1  # leading columns of words (left-aligned); the rest are numbers


@dataclass
class Figure:
    """An embedded figure: its data URI and caption."""

    uri: str
    caption: str
    name: str


class _Figures:
    """Turns matplotlib figures into data URIs (and PNG files when ``out_dir`` is given)."""

    def __init__(self, out_dir: str | Path | None) -> None:
        self.out_dir = Path(out_dir) if out_dir else None
        if self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    def add(self, fig, name: str, caption: str) -> Figure:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
        data = buf.getvalue()
        if self.out_dir:
            (self.out_dir / f"{name}.png").write_bytes(data)
        return Figure("data:image/png;base64," + base64.b64encode(data).decode("ascii"),
                      caption, name)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _style():
    import matplotlib
    import seaborn as sns

    return matplotlib.rc_context(sns.axes_style("whitegrid") | {"font.size": 9})


# --------------------------------------------------------------------------- sections


def _ordered(names, order: list[str] | None) -> list[str]:
    """``names`` in config order first, the rest alphabetically."""
    order = order or []
    return sorted(set(names), key=lambda n: (n not in order, order.index(n) if n in order else 0, n))


def curves_figure(runs, dataset: str, methods: list[str], title: str,
                  model_order: list[str] | None = None, dense_se: bool = False):
    """Test accuracy vs sparsity on ``dataset``: a panel per model, a line per method of
    ``methods`` (each starting at its model's dense network), the mean over seeds with a band
    of the 95 % t-interval when there are several seeds. ``dense_se`` shades dense ± 1 SE.
    None when none of ``methods`` has a run on ``dataset``."""
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure

    from deepfake_lth.stats import ci_bounds, dense_reference

    df = runs[runs["dataset"] == dataset]
    pruned = df[df["method"].isin(methods) & (df["method"] != "dense")]
    dense = df[df["method"] == "dense"]
    if pruned.empty and ("dense" not in methods or dense.empty):
        return None
    models = _ordered(df["model"], model_order)
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
    hue_order = [method_label(m) for m in sorted(data["method"].unique(), key=_method_key)]
    several_seeds = df["seed"].nunique() > 1
    legend: dict[str, Any] = {}
    extra = ["dense ± 1 SE"] if dense_se else []
    with _style():
        fig = MplFigure(figsize=(max(5.0, 4.2 * len(models)), 3.8), layout="constrained")
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
            if dense_se:
                ref = dense_reference(df, dataset, model)
                if np.isfinite(ref.se):
                    ax.axhspan(100 * (ref.mean - ref.se), 100 * (ref.mean + ref.se),
                               color="0.6", alpha=0.25, linewidth=0, label="dense ± 1 SE")
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
            if ax.get_legend():
                ax.get_legend().remove()
            ax.set_title(model)
            ax.set_xlabel("sparsity (%)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_xlim(-2, 100)
        labels = [h for h in hue_order + ["dense baseline"] + extra if h in legend]
        if labels:
            fig.legend([legend[h] for h in labels], labels, loc="outside lower center",
                       frameon=False, ncols=min(len(labels), 5))
        fig.suptitle(title)
    return fig


def _seeds_words(df) -> str:
    n = df["seed"].nunique()
    return f"mean and 95 % t-interval over {n} seeds" if n > 1 else "one seed"


def accuracy_figures(runs, figures: _Figures, model_order: list[str] | None = None,
                     exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, Figure]:
    """Fig. 2: test accuracy vs sparsity per dataset, a panel per model, a line per method
    (but those in ``exclude``: the methods a section of their own plots)."""
    out = {}
    for dataset, df in runs.groupby("dataset", sort=True):
        methods = sorted((m for m in set(df["method"]) if m not in exclude), key=_method_key)
        fig = curves_figure(runs, dataset, methods, f"{dataset}: accuracy vs sparsity",
                            model_order)
        if fig is None:
            continue
        out[dataset] = figures.add(
            fig, f"accuracy_{_safe(dataset)}",
            f"Test accuracy vs sparsity on {dataset} ({_seeds_words(df)}); the dashed line is "
            "the dense baseline, and every curve starts at the dense network.",
        )
    return out


def results_tables(runs, model_order: list[str] | None = None) -> dict[str, Table]:
    """A table per dataset: every network with its accuracy and the share of dense accuracy."""
    out = {}
    for dataset, df in runs.groupby("dataset", sort=True):
        dense = df[df["method"] == "dense"].groupby(["model", "seed"])["test_acc"].mean()
        table = Table(
            f"{dataset}",
            ["Model", "Method", "Sparsity (%)", "Params remaining", "Test acc (%)", "AUC",
             "Video acc (%)", "Retained (% of dense)", "Seeds"],
            note="Retained: test accuracy over the dense network's (same model and seed). "
            "With several seeds: mean ± sd over seeds (95 % t-intervals in the section on "
            "seeds).",
            text_columns=2,
        )
        keys = []
        for (model, method, level), g in df.groupby(["model", "method", "level"]):
            keys.append((model, _method_key(method), g["sparsity"].mean(), method, level, g))
        rank = {m: i for i, m in enumerate(_ordered(df["model"], model_order))}
        for model, _, _, method, level, g in sorted(keys, key=lambda k: (rank[k[0]], *k[1:3])):
            ref = [dense.get((model, s), math.nan) for s in g["seed"]]
            retained = [a / r if r and np.isfinite(r) else math.nan
                        for a, r in zip(g["test_acc"], ref, strict=True)]
            table.rows.append([
                model,
                method_label(method),
                _pct(g["sparsity"].mean()),  # seeds differ by a few weights at most
                _int(g["params_nonzero"].mean()),
                _mean_sd(g["test_acc"]),
                _mean_sd(g["test_auc"], scale=1.0, digits=3),
                _mean_sd(g["video_acc"]),
                _mean_sd(retained),
                str(g["seed"].nunique()),
            ])
        out[dataset] = table
    return out


def transfer_tables(transfers, config: dict) -> list[Table]:
    """Table I per transfer pair: Model, PR, Params (M), Base, then one column per method."""
    out = []
    for pair, df in transfers.groupby("pair", sort=True):
        src, dst = df["source"].iloc[0], df["target"].iloc[0]
        parsed = df["method"].str.extract(r"^(?P<src_method>.+)-sparsity(?P<pr>\d+)$")
        df = df.assign(src_method=parsed["src_method"], pr=parsed["pr"].astype(float))
        methods = sorted(df["src_method"].dropna().unique(), key=_method_key)
        kinds = Counter(m.partition("-")[0] for m in methods)
        names = {}
        for m in methods:
            kind, _, crit = m.partition("-")
            short = {"imp": "IMP", "oneshot": "One-shot"}.get(kind, kind)
            names[m] = short if kinds[kind] == 1 else f"{short} ({crit})"
        table = Table(
            f"{src} → {dst}",
            ["Model", "PR", "Params (M)", "Base"] + [names[m] for m in methods],
            note=f"Test accuracy (%) on {dst}. Base: the dense network; the other columns: "
            f"tickets found on {src} (mask and weights) trained on {dst}. "
            "PR: pruning rate, the percentage of prunable weights removed.",
        )
        for model in _ordered(df["model"], list(config.get("models") or {})):
            part = df[df["model"] == model]
            dense = part[part["method"] == "dense"]
            blank = ["-"] * len(methods)
            table.rows.append([model, "0%", _millions(dense["params_nonzero"]),
                               _mean_sd(dense["test_acc"])] + blank)
            tickets = part.dropna(subset=["pr"])
            for pr in sorted(tickets["pr"].unique()):
                at = tickets[tickets["pr"] == pr]
                first = at[at["src_method"] == methods[0]] if methods else at
                params = first["params_nonzero"] if not first.empty else at["params_nonzero"]
                cells = [_mean_sd(at[at["src_method"] == m]["test_acc"]) for m in methods]
                table.rows.append(["Ticket", f"{int(pr)}%", _millions(params), "-"] + cells)
        out.append(table)
    return out


def _millions(values) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return "–" if len(v) == 0 else f"{v.mean() / 1e6:.3f}"


@dataclass
class GradcamRun:
    dataset: str
    model: str
    seed: int
    method: str
    folder: Path
    npz: dict | None
    delta: Any  # DataFrame or None


def collect_gradcam(results_dir: str | Path, config: dict | None = None) -> list[GradcamRun]:
    """Every results/gradcam/{dataset}/{model}/seed{s}/{method}/ with its files."""
    import pandas as pd

    config = config or {}
    datasets, models, seeds = _wanted(config)
    base = Path(results_dir) / "gradcam"
    out = []
    for folder in sorted(p for p in base.glob("*/*/seed*/*") if p.is_dir()):
        dataset, model, seed_dir, method = folder.relative_to(base).parts
        seed = _seed(seed_dir)
        if seed is None or (datasets and dataset not in datasets):
            continue
        if (models and model not in models) or (seeds and seed not in seeds):
            continue
        npz = None
        if (folder / "heatmaps.npz").is_file():
            try:
                with np.load(folder / "heatmaps.npz", allow_pickle=False) as z:
                    npz = {k: z[k] for k in z.files}
            except (OSError, ValueError) as exc:
                log.warning("skipping %s: %s", folder / "heatmaps.npz", exc)
        delta = None
        if (folder / "delta.csv").is_file():
            try:
                delta = pd.read_csv(folder / "delta.csv")
            except (OSError, ValueError) as exc:
                log.warning("skipping %s: %s", folder / "delta.csv", exc)
        if npz is not None or delta is not None:
            out.append(GradcamRun(dataset, model, seed, method, folder, npz, delta))
    return out


def gradcam_grid(runs: list[GradcamRun], dataset: str, model: str, figures: _Figures):
    """Fig. 3: per method a fake and a real face, the face and its map at each sparsity."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure as MplFigure

    chosen = [r for r in runs if r.npz is not None]
    if not chosen:
        return None
    seed = min(r.seed for r in chosen)
    chosen = sorted((r for r in chosen if r.seed == seed), key=lambda r: _method_key(r.method))
    rows = []  # (label text, image, [(title, map)])
    for run in chosen:
        z = run.npz
        labels = np.asarray(z["labels"])
        methods = z["methods"] if "methods" in z else [run.method] * len(z["sparsities"])
        for label, word in ((1, "fake"), (0, "real")):
            idx = np.flatnonzero(labels == label)
            if len(idx) == 0:
                continue
            i = int(idx[0])
            cols = []
            for j, s in enumerate(np.asarray(z["sparsities"], dtype=float)):
                p = float(z["probs"][j, i]) if "probs" in z else math.nan
                title = f"{100 * s:.0f}% sparse" + ("" if str(methods[j]) != "dense" else
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
        fig, f"gradcam_{_safe(dataset)}_{_safe(model)}",
        f"Grad-CAM of {model} on {dataset}: a fake and a real test face (rows) and their "
        "maps at each sparsity (columns), each map scaled to [0, 1], jet colours over the face.",
    )


def delta_figure(runs: list[GradcamRun], dataset: str, model: str, figures: _Figures):
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
    hue_order = [method_label(m) for m in sorted({r.method for r in runs}, key=_method_key)]
    hue_order = [h for h in hue_order if h in set(data["Method"])]
    with _style():
        fig = MplFigure(figsize=(8.4, 3.2), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, column, ylabel in (
            (axes[0], "delta_l", "ΔL = ||L₀ − L_p||_F"),
            (axes[1], "concentration", "heat in hottest 10 % of pixels"),
        ):
            sns.lineplot(data=data, x="sparsity_pct", y=column, hue="Method", style="Method",
                         hue_order=hue_order, style_order=hue_order, markers=True, dashes=False,
                         errorbar="sd", ax=ax, legend=ax is axes[1])
            ax.set_xlabel("sparsity (%)")
            ax.set_ylabel(ylabel)
        if axes[1].get_legend():
            sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
        fig.suptitle(f"{dataset} / {model}: change of attention under pruning")
    figure = figures.add(
        fig, f"delta_{_safe(dataset)}_{_safe(model)}",
        f"ΔL (Frobenius distance between the dense and the pruned network's normalised maps "
        f"of the same face) and the concentration of the heat for {model} on {dataset}; "
        "mean ± sd over the faces (and seeds).",
    )
    table = Table(
        f"{dataset} / {model}",
        ["Method", "Sparsity (%)", "Faces", "ΔL", "Concentration", "p(fake)",
         "Empty maps"],
        note="Empty maps: faces whose map has no positive evidence at all (concentration "
        "undefined).",
    )
    for (method, s), g in data.groupby(["Method", "sparsity"], sort=False):
        table.rows.append([
            method, f"{100 * s:.1f}", str(len(g)),
            _mean_sd(g["delta_l"], scale=1.0, digits=2),
            _mean_sd(g["concentration"], scale=1.0, digits=3),
            _mean_sd(g["prob_fake"], scale=1.0, digits=2) if "prob_fake" in g else "–",
            str(int(g["concentration"].isna().sum())),
        ])
    order = {h: i for i, h in enumerate(hue_order)}
    table.rows.sort(key=lambda row: (order.get(row[0], 99), float(row[1])))
    return figure, table


# --------------------------------------------------------------------------- beyond the paper


@dataclass
class Part:
    """One block of a section: a heading, a figure, tables and sentences."""

    heading: str
    figure: Figure | None = None
    tables: list[Table] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass
class Section:
    """A section of the report that exists only when the config asks for its runs."""

    id: str
    title: str
    intro: str
    parts: list[Part] = field(default_factory=list)
    empty: str = ""  # the "not run" sentence when there are no parts
    number: int = 0


def _ci_text(ci, scale: float = 100.0, digits: int = 1) -> str:
    """"[58.1, 64.3]" for an interval, "–" without one (one seed)."""
    if ci is None or not np.isfinite(ci.low):
        return "–"
    return f"[{scale * ci.low:.{digits}f}, {scale * ci.high:.{digits}f}]"


def _mean_text(values, scale: float = 100.0, digits: int = 1) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return "–" if not len(v) else f"{scale * v.mean():.{digits}f}"


def _p_text(p: float, note: str = "") -> str:
    if note and not np.isfinite(p):
        return note
    return "–" if not np.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "< 0.001")


def _main_imp(runs) -> str | None:
    methods = [m for m in ("imp-global", "imp-local") if m in set(runs["method"])]
    return methods[0] if methods else None


def _datasets_with(runs, methods) -> list[str]:
    return sorted(runs[runs["method"].isin(list(methods))]["dataset"].unique())


def _comparison_table(runs, dataset: str, pairs: list[tuple[str, str]], title: str,
                      model_order: list[str] | None) -> Table | None:
    """Paired differences A − B (percentage points) over seeds at every shared sparsity."""
    from deepfake_lth.stats import paired_comparisons

    table = Table(title, ["Model", "Comparison", "Sparsity (%)", "Seeds", "Difference (pp)",
                          "95 % CI (pp)", "t", "p"], text_columns=2,
                  note="Difference: mean over seeds of A − B test accuracy, paired by seed "
                  "(the same seed's dense network, split and data order); 95 % t-interval and "
                  "paired t-test (scipy.stats.ttest_rel). Fewer than two seeds: not enough "
                  "seeds for a test.")
    part = runs[runs["dataset"] == dataset]
    rank = {m: i for i, m in enumerate(_ordered(part["model"], model_order))}
    rows = []
    for i, (a, b) in enumerate(pairs):
        comp = paired_comparisons(part, a, b)
        for _, r in comp.iterrows():
            ci = None if not np.isfinite(r["low"]) else r
            rows.append((rank[r["model"]], i, r["sparsity"], [
                r["model"], f"{method_label(a)} − {method_label(b)}", _pct(r["sparsity"]),
                str(int(r["n_pairs"])),
                "–" if not np.isfinite(r["mean_diff"]) else f"{100 * r['mean_diff']:+.1f}",
                "–" if ci is None else f"[{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]",
                "–" if not np.isfinite(r["t"]) else f"{r['t']:.2f}",
                _p_text(r["p"], r["note"]),
            ]))
    if not rows:
        return None
    table.rows = [row for *_, row in sorted(rows, key=lambda t: t[:3])]
    return table


def controls_section(runs, config: dict, figures: _Figures, model_order: list[str] | None
                     ) -> Section:
    """Winning tickets: the IMP ticket against the dense network and both controls."""
    from deepfake_lth.stats import winning_tickets, winning_up_to

    controls = list(config.get("controls") or [])
    control_runs = runs[runs["method"].str.startswith("control-")]
    named = control_runs["control_of"].dropna()
    criteria = (config.get("prune") or {}).get("criteria") or ["global"]
    imp = named.mode().iloc[0] if len(named) else f"imp-{criteria[0]}"
    section = Section(
        "controls", "Controls and winning tickets",
        Markup("The {} ticket at each round against two controls trained the same way at "
               "the same per-layer sparsity: its mask with freshly drawn random weights "
               "(random re-init) and a random mask of the same layer counts from θ0 (random "
               "mask). Rule: a ticket is a <em>winning ticket</em> at a sparsity when its mean "
               "test accuracy is within one standard error of the dense network's (or above) "
               "and above both controls. The standard error is over seeds (sd/√n) with two or "
               "more seeds, and the binomial √(p(1−p)/n<sub>test</sub>) of the dense test "
               "accuracy with one. &ldquo;Winning up to&rdquo; is the highest sparsity up to "
               "which every round is a winning ticket.").format(method_label(imp)),
        empty="no control runs yet (results/…/control-*/).",
    )
    for dataset in _datasets_with(runs, [f"control-{c}" for c in controls] + [imp]):
        part = runs[runs["dataset"] == dataset]
        methods = [imp] + [f"control-{c}" for c in controls]
        fig = curves_figure(runs, dataset, methods, f"{dataset}: ticket vs controls",
                            model_order, dense_se=True)
        figure = None if fig is None else figures.add(
            fig, f"controls_{_safe(dataset)}",
            f"{method_label(imp)} and the controls on {dataset} ({_seeds_words(part)}); the "
            "grey band is the dense accuracy ± 1 standard error.")
        wt = winning_tickets(part, imp, controls)
        labels = {c: method_label(f"control-{c}") for c in controls}
        table = Table(f"{dataset}: winning tickets",
                      ["Model", "Round", "Sparsity (%)", "Seeds", "Ticket acc (%)",
                       "Dense (%)", "± SE (pp)", "SE from"] + [labels[c] + " (%)" for c in controls]
                      + ["Within 1 SE", "Above controls", "Winning ticket"], text_columns=2)
        rank = {m: i for i, m in enumerate(_ordered(part["model"], model_order))}
        for _, r in wt.sort_values(["model", "sparsity"], key=lambda c: c.map(rank)
                                   if c.name == "model" else c).iterrows():
            table.rows.append(
                [r["model"], r["level"], _pct(r["sparsity"]), str(r["n_seeds"]),
                 _pct(r["ticket"]), _pct(r["dense"]), _pct(r["dense_se"], 2), r["se_kind"]]
                + [_pct(r[c]) for c in controls]
                + ["yes" if r["within_se"] else "no",
                   ("yes" if r["above_controls"] else "no") if r["controls_present"] else "–",
                   "yes" if r["winning"] else "no"])
        lines = []
        for (_, model), s in sorted(winning_up_to(wt).items(), key=lambda kv: rank[kv[0][1]]):
            lines.append(f"{model}: {method_label(imp)} is a winning ticket "
                         + ("at no round" if s is None else f"up to {100 * s:.1f} % sparsity"))
        section.parts.append(Part(dataset, figure, [table] if table.rows else [], lines))
    return section


def pai_section(runs, config: dict, figures: _Figures, model_order: list[str] | None
                ) -> Section:
    """SNIP and GraSP (pruning at initialization) against IMP and one-shot pruning."""
    pai = [m for m in ((config.get("prune_at_init") or {}).get("methods") or [])
           if m in PAI_LABELS]
    imp = _main_imp(runs)
    section = Section(
        "pai", "Pruning at initialization: SNIP and GraSP",
        "SNIP (Lee et al. 2019) keeps the weights of θ<sub>0</sub> with the largest "
        "connection sensitivity |g ⊙ w|; GraSP (Wang et al. 2020) removes those with the "
        "largest −θ ⊙ Hg (the weights whose removal reduces the gradient flow least), both "
        "scored on a few training batches and ranked over the whole network. The mask is "
        "fixed before any training and m ⊙ θ<sub>0</sub> is trained once, at the same "
        "sparsities as one-shot pruning. The paper names both as future comparisons (§VI).",
        empty="no SNIP or GraSP runs yet (results/…/snip/, results/…/grasp/).",
    )
    for dataset in _datasets_with(runs, pai):
        part = runs[runs["dataset"] == dataset]
        methods = [m for m in ("imp-global", "imp-local", "oneshot-global", "oneshot-local")
                   if m in set(part["method"])] + pai
        fig = curves_figure(runs, dataset, methods, f"{dataset}: pruning at initialization",
                            model_order)
        figure = None if fig is None else figures.add(
            fig, f"pai_{_safe(dataset)}",
            f"SNIP and GraSP against IMP and one-shot pruning on {dataset} "
            f"({_seeds_words(part)}).")
        pairs = [(imp, m) for m in pai if imp] + [("oneshot-global", m) for m in pai]
        table = _comparison_table(runs, dataset, pairs, f"{dataset}: paired differences",
                                  model_order)
        section.parts.append(Part(dataset, figure, [table] if table else []))
    return section


def step_size_section(runs, config: dict, figures: _Figures, model_order: list[str] | None
                      ) -> Section:
    """IMP at several pruning rates reaching the same final sparsity."""
    from deepfake_lth.plan import parse_step_size_method
    from deepfake_lth.stats import mean_ci

    rate = float((config.get("prune") or {}).get("rate", 0.2))
    variants = sorted((m for m in runs["method"].unique() if parse_step_size_method(m)),
                      key=_method_key)
    section = Section(
        "step-sizes", "Pruning step size",
        Markup("IMP removes a fixed share of the surviving weights per round: {} in the "
               "config (the paper's 20 %), and the other rates below, each run for as many "
               "rounds as it needs to reach the same final sparsity, "
               "⌈log(1 − s)/log(1 − rate)⌉. The paper suggests (§VI) that smaller steps of "
               "5–10 % may preserve rare features better.").format(f"{rate:g}"),
        empty="no IMP runs at other step sizes yet (results/…/imp-*-rate*/).",
    )
    for dataset in _datasets_with(runs, variants):
        part = runs[runs["dataset"] == dataset]
        criteria = sorted({parse_step_size_method(v)[0] for v in variants})
        methods = [f"imp-{c}" for c in criteria] + variants
        fig = curves_figure(runs, dataset, methods, f"{dataset}: pruning step size",
                            model_order)
        figure = None if fig is None else figures.add(
            fig, f"step_sizes_{_safe(dataset)}",
            f"IMP at several pruning rates on {dataset} ({_seeds_words(part)}).")
        table = Table(f"{dataset}: final level per rate",
                      ["Model", "Method", "Rate", "Rounds", "Final sparsity (%)", "Seeds",
                       "Test acc (%)", "95 % CI (%)"], text_columns=2,
                      note="The last round of each rate; rounds = the levels it trained.")
        for model in _ordered(part["model"], model_order):
            mp = part[part["model"] == model]
            for method in methods:
                g = mp[mp["method"] == method]
                if g.empty:
                    continue
                final = g.groupby("level")["sparsity"].mean().idxmax()
                at = g[g["level"] == final]
                ci = mean_ci(at["test_acc"])
                step = parse_step_size_method(method)
                table.rows.append([model, method_label(method), f"{step[1] if step else rate:g}",
                                   str(g["level"].nunique()), _pct(at["sparsity"].mean()),
                                   str(ci.n), _pct(ci.mean), _ci_text(ci)])
        pairs = [(v, f"imp-{parse_step_size_method(v)[0]}") for v in variants]
        comp = _comparison_table(runs, dataset, pairs, f"{dataset}: paired differences",
                                 model_order)
        section.parts.append(Part(dataset, figure, [table] + ([comp] if comp else [])))
    return section


def seeds_section(runs, config: dict, model_order: list[str] | None) -> Section:
    """Mean and 95 % t-interval over seeds of every network, and IMP vs one-shot tests."""
    from deepfake_lth.stats import summarize

    n = len(config.get("seeds") or [])
    section = Section(
        "seeds", "Seeds and confidence intervals",
        f"The config runs {n} seeds (each its own θ<sub>0</sub>, data order and "
        "controls; the split is shared). Means are over seeds, with two-sided 95 % "
        "t-intervals (n − 1 degrees of freedom, scale sd/√n); the bands in the figures are "
        "the same intervals. IMP and one-shot pruning are compared by a paired t-test over "
        "seeds at each sparsity both reach.",
        empty="no trained networks yet.",
    )
    for dataset in sorted(runs["dataset"].unique()):
        part = runs[runs["dataset"] == dataset]
        summary = summarize(part)
        rank = {m: i for i, m in enumerate(_ordered(part["model"], model_order))}
        summary = summary.assign(_r=summary["model"].map(rank),
                                 _m=summary["method"].map(_method_key))
        table = Table(f"{dataset}: test accuracy over seeds",
                      ["Model", "Method", "Sparsity (%)", "Seeds", "Mean (%)",
                       "95 % CI (%)", "sd (pp)"], text_columns=2)
        for _, r in summary.sort_values(["_r", "_m", "sparsity"]).iterrows():
            table.rows.append([r["model"], method_label(r["method"]), _pct(r["sparsity"]),
                               str(r["n"]), _pct(r["mean"]), _ci_text(r),
                               _pct(r["sd"])])
        criteria = [c for c in ("global", "local")
                    if {f"imp-{c}", f"oneshot-{c}"} <= set(part["method"])]
        comp = _comparison_table(runs, dataset, [(f"imp-{c}", f"oneshot-{c}") for c in criteria],
                                 f"{dataset}: IMP vs one-shot", model_order)
        section.parts.append(Part(dataset, None, [table] + ([comp] if comp else [])))
    return section


def _collect_csvs(results_dir: str | Path, config: dict | None, kind: str, pattern: str,
                  required: set[str], columns: list[str]):
    """Every results/{kind}/{dataset}/{model}/seed{s}/… CSV matching ``pattern`` that the
    config asks for, as one DataFrame with dataset, model, seed and group (the file's stem);
    an unreadable file or one without the ``required`` columns is skipped with a warning."""
    import pandas as pd

    datasets, models, seeds = _wanted(config or {})
    frames = []
    base = Path(results_dir) / kind
    for path in sorted(base.glob(pattern)):
        dataset, model, seed_dir, _ = path.relative_to(base).parts
        seed = _seed(seed_dir)
        if seed is None or (datasets and dataset not in datasets):
            continue
        if (models and model not in models) or (seeds and seed not in seeds):
            continue
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        if not required <= set(df.columns):
            log.warning("skipping %s: not a %s table", path, kind)
            continue
        frames.append(df.assign(dataset=dataset, model=model, seed=seed, group=path.stem))
    if not frames:
        return pd.DataFrame(columns=["dataset", "model", "seed", "group", *columns])
    return pd.concat(frames, ignore_index=True)


def collect_separability(results_dir: str | Path, config: dict | None = None):
    """Every results/separability/{dataset}/{model}/seed{s}/{method}.csv as one DataFrame."""
    columns = ["level", "sparsity", "probe_acc", "probe_acc_std", "silhouette"]
    return _collect_csvs(results_dir, config, "separability", "*/*/seed*/*.csv",
                         {"sparsity", "probe_acc", "silhouette"}, columns)


def separability_section(results_dir: Path, config: dict, figures: _Figures) -> Section:
    """Linear-probe accuracy and silhouette of the penultimate features vs sparsity."""
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure

    from deepfake_lth.stats import ci_bounds, mean_ci

    data = collect_separability(results_dir, config)
    section = Section(
        "separability", "Model separability",
        "How well the penultimate features of the dense network and of each ticket separate "
        "real from fake test faces, after the &ldquo;model separability&rdquo; of the "
        "related work on pre-trained models for deepfake detection: the accuracy of a "
        "linear probe (logistic regression on standardised features, 5-fold stratified "
        "cross-validation) and the silhouette score of the real/fake labels (1: tight, "
        "distant classes; 0: overlapping).",
        empty="no separability results yet (results/separability/).",
    )
    for (dataset, model), df in data.groupby(["dataset", "model"], sort=True):
        df = df.assign(sparsity_pct=100 * df["sparsity"], probe_pct=100 * df["probe_acc"],
                       Method=df["group"].map(method_label))
        hue_order = [method_label(m) for m in sorted(df["group"].unique(), key=_method_key)]
        several = df["seed"].nunique() > 1
        with _style():
            fig = MplFigure(figsize=(8.4, 3.2), layout="constrained")
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
            fig, f"separability_{_safe(dataset)}_{_safe(model)}",
            f"Linear-probe accuracy and silhouette of {model}'s penultimate features on the "
            f"{dataset} test faces vs sparsity ({_seeds_words(df)}).")
        table = Table(f"{dataset} / {model}",
                      ["Method", "Level", "Sparsity (%)", "Seeds", "Probe acc (%)",
                       "95 % CI (%)", "± sd over folds (pp)", "Silhouette"], text_columns=2)
        for (group, level), g in sorted(df.groupby(["group", "level"]),
                                        key=lambda kv: (_method_key(kv[0][0]),
                                                        kv[1]["sparsity"].mean())):
            ci = mean_ci(g["probe_acc"])
            table.rows.append([method_label(group), str(level), _pct(g["sparsity"].mean()),
                               str(ci.n), _pct(ci.mean), _ci_text(ci),
                               _mean_text(g["probe_acc_std"]),
                               _mean_text(g["silhouette"], 1.0, 3)])
        section.parts.append(Part(f"{dataset} / {model}", figure, [table]))
    return section


def collect_latency(results_dir: str | Path, config: dict | None = None):
    """Every results/latency/{dataset}/{model}/seed{s}/latency.csv as one DataFrame."""
    from deepfake_lth.latency import COLUMNS

    return _collect_csvs(results_dir, config, "latency", "*/*/seed*/latency.csv", set(COLUMNS),
                         COLUMNS)


def latency_section(results_dir: Path, config: dict) -> Section:
    """CPU latency of the dense network and the tickets, per dataset and model."""
    data = collect_latency(results_dir, config)
    threads = sorted({int(t) for t in data["threads"]}) if not data.empty else []
    section = Section(
        "latency", "Latency of the tickets on CPU",
        "Median time of one forward pass on CPU "
        f"({', '.join(map(str, threads)) or 'fixed'} torch thread(s)) of the dense network "
        "and of each ticket, all timed side by side in one job (round-robin, so other load "
        "falls on all alike); the speed-up is the dense median over the ticket's. An "
        "unstructured ticket is a masked dense network and does the same work as the dense "
        "one; a structured ticket is compacted first (its pruned channels removed), as it "
        "would be deployed. MMACs: multiply-accumulates of one image.",
        empty="no latency results yet (results/latency/).",
    )
    for (dataset, model), df in data.groupby(["dataset", "model"], sort=True):
        batches = sorted({int(b) for b in df["batch"]})
        table = Table(
            f"{dataset} / {model}: CPU latency",
            ["Method", "Level", "Sparsity (%)", "Channels pruned (%)", "Params", "MMACs",
             *[f"batch {b}: ms (speed-up)" for b in batches]],
            text_columns=2,
            note=(f"Times and speed-ups are means over {df['seed'].nunique()} seeds of each "
                  "seed's median." if df["seed"].nunique() > 1 else "One seed."),
        )
        levels = df.groupby(["method", "level"], sort=False)
        order = sorted(levels.groups, key=lambda key: (
            key[0] != "dense", _method_key(key[0]), float(levels.get_group(key)["sparsity"].mean())))
        for method, level in order:
            g = levels.get_group((method, level))
            cells = [method_label(method), str(level), _pct(g["sparsity"].mean()),
                     _pct(g["channel_sparsity"].mean()), _int(g["params"].mean()),
                     f"{g['macs'].mean() / 1e6:.2f}"]
            for b in batches:
                gb = g[g["batch"] == b]
                cells.append("–" if gb.empty else
                             f"{gb['median_ms'].mean():.2f} ({gb['speedup_vs_dense'].mean():.2f}×)")
            table.rows.append(cells)
        section.parts.append(Part(f"{dataset} / {model}", None, [table]))
    return section


def claims_rows(runs, transfers, gradcam_runs: list[GradcamRun], config: dict) -> list:
    """The paper's claims with this run's verdicts (see deepfake_lth.stats)."""
    import pandas as pd

    from deepfake_lth.stats import evaluate_claims

    frames = [r.delta.assign(dataset=r.dataset, model=r.model, group=r.method, seed=r.seed)
              for r in gradcam_runs if r.delta is not None and not r.delta.empty]
    deltas = pd.concat(frames, ignore_index=True) if frames else None
    if deltas is not None and "row" not in deltas:
        deltas = deltas.assign(row=deltas.groupby(["dataset", "model", "group", "seed",
                                                   "sparsity"]).cumcount())
    return evaluate_claims(runs, transfers, deltas, config)


def enabled_sections(config: dict) -> dict[str, bool]:
    """Which sections beyond the paper the config asks for."""
    return {
        "controls": bool(config.get("controls")),
        "pai": bool((config.get("prune_at_init") or {}).get("methods")),
        "step-sizes": bool((config.get("step_sizes") or {}).get("rates")),
        "seeds": len(config.get("seeds") or []) > 1,
        "separability": bool((config.get("separability") or {}).get("methods")),
        "latency": bool((config.get("latency") or {}).get("methods")),
    }


# --------------------------------------------------------------------------- provenance


def package_versions() -> list[tuple[str, str]]:
    from importlib import metadata

    out = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    out.append(("platform", platform.platform()))
    return out


def dataset_tables(results_dir: Path, datasets: list[str]) -> tuple[Table, Table]:
    """Faces and videos per split, and extraction-log status counts, per dataset."""
    import pandas as pd

    sizes = Table("Dataset sizes", ["Dataset", "Split", "Faces", "Real faces", "Fake faces",
                                    "Videos"], text_columns=2)
    statuses = Table("Extraction log", ["Dataset", "Status", "Sources", "Faces"],
                     text_columns=2)
    for dataset in datasets:
        faces = results_dir / dataset / "faces"
        manifest = faces / "manifest.csv"
        if manifest.is_file():
            try:
                m = pd.read_csv(manifest, dtype={"video_id": str})
                for split in ("train", "val", "test"):
                    part = m[m["split"] == split]
                    sizes.rows.append([
                        dataset, split, f"{len(part):,}", f"{int((part['label'] == 0).sum()):,}",
                        f"{int((part['label'] == 1).sum()):,}",
                        f"{part['video_id'].nunique():,}",
                    ])
            except (OSError, ValueError, KeyError) as exc:
                sizes.rows.append([dataset, f"unreadable manifest ({exc})", "", "", "", ""])
        else:
            sizes.rows.append([dataset, NOT_RUN, "", "", "", ""])
        logfile = faces / "extraction_log.csv"
        if logfile.is_file():
            try:
                lg = pd.read_csv(logfile)
                faces_col = lg["faces"] if "faces" in lg else pd.Series(0, index=lg.index)
                for status, g in lg.groupby("status", sort=True):
                    statuses.rows.append([dataset, str(status), f"{len(g):,}",
                                          f"{int(faces_col[g.index].fillna(0).sum()):,}"])
            except (OSError, ValueError, KeyError) as exc:
                statuses.rows.append([dataset, f"unreadable log ({exc})", "", ""])
        else:
            statuses.rows.append([dataset, NOT_RUN, "", ""])
    return sizes, statuses


def benchmark_table(benchmarks_dir: str | Path | None) -> Table | None:
    """Wall time per rule from Snakemake benchmark files (tab-separated, column ``s``); the
    rule is the first folder under ``benchmarks_dir`` (the file's stem when it lies at the top)."""
    import pandas as pd

    if not benchmarks_dir or not Path(benchmarks_dir).is_dir():
        return None
    base = Path(benchmarks_dir)
    times: dict[str, list[float]] = {}
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base).parts
        rule = rel[0] if len(rel) > 1 else path.stem
        try:
            df = pd.read_csv(path, sep="\t")
        except (OSError, ValueError, pd.errors.ParserError):
            continue
        if "s" not in df:
            continue
        times.setdefault(rule, []).extend(pd.to_numeric(df["s"], errors="coerce").dropna())
    if not times:
        return None
    table = Table("Wall time per rule", ["Rule", "Jobs", "Total (s)", "Mean (s)", "Max (s)"],
                  note="From Snakemake benchmark files; repeated measurements count as jobs.")
    for rule, ts in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        table.rows.append([rule, str(len(ts)), f"{sum(ts):.1f}", f"{np.mean(ts):.1f}",
                           f"{max(ts):.1f}"])
    return table


# --------------------------------------------------------------------------- the report


def _config_yaml(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)


def build_report(
    results_dir: str | Path,
    config: dict,
    out_path: str | Path,
    benchmarks_dir: str | Path | None = None,
    figures_dir: str | Path | None = None,
) -> Path:
    """Write the study's report to ``out_path``; figures also as PNG in ``figures_dir``."""
    import jinja2

    results_dir = Path(results_dir)
    config = dict(config or {})
    figures = _Figures(figures_dir)
    runs, transfers = collect_metrics(results_dir, config)
    gradcam_runs = collect_gradcam(results_dir, config)

    configured = list(config["datasets"]) if isinstance(config.get("datasets"), dict) else []
    datasets = list(dict.fromkeys(configured + sorted(runs["dataset"].unique())))

    model_order = list(config["models"]) if isinstance(config.get("models"), dict) else None
    enabled = enabled_sections(config)
    own = set()  # methods plotted in a section of their own, not in Fig. 2
    if enabled["pai"]:
        own |= set(PAI_LABELS)
    if enabled["step-sizes"]:
        from deepfake_lth.plan import parse_step_size_method

        own |= {m for m in runs["method"].unique() if parse_step_size_method(m)}
    accuracy = accuracy_figures(runs, figures, model_order, own) if not runs.empty else {}
    tables = results_tables(runs, model_order) if not runs.empty else {}
    pruning = [
        {"dataset": d, "figure": accuracy.get(d), "table": tables.get(d)} for d in datasets
    ]

    pairs = (config.get("transfer") or {}).get("pairs") or []
    transfer = transfer_tables(transfers, config) if not transfers.empty else []
    transfer_state = "ok" if transfer else ("pending" if pairs else "off")

    gradcam = []
    for key in sorted({(r.dataset, r.model) for r in gradcam_runs}):
        part = [r for r in gradcam_runs if (r.dataset, r.model) == key]
        grid = gradcam_grid(part, *key, figures)
        delta_fig, delta_table = delta_figure(part, *key, figures)
        gradcam.append({"dataset": key[0], "model": key[1], "grid": grid,
                        "delta": delta_fig, "table": delta_table})
    targets = sorted({TARGET_WORDS.get(str(r.npz["target"]), str(r.npz["target"]))
                      for r in gradcam_runs if r.npz is not None and "target" in r.npz})

    extras: list[Section] = []
    if enabled["controls"]:
        extras.append(controls_section(runs, config, figures, model_order))
    if enabled["pai"]:
        extras.append(pai_section(runs, config, figures, model_order))
    if enabled["step-sizes"]:
        extras.append(step_size_section(runs, config, figures, model_order))
    if enabled["seeds"]:
        extras.append(seeds_section(runs, config, model_order))
    if enabled["separability"]:
        extras.append(separability_section(results_dir, config, figures))
    if enabled["latency"]:
        extras.append(latency_section(results_dir, config))
    for number, section in enumerate(extras, start=5):
        section.number = number
    claims = claims_rows(runs, transfers, gradcam_runs, config)

    devices = Counter(d for d in runs["device"].tolist() + transfers["device"].tolist() if d)
    sizes, statuses = dataset_tables(results_dir, datasets)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("deepfake_lth", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(
        title=(config.get("report") or {}).get("title") or DEFAULT_TITLE,
        synthetic_notice=bool(config.get("synthetic_notice")),
        synthetic_sentence=SYNTHETIC_SENTENCE,
        not_run=NOT_RUN,
        pruning=pruning,
        transfer=transfer,
        transfer_state=transfer_state,
        gradcam=gradcam,
        gradcam_targets=targets,
        config_yaml=_config_yaml(config),
        versions=package_versions(),
        devices=sorted(devices.items()),
        sizes=sizes,
        statuses=statuses,
        benchmarks=benchmark_table(benchmarks_dir),
        n_runs=len(runs),
        n_transfers=len(transfers),
        extras=extras,
        claims=claims,
        claims_number=5 + len(extras),
        provenance_number=6 + len(extras),
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out_path)
    log.info("wrote %s (%d runs, %d transfer runs, %d Grad-CAM folders)",
             out_path, len(runs), len(transfers), len(gradcam_runs))
    return out_path


def _load_config(text: str) -> dict:
    """``--config-json``: a JSON object, or the path of a JSON (or YAML) file holding one."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UserError(f"--config-json is not valid JSON ({exc})") from None
    else:
        path = Path(text)
        if not path.is_file():
            raise UserError(f"--config-json: {text!r} is neither a JSON object nor a file")
        import yaml

        try:
            data = yaml.safe_load(path.read_text())  # JSON is YAML
        except yaml.YAMLError as exc:
            raise UserError(f"--config-json: {path} is not valid JSON/YAML ({exc})") from None
    if not isinstance(data, dict):
        raise UserError("--config-json must hold a JSON object (the config as run)")
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, help="results folder")
    parser.add_argument("--config-json", required=True,
                        help="the config as run: a JSON object or a JSON file")
    parser.add_argument("--benchmarks", default=None, help="Snakemake benchmark folder")
    parser.add_argument("--out", required=True, help="HTML file to write")
    parser.add_argument("--figures", default=None, help="also write each figure as PNG here")


def run(args: argparse.Namespace) -> int:
    results = Path(args.results)
    if not results.is_dir():
        raise UserError(f"--results {results} is not a folder: run the workflow first")
    build_report(results, _load_config(args.config_json), args.out,
                 benchmarks_dir=args.benchmarks, figures_dir=args.figures)
    return 0
