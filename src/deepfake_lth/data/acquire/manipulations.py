"""The ``manipulation`` column of ``sources.csv``: which method made each fake.

FaceForensics++ names it by its tree (``manipulated_sequences/{method}``), Celeb-DF by its
synthesis folder, DFDC and OpenForensics by the dataset (``dfdc``, ``openforensics``), a
synthetic source by its generator family, a ``folders`` tree by the folder just below the fake
class folder (``fake/FaceSwap/a.mp4`` → ``FaceSwap``; a file directly in ``fake/`` gets
``fake``); anything else by the dataset's name. Real files have none (empty).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

import pandas as pd

from deepfake_lth.data.acquire import MANIPULATION, with_manipulation

# layouts whose video_id starts with the manipulation's folder: Deepfakes/000_003
_PREFIXED = ("faceforensics", "celebdf")
_BY_LAYOUT = {"openforensics": "openforensics", "dfdc": "dfdc"}
_DEFAULT_FAKE_NAMES = ("fake", "manipulated", "deepfake", "deepfakes", "synthesis")


def folder_manipulation(path: str, fake_names, root: str | None = None) -> str:
    """The folder just below the outermost fake class folder of ``path`` (relative to
    ``root`` when it is under it); ``fake`` without one."""
    pure = PurePath(path)
    if root is not None and pure.is_relative_to(root):
        pure = pure.relative_to(root)
    parts = pure.parts[:-1]
    fakes = {n.lower() for n in fake_names}
    for i, part in enumerate(parts):
        if part.lower() in fakes:
            return parts[i + 1] if i + 1 < len(parts) else "fake"
    return "fake"


def label_manipulations(table: pd.DataFrame, source: dict, name: str) -> pd.DataFrame:
    """``table`` with its manipulation column filled for the fakes the acquisition left empty."""
    table = table.copy()
    given = (table[MANIPULATION].fillna("").astype(str) if MANIPULATION in table
             else pd.Series("", index=table.index))
    layout = source.get("layout", "folders") if source.get("type") in ("local", "kaggle") else None
    if layout in _PREFIXED:
        derived = table["video_id"].astype(str).str.split("/").str[0]
    elif layout in _BY_LAYOUT:
        derived = pd.Series(_BY_LAYOUT[layout], index=table.index)
    elif layout == "folders":
        fake_names = source.get("fake_names", _DEFAULT_FAKE_NAMES)
        root = str(Path(os.path.expandvars(str(source.get("path", "")))).expanduser().resolve())
        derived = table["path"].astype(str).map(
            lambda p: folder_manipulation(p, fake_names, root))
    else:
        derived = pd.Series(name, index=table.index)
    return with_manipulation(table, given.where(given != "", derived))
