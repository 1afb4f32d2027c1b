"""List a dataset that is already on disk, in place (nothing is copied).

Layouts (``source.layout``):

``folders``
    ``[split/]<real>|<fake>/...`` at any depth: a file's label is the nearest folder above it
    whose name is in ``real_names`` or ``fake_names``, its split the nearest folder named in
    ``split_names`` (empty when none: pack assigns it). Names match without regard to case.
    A video's ``video_id`` is its path relative to the root without extension; an image's is
    its file stem, or the part of the stem that ``group_regex`` captures (frames of one video,
    e.g. ``^(.+)_\\d+$`` for ``071_054_0012.png``). Stems that occur in more than one folder
    without a ``group_regex`` are qualified by their folder, so that every image stays its
    own unit. With a ``group_regex``, a video found under two splits of the source (a leak in
    the source's own split) is moved whole to the most held-out one (test, then val).
``openforensics``
    The Kaggle OpenForensics image set, ``Train|Validation|Test/Real|Fake/*.jpg`` (possibly
    under one wrapper folder such as ``Dataset/``): splits kept, each image its own unit.
``faceforensics``
    The official FaceForensics++ tree. Splits come from the official ``train|val|test.json``
    (lists of ``[target, source]`` pairs) when found in ``split_dir``, ``<root>/splits`` or
    ``<root>``: an original ``071`` takes the split of the pair holding it, a fake ``071_054``
    the split of the pair ``{071, 054}``. Without them ``split`` is left empty and ``group``
    joins each fake with both videos it was made from (``054_071``), so that pack's seeded
    split by group never separates a fake from its original videos.
``dfdc``
    The DFDC training set, ``dfdc_train_part_*/metadata.json`` (see ``acquire.dfdc``).
``celebdf``
    Celeb-DF (v2): ``Celeb-real``, ``YouTube-real`` (label 0) and ``Celeb-synthesis``
    (label 1). Videos in ``List_of_testing_videos.txt`` get split ``test``; all others an
    empty split (pack assigns train/val), so no test video can reach train or val. ``group``
    is the target identity (``id0`` for ``id0_0001`` and ``id0_id1_0001``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire.dfdc import DFDC_HELP, list_dfdc
from deepfake_lth.data.media import IMAGE_EXTS, VIDEO_EXTS

log = logging.getLogger(__name__)

LAYOUTS = ("folders", "openforensics", "faceforensics", "celebdf", "dfdc")
REAL_NAMES = ("real", "original", "originals", "pristine")
FAKE_NAMES = ("fake", "manipulated", "deepfake", "deepfakes", "synthesis")
SPLIT_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}  # where a video found in two splits goes
FF_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
FF_DEFAULT_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
FF_COMPRESSIONS = ("c0", "c23", "c40")
CELEBDF_FOLDERS = {"celeb-real": 0, "youtube-real": 0, "celeb-synthesis": 1}
CELEBDF_TEST_LIST = "List_of_testing_videos.txt"
SKIP_DIRS = frozenset({"__macosx"})

LAYOUT_HELP = {
    "folders": "[split/]real|fake/<files>, e.g. train/real/a.mp4 and test/fake/b.jpg",
    "openforensics": "Train|Validation|Test/Real|Fake/*.jpg",
    "faceforensics": "original_sequences/youtube/<compression>/videos/*.mp4 and "
    "manipulated_sequences/<method>/<compression>/videos/XXX_YYY.mp4",
    "celebdf": "Celeb-real/, Celeb-synthesis/, YouTube-real/ and List_of_testing_videos.txt",
    "dfdc": DFDC_HELP,
}


def file_kind(path: str | Path) -> str | None:
    """``video`` or ``image`` by extension; None for anything else."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext in IMAGE_EXTS:
        return "image"
    return None


def acquire(name: str, source: dict, out_dir: Path, seed: int) -> pd.DataFrame:
    """The sources table of a local folder; rows point to the files in place (absolute)."""
    if not source.get("path"):
        raise UserError(f"datasets.{name}.source.path: set the folder that holds the dataset")
    root = Path(os.path.expandvars(str(source["path"]))).expanduser()
    return list_layout(root, source.get("layout", "folders"), source, seed=seed, name=name)


def list_layout(
    root: Path, layout: str, options: dict | None = None, seed: int = 0, name: str = "?"
) -> pd.DataFrame:
    """Dispatch to the lister of ``layout`` with the layout's keys taken from ``options``."""
    options = dict(options or {})
    if layout not in LAYOUTS:
        raise UserError(
            f"datasets.{name}.source.layout: unknown layout {layout!r}; use one of "
            f"{', '.join(LAYOUTS)}"
        )
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"datasets.{name}.source: folder {root} not found; expected the {layout} layout "
            f"({LAYOUT_HELP[layout]}). Fix source.path."
        )
    root = root.resolve()
    if layout == "folders":
        table = list_folders(
            root,
            real_names=options.get("real_names", REAL_NAMES),
            fake_names=options.get("fake_names", FAKE_NAMES),
            split_names=options.get("split_names"),
            group_regex=options.get("group_regex"),
        )
    elif layout == "openforensics":
        table = list_openforensics(root)
    elif layout == "faceforensics":
        table = list_faceforensics(
            root,
            compression=options.get("compression", "c23"),
            methods=options.get("methods", FF_DEFAULT_METHODS),
            originals=options.get("originals", "youtube"),
            split_dir=options.get("split_dir"),
        )
    elif layout == "dfdc":
        table = list_dfdc(root)
    else:
        table = list_celebdf(root, test_list=options.get("test_list"))
    if table.empty:
        raise UserError(
            f"{root}: no video or image files found in the {layout} layout "
            f"({LAYOUT_HELP[layout]})"
        )
    counts = table.groupby(["split", "label"]).size().to_dict()
    log.info("%s (%s): %d files; by (split, label): %s", root, layout, len(table), counts)
    return table


# --------------------------------------------------------------------------- helpers


def _walk_files(root: Path):
    """Every file under ``root`` in a fixed order, skipping hidden entries and ``__MACOSX``."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and d.lower() not in SKIP_DIRS
        )
        for f in sorted(filenames):
            if not f.startswith("."):
                yield Path(dirpath) / f


def _row(path: Path, video_id: str, label: int, split: str = "", group: str = "") -> dict:
    return {
        "path": str(path),
        "video_id": video_id,
        "label": int(label),
        "split": split,
        "kind": file_kind(path),
        "group": group,
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["path", "video_id", "label", "split", "kind", "group"])
    return table.sort_values("path", kind="stable").reset_index(drop=True)


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
        f"{root}: expected the {layout} layout ({LAYOUT_HELP[layout]}); none of "
        f"{', '.join(markers)} found there or in the folders below it. Fix source.path."
    )


# --------------------------------------------------------------------------- folders


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
    splits = _split_map(split_names)
    pattern = None
    if group_regex:
        try:
            pattern = re.compile(group_regex)
        except re.error as exc:
            raise UserError(f"source.group_regex {group_regex!r} is not a regex: {exc}") from exc

    rows, unlabelled, unmatched = [], 0, 0
    for path in _walk_files(root):
        kind = file_kind(path)
        if kind is None:
            continue
        rel = path.relative_to(root)
        label, split = None, ""
        for part in reversed(rel.parts[:-1]):  # nearest folder wins
            low = part.lower()
            if label is None and low in real:
                label = 0
            elif label is None and low in fake:
                label = 1
            elif not split and low in splits:
                split = splits[low]
        if label is None:
            unlabelled += 1
            continue
        if kind == "video":
            vid = rel.with_suffix("").as_posix()
        elif pattern is not None:
            m = pattern.search(path.stem)
            if m is None:
                unmatched += 1
                vid = path.stem
            else:
                vid = m.groupdict().get("id") or (m.group(1) if m.groups() else m.group(0))
        else:
            vid = path.stem
        row = _row(path, vid, label, split)
        row["_folder"] = rel.parent.as_posix()
        rows.append(row)
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
            f"{sorted(fake)} (fake); expected {LAYOUT_HELP['folders']}. Fix source.path or "
            f"set source.real_names / fake_names."
        )
    _unique_ids(rows, grouped=pattern is not None, root=root)
    for row in rows:
        del row["_folder"]
    return _frame(rows)


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


# --------------------------------------------------------------------------- openforensics

OPENFORENSICS_SPLITS = {"train": "train", "validation": "val", "val": "val", "test": "test"}


def list_openforensics(root: Path) -> pd.DataFrame:
    """``Train|Validation|Test/Real|Fake/*.jpg``: split kept, each image its own video_id."""
    base = find_root(Path(root), ["Train", "Validation", "Test"], "openforensics")
    rows = []
    for split_dir in sorted(base.iterdir()):
        split = OPENFORENSICS_SPLITS.get(split_dir.name.lower())
        if split is None or not split_dir.is_dir():
            continue
        classes = {c.name.lower(): c for c in split_dir.iterdir() if c.is_dir()}
        missing = [c for c in ("real", "fake") if c not in classes]
        if missing:
            raise UserError(
                f"{split_dir}: no {' or '.join(m.title() for m in missing)} folder; expected "
                f"the openforensics layout ({LAYOUT_HELP['openforensics']})"
            )
        for cls, label in (("real", 0), ("fake", 1)):
            for path in _walk_files(classes[cls]):
                if file_kind(path) == "image":
                    vid = path.relative_to(base).with_suffix("").as_posix()
                    rows.append(_row(path, vid, label, split))
    return _frame(rows)


# --------------------------------------------------------------------------- faceforensics


def _ff_videos(folder: Path) -> list[Path]:
    return [p for p in _walk_files(folder) if file_kind(p) == "video"]


def _ff_compression_dir(parent: Path, compression: str) -> Path | None:
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
            for key in (a, b, _pair_key(a, b)):
                if out.get(key, split) != split:
                    raise UserError(f"{path}: video {key} is also in the {out[key]} split")
                out[key] = split
    return out


def _pair_key(a: str, b: str) -> str:
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


def list_faceforensics(
    root: Path,
    compression: str = "c23",
    methods=FF_DEFAULT_METHODS,
    originals: str = "youtube",
    split_dir: str | None = None,
) -> pd.DataFrame:
    """The official FaceForensics++ tree, one compression, the chosen methods."""
    if compression not in FF_COMPRESSIONS:
        raise UserError(f"source.compression: {compression!r}; use one of {FF_COMPRESSIONS}")
    if isinstance(methods, str):
        methods = [methods]
    unknown = [m for m in methods if m not in FF_METHODS]
    if unknown or not methods:
        raise UserError(f"source.methods: {unknown or 'empty'}; choose from {list(FF_METHODS)}")
    if originals != "youtube":
        raise UserError(f"source.originals: {originals!r}; only 'youtube' is supported")
    root = find_root(Path(root), ["original_sequences", "manipulated_sequences"], "faceforensics")

    def need(folder: Path | None, parent: Path) -> Path:
        if folder is None:
            raise UserError(
                f"{parent}/{compression}/videos not found: the faceforensics layout expects "
                f"{LAYOUT_HELP['faceforensics']}; download compression {compression} or set "
                f"source.compression"
            )
        if not (folder / "videos").is_dir():
            raise UserError(
                f"{folder}/videos not found; expected {LAYOUT_HELP['faceforensics']}"
            )
        return folder / "videos"

    entries: list[tuple[Path, str, int, str, tuple[str, ...]]] = []
    orig_parent = root / "original_sequences" / originals
    for p in _ff_videos(need(_ff_compression_dir(orig_parent, compression), orig_parent)):
        entries.append((p, f"original/{p.stem}", 0, p.stem, (p.stem,)))
    for method in methods:
        parent = root / "manipulated_sequences" / method
        for p in _ff_videos(need(_ff_compression_dir(parent, compression), parent)):
            ids = tuple(p.stem.split("_"))
            if len(ids) != 2:
                log.warning("%s: not named TARGET_SOURCE.mp4; kept as its own group", p)
                ids = (p.stem,)
            key = _pair_key(*ids) if len(ids) == 2 else p.stem
            entries.append((p, f"{method}/{p.stem}", 1, key, ids))

    groups = _Groups()
    for *_, ids in entries:
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
    for path, vid, label, key, ids in entries:
        split = ""
        if official:
            split = official.get(key) or official.get(ids[0], "")
            uncovered += not split
        rows.append(_row(path, vid, label, split, group=names[ids[0]]))
    if uncovered:
        log.warning("%s: %d videos are in no official split file; pack assigns them", root,
                    uncovered)
    return _frame(rows)


# --------------------------------------------------------------------------- celebdf

_CELEB_ID = re.compile(r"^(id\d+)_")


def list_celebdf(root: Path, test_list: str | None = None) -> pd.DataFrame:
    """Celeb-DF v2: the official test list -> test, everything else unassigned."""
    root = find_root(Path(root), list(CELEBDF_FOLDERS), "celebdf")
    folders = {c.name.lower(): c for c in root.iterdir() if c.is_dir()}
    missing = [n for n in ("Celeb-real", "Celeb-synthesis", "YouTube-real")
               if n.lower() not in folders]
    if "celeb-synthesis" not in folders:
        raise UserError(
            f"{root}/Celeb-synthesis not found; expected the celebdf layout "
            f"({LAYOUT_HELP['celebdf']})"
        )
    if missing:
        log.warning("%s: no %s folder; going on without it", root, ", ".join(missing))

    list_path = Path(test_list).expanduser() if test_list else root / CELEBDF_TEST_LIST
    if not list_path.is_absolute() and not list_path.exists():
        list_path = root / list_path
    tests: dict[tuple[str, str], int] = {}
    if list_path.exists():
        tests = read_celebdf_test_list(list_path)
    elif test_list:
        raise UserError(f"source.test_list: {list_path} not found")
    else:
        log.warning("%s: no %s; no video is fixed to the test split", root, CELEBDF_TEST_LIST)

    rows, seen, disagree = [], set(), 0
    for low, label in CELEBDF_FOLDERS.items():
        if low not in folders:
            continue
        folder = folders[low]
        for path in _walk_files(folder):
            if file_kind(path) != "video":
                continue
            key = (low, path.name.lower())
            split = ""
            if key in tests:
                split = "test"
                seen.add(key)
                disagree += tests[key] != label
            m = _CELEB_ID.match(path.stem)
            group = m.group(1) if m else ""
            vid = f"{folder.name}/{path.relative_to(folder).with_suffix('').as_posix()}"
            rows.append(_row(path, vid, label, split, group))
    if disagree:
        log.warning("%s: %d videos' labels in %s differ from their folder; the folder wins",
                    root, disagree, list_path.name)
    if len(seen) < len(tests):
        log.warning("%s: %d of the %d test videos in %s are not on disk", root,
                    len(tests) - len(seen), len(tests), list_path.name)
    return _frame(rows)


def read_celebdf_test_list(path: Path) -> dict[tuple[str, str], int]:
    """``List_of_testing_videos.txt`` -> ``{(folder, file name): label}``, labels 0 real 1 fake.

    The file's own convention is the opposite (1 real, 0 fake); it is converted here.
    """
    out: dict[tuple[str, str], int] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or parts[0] not in ("0", "1") or "/" not in parts[1]:
            raise UserError(
                f"{path}:{n}: expected '<1 real|0 fake> <folder>/<video>.mp4', got {line!r}"
            )
        rel = parts[1].strip().replace("\\", "/")
        folder, name = rel.split("/", 1)[0].lower(), rel.rsplit("/", 1)[-1].lower()
        out[(folder, name)] = 1 - int(parts[0])
    return out
