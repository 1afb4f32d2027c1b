"""Dataset layouts: how a tree of files on disk (a local folder, an unpacked Kaggle archive)
becomes a sources table. One module per layout, named in :data:`deepfake_lth.data.acquire.LAYOUTS`.

A layout module provides

``HELP``
    the tree it expects, in one line (error messages name it);
``OPTIONS``
    its source keys as JSON-schema properties with their defaults (``{}``: none); the config
    schema's ``x-registry: layouts`` marker is filled from them (:func:`layouts_schema`), so a
    key of another layout is an error naming the allowed ones;
``KIND``
    ``"videos"``, ``"images"`` or None: what its files are when nothing was acquired yet
    (:func:`deepfake_lth.data.dataset_kind.dataset_kind`);
``list_files(root, options) -> DataFrame``
    one row per file (the columns of ``sources.csv``; ``path`` absolute), ``manipulation``
    filled for its fakes where the layout names their method;
``manipulations(options) -> list[str] | None`` (optional)
    the manipulations its fakes can have, known before listing (``validate-config`` checks
    ``train_manipulations`` against them); None or absent: known only from the files.

This module holds what the layouts share: the registry look-up, the dispatch with the
options' defaults filled (:func:`list_layout`) and the helpers that walk a tree.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
from pathlib import Path
from types import ModuleType

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.media import file_kind

log = logging.getLogger(__name__)

DEFAULT = "folders"  # the layout of a local or Kaggle source that names none
SKIP_DIRS = frozenset({"__macosx"})
ROW_COLUMNS = ["path", "video_id", "label", "split", "kind", "group"]


def names() -> list[str]:
    """The registered layouts, in registry order."""
    from deepfake_lth.data.acquire import LAYOUTS

    return list(LAYOUTS)


def module(layout: str, key: str = "source.layout") -> ModuleType:
    """The module of ``layout``; UserError naming ``key`` and the layouts when unknown."""
    from deepfake_lth.data.acquire import LAYOUTS

    if layout not in LAYOUTS:
        raise UserError(f"{key}: unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    return importlib.import_module(LAYOUTS[layout])


def options_of(layout: str, given: dict | None) -> dict:
    """``given`` over the defaults of ``layout``'s OPTIONS (only the layout's own keys)."""
    spec = module(layout).OPTIONS
    given = dict(given or {})
    return {k: copy.deepcopy(given[k] if k in given else p.get("default")) for k, p in spec.items()}


def manipulations(layout: str, options: dict | None) -> list[str] | None:
    """The manipulations ``layout``'s fakes can have, known before listing; None: unknown."""
    mod = module(layout)
    known = getattr(mod, "manipulations", None)
    return None if known is None else known(options_of(layout, options))


def list_layout(
    root: Path, layout: str, options: dict | None = None, seed: int = 0, name: str = "?"
) -> pd.DataFrame:
    """The sources table of the tree at ``root`` read with ``layout`` (its options from
    ``options``, defaults for the others)."""
    mod = module(layout, f"datasets.{name}.source.layout")
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"datasets.{name}.source: folder {root} not found; expected the {layout} layout "
            f"({mod.HELP}). Fix source.path."
        )
    table = mod.list_files(root.resolve(), options_of(layout, options))
    if table.empty:
        raise UserError(
            f"{root}: no video or image files found in the {layout} layout ({mod.HELP})"
        )
    counts = table.groupby(["split", "label"]).size().to_dict()
    log.info("%s (%s): %d files; by (split, label): %s", root, layout, len(table), counts)
    return table


def layouts_schema() -> dict:
    """The JSON-schema fragment of ``x-registry: layouts``: the ``layout`` key (the registered
    names) and, per layout, its OPTIONS (evaluated only when that layout is chosen; the
    source's ``unevaluatedProperties: false`` then refuses the keys of the others)."""
    branches = []
    for layout in names():
        when: dict = {"properties": {"layout": {"const": layout}}}
        if layout != DEFAULT:  # an absent layout is the default one
            when["required"] = ["layout"]
        branches.append({"if": when, "then": {"properties": copy.deepcopy(module(layout).OPTIONS)}})
    return {
        "properties": {"layout": {"enum": names(), "default": DEFAULT,
                                  "description": "how the tree is read (data/acquire/LAYOUTS)"}},
        "allOf": branches,
    }


# --------------------------------------------------------------------------- helpers


def walk_files(root: Path):
    """Every file under ``root`` in a fixed order, skipping hidden entries and ``__MACOSX``."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and d.lower() not in SKIP_DIRS
        )
        for f in sorted(filenames):
            if not f.startswith("."):
                yield Path(dirpath) / f


def row(path: Path, video_id: str, label: int, split: str = "", group: str = "",
        manipulation: str = "") -> dict:
    """One sources row of a file listed in place."""
    return {
        "path": str(path),
        "video_id": video_id,
        "label": int(label),
        "split": split,
        "kind": file_kind(path),
        "group": group,
        "manipulation": manipulation if label else "",
    }


def frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as a table sorted by path."""
    table = pd.DataFrame(rows, columns=[*ROW_COLUMNS, "manipulation"])
    return table.sort_values("path", kind="stable").reset_index(drop=True)


def find_root(root: Path, markers: list[str], layout: str, depth: int = 3) -> Path:
    """``root`` itself or the one folder below it (up to ``depth``) holding one of ``markers``.

    Lets a user (or an unzipped archive) put the layout under a wrapper folder such as
    ``Dataset/`` or ``FaceForensics++/``.
    """
    lowered = {m.lower() for m in markers}

    def has_marker(d: Path) -> bool:
        try:
            return any(c.name.lower() in lowered for c in d.iterdir())
        except OSError:
            return False

    if has_marker(root):
        return root
    level = [root]
    for _ in range(depth):
        level = [
            c
            for d in level
            for c in sorted(d.iterdir())
            if c.is_dir() and not c.name.startswith(".") and c.name.lower() not in SKIP_DIRS
        ]
        found = [d for d in level if has_marker(d)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UserError(
                f"{root}: several folders look like a {layout} dataset "
                f"({', '.join(str(f) for f in found[:4])}); point source.path at one of them"
            )
    raise UserError(
        f"{root}: expected the {layout} layout ({module(layout).HELP}); none of "
        f"{', '.join(markers)} found there or in the folders below it. Fix source.path."
    )
