"""Acquire a dataset's raw files under ``resources/{dataset}/`` and list them in ``sources.csv``.

Every source type ends in the same file, ``sources.csv``, one row per video or image:

=========  ==================================================================
path       the file; relative to the dataset folder, or absolute when a local
           source is read in place (nothing is copied then)
video_id   the unit of splitting: a video, or an identity/image group; unique per video
label      0 real, 1 fake
split      train | val | test when the source fixes it, else empty (pack assigns it)
kind       video | image
group      optional: rows with the same group go to the same split (a fake and its
           source video in FaceForensics++); empty when unknown
manipulation  the method that made a fake (``Deepfakes``, ``Celeb-synthesis``, ``dfdc``, a
           synthetic generator family; ``manipulations.py``); empty for real files
=========  ==================================================================
"""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.files import write_csv

log = logging.getLogger(__name__)

MANIPULATION = "manipulation"  # the column naming a fake's method (empty for real files)
SOURCE_COLUMNS = ["path", "video_id", "label", "split", "kind", "group", MANIPULATION]
# source type -> module with ``acquire(name, source, out_dir, seed) -> DataFrame``
SOURCE_TYPES = {
    "synthetic": "deepfake_lth.data.acquire.synthetic",
    "local": "deepfake_lth.data.acquire.local",
    "urls": "deepfake_lth.data.acquire.urls",
    "kaggle": "deepfake_lth.data.acquire.kaggle",
}


def acquire(name: str, source: dict, out_dir: str | Path, seed: int = 0) -> Path:
    """Run the source's acquisition and write ``out_dir/sources.csv``; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = source.get("type")
    if kind not in SOURCE_TYPES:
        raise UserError(
            f"datasets.{name}.source.type: unknown source type {kind!r}; "
            f"use one of {', '.join(SOURCE_TYPES)}"
        )
    module = importlib.import_module(SOURCE_TYPES[kind])
    table = module.acquire(name, source, out_dir, seed)
    from deepfake_lth.data.acquire.manipulations import label_manipulations

    return write_sources(label_manipulations(table, source, name), out_dir / "sources.csv")


def with_manipulation(table: pd.DataFrame, manipulation) -> pd.DataFrame:
    """``table`` with the manipulation column set to ``manipulation`` (a name, or one per row)
    for its fakes and empty for its real files."""
    table = table.copy()
    table[MANIPULATION] = manipulation
    table[MANIPULATION] = table[MANIPULATION].fillna("").astype(str).where(table["label"] == 1, "")
    return table

def write_sources(table: pd.DataFrame, path: Path) -> Path:
    """Check and write a sources table (atomically, deepfake_lth.core.files)."""
    table = table.copy()
    for col in SOURCE_COLUMNS:
        if col not in table:
            table[col] = ""
    table = table[SOURCE_COLUMNS].fillna("")
    bad = ~table["label"].isin([0, 1])
    if bad.any():
        raise UserError(f"{path}: labels must be 0 (real) or 1 (fake); got {set(table['label'][bad])}")
    if table.empty:
        raise UserError(f"{path.parent}: the source listed no files; check its path or manifest")
    methods = table.groupby("video_id")[MANIPULATION].nunique()
    if (methods > 1).any():  # FF++ reuses 000_003 under every method: they are not one video
        raise UserError(
            f"{path}: video ids {sorted(methods[methods > 1].index)[:5]} are fakes of more than "
            "one manipulation; give each method's videos their own ids (e.g. Deepfakes/000_003)"
        )
    write_csv(table, path)
    log.info("%s: %d files (%d fake)", path, len(table), int(table["label"].sum()))
    return path


def read_sources(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} is missing: run the acquire stage first")
    table = pd.read_csv(path, dtype={"video_id": str, "split": str, "group": str, "path": str,
                                     MANIPULATION: str}, keep_default_na=False)
    if MANIPULATION not in table:  # written before the column existed
        table[MANIPULATION] = ""
    return table


def resolve(path: str, dataset_dir: Path) -> Path:
    """A sources.csv path as a file path (relative entries are under the dataset folder)."""
    p = Path(path)
    return p if p.is_absolute() else Path(dataset_dir) / p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="the dataset's name under datasets:")
    parser.add_argument("--source", required=True, help="the dataset's 'source' config as JSON")
    parser.add_argument("--out", required=True, help="dataset folder under resources/")


def run(args: argparse.Namespace) -> int:
    import json

    source = json.loads(args.source)
    acquire(args.dataset, source, args.out, seed=source.get("seed", 0))
    return 0
