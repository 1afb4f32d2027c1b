"""The "Compression" section: accuracy against model bytes and CPU latency for the dense
network, its INT8 model, and the tickets (sparse storage, structured, distilled) with theirs.

Every point is measured: the quantize stage (:mod:`deepfake_lth.deploy.quantize`) writes, for
each level it quantized, the test-split scores of the fp32 ONNX model and of the INT8 one
through onnxruntime, the file sizes and the latencies of both, timed side by side. The fp32
point's size is the level's ticket file (only the surviving weights, ``deepfake-lth export``),
the INT8 point's the INT8 ONNX file. A point is on the Pareto front when no other point of the
same dataset and model is at least as small (or fast) and at least as accurate, and better in
one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_lth.report.collect import names_run, seed_of, wanted
from deepfake_lth.report.common import (
    FIGURE_WIDTH,
    Figures,
    Part,
    Section,
    Table,
    method_key,
    method_label,
    pct_text,
    safe_name,
    style,
)

COLUMNS = ["dataset", "model", "seed", "method", "level", "form", "sparsity", "acc", "auc",
           "video_acc", "bytes", "ms_1", "ms_32", "reduce_range"]


def pareto_front(cost, acc) -> np.ndarray:
    """Boolean mask of the points no other point dominates (cost ≤, acc ≥, one strictly)."""
    cost, acc = np.asarray(cost, float), np.asarray(acc, float)
    keep = np.isfinite(cost) & np.isfinite(acc)
    front = np.zeros(len(cost), dtype=bool)
    for i in np.flatnonzero(keep):
        others = keep & (cost <= cost[i]) & (acc >= acc[i]) & ((cost < cost[i]) | (acc > acc[i]))
        front[i] = not others.any()
    return front


def _latency(rows: list[dict], batch: int, key: str) -> float:
    return next((float(r[key]) for r in rows if int(r["batch"]) == batch), np.nan)


def points_of(m: dict[str, Any]) -> list[dict[str, Any]]:
    """The fp32 and INT8 points of one int8/metrics.json."""
    base = {k: m.get(k) for k in ("dataset", "model", "seed", "method", "level", "sparsity")}
    base["reduce_range"] = (m.get("quantization") or {}).get("reduce_range")
    lat = m.get("latency") or []
    out = []
    for form, size, key in (("fp32", m["bytes"]["ticket"], "fp32_ms"),
                            ("INT8", m["bytes"]["onnx_int8"], "int8_ms")):
        scores = m["fp32" if form == "fp32" else "int8"]
        out.append({**base, "form": form, "acc": scores["acc"], "auc": scores["auc"],
                    "video_acc": scores.get("video_acc"), "bytes": size,
                    "ms_1": _latency(lat, 1, key), "ms_32": _latency(lat, 32, key)})
    return out


def collect_compression(results_dir: str | Path, config: dict):
    """Every results/{dataset}/{model}/seed{s}/…/int8/metrics.json the config asks for, as
    points (two per file: fp32 and INT8)."""
    import pandas as pd

    chosen = wanted(config or {})
    rows = []
    for path in sorted(Path(results_dir).glob("*/*/seed*/**/int8/metrics.json")):
        dataset, model, seed_dir = path.relative_to(results_dir).parts[:3]
        seed = seed_of(seed_dir)
        if seed is None or not names_run(chosen, dataset, model, seed):
            continue
        try:
            rows += points_of(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return pd.DataFrame(rows, columns=COLUMNS)


def _name(method: str, level: str, form: str) -> str:
    if method == "dense":
        return f"Dense {form}"
    return f"{method_label(method)} {level.replace('round', 'r')} {form}"


def _figure(df, dataset: str, model: str, figures: Figures):
    import matplotlib.pyplot as plt

    panels = [("bytes", "model file (kB, log)", 1e-3), ("ms_1", "CPU latency, batch 1 (ms)", 1.0)]
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 3.6))
        for ax, (col, xlabel, scale) in zip(axes, panels, strict=True):
            for (method, form), g in df.groupby(["method", "form"], sort=False):
                ax.scatter(g[col] * scale, 100 * g["acc"], marker="o" if form == "fp32" else "s",
                           label=f"{method_label(method)} {form}", s=40)
            front = df[pareto_front(df[col], df["acc"])].sort_values(col)
            ax.step(front[col] * scale, 100 * front["acc"], where="post", color="black",
                    lw=1, ls="--", label="Pareto front")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("test accuracy (%)")
            if col == "bytes":
                ax.set_xscale("log")
        axes[-1].legend(fontsize=7, loc="best")
        fig.suptitle(f"{dataset} / {model}: accuracy against size and latency")
        out = figures.add(fig, safe_name(f"compression-{dataset}-{model}"),
                          "Each point measured on the test split through onnxruntime; "
                          "dashed: the Pareto front (nothing smaller or faster is as accurate).")
        plt.close(fig)
    return out


def compression_section(results_dir: Path, config: dict, figures: Figures) -> Section:
    data = collect_compression(results_dir, config)
    rr = sorted({bool(x) for x in data["reduce_range"].dropna()}) if not data.empty else []
    section = Section(
        "compression", "Compression: INT8 quantization, tickets and distillation",
        "Test accuracy and ROC AUC against the deployed file's size and CPU latency (median "
        "of one forward pass, one onnxruntime thread) of the dense network, its tickets "
        "(stored sparse: only the surviving weights), structured tickets (compacted) and "
        "distilled (KD) tickets, each also as INT8: post-training static quantization with "
        "ONNX Runtime (QDQ, per-channel int8 weights, uint8 activations calibrated on "
        "training faces)" + (f"; reduce_range {'on (no VNNI)' if rr == [True] else 'off'}"
                             if len(rr) == 1 else "") + ". fp32 and INT8 are scored by the "
        "runtime that serves them, not assumed equal.",
        empty="no INT8 results yet (compression.models; results/…/int8/).",
    )
    for (dataset, model), df in data.groupby(["dataset", "model"], sort=True):
        df = df.groupby(["method", "level", "form"], as_index=False, sort=False).mean(
            numeric_only=True)
        df = df.sort_values(["method", "sparsity", "form"],
                            key=lambda c: c.map(method_key) if c.name == "method" else c)
        front = pareto_front(df["bytes"], df["acc"]) | pareto_front(df["ms_1"], df["acc"])
        dense = df[(df["method"] == "dense") & (df["form"] == "fp32")]
        ref = float(dense["bytes"].iloc[0]) if len(dense) else np.nan
        table = Table(f"{dataset} / {model}: accuracy, size, latency",
                      ["Network", "Sparsity (%)", "Test acc (%)", "AUC", "kB", "× dense fp32",
                       "ms batch 1", "ms batch 32", "Pareto"], text_columns=1)
        for (_, r), on in zip(df.iterrows(), front, strict=True):
            table.rows.append([_name(r["method"], r["level"], r["form"]),
                               pct_text(r["sparsity"]), pct_text(r["acc"]),
                               "–" if not np.isfinite(r["auc"]) else f"{r['auc']:.3f}",
                               f"{r['bytes'] / 1e3:,.1f}", f"{r['bytes'] / ref:.2f}",
                               f"{r['ms_1']:.3f}", "–" if not np.isfinite(r["ms_32"]) else
                               f"{r['ms_32']:.2f}", "✓" if on else ""])
        section.parts.append(Part(f"{dataset} / {model}", _figure(df, dataset, model, figures),
                                  [table]))
    return section



