"""The "Compression" section: test accuracy and AUC against the bytes and the CPU latency of
every artifact the quantize stage writes, for the dense network and the configured tickets
(IMP, structured, distilled, …), each as fp32 and as INT8.

Every figure is measured on the artifact itself: the quantize stage
(:mod:`deepfake_lth.deploy.quantize`) scores the test split through onnxruntime with each
served file (``model.onnxz``, ``model.int8.onnxz``: sparse, entropy-coded ONNX), times the
two side by side and records which one it serves and why (INT8 only where it is measurably
faster). A row's bytes and its latency are those of the same file. A point is on the Pareto
front when no other point of the same dataset and model is at most as large, at most as
slow and at least as good (AUC), and better in one of the three. The "compounded" table
puts a ticket's INT8 .onnxz (sparsity × INT8 × coding) against the dense network's plain
fp32 ONNX file.
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
    method_label,
    pct_text,
    safe_name,
    style,
)

COLUMNS = ["dataset", "model", "seed", "method", "level", "form", "sparsity", "acc", "auc",
           "video_acc", "bytes", "plain_bytes", "ms_1", "ms_32", "reduce_range", "served",
           "verdict", "threads", "reason"]
FORMS = (("fp32", "onnxz_fp32", "onnx_fp32", "fp32_ms"),
         ("INT8", "onnxz_int8", "onnx_int8", "int8_ms"))


def pareto_front(cost, acc) -> np.ndarray:
    """Boolean mask of the points no other point dominates: ``cost`` (one column per cost, or
    one cost) at most as high in every column, ``acc`` at least as high, one strictly."""
    cost, acc = np.asarray(cost, float), np.asarray(acc, float)
    cost = cost.reshape(len(acc), -1)
    keep = np.isfinite(cost).all(axis=1) & np.isfinite(acc)
    front = np.zeros(len(acc), dtype=bool)
    for i in np.flatnonzero(keep):
        le = (cost <= cost[i]).all(axis=1)
        lt = (cost < cost[i]).any(axis=1)
        others = keep & le & (acc >= acc[i]) & (lt | (acc > acc[i]))
        front[i] = not others.any()
    return front


def _latency(rows: list[dict], batch: int, key: str) -> Any:
    return next((r.get(key) for r in rows if int(r["batch"]) == batch), None)


def points_of(m: dict[str, Any]) -> list[dict[str, Any]]:
    """The fp32 and INT8 points of one int8/metrics.json: each its served file's bytes (the
    sparse ticket file and the INT8 ONNX file in metrics written before .onnxz), latency and
    test scores."""
    base = {k: m.get(k) for k in ("dataset", "model", "seed", "method", "level", "sparsity")}
    base["reduce_range"] = (m.get("quantization") or {}).get("reduce_range")
    lat = m.get("latency") or []
    serve = m.get("serve") or {"form": "int8"}
    b = m["bytes"]
    out = []
    for form, coded, plain, key in FORMS:
        scores = m[form.lower()]
        size = b.get(coded) or (b["ticket"] if form == "fp32" else b["onnx_int8"])
        out.append({**base, "form": form, "acc": scores["acc"], "auc": scores["auc"],
                    "video_acc": scores.get("video_acc"), "bytes": size,
                    "plain_bytes": b.get(plain),
                    "ms_1": _latency(lat, 1, key), "ms_32": _latency(lat, 32, key),
                    "served": serve.get("form") == form.lower(),
                    "verdict": _latency(lat, 1, "verdict") if form == "INT8" else None,
                    "threads": _latency(lat, 1, "threads"),
                    "reason": serve.get("reason")})
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
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("ms_1", "ms_32", "plain_bytes", "threads"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def _name(method: str, level: str) -> str:
    if method == "dense":
        return "Dense"
    return f"{method_label(method)} {level.replace('round', 'r')}"


def _served_text(share: float) -> str:
    return "✓" if share >= 1 else "" if share <= 0 else f"{share:.0%} of seeds"


def _merge_seeds(df):
    """One row per method, level and form: the mean over seeds (``served``: the share of
    seeds that serve it), ranked by AUC."""
    df = df.assign(served=df["served"].astype(float))
    text = df.groupby(["method", "level", "form"], sort=False)[["verdict", "reason"]].first()
    num = df.groupby(["method", "level", "form"], sort=False).mean(numeric_only=True)
    out = num.join(text).reset_index()
    return out.sort_values(["auc", "acc"], ascending=False, na_position="last",
                           kind="stable").reset_index(drop=True)


def _main_table(df, dataset: str, model: str, front) -> Table:
    dense = df[(df["method"] == "dense") & (df["form"] == "fp32")]
    ref = float(dense["plain_bytes"].iloc[0]) if len(dense) else np.nan
    table = Table(f"{dataset} / {model}: every artifact, ranked by test AUC",
                  ["Network", "Served", "Sparsity (%)", "Test acc (%)", "AUC", "kB",
                   "× dense fp32", "ms batch 1", "ms batch 32", "INT8 vs fp32", "Pareto"],
                  note="kB: the served file (.onnxz: only the nonzero weights, zstd-coded); "
                  "× dense fp32: against the dense network's plain fp32 ONNX file; INT8 vs "
                  "fp32: paired rounds at batch 1, a difference within the 95 % interval is "
                  "no finding.", text_columns=2)
    for (_, r), on in zip(df.iterrows(), front, strict=True):
        table.rows.append([
            f"{_name(r['method'], r['level'])} {r['form']}", _served_text(r["served"]),
            pct_text(r["sparsity"]), pct_text(r["acc"]),
            "–" if not np.isfinite(r["auc"]) else f"{r['auc']:.3f}",
            f"{r['bytes'] / 1e3:,.1f}", "–" if not np.isfinite(ref) else f"{r['bytes'] / ref:.3f}",
            "–" if not np.isfinite(r["ms_1"]) else f"{r['ms_1']:.3f}",
            "–" if not np.isfinite(r["ms_32"]) else f"{r['ms_32']:.2f}",
            r["verdict"] if isinstance(r["verdict"], str) else "", "✓" if on else ""])
    return table


def _compounded_table(df, dataset: str, model: str) -> Table | None:
    """Per ticket: dense fp32 ONNX → the ticket's fp32 .onnxz → its INT8 ONNX → its INT8
    .onnxz (sparsity × INT8 × coding), in bytes."""
    dense = df[(df["method"] == "dense") & (df["form"] == "fp32")]
    if dense.empty or not np.isfinite(dense["plain_bytes"].iloc[0]):
        return None
    ref = float(dense["plain_bytes"].iloc[0])
    table = Table(f"{dataset} / {model}: compounded, ticket + INT8 + coding",
                  ["Network", "Sparsity (%)", "dense fp32 ONNX kB", "fp32 .onnxz kB",
                   "INT8 ONNX kB", "INT8 .onnxz kB", "× dense fp32", "INT8 AUC"],
                  note="fp32 .onnxz: sparsity and coding; INT8 ONNX: quantization alone "
                  "(every weight stored); INT8 .onnxz: the three together.", text_columns=1)
    for (method, level), g in df.groupby(["method", "level"], sort=False):
        fp32, int8 = g[g["form"] == "fp32"], g[g["form"] == "INT8"]
        if fp32.empty or int8.empty:
            continue
        f, q = fp32.iloc[0], int8.iloc[0]
        table.rows.append([
            _name(method, level), pct_text(f["sparsity"]), f"{ref / 1e3:,.1f}",
            f"{f['bytes'] / 1e3:,.1f}",
            "–" if not np.isfinite(q["plain_bytes"]) else f"{q['plain_bytes'] / 1e3:,.1f}",
            f"{q['bytes'] / 1e3:,.1f}", f"{q['bytes'] / ref:.3f}",
            "–" if not np.isfinite(q["auc"]) else f"{q['auc']:.3f}"])
    table.rows.sort(key=lambda r: (r[0] != "Dense", r[1]))
    return table


def _figure(df, front, dataset: str, model: str, figures: Figures):
    import matplotlib.pyplot as plt

    panels = [("bytes", "served file (kB, log)", 1e-3), ("ms_1", "CPU latency, batch 1 (ms)", 1.0)]
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 3.6))
        colors = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(df["method"]))}
        for ax, (col, xlabel, scale) in zip(axes, panels, strict=True):
            for (method, form), g in df.groupby(["method", "form"], sort=False):
                served = g["served"] > 0
                for mask, fill in ((served, colors[method]), (~served, "none")):
                    if mask.any():
                        ax.scatter(g.loc[mask, col] * scale, g.loc[mask, "auc"],
                                   marker="o" if form == "fp32" else "s", s=40,
                                   facecolors=fill, edgecolors=colors[method], lw=1.2,
                                   label=f"{method_label(method)} {form}"
                                   + ("" if fill != "none" else " (not served)"))
            on = df[front]
            ax.scatter(on[col] * scale, on["auc"], s=130, facecolors="none",
                       edgecolors="black", lw=1, label="Pareto front (size, latency, AUC)")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("test AUC")
            if col == "bytes":
                ax.set_xscale("log")
        handles, labels = axes[-1].get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        axes[-1].legend(unique.values(), unique.keys(), fontsize=6, loc="best")
        fig.suptitle(f"{dataset} / {model}: AUC against size and latency of the same file")
        out = figures.add(fig, safe_name(f"compression-{dataset}-{model}"),
                          "Each point one served file, scored on the test split and timed "
                          "through onnxruntime; hollow: measured but not served (INT8 not "
                          "faster, or fp32 where INT8 is); ringed: the Pareto front over "
                          "bytes, latency and AUC together.")
        plt.close(fig)
    return out


def _intro(data) -> str:
    rr = sorted({bool(x) for x in data["reduce_range"].dropna()}) if not data.empty else []
    threads = sorted({int(t) for t in data["threads"].dropna()}) if not data.empty else []
    return (
        "Test accuracy and ROC AUC of every artifact against its size and CPU latency: the "
        "dense network, its tickets (IMP, structured and compacted, distilled, …), each as "
        "fp32 and as INT8 (post-training static quantization with ONNX Runtime: QDQ, "
        "per-channel int8 weights, uint8 activations calibrated on training faces"
        + (f"; reduce_range {'on (no VNNI)' if rr == [True] else 'off'}" if len(rr) == 1
           else "") + "). Every file is stored sparse and entropy-coded (.onnxz: a bit per "
        "weight, the nonzero values, zstd), so a ticket's INT8 file holds only its "
        "surviving weights. Latency: median of one forward pass through onnxruntime on "
        + (" / ".join(str(t) for t in threads) if threads else "?") + " intra-op thread"
        + ("" if threads == [1] else "s") + " (as the stage ran), fp32 and INT8 timed side "
        "by side. INT8 is served only where it is measurably faster than fp32 (95 % "
        "interval of the paired ratio below 1 at batch 1, and not slower at batch 32); "
        "elsewhere fp32 is served, and each model's lines below say why. Every figure is "
        "scored by the runtime that serves it, not assumed equal.")


def compression_section(results_dir: Path, config: dict, figures: Figures) -> Section:
    data = collect_compression(results_dir, config)
    section = Section(
        "compression", "Compression: sparse storage, INT8 where it is faster, tickets",
        _intro(data), empty="no INT8 results yet (compression.models; results/…/int8/).")
    for (dataset, model), raw in data.groupby(["dataset", "model"], sort=True):
        df = _merge_seeds(raw)
        front = pareto_front(df[["bytes", "ms_1"]].to_numpy(float), df["auc"])
        tables = [_main_table(df, dataset, model, front)]
        compounded = _compounded_table(df, dataset, model)
        if compounded is not None:
            tables.append(compounded)
        reasons = df[df["served"] > 0].drop_duplicates(["method", "level"])
        lines = [f"{_name(r['method'], r['level'])} serves {r['form']}: {r['reason']}"
                 for _, r in reasons.iterrows() if r["reason"]]
        section.parts.append(Part(f"{dataset} / {model}",
                                  _figure(df, front, dataset, model, figures), tables,
                                  lines=lines))
    return section


def section(ctx) -> Section | None:
    """Shown when the config compresses a model (compression.models)."""
    if not (ctx.config.get("compression") or {}).get("models"):
        return None
    return compression_section(ctx.results_dir, ctx.config, ctx.figures)
