"""The checks of the config's ``datasets`` section that the schema cannot express: local
paths that exist, datasets that read another's faces (``faces_from``), datasets only scored
(``role: test``) and ``train_manipulations`` against the manipulations a source names.

Used by :func:`deepfake_lth.workflow.config.validate`; every problem is a sentence naming the
key and the fix.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import ConfigError, UserError

# what a faces_from dataset takes from the dataset that extracts its faces
SHARED_KEYS = ("source", "shards", "detect_faces")
# face settings that do not change the crops (pack's split, MTCNN's batch size)
NOT_CROP_KEYS = ("split", "split_seed", "batch_size")


def _differing(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        both = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = _merged(out[key], value) if both else copy.deepcopy(value)
    return out


def take_faces_from(config: dict, raw: Mapping[str, Any]) -> None:
    """Give each ``faces_from`` dataset the source, shards, detect_faces and own face settings
    of the dataset whose faces it reads (in place; its own ``faces`` keys on top); ConfigError
    when that dataset is missing, is itself a ``faces_from`` dataset, or the config gives
    other values for those keys. Runs before each dataset's ``faces`` is merged with the
    global section."""
    datasets = config["datasets"]
    problems = []
    for name, ds in datasets.items():
        other = ds.get("faces_from")
        if other is None:
            continue
        key = f"'datasets.{name}.faces_from'"
        if other == name:
            problems.append(f"{key}: names the dataset itself; name the dataset whose faces it "
                            "reads, or drop faces_from")
            continue
        if other not in datasets:
            problems.append(f"{key}: dataset {other!r} is not in 'datasets' "
                            f"({', '.join(datasets)}); add it there or fix the name")
            continue
        if datasets[other].get("faces_from"):
            problems.append(f"{key}: {other!r} reads the faces of "
                            f"{datasets[other]['faces_from']!r} itself; name that one")
            continue
        given = (raw.get("datasets") or {}).get(name) or {}
        for shared in SHARED_KEYS:
            if shared in given and ds[shared] != datasets[other][shared]:
                differ = (_differing(ds[shared], datasets[other][shared])
                          if shared == "source" else [])
                what = f" (differing keys: {', '.join(differ)})" if differ else ""
                problems.append(
                    f"'datasets.{name}.{shared}' differs from 'datasets.{other}.{shared}'{what}; "
                    f"a faces_from dataset reads {other}'s faces: drop '{shared}' from {name}")
            ds[shared] = copy.deepcopy(datasets[other][shared])
        if "kind" in datasets[other] and "kind" not in given:
            ds["kind"] = datasets[other]["kind"]
        # the other's own face settings, this dataset's on top (split, split_seed)
        ds["faces"] = _merged(datasets[other].get("faces") or {}, ds.get("faces") or {})
    if problems:
        raise ConfigError("; ".join(problems))


def check_datasets(config: dict) -> list[str]:
    """What is wrong with the datasets' faces_from, role and train_manipulations."""
    return [*_check_local_paths(config), *_check_face_settings(config), *_check_roles(config),
            *_check_manipulations(config)]


def _check_local_paths(config: dict) -> list[str]:
    out = []
    for name, ds in config["datasets"].items():
        src = ds["source"]
        if ds.get("faces_from"):
            continue  # the dataset whose faces it reads has this source: named there
        if src["type"] == "local" and not Path(src["path"]).expanduser().exists():
            out.append(f"'datasets.{name}.source.path': {src['path']} does not exist (a relative "
                       f"path is read from {Path.cwd()}); fix the path, or mount the data there")
    return out


def _check_face_settings(config: dict) -> list[str]:
    """A faces_from dataset must crop as the dataset it reads does."""
    out = []
    datasets = config["datasets"]
    for name, ds in datasets.items():
        other = ds.get("faces_from")
        if not other or other not in datasets:
            continue
        mine, theirs = ({k: v for k, v in d["faces"].items() if k not in NOT_CROP_KEYS}
                        for d in (ds, datasets[other]))
        differ = _differing(mine, theirs)
        if differ:
            values = ", ".join(f"{k} ({mine.get(k)!r} vs {theirs.get(k)!r})" for k in differ)
            out.append(
                f"'datasets.{name}.faces_from': {other}'s faces were cropped with other face "
                f"settings: {values}; give {name} the same 'faces' settings (only split and "
                f"split_seed may differ), or drop faces_from to extract its own")
    return out


def _check_roles(config: dict) -> list[str]:
    """A dataset only scored (role test) is never trained on."""
    datasets = config["datasets"]
    tests = [n for n, ds in datasets.items() if ds.get("role") == "test"]
    out = []
    for name in tests:
        if datasets[name].get("train_manipulations"):
            out.append(f"'datasets.{name}.train_manipulations': {name} has role test (never "
                       "trained on); drop train_manipulations or set its role to train")
    for name, ds in datasets.items():
        if ds.get("faces_from") in tests and ds.get("role") != "test":
            out.append(f"'datasets.{name}.faces_from': {ds['faces_from']!r} has role test, so "
                       f"it keeps only what is scored; {name} (role train) cannot train on "
                       f"its faces: read them with role test too, or set {ds['faces_from']}'s "
                       "role to train")
    for i, pair in enumerate(config["transfer"]["pairs"]):
        for end in ("from", "to"):
            if pair[end] in tests:
                out.append(f"'transfer.pairs[{i}].{end}': {pair[end]!r} has role test (never "
                           "trained on) but a transfer trains on both datasets; set its role "
                           "to train, or score it zero-shot with 'generalisation'")
    for i, entry in enumerate(config.get("generalisation", [])):
        if entry["from"] in tests:
            out.append(f"'generalisation[{i}].from': {entry['from']!r} has role test (never "
                       "trained on), so it has no runs to score; set its role to train")
    if tests and len(tests) == len(datasets):
        out.append("every dataset has role test: nothing is trained; set 'role: train' on the "
                   "datasets to train on")
    return out


def _check_manipulations(config: dict) -> list[str]:
    """train_manipulations against the manipulations a source names before any file is
    listed (the others are checked when the dataset is acquired)."""
    from deepfake_lth.data.acquire.manipulations import check_manipulations, known_manipulations

    out = []
    for name, ds in config["datasets"].items():
        wanted = ds.get("train_manipulations")
        if not wanted:
            continue
        known = known_manipulations(ds["source"])
        if known is None:
            continue
        source = ds["source"]
        where = (f"its {source['layout']} source names" if source.get("layout")
                 else f"its {source['type']} source names")
        try:
            check_manipulations(wanted, known, name, where)
        except UserError as exc:
            out.append(str(exc))
    return out
