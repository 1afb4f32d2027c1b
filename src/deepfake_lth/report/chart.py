"""Accuracy-vs-sparsity charts as inline SVG, interactive without any library: a panel per
model, the x-axis the log of the fraction of weights remaining (so the late rounds stand
apart), a marker only where a method ran, a 95 % band on every line, the dense network, chance
and always-majority lines; the page's script adds hover values and legend toggles."""

from __future__ import annotations

import math
from html import escape

import numpy as np
from markupsafe import Markup

from deepfake_lth.report.common import TestCounts, method_key, method_label, ordered

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
SHAPES = ["circle", "square", "triangle", "diamond", "down", "cross"]
W, H = 380, 250
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 24, 40
Z = 1.959963984540054
TICKS = [1.0, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001]


def wilson(p: float, n: int) -> tuple[float, float]:
    """The 95 % Wilson interval of a proportion p out of n (within [0, 1] by construction)."""
    if not n or not np.isfinite(p):
        return math.nan, math.nan
    d = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / d
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def point(values, n: int) -> tuple[float, float, float, str]:
    """(mean, low, high, how) of accuracies over seeds: the t-interval with two or more
    seeds, else the binomial one; clipped to [0, 1]."""
    from deepfake_lth.analysis.stats import mean_ci

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan, ""
    if len(v) > 1:
        ci = mean_ci(v)
        return (float(v.mean()), max(0.0, ci.low), min(1.0, ci.high),
                f"t-interval over {len(v)} seeds")
    low, high = wilson(float(v[0]), n)
    return float(v[0]), low, high, f"binomial, n = {n}"


def marker(shape: str, x: float, y: float, colour: str, tip: str) -> str:
    r = 4.2
    tip = escape(tip, quote=True)
    common = f'fill="white" stroke="{colour}" stroke-width="1.8" data-tip="{tip}"'
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" {common}/>'
    if shape == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" {common}/>'
    pts = {"triangle": [(0, -1.2), (1.1, 0.8), (-1.1, 0.8)],
           "down": [(0, 1.2), (1.1, -0.8), (-1.1, -0.8)],
           "diamond": [(0, -1.3), (1.2, 0), (0, 1.3), (-1.2, 0)],
           "cross": [(-1, -1), (1, 1), (0, 0), (1, -1), (-1, 1), (0, 0)]}[shape]
    path = " ".join(f"{x + r * a:.1f},{y + r * b:.1f}" for a, b in pts)
    return f'<polygon points="{path}" {common}/>'


class Axes:
    """Data → pixel coordinates: x the log of the fraction remaining (1 at the left)."""

    def __init__(self, fmin: float, ylow: float, yhigh: float) -> None:
        self.lmin = math.log10(fmin)
        self.ylow, self.yhigh = ylow, yhigh

    def x(self, remaining: float) -> float:
        frac = math.log10(max(remaining, 10 ** self.lmin)) / self.lmin if self.lmin else 0.0
        return LEFT + frac * (W - LEFT - RIGHT)

    def y(self, acc: float) -> float:
        return TOP + (self.yhigh - acc) / (self.yhigh - self.ylow) * (H - TOP - BOTTOM)


def _frame(ax: Axes, title: str) -> list[str]:
    out = [f'<text x="{W / 2}" y="14" text-anchor="middle" font-size="12" '
           f'font-weight="600">{escape(title)}</text>']
    step = 5 if ax.yhigh - ax.ylow <= 30 else 10
    for t in range(int(math.ceil(ax.ylow / step) * step), int(ax.yhigh) + 1, step):
        y = ax.y(t)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#e6e6e6"/>')
        out.append(f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end" '
                   f'font-size="10">{t}</text>')
    for f in TICKS:
        if math.log10(f) < ax.lmin - 1e-9:
            break
        x = ax.x(f)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{H - BOTTOM}" '
                   'stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 12}" text-anchor="middle" '
                   f'font-size="10">{100 * (1 - f):g}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" '
               f'height="{H - TOP - BOTTOM}" fill="none" stroke="#999"/>')
    out.append(f'<text x="{(W + LEFT) / 2}" y="{H - 6}" text-anchor="middle" font-size="10">'
               'sparsity (%), log scale of the weights remaining</text>')
    out.append(f'<text transform="translate(11 {(H - BOTTOM + TOP) / 2}) rotate(-90)" '
               'text-anchor="middle" font-size="10">test accuracy (%)</text>')
    return out


def _hline(ax: Axes, value: float, label: str, dash: str, colour: str) -> str:
    y = ax.y(100 * value)
    return (f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-dasharray="{dash}" stroke-width="1.2" data-tip="{escape(label)}"/>'
            f'<text x="{W - RIGHT - 3}" y="{y - 3:.1f}" text-anchor="end" font-size="9" '
            f'fill="{colour}">{escape(label)}</text>')


def _points(runs, n: int) -> list[dict]:
    """A point per level of one method: fraction remaining, mean, interval, level, seeds."""
    out = []
    for level, g in runs.groupby("level"):
        mean, low, high, how = point(g["test_acc"], n)
        if np.isfinite(mean):
            out.append({"remaining": 1 - float(g["sparsity"].fillna(0).mean()), "mean": mean,
                        "low": low, "high": high, "how": how, "level": str(level),
                        "seeds": int(g["seed"].nunique())})
    return sorted(out, key=lambda p: -p["remaining"])


def _series(ax: Axes, pts: list[dict], index: int, k: int, count: int, label: str,
            wrap: bool = True) -> str:
    colour, shape = COLOURS[index % len(COLOURS)], SHAPES[index % len(SHAPES)]
    dodge = (k - (count - 1) / 2) * 3.0  # coinciding points of several methods stay visible
    xs = [ax.x(p["remaining"]) + dodge for p in pts]
    parts = [f'<g class="series" data-series="{index}">'] if wrap else []
    finite = [(x, p) for x, p in zip(xs, pts, strict=True) if np.isfinite(p["low"])]
    if len(finite) > 1:
        upper = " ".join(f"{x:.1f},{ax.y(100 * p['high']):.1f}" for x, p in finite)
        lower = " ".join(f"{x:.1f},{ax.y(100 * p['low']):.1f}" for x, p in reversed(finite))
        parts.append(f'<polygon points="{upper} {lower}" fill="{colour}" opacity="0.13"/>')
    for x, p in finite:
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{ax.y(100 * p["low"]):.1f}" '
                     f'y2="{ax.y(100 * p["high"]):.1f}" stroke="{colour}" opacity="0.5"/>')
    if len(pts) > 1:
        line = " ".join(f"{x:.1f},{ax.y(100 * p['mean']):.1f}" for x, p in zip(xs, pts,
                                                                               strict=True))
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" '
                     'stroke-width="1.6"/>')
    for x, p in zip(xs, pts, strict=True):
        tip = (f"{label}, {p['level']}: {100 * (1 - p['remaining']):.1f} % sparse, "
               f"accuracy {100 * p['mean']:.1f} %")
        if np.isfinite(p["low"]):
            tip += f" [{100 * p['low']:.1f}, {100 * p['high']:.1f}] ({p['how']})"
        parts.append(marker(shape, x, ax.y(100 * p["mean"]), colour, tip))
    if wrap:
        parts.append("</g>")
    return "".join(parts)


def legend_item(index: int, label: str) -> str:
    colour, shape = COLOURS[index % len(COLOURS)], SHAPES[index % len(SHAPES)]
    swatch = (f'<svg width="26" height="12" aria-hidden="true"><line x1="0" x2="26" y1="6" '
              f'y2="6" stroke="{colour}" stroke-width="1.6"/>'
              + marker(shape, 13, 6, colour, label).replace(f' data-tip="{escape(label)}"', "")
              + "</svg>")
    return (f'<button type="button" data-series="{index}" title="show or hide">{swatch} '
            f'{escape(label)}</button>')


def curves_chart(runs, dataset: str, shown: list[str], model_order: list[str] | None,
                 counts: TestCounts | None, margin: float | None = None) -> Markup | None:
    """The chart (legend and a panel per model) of ``shown`` methods on ``dataset``; None
    when none of them ran there."""
    df = runs[runs["dataset"] == dataset]
    pruned = df[df["method"].isin(shown) & (df["method"] != "dense")]
    if pruned.empty:
        return None
    sizes = df["test_samples"].dropna()
    n = counts.n_independent if counts else int(sizes.max()) if len(sizes) else 0
    meths = sorted(pruned["method"].unique(), key=method_key)
    labels = ["dense"] + [method_label(m) for m in meths]
    data = {}
    for model in ordered(df["model"], model_order):
        part = df[df["model"] == model]
        data[model] = {"dense": _points(part[part["method"] == "dense"], n)}
        for m in meths:
            data[model][m] = _points(part[part["method"] == m], n)
    every = [p for d in data.values() for pts in d.values() for p in pts]
    if not every:
        return None
    majority, cls = counts.majority if counts else (math.nan, "")
    lows = [100 * p["low"] for p in every if np.isfinite(p["low"])] + [100 * p["mean"]
                                                                        for p in every]
    highs = [100 * p["high"] for p in every if np.isfinite(p["high"])] + [100 * p["mean"]
                                                                          for p in every]
    refs = [50.0] + ([100 * majority] if np.isfinite(majority) else [])
    ylow = max(0.0, math.floor((min(lows + refs) - 2) / 5) * 5)
    yhigh = min(100.0, math.ceil((max(highs + refs) + 2) / 5) * 5)
    fmin = min(p["remaining"] for p in every)
    fmin = next((t for t in TICKS if t <= fmin * 0.95), TICKS[-1])
    ax = Axes(fmin, ylow, yhigh)
    panels = []
    for model, d in data.items():
        body = _frame(ax, model)
        body.append(_hline(ax, 0.5, "chance 50 %", "2 3", "#888"))
        if np.isfinite(majority) and abs(majority - 0.5) > 0.005:
            body.append(_hline(ax, majority, f"always “{cls}” {100 * majority:.0f} %",
                               "6 3", "#b35900"))
        dense = d["dense"]
        if dense:
            p = dense[0]
            body.append('<g class="series" data-series="0">')
            if np.isfinite(p["low"]):
                body.append(f'<rect x="{LEFT}" width="{W - LEFT - RIGHT}" '
                            f'y="{ax.y(100 * p["high"]):.1f}" fill="#555" opacity="0.08" '
                            f'height="{ax.y(100 * p["low"]) - ax.y(100 * p["high"]):.1f}"/>')
            if margin:
                body.append(f'<rect x="{LEFT}" width="{W - LEFT - RIGHT}" '
                            f'y="{ax.y(100 * p["mean"]):.1f}" fill="#999" opacity="0.18" '
                            f'height="{ax.y(100 * (p["mean"] - margin)) - ax.y(100 * p["mean"]):.1f}" '
                            f'data-tip="dense − δ ({100 * margin:.0f} points) to dense"/>')
            body.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{ax.y(100 * p["mean"]):.1f}" '
                        f'y2="{ax.y(100 * p["mean"]):.1f}" stroke="#333" stroke-dasharray="5 3"/>')
            body.append(_series(ax, dense, 0, 0, 1, "dense", wrap=False) + "</g>")
        for k, m in enumerate(meths, start=1):
            if d[m]:
                body.append(_series(ax, d[m], k, k - 1, len(meths), method_label(m)))
        panels.append(f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
                      f'aria-label="{escape(dataset)} / {escape(model)}: accuracy vs sparsity">'
                      + "".join(body) + "</svg>")
    legend = "".join(legend_item(i, lab) for i, lab in enumerate(labels))
    return Markup(f'<div class="legend">{legend}</div><div class="chart">{"".join(panels)}'
                  "</div>")
