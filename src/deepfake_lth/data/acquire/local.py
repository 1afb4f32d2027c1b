"""The ``local`` source type: a dataset already on disk, listed in place (nothing is copied).

``source: {type: local, path: /data/x, layout: <name>, ...}``; ``layout`` names a module of
:data:`deepfake_lth.data.acquire.LAYOUTS` (``folders`` when absent) and the other keys are
that layout's options (:mod:`deepfake_lth.data.acquire.layout`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire.layout import DEFAULT, list_layout


def acquire(name: str, source: dict, out_dir: Path, seed: int) -> pd.DataFrame:
    """The sources table of a local folder; rows point to the files in place (absolute)."""
    if not source.get("path"):
        raise UserError(f"datasets.{name}.source.path: set the folder that holds the dataset")
    root = Path(os.path.expandvars(str(source["path"]))).expanduser()
    return list_layout(root, source.get("layout", DEFAULT), source, seed=seed, name=name)
