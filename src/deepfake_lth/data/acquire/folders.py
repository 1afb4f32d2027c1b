"""The ``folders`` layout: ``[split/]<real>|<fake>/...`` at any depth.

A file's label is the nearest folder above it whose name is in ``real_names`` or
``fake_names``, its split the nearest folder named in ``split_names`` (empty when none: pack
assigns it). Names match without regard to case. A video's ``video_id`` is its path relative
to the root without extension; an image's is its file stem, or the part of the stem that
``group_regex`` captures (frames of one video, e.g. ``^(.+)_\\d+$`` for ``071_054_0012.png``).
Stems that occur in more than one folder without a ``group_regex`` are qualified by their
folder, so that every image stays its own unit. With a ``group_regex``, a video found under
two splits of the source (a leak in the source's own split) is moved whole to the most
held-out one (test, then val). A fake's manipulation is the folder just below its class
folder (``fake/FaceSwap/a.mp4`` → ``FaceSwap``; a file directly in ``fake/`` gets ``fake``).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path, PurePath

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire.layout import frame, row, walk_files
from deepfake_lth.data.media import file_kind

log = logging.getLogger(__name__)

HELP = "[split/]real|fake/<files>, e.g. train/real/a.mp4 and test/fake/b.jpg"
KIND = None  # videos, images, or frames grouped into videos: the files decide
REAL_NAMES = ["real", "original", "originals", "pristine"]
FAKE_NAMES = ["fake", "manipulated", "deepfake", "deepfakes", "synthesis"]
SPLIT_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}  # where a video found in two splits goes
_NAMES = {"type": "array", "items": {"type": "string"}, "minItems": 1}
OPTIONS = {
    "real_names": {**_NAMES, "default": REAL_NAMES,
                   "description": "class folders of label 0 (any case)"},
    "fake_names": {**_NAMES, "default": FAKE_NAMES,
                   "description": "class folders of label 1 (any case)"},
    "split_names": {
        "type": ["object", "null"], "default": None, "additionalProperties": False,
        "description": "split folder names; null = train|training, val|valid|validation, "
                       "test|testing",
        "properties": {s: {"type": "array", "items": {"type": "string"}} for s in SPLIT_NAMES},
    },
    "group_regex": {
        "type": ["string", "null"], "default": None,
        "description": "regex on an image's stem whose group 1 (or (?P<id>...)) is its "
                       "video_id, e.g. '^(.+)_\\d+$' for frames",
    },
}


def list_files(root: Path, options: dict) -> pd.DataFrame:
    return list_folders(root, real_names=options["real_names"], fake_names=options["fake_names"],
                        split_names=options["split_names"], group_regex=options["group_regex"])


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


def _name_map(names, what: str) -> set[str]:
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise UserError(f"source.{what}: give a list of folder names, e.g. [real, Real]")
    return {n.lower() for n in names}


def _split_map(split_names: dict | None) -> dict[str, str]:
    """Folder name (lower case) -> split."""
    split_names = split_names or SPLIT_NAMES
    out: dict[str, str] = {}
    for split, names in split_names.items():
        if split not in SPLIT_PRIORITY:
            raise UserError(f"source.split_names: keys must be train, val, test; got {split!r}")
        for n in [names] if isinstance(names, str) else names:
            out[str(n).lower()] = split
    return out


def _pattern(group_regex: str | None) -> re.Pattern | None:
    if not group_regex:
        return None
    try:
        return re.compile(group_regex)
    except re.error as exc:
        raise UserError(f"source.group_regex {group_regex!r} is not a regex: {exc}") from exc


def _label_and_split(rel: Path, real: set[str], fake: set[str], splits: dict[str, str]):
    """The nearest class folder's label (None: none) and the nearest split folder's split."""
    label, split = None, ""
    for part in reversed(rel.parts[:-1]):
        low = part.lower()
        if label is None and low in real:
            label = 0
        elif label is None and low in fake:
            label = 1
        elif not split and low in splits:
            split = splits[low]
    return label, split


def list_folders(
    root: Path,
    real_names=REAL_NAMES,
    fake_names=FAKE_NAMES,
    split_names: dict | None = None,
    group_regex: str | None = None,
) -> pd.DataFrame:
    """Label by class folder, split by split folder, at any depth under ``root``."""
    root = Path(root)
    real, fake = _name_map(real_names, "real_names"), _name_map(fake_names, "fake_names")
    if real & fake:
        raise UserError(f"source.real_names and fake_names share {sorted(real & fake)}")
    splits, pattern = _split_map(split_names), _pattern(group_regex)
    rows, unlabelled, unmatched = [], 0, 0
    for path in walk_files(root):
        kind = file_kind(path)
        if kind is None:
            continue
        rel = path.relative_to(root)
        label, split = _label_and_split(rel, real, fake, splits)
        if label is None:
            unlabelled += 1
            continue
        vid = rel.with_suffix("").as_posix() if kind == "video" else path.stem
        if kind == "image" and pattern is not None:
            m = pattern.search(path.stem)
            unmatched += m is None
            if m is not None:
                vid = m.groupdict().get("id") or (m.group(1) if m.groups() else m.group(0))
        method = folder_manipulation(str(rel), fake_names) if label else ""
        rows.append({**row(path, vid, label, split, manipulation=method),
                     "_folder": rel.parent.as_posix()})
    _report(root, rows, unlabelled, unmatched, real, fake, group_regex)
    _unique_ids(rows, grouped=pattern is not None, root=root)
    for r in rows:
        del r["_folder"]
    return frame(rows)


def _report(root, rows, unlabelled, unmatched, real, fake, group_regex) -> None:
    if unlabelled:
        log.warning(
            "%s: %d files are under no folder named %s (real) or %s (fake) and were left out",
            root, unlabelled, sorted(real), sorted(fake),
        )
    if unmatched:
        log.warning("%s: group_regex %r matched no part of %d file names; their stem is "
                    "their video_id", root, group_regex, unmatched)
    if not rows:
        raise UserError(
            f"{root}: no video or image files under folders named {sorted(real)} (real) or "
            f"{sorted(fake)} (fake); expected {HELP}. Fix source.path or "
            f"set source.real_names / fake_names."
        )


def _unique_ids(rows: list[dict], grouped: bool, root: Path) -> None:
    """Make image ids name one unit: qualify colliding stems; resolve split leaks of groups."""
    images = [r for r in rows if r["kind"] == "image"]
    folders: dict[str, set[str]] = defaultdict(set)
    labels: dict[str, set[int]] = defaultdict(set)
    for r in images:
        folders[r["video_id"]].add(r["_folder"])
        labels[r["video_id"]].add(r["label"])
    if not grouped:
        if any(len(f) > 1 for f in folders.values()):
            for r in images:
                r["video_id"] = f"{r['_folder']}/{r['video_id']}"
        return
    for r in images:  # the same id under both labels cannot be one video
        if len(labels[r["video_id"]]) > 1:
            r["video_id"] = f"{'fake' if r['label'] else 'real'}/{r['video_id']}"
    splits: dict[str, set[str]] = defaultdict(set)
    for r in images:
        splits[r["video_id"]].add(r["split"])
    leaks = {v: s for v, s in splits.items() if len(s - {""}) > 1 or ("" in s and len(s) > 1)}
    if leaks:
        for r in images:
            if r["video_id"] in leaks:
                given = leaks[r["video_id"]] - {""}
                r["split"] = min(given, key=SPLIT_PRIORITY.__getitem__)
        log.warning(
            "%s: %d videos appear under more than one split (e.g. %s); each was moved whole "
            "to its most held-out split so that no video is in two splits",
            root, len(leaks), ", ".join(sorted(leaks)[:5]),
        )
