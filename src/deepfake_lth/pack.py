"""Merge extraction shards into the packed dataset and assign splits by video.

Writes, under ``results/{dataset}/faces/``:

- ``faces.npy``: uint8 (N, S, S, 3) RGB crops, read with a memory map by training jobs;
- ``manifest.csv``: one row per crop: ``index`` (row in faces.npy), ``video_id``, ``label``,
  ``split``, ``frame_index``, ``source``, ``detected`` (1 when MTCNN found the face in that
  very frame, 0 when the box came from the nearest frame);
- ``extraction_log.csv``: one row per source file with its status (see faces.py);
- ``summary.json``: counts per split, label and status.

Splits are assigned per video (never two splits for one video) with a fixed seed. Files
whose source fixes the split (an image set's Train/Validation/Test folders, a test list)
keep it. Otherwise videos are grouped by ``group`` when the source gives one (a fake and its
source video, one identity), so that a group never straddles two splits.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from deepfake_lth.errors import UserError

log = logging.getLogger(__name__)


def assign_splits(videos: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.Series:
    """Split per video: ``videos`` has video_id, label, split ('' = free), group.

    Free videos are grouped (``group``, else the video itself), the groups shuffled with
    ``seed`` and dealt to test, val and train until each reaches its share of videos; a few
    reshuffles make sure test and val hold both labels when there are enough groups.
    """
    out = videos.set_index("video_id")["split"].copy()
    free = videos[videos["split"] == ""]
    if free.empty:
        return out
    keys = free["group"].where(free["group"] != "", free["video_id"])
    groups = sorted(set(keys))
    sizes = keys.value_counts()
    labels_of = free.groupby(keys)["label"].agg(lambda s: frozenset(s))
    n = len(free)
    best = None
    for attempt in range(200):
        rng = np.random.default_rng([seed, attempt])
        order = [groups[i] for i in rng.permutation(len(groups))]
        assignment, filled = {}, {"test": 0, "val": 0}
        for g in order:
            for split in ("test", "val"):
                if filled[split] + sizes[g] / 2 <= fractions[split] * n and filled[split] < fractions[split] * n:
                    assignment[g] = split
                    filled[split] += sizes[g]
                    break
            else:
                assignment[g] = "train"
        ok = all(
            {0, 1} <= set().union(*[labels_of[g] for g in assignment if assignment[g] == s] or [set()])
            for s in ("test", "val", "train")
        )
        if best is None or ok:
            best = assignment
        if ok:
            break
    for vid, key in zip(free["video_id"], keys):
        out[vid] = best[key]
    return out


def pack(faces_dir: Path, sources_csv: Path, shards: int, fractions: dict[str, float],
         seed: int) -> dict:
    """Merge ``faces_dir/shards/shard{i}.*`` into faces.npy, manifest.csv, extraction_log.csv."""
    from deepfake_lth.acquire import read_sources

    sources = read_sources(sources_csv)
    shard_dir = faces_dir / "shards"
    logs, crops, arrays = [], [], []
    for i in range(shards):
        prefix = shard_dir / f"shard{i}"
        for suffix in (".npy", ".csv", ".log.csv"):
            if not prefix.with_suffix(suffix).exists():
                raise UserError(f"{prefix.with_suffix(suffix)} is missing: rerun extraction of shard {i}")
        table = pd.read_csv(prefix.with_suffix(".csv"), dtype={"video_id": str, "split": str},
                            keep_default_na=False)
        crops.append(table)
        logs.append(pd.read_csv(prefix.with_suffix(".log.csv"), dtype={"video_id": str},
                                keep_default_na=False))
        arrays.append((np.load(prefix.with_suffix(".npy"), mmap_mode="r"), len(table)))
    manifest = pd.concat(crops, ignore_index=True)
    extraction_log = pd.concat(logs, ignore_index=True)
    if manifest.empty:
        raise UserError(
            f"no face was extracted for {faces_dir.parent.name}: see "
            f"{faces_dir / 'extraction_log.csv'} for each file's status"
        )
    # splits per video, from the source table (split, group) for the videos that have crops
    src = sources.drop_duplicates("video_id").set_index("video_id")
    videos = manifest.drop_duplicates("video_id")[["video_id", "label"]].copy()
    videos["split"] = [str(src["split"].get(v, "") or "") for v in videos["video_id"]]
    videos["group"] = [str(src["group"].get(v, "") or "") for v in videos["video_id"]]
    bad = set(videos["split"]) - {"", "train", "val", "test"}
    if bad:
        raise UserError(f"{sources_csv}: unknown split names {sorted(bad)}; use train, val or test")
    split_of = assign_splits(videos, fractions, seed)
    manifest["split"] = manifest["video_id"].map(split_of)
    manifest.insert(0, "index", np.arange(len(manifest)))
    # faces.npy, written in chunks through a memory map (bounded memory)
    size = arrays[0][0].shape[1:]
    tmp = faces_dir / "faces.npy.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(manifest), *size))
    pos = 0
    for arr, n in arrays:
        for start in range(0, n, 4096):
            stop = min(n, start + 4096)
            out[pos + start : pos + stop] = arr[start:stop]
        pos += n
    out.flush()
    del out
    tmp.replace(faces_dir / "faces.npy")
    extraction_log = extraction_log.merge(
        videos[["video_id"]].assign(split=lambda d: d["video_id"].map(split_of)), on="video_id",
        how="left").fillna({"split": ""})
    extraction_log.to_csv(faces_dir / "extraction_log.csv", index=False)
    columns = ["index", "video_id", "label", "split", "frame_index", "source", "detected"]
    manifest[columns].to_csv(faces_dir / "manifest.csv", index=False)
    summary = {
        "faces": int(len(manifest)),
        "videos": int(manifest["video_id"].nunique()),
        "files": int(len(extraction_log)),
        "status": {k: int(v) for k, v in extraction_log["status"].value_counts().items()},
        "splits": {
            s: {"faces": int((manifest["split"] == s).sum()),
                "videos": int(manifest.loc[manifest["split"] == s, "video_id"].nunique()),
                "fake": int(manifest.loc[manifest["split"] == s, "label"].sum())}
            for s in ("train", "val", "test")
        },
        "detected_fraction": float(manifest["detected"].mean()),
    }
    (faces_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("%s: %s", faces_dir, json.dumps(summary))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", required=True, help="results/{dataset}/faces")
    parser.add_argument("--sources", required=True)
    parser.add_argument("--shards", type=int, required=True)
    parser.add_argument("--split", required=True, help='JSON {"train":..,"val":..,"test":..}')
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    pack(Path(args.faces), Path(args.sources), args.shards, json.loads(args.split), args.seed)
    return 0
