"""The ``faceforensics`` layout: the official FaceForensics++ tree.

Splits come from the official ``train|val|test.json`` (lists of ``[target, source]`` pairs)
when found in ``split_dir``, ``<root>/splits`` or ``<root>``: an original ``071`` takes the
split of the pair holding it, a fake ``071_054`` the split of the pair ``{071, 054}``.
Without them ``split`` is left empty and ``group`` joins each fake with both videos it was
made from (``054_071``), so that pack's seeded split by group never separates a fake from its
original videos. A fake's ``video_id`` and manipulation name its method (``Deepfakes/071_054``).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire.layout import find_root, frame, row, walk_files
from deepfake_lth.data.media import file_kind

log = logging.getLogger(__name__)

HELP = ("original_sequences/youtube/<compression>/videos/*.mp4 and "
        "manipulated_sequences/<method>/<compression>/videos/XXX_YYY.mp4")
KIND = "videos"
METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
DEFAULT_METHODS = ["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"]
COMPRESSIONS = ("c0", "c23", "c40")
OPTIONS = {
    "compression": {"enum": list(COMPRESSIONS), "default": "c23"},
    "methods": {"type": "array", "items": {"enum": list(METHODS)}, "minItems": 1,
                "uniqueItems": True, "default": DEFAULT_METHODS,
                "description": "the manipulations listed (their folder names)"},
    "originals": {"enum": ["youtube"], "default": "youtube"},
    "split_dir": {"type": ["string", "null"], "default": None,
                  "description": "folder of train|val|test.json (null: <root>/splits, then "
                                 "<root>)"},
}


def manipulations(options: dict) -> list[str]:
    methods = options["methods"]
    return [methods] if isinstance(methods, str) else list(methods)


def list_files(root: Path, options: dict) -> pd.DataFrame:
    return list_faceforensics(root, compression=options["compression"],
                              methods=options["methods"], originals=options["originals"],
                              split_dir=options["split_dir"])


def _videos(folder: Path) -> list[Path]:
    return [p for p in walk_files(folder) if file_kind(p) == "video"]


def _compression_dir(parent: Path, compression: str) -> Path | None:
    names = [compression] + (["raw"] if compression == "c0" else [])
    for n in names:
        if (parent / n).is_dir():
            return parent / n
    return None


def read_ff_splits(folder: Path) -> dict[str, str]:
    """Official split JSONs in ``folder`` -> ``{video id: split}`` (``"071"`` and pair keys)."""
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        path = Path(folder) / f"{split}.json"
        if not path.exists():
            continue
        try:
            pairs = json.loads(path.read_text())
            pairs = [tuple(str(x) for x in p) for p in pairs]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("every entry must be a [target, source] pair")
        except (ValueError, TypeError) as exc:
            raise UserError(
                f"{path}: not a FaceForensics++ split file (a JSON list of [target, source] id "
                f"pairs like [[\"071\", \"054\"]]): {exc}"
            ) from exc
        for a, b in pairs:
            for key in (a, b, pair_key(a, b)):
                if out.get(key, split) != split:
                    raise UserError(f"{path}: video {key} is also in the {out[key]} split")
                out[key] = split
    return out


def pair_key(a: str, b: str) -> str:
    return "_".join(sorted((a, b)))


def _find_split_dir(root: Path, split_dir: str | None) -> Path | None:
    if split_dir:
        d = Path(split_dir).expanduser()
        if not d.is_absolute() and (root / d).is_dir():
            d = root / d  # relative to the dataset root first, then to the working folder
        if not any((d / f"{s}.json").exists() for s in ("train", "val", "test")):
            raise UserError(
                f"source.split_dir: no train.json, val.json or test.json in {d}; give the folder "
                f"of the official FaceForensics++ split files"
            )
        return d
    for d in (root / "splits", root):
        if any((d / f"{s}.json").exists() for s in ("train", "val", "test")):
            return d
    return None


class _Groups:
    """Union-find over video ids: a fake joins its target and source videos."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def names(self) -> dict[str, str]:
        members: dict[str, list[str]] = defaultdict(list)
        for a in self.parent:
            members[self.find(a)].append(a)
        return {a: "_".join(sorted(members[self.find(a)])) for a in self.parent}


def _check(compression: str, methods, originals: str) -> list[str]:
    if compression not in COMPRESSIONS:
        raise UserError(f"source.compression: {compression!r}; use one of {COMPRESSIONS}")
    if isinstance(methods, str):
        methods = [methods]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UserError(f"source.methods: {unknown or 'empty'}; choose from {list(METHODS)}")
    if originals != "youtube":
        raise UserError(f"source.originals: {originals!r}; only 'youtube' is supported")
    return list(methods)


def _entries(root: Path, compression: str, methods: list[str], originals: str) -> list[tuple]:
    """(path, video_id, label, pair key, ids, method) of every original and chosen fake."""

    def need(folder: Path | None, parent: Path) -> Path:
        if folder is None:
            raise UserError(
                f"{parent}/{compression}/videos not found: the faceforensics layout expects "
                f"{HELP}; download compression {compression} or set source.compression"
            )
        if not (folder / "videos").is_dir():
            raise UserError(f"{folder}/videos not found; expected {HELP}")
        return folder / "videos"

    entries = []
    orig_parent = root / "original_sequences" / originals
    for p in _videos(need(_compression_dir(orig_parent, compression), orig_parent)):
        entries.append((p, f"original/{p.stem}", 0, p.stem, (p.stem,), ""))
    for method in methods:
        parent = root / "manipulated_sequences" / method
        for p in _videos(need(_compression_dir(parent, compression), parent)):
            ids = tuple(p.stem.split("_"))
            if len(ids) != 2:
                log.warning("%s: not named TARGET_SOURCE.mp4; kept as its own group", p)
                ids = (p.stem,)
            key = pair_key(*ids) if len(ids) == 2 else p.stem
            entries.append((p, f"{method}/{p.stem}", 1, key, ids, method))
    return entries


def list_faceforensics(
    root: Path,
    compression: str = "c23",
    methods=DEFAULT_METHODS,
    originals: str = "youtube",
    split_dir: str | None = None,
) -> pd.DataFrame:
    """The official FaceForensics++ tree, one compression, the chosen methods."""
    methods = _check(compression, methods, originals)
    root = find_root(Path(root), ["original_sequences", "manipulated_sequences"], "faceforensics")
    entries = _entries(root, compression, methods, originals)
    groups = _Groups()
    for *_, ids, _method in entries:
        for other in ids[1:]:
            groups.union(ids[0], other)
        groups.find(ids[0])
    names = groups.names()

    sdir = _find_split_dir(root, split_dir)
    official = read_ff_splits(sdir) if sdir is not None else {}
    if sdir is not None:
        log.info("%s: splits from the official files in %s", root, sdir)
    else:
        log.info("%s: no official split files; split left to pack, grouped by pair", root)
    rows, uncovered = [], 0
    for path, vid, label, key, ids, method in entries:
        split = ""
        if official:
            split = official.get(key) or official.get(ids[0], "")
            uncovered += not split
        rows.append(row(path, vid, label, split, group=names[ids[0]], manipulation=method))
    if uncovered:
        log.warning("%s: %d videos are in no official split file; pack assigns them", root,
                    uncovered)
    return frame(rows)
