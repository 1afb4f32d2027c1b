"""Merge extraction shards into the packed dataset and assign splits by video.

Writes, under ``results/{dataset}/faces/``:

- ``faces.npy``: uint8 (N, S, S, 3) RGB crops, read with a memory map by training jobs;
- ``manifest.csv``: one row per crop: ``index`` (row in faces.npy), ``video_id``, ``label``,
  ``split``, ``frame_index``, ``source``, ``detected`` (1 when MTCNN found the face in that
  very frame, 0 when the box came from the nearest frame), ``manipulation`` (sources.csv's:
  the method of a fake, empty for real faces);
- ``extraction_log.csv``: one row per source file with its status (see faces.py);
- ``summary.json``: counts per split, label and status; ``face_settings`` (the dataset's
  ``faces`` settings the crops were made with, read back by ``deepfake-lth export``);
  ``failed`` (files per failed status); ``warnings`` (sentences, e.g. a split with fewer
  than ``MIN_PER_CLASS`` videos of a class); ``role`` (``test``: a dataset only scored);
  ``source`` (the dataset acquired, its source type and layout: a ticket trained on the
  synthetic demo says so wherever it is used).

A split without both classes stops packing (UserError naming the split, its counts and the
fix): a detector cannot be trained, stopped early or tested on one class. A dataset only
scored (``role: test``, ``--role test``) packs only what is scored, its test split or every
video as test where the source fixes no split, and needs both classes in test alone.
The shards may be another dataset's (``--shard-dir``: a ``faces_from`` dataset reads the
faces that dataset extracted).

Splits are assigned per video (never two splits for one video) with a fixed seed. Files
whose source fixes the split (an image set's Train/Validation/Test folders, a test list)
keep it. Otherwise videos are grouped by ``group`` when the source gives one (a fake and its
source video, one identity), so that a group never straddles two splits. With
``train_manipulations`` the fakes of the other manipulations leave train and val (split
``heldout``, see :func:`hold_out`): the leave-one-manipulation-out protocol of FF++.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from deepfake_lth.core import files
from deepfake_lth.core.errors import UserError, json_object
from deepfake_lth.data.acquire import MANIPULATION

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# fewer videos (or images) of a class in a split: a warning in summary.json
MIN_PER_CLASS = 10
HELD_OUT = "heldout"  # the split of faces left out of training by train_manipulations


def assign_splits(videos: pd.DataFrame, fractions: dict[str, float], seed: int,
                  train_manipulations=None) -> pd.Series:
    """Split per video: ``videos`` has video_id, label, split ('' = free), group (and
    manipulation, read with ``train_manipulations``).

    Free videos are grouped (``group``, else the video itself), the groups shuffled with
    ``seed`` and dealt to test, val and train until each reaches its share of videos; a few
    reshuffles make sure test and val hold both labels when there are enough groups. With
    ``train_manipulations`` they also make sure the test split holds a fake of every
    manipulation and train and val one of a manipulation trained on.
    """
    out = videos.set_index("video_id")["split"].copy()
    free = videos[videos["split"] == ""]
    if free.empty:
        return out
    keys = free["group"].where(free["group"] != "", free["video_id"])
    groups = sorted(set(keys))
    sizes = keys.value_counts()
    labels_of = free.groupby(keys)["label"].agg(lambda s: frozenset(s))
    fakes = free[free["label"] == 1]
    methods_of = (fakes.groupby(keys[fakes.index])["manipulation"].agg(frozenset)
                  if train_manipulations else {})
    every = frozenset(fakes["manipulation"]) if train_manipulations else frozenset()

    def methods_in(assignment, split):
        return set().union(*[methods_of.get(g, set()) for g in assignment
                             if assignment[g] == split] or [set()])

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
        if ok and train_manipulations:
            ok = every <= methods_in(assignment, "test") and all(
                methods_in(assignment, s) & set(train_manipulations) for s in ("val", "train"))
        if best is None or ok:
            best = assignment
        if ok:
            break
    for vid, key in zip(free["video_id"], keys):
        out[vid] = best[key]
    return out


def split_counts(videos: pd.DataFrame, split_of: pd.Series) -> dict[str, dict[str, int]]:
    """Videos per split and class: {split: {"real": n, "fake": n}}."""
    table = videos.assign(split=videos["video_id"].map(split_of))
    return {s: {"real": int(((table["split"] == s) & (table["label"] == 0)).sum()),
                "fake": int(((table["split"] == s) & (table["label"] == 1)).sum())}
            for s in SPLITS}


def check_splits(counts: dict[str, dict[str, int]], dataset: str, unit: str = "videos",
                 given: bool = False, splits=SPLITS) -> list[str]:
    """UserError when one of ``splits`` lacks a class; the warnings (sentences) for small
    ones. A dataset only scored (role test) checks its test split alone."""
    for s in splits:
        c = counts[s]
        if not c["real"] or not c["fake"]:
            if tuple(splits) == ("test",):
                where = (f"or set datasets.{dataset}.role to train if it is to be trained on; "
                         f"a dataset with role test is scored on its test split alone")
            elif given:
                where = f"the split folders (or split column) of the source give {s} one class"
            else:
                where = (f"raise 'faces.split.{s}' (or 'datasets.{dataset}.faces.split') so "
                         f"that {s} gets more {unit}, or add {unit} of identities not yet used")
            raise UserError(
                f"{dataset}: the {s} split has {c['real']} real and {c['fake']} fake {unit} "
                f"after packing (train {counts['train']['real']}/{counts['train']['fake']}, val "
                f"{counts['val']['real']}/{counts['val']['fake']}, test "
                f"{counts['test']['real']}/{counts['test']['fake']} real/fake); "
                f"{'every split needs' if len(splits) > 1 else 'it needs'} both classes: add "
                f"{unit} of the missing class, or {where}"
            )
    warnings = []
    for s in splits:
        c = counts[s]
        small = [f"{c[k]} {k}" for k in ("real", "fake") if c[k] < MIN_PER_CLASS]
        if small:
            warnings.append(
                f"The {s} split of {dataset} has only {' and '.join(small)} {unit} (fewer than "
                f"{MIN_PER_CLASS} per class): its accuracy and AUC are noisy."
            )
    return warnings


def failed_line(dataset: str, faces_dir: Path, status: dict[str, int], files: int,
                warnings: int = 0, log_path: str | None = None) -> str:
    """One console line: the dataset's failed files by status, pointing to the log."""
    failed = {k: v for k, v in sorted(status.items()) if k != "ok" and v}
    text = f"{dataset}: {status.get('ok', 0)} of {files} files ok"
    if failed:
        where = log_path or faces_dir / "extraction_log.csv"
        text += f"; failed: {', '.join(f'{k} {v}' for k, v in failed.items())} (see {where})"
    if warnings:
        text += f"; {warnings} warning{'s' if warnings > 1 else ''} in {faces_dir / 'summary.json'}"
    return text


def hold_out(manifest: pd.DataFrame, train_manipulations, dataset: str) -> int:
    """Leave-one-manipulation-out: the fakes of the manipulations not in
    ``train_manipulations`` leave the train and val splits (split ``heldout``); the test split
    keeps every manipulation. Returns the number of faces held out."""
    if not train_manipulations:
        return 0
    fakes = manifest["label"] == 1
    present = sorted(set(manifest.loc[fakes, MANIPULATION]) - {""})
    unknown = sorted(set(train_manipulations) - set(present))
    if unknown:
        raise UserError(
            f"datasets.{dataset}.train_manipulations: {unknown} are not manipulations of this "
            f"dataset (its sources.csv names {present or 'none'}); use some of those"
        )
    out = fakes & ~manifest[MANIPULATION].isin(list(train_manipulations)) & manifest[
        "split"].isin(["train", "val"])
    manifest.loc[out, "split"] = HELD_OUT
    for split in ("train", "val"):
        if not ((manifest["split"] == split) & fakes).any():
            raise UserError(
                f"datasets.{dataset}.train_manipulations: {list(train_manipulations)} leave no "
                f"fake in the {split} split (its fakes are all of other manipulations); add "
                f"manipulations, or change datasets.{dataset}.faces.split_seed"
            )
    log.info("%s: %d faces of fakes made by other manipulations than %s held out of training",
             dataset, int(out.sum()), list(train_manipulations))
    return int(out.sum())


def read_shards(shard_dir: Path, shards: int, faces_dir: Path):
    """The crops and extraction logs of shards 0..shards-1 and each shard's face array (a
    memory map) with its row count."""
    logs, crops, arrays = [], [], []
    for i in range(shards):
        prefix = Path(shard_dir) / f"shard{i}"
        for suffix in (".npy", ".csv", ".log.csv"):
            if not prefix.with_suffix(suffix).exists():
                raise UserError(f"{prefix.with_suffix(suffix)} is missing: rerun extraction of "
                                f"shard {i}")
        table = pd.read_csv(prefix.with_suffix(".csv"), dtype={"video_id": str, "split": str},
                            keep_default_na=False)
        crops.append(table)
        logs.append(pd.read_csv(prefix.with_suffix(".log.csv"), dtype={"video_id": str},
                                keep_default_na=False))
        arrays.append((np.load(prefix.with_suffix(".npy"), mmap_mode="r"), len(table)))
    manifest = pd.concat(crops, ignore_index=True)
    if manifest.empty:
        raise UserError(
            f"no face was extracted for {faces_dir.parent.name}: see "
            f"{faces_dir / 'extraction_log.csv'} for each file's status"
        )
    return manifest, pd.concat(logs, ignore_index=True), arrays


def video_table(manifest: pd.DataFrame, sources: pd.DataFrame, sources_csv: Path) -> pd.DataFrame:
    """One row per video with crops: video_id, label, and the source's split, group and
    manipulation."""
    src = sources.drop_duplicates("video_id").set_index("video_id")
    videos = manifest.drop_duplicates("video_id")[["video_id", "label"]].copy()
    for col in ("split", "group", MANIPULATION):
        videos[col] = [str(src[col].get(v, "") or "") for v in videos["video_id"]]
    bad = set(videos["split"]) - {"", "train", "val", "test"}
    if bad:
        raise UserError(f"{sources_csv}: unknown split names {sorted(bad)}; use train, val or test")
    return videos.reset_index(drop=True)


def write_faces(arrays, keep: np.ndarray, path: Path) -> None:
    """The kept rows of the shards' arrays, in order, to ``path`` (faces.npy) through a memory
    map (bounded memory), renamed into place when complete."""
    size = arrays[0][0].shape[1:]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                    shape=(int(keep.sum()), *size))
    pos = written = 0
    for arr, n in arrays:
        for start in range(0, n, 4096):
            stop = min(n, start + 4096)
            chosen = keep[pos + start:pos + stop]
            block = arr[start:stop][chosen] if not chosen.all() else arr[start:stop]
            out[written:written + len(block)] = block
            written += len(block)
        pos += n
    out.flush()
    del out
    tmp.replace(path)


def _split_or_explain(videos, fractions, seed, train_manipulations, dataset, unit, role,
                      explain: str):
    """The split of each video and the warnings of small splits; a split lacking a class
    stops packing (UserError with ``explain``, the failed files, appended)."""
    split_of = assign_splits(videos, fractions, seed, train_manipulations)
    try:
        warnings = check_splits(split_counts(videos, split_of), dataset, unit,
                                given=bool((videos["split"] != "").all()),
                                splits=("test",) if role == "test" else SPLITS)
    except UserError as exc:
        raise UserError(f"{exc} ({explain})") from None
    return split_of, warnings


def summarise(manifest, extraction_log, videos, split_of, status, warnings, face_settings,
              train_manipulations, held_out, role: str) -> dict:
    """summary.json's content (module docstring)."""
    counts = split_counts(videos, split_of)
    def frames(column: str) -> int:  # a log written before the column existed: 0
        if column not in extraction_log:
            return 0
        return int(pd.to_numeric(extraction_log[column], errors="coerce").fillna(0).sum())

    fakes = manifest.loc[manifest["label"] == 1].drop_duplicates("video_id")[MANIPULATION]
    return {
        "faces": len(manifest),
        "videos": int(manifest["video_id"].nunique()),
        "files": len(extraction_log),
        "status": status,
        "failed": {k: v for k, v in status.items() if k != "ok"},
        "splits": {
            s: {"faces": int((manifest["split"] == s).sum()),
                "videos": int(manifest.loc[manifest["split"] == s, "video_id"].nunique()),
                "fake": int(manifest.loc[manifest["split"] == s, "label"].sum()),
                "real_videos": counts[s]["real"],
                "fake_videos": counts[s]["fake"]}
            for s in SPLITS
        },
        "detected_fraction": float(manifest["detected"].mean()),
        "upscaled_frames": frames("upscaled"),
        "reduced_pyramid_frames": frames("reduced_pyramid"),
        "face_settings": dict(face_settings or {}),
        "warnings": warnings,
        "manipulations": {str(k): int(v) for k, v in fakes.value_counts().sort_index().items()},
        "train_manipulations": list(train_manipulations or []),
        "held_out_faces": held_out,
        "role": role,
    }


def pack(faces_dir: Path, sources_csv: Path, shards: int, fractions: dict[str, float],
         seed: int, face_settings: dict | None = None, train_manipulations=None,
         role: str = "train", shard_dir: Path | None = None,
         source: dict | None = None) -> dict:
    """Merge the shards (``faces_dir/shards/shard{i}.*``, or ``shard_dir``'s: the faces of
    another dataset, ``faces_from``) into faces.npy, manifest.csv, extraction_log.csv.

    ``face_settings`` (the dataset's ``faces`` settings) is recorded in summary.json;
    ``train_manipulations`` (a subset of the dataset's manipulations) see :func:`hold_out`;
    ``role`` test (a dataset only scored) keeps only what is scored (its test split, or every
    video as test: :func:`deepfake_lth.data.acquire.scored`) and needs both classes in test
    only. ``source`` (where the files came from: the dataset acquired, its source ``type``,
    its ``layout``) is recorded in summary.json, so that a ticket says whether it was
    trained on the synthetic demo faces.
    """
    from deepfake_lth.data.acquire import read_sources, scored

    faces_dir = Path(faces_dir)
    shard_dir = Path(shard_dir) if shard_dir is not None else faces_dir / "shards"
    dataset = faces_dir.parent.name if faces_dir.name == "faces" else faces_dir.name
    sources = read_sources(sources_csv)
    manifest, extraction_log, arrays = read_shards(shard_dir, shards, faces_dir)
    videos = video_table(manifest, sources, sources_csv)
    if role == "test":
        videos = scored(videos, dataset)
    per_video = manifest.groupby("video_id").size()
    unit = "videos" if (set(sources["kind"]) == {"video"} or per_video.max() > 1) else "images"
    status = {str(k): int(v) for k, v in extraction_log["status"].value_counts().items()}
    explain = failed_line(dataset, faces_dir, status, len(extraction_log),
                          log_path=str(shard_dir / "shard*.log.csv")).partition(": ")[2]
    split_of, warnings = _split_or_explain(videos, fractions, seed, train_manipulations,
                                           dataset, unit, role, explain)
    keep = manifest["video_id"].isin(split_of.index).to_numpy()
    manifest = manifest[keep].reset_index(drop=True)
    manifest["split"] = manifest["video_id"].map(split_of)
    manifest[MANIPULATION] = manifest["video_id"].map(videos.set_index("video_id")[MANIPULATION])
    held_out = hold_out(manifest, train_manipulations, dataset)
    split_of = manifest.drop_duplicates("video_id").set_index("video_id")["split"]
    manifest.insert(0, "index", np.arange(len(manifest)))
    write_faces(arrays, keep, faces_dir / "faces.npy")
    extraction_log = extraction_log.merge(
        videos[["video_id"]].assign(split=lambda d: d["video_id"].map(split_of)), on="video_id",
        how="left").fillna({"split": ""})
    files.write_csv(extraction_log, faces_dir / "extraction_log.csv")
    columns = ["index", "video_id", "label", "split", "frame_index", "source", "detected",
               MANIPULATION]
    files.write_csv(manifest[columns], faces_dir / "manifest.csv")
    summary = summarise(manifest, extraction_log, videos, split_of, status, warnings,
                        face_settings, train_manipulations, held_out, role)
    summary["source"] = dict(source) if source else None
    files.write_text(faces_dir / "summary.json", json.dumps(summary, indent=2))
    log.info("%s: %s", faces_dir, json.dumps(summary))
    for w in warnings:
        log.warning("%s", w)
    print(failed_line(dataset, faces_dir, status, len(extraction_log), len(warnings)), flush=True)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", required=True,
                        help="the dataset's faces folder, results/{dataset}/faces (shards/ inside)")
    parser.add_argument("--sources", required=True, help="resources/{dataset}/sources.csv")
    parser.add_argument("--shards", type=int, required=True,
                        help="number of extraction shards to merge (shard0 .. shard{N-1})")
    parser.add_argument("--split", required=True,
                        help='fractions of the videos per split, JSON '
                        '{"train":..,"val":..,"test":..}')
    parser.add_argument("--seed", type=int, default=0, help="seed of the split assignment")
    parser.add_argument("--spec", default=None,
                        help="the dataset's face settings as JSON, recorded in summary.json "
                        "(read back by `deepfake-lth export`)")
    parser.add_argument("--train-manipulations", default="[]",
                        help="JSON list: train and validate on the fakes of these manipulations "
                        "only (the test split keeps all); [] = all")
    parser.add_argument("--role", choices=("train", "test"), default="train",
                        help="test: a dataset only scored; pack its test split (or all of it "
                        "as test) and need both classes there only")
    parser.add_argument("--source", default=None,
                        help='where the files came from, JSON {"dataset": .., "type": .., '
                        '"layout": ..}, recorded in summary.json (a synthetic demo set says so '
                        "in every ticket trained on it)")
    parser.add_argument("--shard-dir", default=None,
                        help="the folder of the shards to merge (default: FACES/shards); "
                        "another dataset's for a faces_from dataset")


def run(args: argparse.Namespace) -> int:
    spec = json_object(args.spec, "--spec") if args.spec else None
    try:
        train_manipulations = json.loads(args.train_manipulations)
    except json.JSONDecodeError as exc:
        raise UserError(f"--train-manipulations is not valid JSON ({exc})") from None
    pack(Path(args.faces), Path(args.sources), args.shards, json_object(args.split, "--split"),
         args.seed, spec, train_manipulations, role=args.role,
         shard_dir=Path(args.shard_dir) if args.shard_dir else None,
         source=json_object(args.source, "--source") if args.source else None)
    return 0
