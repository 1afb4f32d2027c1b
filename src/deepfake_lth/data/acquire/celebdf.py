"""The ``celebdf`` layout: Celeb-DF (v2).

``Celeb-real``, ``YouTube-real`` (label 0) and ``Celeb-synthesis`` (label 1, manipulation
``Celeb-synthesis``). Videos in ``List_of_testing_videos.txt`` get split ``test``; all others
an empty split (pack assigns train/val), so no test video can reach train or val. ``group``
is the target identity (``id0`` for ``id0_0001`` and ``id0_id1_0001``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire.layout import find_root, frame, row, walk_files
from deepfake_lth.data.media import file_kind

log = logging.getLogger(__name__)

HELP = "Celeb-real/, Celeb-synthesis/, YouTube-real/ and List_of_testing_videos.txt"
KIND = "videos"
FOLDERS = {"celeb-real": 0, "youtube-real": 0, "celeb-synthesis": 1}
TEST_LIST = "List_of_testing_videos.txt"
OPTIONS = {
    "test_list": {"type": ["string", "null"], "default": None,
                  "description": "null = <root>/List_of_testing_videos.txt"},
}
_ID = re.compile(r"^(id\d+)_")


def manipulations(_options: dict) -> list[str]:
    return ["Celeb-synthesis"]


def list_files(root: Path, options: dict) -> pd.DataFrame:
    return list_celebdf(root, test_list=options["test_list"])


def _test_list(root: Path, test_list: str | None) -> tuple[Path, dict[tuple[str, str], int]]:
    list_path = Path(test_list).expanduser() if test_list else root / TEST_LIST
    if not list_path.is_absolute() and not list_path.exists():
        list_path = root / list_path
    if list_path.exists():
        return list_path, read_celebdf_test_list(list_path)
    if test_list:
        raise UserError(f"source.test_list: {list_path} not found")
    log.warning("%s: no %s; no video is fixed to the test split", root, TEST_LIST)
    return list_path, {}


def list_celebdf(root: Path, test_list: str | None = None) -> pd.DataFrame:
    """Celeb-DF v2: the official test list -> test, everything else unassigned."""
    root = find_root(Path(root), list(FOLDERS), "celebdf")
    folders = {c.name.lower(): c for c in root.iterdir() if c.is_dir()}
    missing = [n for n in ("Celeb-real", "Celeb-synthesis", "YouTube-real")
               if n.lower() not in folders]
    if "celeb-synthesis" not in folders:
        raise UserError(f"{root}/Celeb-synthesis not found; expected the celebdf layout ({HELP})")
    if missing:
        log.warning("%s: no %s folder; going on without it", root, ", ".join(missing))
    list_path, tests = _test_list(root, test_list)

    rows, seen, disagree = [], set(), 0
    for low, label in FOLDERS.items():
        if low not in folders:
            continue
        folder = folders[low]
        for path in walk_files(folder):
            if file_kind(path) != "video":
                continue
            key = (low, path.name.lower())
            split = ""
            if key in tests:
                split = "test"
                seen.add(key)
                disagree += tests[key] != label
            m = _ID.match(path.stem)
            vid = f"{folder.name}/{path.relative_to(folder).with_suffix('').as_posix()}"
            rows.append(row(path, vid, label, split, m.group(1) if m else "", folder.name))
    if disagree:
        log.warning("%s: %d videos' labels in %s differ from their folder; the folder wins",
                    root, disagree, list_path.name)
    if len(seen) < len(tests):
        log.warning("%s: %d of the %d test videos in %s are not on disk", root,
                    len(tests) - len(seen), len(tests), list_path.name)
    return frame(rows)


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
