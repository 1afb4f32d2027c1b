"""What every report section shares: tables, figures, sections, number formats, labels."""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_lth.stages import methods

DEFAULT_TITLE = "Lottery tickets in deepfake detectors"
SYNTHETIC_SENTENCE = (
    "These results come from the embedded synthetic demo sets, not from the paper's data; "
    "the numbers are not the paper's numbers."
)
PACKAGES = [
    "deepfake-lth", "torch", "torchvision", "snakemake", "facenet-pytorch", "numpy",
    "pandas", "scikit-learn", "opencv-python-headless", "matplotlib", "seaborn", "jinja2",
]
NOT_RUN = "not run"
FIGURE_WIDTH = 11.0  # inches at 100 dpi: the content width of the page (1100 px)


def method_label(method: str) -> str:
    """Folder name → the paper's words (the method registry's label)."""
    return methods.label(method)


def method_key(method: str) -> tuple:
    """The registry's order: dense, then the families; a step size after its criterion."""
    return methods.sort_key(method)


# --------------------------------------------------------------------------- formatting


def pct_text(x: float, digits: int = 1) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def mean_sd(values, scale: float = 100.0, digits: int = 1) -> str:
    """"61.2" or "61.2 ± 0.4" (several seeds); "–" when nothing is known."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "–"
    text = f"{scale * v.mean():.{digits}f}"
    if len(v) > 1:
        text += f" ± {scale * v.std(ddof=1):.{digits}f}"
    return text


def int_text(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{round(x):,}"


def ci_text(ci, scale: float = 100.0, digits: int = 1) -> str:
    """"[58.1, 64.3]" for an interval, "–" without one (one seed)."""
    if ci is None or not np.isfinite(ci.low):
        return "–"
    return f"[{scale * ci.low:.{digits}f}, {scale * ci.high:.{digits}f}]"


def mean_text(values, scale: float = 100.0, digits: int = 1) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return "–" if not len(v) else f"{scale * v.mean():.{digits}f}"


def p_text(p: float, note: str = "") -> str:
    if note and not np.isfinite(p):
        return note
    return "–" if not np.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "< 0.001")


def millions(values) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return "–" if len(v) == 0 else f"{v.mean() / 1e6:.3f}"


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def ordered(names, order: list[str] | None) -> list[str]:
    """``names`` in config order first, the rest alphabetically."""
    order = order or []
    return sorted(set(names), key=lambda n: (n not in order, order.index(n) if n in order else 0, n))


def seeds_words(df) -> str:
    n = df["seed"].nunique()
    return (f"mean and 95 % t-interval over {n} seeds (the band)" if n > 1
            else "one seed, so no band: single points wobble by chance")


def style():
    import matplotlib
    import seaborn as sns

    return matplotlib.rc_context(sns.axes_style("whitegrid") | {"font.size": 10})


def sparsity_ticks(ax, rate: float | None, rounds: int | None) -> None:
    """Label the sparsity axis with both the round and the percentage: "r4\\n59 %"."""
    if not rate or not rounds:
        return
    ticks = [100 * (1 - (1 - rate) ** k) for k in range(0, rounds + 1)]
    right = ax.get_xlim()[1]
    keep = [0] + [k for k in range(1, rounds + 1)
                  if k % max(1, rounds // 8) == 0 and ticks[k] <= right]
    ax.set_xticks([ticks[k] for k in keep])
    ax.set_xticklabels([f"r{k}\n{ticks[k]:.0f} %" for k in keep], fontsize=8)


def shared_ylim(axes) -> None:
    """One y-range for every panel of a figure."""
    lims = [ax.get_ylim() for ax in axes if ax.has_data()]
    if lims:
        low, high = min(a for a, _ in lims), max(b for _, b in lims)
        for ax in axes:
            ax.set_ylim(low, high)


# --------------------------------------------------------------------------- containers


@dataclass
class Table:
    """A table for the template: header cells and rows of text cells."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""
    text_columns: int = 1  # leading columns of words (left-aligned); the rest are numbers

    def drop_empty_columns(self) -> Table:
        """Leave out the columns that are empty ("–" or "") in every row."""
        if not self.rows:
            return self
        keep = [i for i in range(len(self.columns))
                if any(str(r[i]).strip() not in ("", "–", "-") for r in self.rows)]
        self.text_columns = sum(1 for i in keep if i < self.text_columns)
        self.columns = [self.columns[i] for i in keep]
        self.rows = [[r[i] for i in keep] for r in self.rows]
        return self


@dataclass
class Figure:
    """An embedded figure: its data URI and caption."""

    uri: str
    caption: str
    name: str
    svg: Any = ""  # an inline SVG chart (Markup) drawn instead of the PNG
    frames: list = field(default_factory=list)  # [(label, data URI)]: a slider steps through


class Figures:
    """Turns matplotlib figures into data URIs (and PNG files when ``out_dir`` is given)."""

    def __init__(self, out_dir: str | Path | None) -> None:
        self.out_dir = Path(out_dir) if out_dir else None
        self.counts: dict[str, TestCounts] = {}  # each dataset's test split, for titles
        if self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    def add(self, fig, name: str, caption: str, svg: Any = "") -> Figure:
        """The figure as a PNG data URI; with ``svg`` (an inline chart drawn instead) the
        PNG is only written to ``out_dir``, not embedded."""
        if svg and not self.out_dir:
            return Figure("", caption, name, svg=svg)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
        data = buf.getvalue()
        if self.out_dir:
            (self.out_dir / f"{name}.png").write_bytes(data)
        if svg:
            return Figure("", caption, name, svg=svg)
        return Figure("data:image/png;base64," + base64.b64encode(data).decode("ascii"),
                      caption, name)


@dataclass
class Part:
    """One block of a section: a heading, figures, tables, sentences, a "not run" line."""

    heading: str = ""
    figure: Figure | None = None
    tables: list[Table] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings shown in a box
    notrun: str = ""
    pre: str = ""  # preformatted text (the config as run)
    folded: bool = False  # shown collapsed, in a <details> opened by a click
    switch: bool = False  # its tables shown one at a time, chosen by their titles
    group: str = ""  # parts with a group are shown one group at a time (tabs, e.g. datasets)


@dataclass
class TestCounts:
    """A dataset's test split: faces and videos per class (from its manifest)."""

    kind: str | None
    frames: tuple[int, int]  # (real, fake)
    videos: tuple[int, int]

    @property
    def unit(self) -> str:
        return "videos" if self.kind == "videos" else "images"

    def words(self) -> str:
        """"n = 150 test images (75 real / 75 fake)" or the videos and their frames."""
        if self.kind == "videos":
            r, f = self.videos
            return (f"n = {r + f} test videos ({r} real / {f} fake), "
                    f"{sum(self.frames):,} frames")
        r, f = self.frames
        return f"n = {r + f:,} test images ({r:,} real / {f:,} fake)"

    @property
    def majority(self) -> tuple[float, str]:
        """Accuracy (frames) of always answering the larger class, and that class."""
        r, f = self.frames
        return (max(r, f) / (r + f), "real" if r >= f else "fake") if r + f else (math.nan, "")

    @property
    def n_independent(self) -> int:
        """The binomial interval's n: images, or videos (a video's frames are not
        independent draws)."""
        return sum(self.videos) if self.kind == "videos" else sum(self.frames)


@dataclass
class Context:
    """What every section reads: the config, the runs it plans, and shared facts."""

    results_dir: Path
    config: dict
    runs: Any
    transfers: Any
    gradcam_runs: list
    figures: Figures
    model_order: list[str] | None
    datasets: list[str]
    kinds: dict[str, str | None]
    flags: dict
    left_out: Any
    benchmarks_dir: Path | None = None
    extra: dict = field(default_factory=dict)


def asks_for(config: dict, name: str) -> bool:
    """Whether the config asks for a section beyond the paper (by its id)."""
    return {
        "controls": lambda: bool(config.get("controls")),
        "pai": lambda: bool((config.get("prune_init") or {}).get("methods")),
        "step-sizes": lambda: bool((config.get("step_sizes") or {}).get("rates")),
        "seeds": lambda: len(config.get("seeds") or []) > 1 or any(
            len((m or {}).get("seeds") or []) > 1
            for m in (config.get("models") or {}).values()),
        "separability": lambda: bool((config.get("separability") or {}).get("methods")),
        "latency": lambda: bool((config.get("latency") or {}).get("methods")),
    }[name]()


@dataclass
class Section:
    """A section of the report (see deepfake_lth.report.build.SECTIONS)."""

    id: str
    title: str
    intro: Any = ""
    parts: list[Part] = field(default_factory=list)
    empty: str = ""  # the "not run" sentence when there are no parts
    number: int = 0
    claims: list | None = None  # the claims this section judges
    claim_rows: list = field(default_factory=list)  # the same, as the summary shows them
