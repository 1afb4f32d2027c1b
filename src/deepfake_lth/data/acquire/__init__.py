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
           synthetic generator family, as its layout or source names it; else the
           dataset's name); empty for real files
note       optional: why a row is as it is (e.g. a DFDC fake whose original is not on disk)
=========  ==================================================================

A dataset with ``role: test`` (scored only, never trained on) keeps what is scored: its test
split, or every file as ``test`` where the source fixes no split (:func:`scored`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from pathlib import Path

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.files import write_csv

log = logging.getLogger(__name__)

MANIPULATION = "manipulation"  # the column naming a fake's method (empty for real files)
SOURCE_COLUMNS = ["path", "video_id", "label", "split", "kind", "group", MANIPULATION, "note"]
# source type -> module with ``acquire(name, source, out_dir, seed) -> DataFrame``
SOURCE_TYPES = {
    "synthetic": "deepfake_lth.data.acquire.synthetic",
    "local": "deepfake_lth.data.acquire.local",
    "urls": "deepfake_lth.data.acquire.urls",
    "kaggle": "deepfake_lth.data.acquire.kaggle",
}
# dataset layout (``source.layout`` of a local or Kaggle source) -> its module: HELP, OPTIONS,
# KIND, list_files (deepfake_lth.data.acquire.layout says what each is)
LAYOUTS = {
    "folders": "deepfake_lth.data.acquire.folders",
    "openforensics": "deepfake_lth.data.acquire.openforensics",
    "faceforensics": "deepfake_lth.data.acquire.faceforensics",
    "celebdf": "deepfake_lth.data.acquire.celebdf",
    "dfdc": "deepfake_lth.data.acquire.dfdc",
}
ROLES = ("train", "test")


def acquire(name: str, source: dict, out_dir: str | Path, seed: int = 0,
            train_manipulations=(), role: str = "train") -> Path:
    """Run the source's acquisition and write ``out_dir/sources.csv``; returns its path.

    ``train_manipulations`` are checked against the manipulations listed (before any face
    is extracted); with ``role`` test only the rows that are scored are kept (:func:`scored`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = source.get("type")
    if kind not in SOURCE_TYPES:
        raise UserError(
            f"datasets.{name}.source.type: unknown source type {kind!r}; "
            f"use one of {', '.join(SOURCE_TYPES)}"
        )
    if role not in ROLES:
        raise UserError(f"datasets.{name}.role: {role!r}; use one of {', '.join(ROLES)}")
    from deepfake_lth.data.acquire.manipulations import (
        check_manipulations,
        fake_methods,
        name_manipulations,
    )

    module = importlib.import_module(SOURCE_TYPES[kind])
    table = name_manipulations(module.acquire(name, source, out_dir, seed), name)
    check_manipulations(train_manipulations, fake_methods(table), name, "the files acquired name")
    if role == "test":
        table = scored(table, name)
    return write_sources(table, out_dir / "sources.csv")


def scored(table: pd.DataFrame, name: str = "?") -> pd.DataFrame:
    """The rows a dataset scored only (``role: test``) keeps: those of its own test split, or
    every row as ``test`` when the source fixes no test split."""
    tests = table["split"] == "test"
    if tests.any():
        log.info("%s (role test): the %d files of the source's test split are kept, %d others "
                 "left out", name, int(tests.sum()), int((~tests).sum()))
        return table[tests].reset_index(drop=True)
    log.info("%s (role test): no test split in the source; all %d files are test", name,
             len(table))
    return table.assign(split="test")


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
                                     MANIPULATION: str, "note": str}, keep_default_na=False)
    for col in (MANIPULATION, "note"):  # written before the column existed
        if col not in table:
            table[col] = ""
    return table


def resolve(path: str, dataset_dir: Path) -> Path:
    """A sources.csv path as a file path (relative entries are under the dataset folder)."""
    p = Path(path)
    return p if p.is_absolute() else Path(dataset_dir) / p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="the dataset's name under datasets:")
    parser.add_argument("--source", required=True, help="the dataset's 'source' config as JSON")
    parser.add_argument("--out", required=True, help="dataset folder under resources/")
    parser.add_argument("--train-manipulations", default="[]",
                        help="JSON list: the dataset's train_manipulations, checked against "
                        "the manipulations acquired before any face is extracted")
    parser.add_argument("--role", choices=ROLES, default="train",
                        help="test: keep only what is scored (the test split, or all as test)")


def run(args: argparse.Namespace) -> int:
    try:
        source = json.loads(args.source)
        train_manipulations = json.loads(args.train_manipulations)
    except json.JSONDecodeError as exc:
        raise UserError(f"--source or --train-manipulations is not valid JSON ({exc})") from None
    acquire(args.dataset, source, args.out, seed=source.get("seed", 0),
            train_manipulations=train_manipulations, role=args.role)
    return 0
