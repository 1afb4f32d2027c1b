"""The ``manipulation`` column of ``sources.csv``: which method made each fake.

A layout names it as it lists the files (FaceForensics++ by its tree, Celeb-DF by its
synthesis folder, DFDC and OpenForensics by the dataset, a ``folders`` tree by the folder just
below the fake class folder), a synthetic source by its generator family; anything else gets
the dataset's name. Real files have none (empty). ``train_manipulations`` is checked against
these names: from the config where the source names them before listing
(:func:`known_manipulations`), else from the files acquired.
"""

from __future__ import annotations

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire import MANIPULATION, with_manipulation


def name_manipulations(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """``table`` with the dataset's name as the manipulation of every fake its source left
    without one (a URL manifest, a layout that does not name them)."""
    given = (table[MANIPULATION].fillna("").astype(str) if MANIPULATION in table
             else pd.Series("", index=table.index))
    return with_manipulation(table, given.where(given != "", name))


def fake_methods(table: pd.DataFrame) -> list[str]:
    """The manipulations of the fakes of a sources table (or manifest)."""
    return sorted(set(table.loc[table["label"] == 1, MANIPULATION]) - {""})


def known_manipulations(source: dict) -> list[str] | None:
    """The manipulations a source's fakes can have, known from its config alone (a synthetic
    source's families, a layout that names them); None when only its files tell."""
    if source.get("type") == "synthetic":
        if source.get("kind", "videos") == "images":
            return ["swap"]
        return list(source.get("families") or ["swap"])
    if source.get("type") in ("local", "kaggle"):
        from deepfake_lth.data.acquire import layout

        return layout.manipulations(source.get("layout", layout.DEFAULT), source)
    return None


def check_manipulations(train_manipulations, present, name: str, where: str) -> None:
    """UserError naming ``datasets.{name}.train_manipulations`` and the allowed names when it
    names a manipulation that is not in ``present`` (``where`` says who lists them)."""
    unknown = sorted(set(train_manipulations or []) - set(present))
    if unknown:
        raise UserError(
            f"datasets.{name}.train_manipulations: {unknown} are not manipulations of this "
            f"dataset ({where} {sorted(present) or 'none'}); use some of those"
        )
