"""The ``dfdc`` layout: the DFDC training set (Deepfake Detection Challenge, Kaggle).

``dfdc_train_part_*/metadata.json`` (``{"abc.mp4": {"label": "FAKE", "split": "train",
"original": "xyz.mp4"}, "xyz.mp4": {"label": "REAL", ...}}``) next to the videos it lists;
the parts may sit under one wrapper folder, and a single part folder (its own
``metadata.json``) is read too. ``label`` REAL -> 0, FAKE -> 1. Every fake joins the
``group`` of its ``original`` (a real's group is its own name), so pack's seeded split by
group puts a fake and its source video in the same split. ``split`` is left empty (the
metadata's ``split`` is ``train`` everywhere). Files listed but absent are reported by count
and name and skipped; only a listing left with no file at all is an error. Fakes whose
original is not on disk are kept in their original's group (so one source never spans two
splits); the originals are reported by count and name, and each such fake's ``note`` in
``sources.csv`` says so. Every fake has manipulation ``dfdc``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.media import VIDEO_EXTS

log = logging.getLogger(__name__)

HELP = "dfdc_train_part_*/metadata.json next to the part's *.mp4 (DFDC, Kaggle)"
KIND = "videos"
OPTIONS: dict = {}
LABELS = {"REAL": 0, "FAKE": 1}
MANIPULATION = "dfdc"
COLUMNS = ["path", "video_id", "label", "split", "kind", "group", "manipulation", "note"]
SHOWN = 10  # missing file names listed in the warning


def manipulations(_options: dict) -> list[str]:
    return [MANIPULATION]


def list_files(root: Path, _options: dict) -> pd.DataFrame:
    return list_dfdc(root)


def find_parts(root: Path) -> list[Path]:
    """The ``metadata.json`` files of the parts under ``root`` (or one wrapper folder), or
    ``root``'s own when it is a part."""
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        found = sorted(base.glob("dfdc_train_part_*/metadata.json"))
        if found:
            return found
    if (root / "metadata.json").is_file():
        return [root / "metadata.json"]
    raise UserError(
        f"{root}: no dfdc_train_part_*/metadata.json found; the dfdc layout expects "
        f"{HELP}. Fix source.path (the folder holding the parts)."
    )


def read_metadata(path: Path) -> dict[str, tuple[int, str]]:
    """``metadata.json`` -> ``{file name: (label, group)}``."""
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not readable as JSON ({exc}); re-download this part") from exc
    if not isinstance(entries, dict):
        raise UserError(f"{path}: expected an object {{file name: {{label, original}}}}")
    out = {}
    for name, entry in entries.items():
        label = str((entry or {}).get("label", "")).upper() if isinstance(entry, dict) else ""
        if label not in LABELS:
            raise UserError(
                f"{path}: {name!r} has label {label or None!r}; expected REAL or FAKE"
            )
        original = entry.get("original") if label == "FAKE" else None
        if label == "FAKE" and not original:
            log.warning("%s: fake %s names no original; kept as its own group", path, name)
        out[name] = (LABELS[label], Path(original or name).stem)
    return out


def list_dfdc(root: Path) -> pd.DataFrame:
    """One row per listed video that exists; a fake in its original's group."""
    rows, missing = [], []
    for meta in find_parts(Path(root)):
        part = meta.parent
        for name, (label, group) in sorted(read_metadata(meta).items()):
            path = part / name
            if path.suffix.lower() not in VIDEO_EXTS:
                log.warning("%s: %s is not a video file; skipped", meta, name)
                continue
            if not path.is_file():
                missing.append(f"{part.name}/{name}")
                continue
            rows.append({"path": str(path), "video_id": f"{part.name}/{path.stem}",
                         "label": label, "split": "", "kind": "video", "group": group,
                         "manipulation": MANIPULATION if label else "", "note": ""})
    if missing:
        message = (f"{root}: {len(missing)} of {len(missing) + len(rows)} videos listed in "
                   f"metadata.json are not on disk: {_shown(missing)}")
        if not rows:
            raise UserError(f"{message}. Unpack the parts' videos next to their metadata.json.")
        log.warning("%s; going on with the other %d", message, len(rows))
    _note_absent_originals(root, rows)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values("path", kind="stable").reset_index(drop=True)


def _shown(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (" …" if len(names) > SHOWN else "")


def _note_absent_originals(root: Path, rows: list[dict]) -> None:
    """Fakes whose original is not on disk: noted per row and reported by count and name;
    they stay in the original's group, so they go to one split together."""
    present = {r["group"] for r in rows if r["label"] == 0}
    fakes: dict[str, int] = {}
    for r in rows:
        own = Path(r["path"]).stem == r["group"]  # a fake naming no original
        if r["label"] == 1 and not own and r["group"] not in present:
            fakes[r["group"]] = fakes.get(r["group"], 0) + 1
            r["note"] = f"original {r['group']}.mp4 not on disk"
    if fakes:
        names = [f"{g}.mp4 ({n} fake{'s' if n > 1 else ''})" for g, n in sorted(fakes.items())]
        log.warning(
            "%s: %d originals named by fakes in metadata.json are not on disk: %s; their %d "
            "fakes are kept, grouped under the original's name so that they share one split",
            root, len(fakes), _shown(names), sum(fakes.values()),
        )
