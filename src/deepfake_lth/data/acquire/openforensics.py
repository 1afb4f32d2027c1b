"""The ``openforensics`` layout: the Kaggle OpenForensics image set,
``Train|Validation|Test/Real|Fake/*.jpg`` (possibly under one wrapper folder such as
``Dataset/``): splits kept, each image its own unit, every fake of manipulation
``openforensics``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire.layout import find_root, frame, row, walk_files
from deepfake_lth.data.media import file_kind

HELP = "Train|Validation|Test/Real|Fake/*.jpg"
KIND = "images"
OPTIONS: dict = {}
SPLITS = {"train": "train", "validation": "val", "val": "val", "test": "test"}
MANIPULATION = "openforensics"


def manipulations(_options: dict) -> list[str]:
    return [MANIPULATION]


def list_files(root: Path, _options: dict) -> pd.DataFrame:
    """``Train|Validation|Test/Real|Fake/*.jpg``: split kept, each image its own video_id."""
    base = find_root(Path(root), ["Train", "Validation", "Test"], "openforensics")
    rows = []
    for split_dir in sorted(base.iterdir()):
        split = SPLITS.get(split_dir.name.lower())
        if split is None or not split_dir.is_dir():
            continue
        classes = {c.name.lower(): c for c in split_dir.iterdir() if c.is_dir()}
        missing = [c for c in ("real", "fake") if c not in classes]
        if missing:
            raise UserError(
                f"{split_dir}: no {' or '.join(m.title() for m in missing)} folder; expected "
                f"the openforensics layout ({HELP})"
            )
        for cls, label in (("real", 0), ("fake", 1)):
            for path in walk_files(classes[cls]):
                if file_kind(path) == "image":
                    vid = path.relative_to(base).with_suffix("").as_posix()
                    rows.append(row(path, vid, label, split, manipulation=MANIPULATION))
    return frame(rows)
