"""Whether a dataset is a set of images or of videos: the unit of its statistics.

On a video set the frames of one video are strongly correlated, so intervals count test
videos, not frames (:func:`deepfake_lth.analysis.stats.estimate_diff`). The kind is decided from what
was acquired, not from the source type alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _kind_from_sources(path: Path) -> str | None:
    """``videos`` when sources.csv lists video files, or image files grouped into videos
    (several frames per video_id); ``images`` when every image is its own video_id."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        return None
    if "kind" not in table or table.empty:
        return None
    kinds = set(table["kind"].str.strip().str.lower())
    if "video" in kinds:
        return "videos"
    if kinds == {"image"}:
        if "video_id" in table and table["video_id"].nunique() < len(table):
            return "videos"  # frame images grouped into videos (e.g. group_regex)
        return "images"
    return None


def dataset_kind(config: Mapping[str, Any], dataset: str,
                 resources: str | Path | None = None) -> str | None:
    """``images`` or ``videos``: the dataset's explicit ``kind`` in the config; else what was
    acquired (``resources/{dataset}/sources.csv``: video files, or frame images grouped into
    videos, make a video set); else the synthetic generator's kind or its layout's ``KIND``
    (openforensics: images; faceforensics, celebdf, dfdc, or any layout with ``group_regex``:
    videos); None when nothing says. A ``faces_from`` dataset is the kind of the dataset whose
    faces it reads."""
    cfg = (config.get("datasets") or {}).get(dataset) or {}
    if cfg.get("kind") in ("images", "videos"):
        return cfg["kind"]
    if cfg.get("faces_from") and cfg["faces_from"] != dataset:
        return dataset_kind(config, cfg["faces_from"], resources)
    base = resources if resources is not None else config.get("resources")
    if base is not None:
        found = _kind_from_sources(Path(base) / dataset / "sources.csv")
        if found:
            return found
    source = cfg.get("source") or {}
    if source.get("type") == "synthetic" and source.get("kind") in ("images", "videos"):
        return source["kind"]
    if source.get("group_regex"):
        return "videos"
    if source.get("type") in ("local", "kaggle"):
        return _layout_kind(source.get("layout"))
    return None


def _layout_kind(layout: str | None) -> str | None:
    from deepfake_lth.data.acquire import LAYOUTS
    from deepfake_lth.data.acquire import layout as layouts

    if layout not in LAYOUTS:
        return None
    kind = getattr(layouts.module(layout), "KIND", None)
    return kind if kind in ("images", "videos") else None
