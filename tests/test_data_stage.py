"""The data stage: seeded synthetic data, MTCNN face extraction per shard, and packing."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire import acquire, read_sources, synthetic
from deepfake_lth.data.faces import (
    FaceDetector,
    FaceSpec,
    crop_face,
    extract_file,
    extract_shard,
    fill_missing_boxes,
    read_video_frames,
    sample_indices,
)
from deepfake_lth.data.pack import assign_splits, check_splits, pack

torch.set_num_threads(1)

VIDEO_SOURCE = {"type": "synthetic", "kind": "videos", "identities": 6, "videos_per_class": 3,
                "frames": 12, "width": 160, "height": 128, "seed": 5}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synthetic_generation_is_seeded(tmp_path):
    small_images = {"type": "synthetic", "kind": "images", "identities": 14, "images_per_class": 8,
                    "width": 64, "height": 64, "seed": 3}
    small_videos = {**VIDEO_SOURCE, "videos_per_class": 2, "frames": 4}
    for i in (1, 2):
        acquire("imgs", small_images, tmp_path / f"imgs{i}")
        acquire("vids", small_videos, tmp_path / f"vids{i}")
    assert _digest(tmp_path / "imgs1") == _digest(tmp_path / "imgs2")
    assert _digest(tmp_path / "vids1") == _digest(tmp_path / "vids2")
    acquire("vids", {**small_videos, "seed": 6}, tmp_path / "vids3")
    assert _digest(tmp_path / "vids1") != _digest(tmp_path / "vids3")
    # OpenForensics layout: Train|Validation|Test/Real|Fake/*.jpg, identities disjoint by split
    table = read_sources(tmp_path / "imgs1" / "sources.csv")
    for split in ("Train", "Validation", "Test"):
        for cls in ("Real", "Fake"):
            assert list((tmp_path / "imgs1" / split / cls).glob("*.jpg"))
    ids = table.groupby("split")["group"].apply(set)
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["val"])
    vids = read_sources(tmp_path / "vids1" / "sources.csv")
    assert set(vids["label"]) == {0, 1}
    assert all((tmp_path / "vids1" / p).suffix == ".mp4" for p in vids["path"])


def test_fakes_differ_from_reals_inside_the_face_only():
    rng = np.random.default_rng(0)
    target, donor = synthetic.sample_identity(rng), synthetic.sample_identity(rng)
    real = synthetic.render_frames(target, None, 1, 160, 128, np.random.default_rng(1), 0.5)[0]
    fake = synthetic.render_frames(target, donor, 1, 160, 128, np.random.default_rng(1), 0.5)[0]
    diff = np.abs(real.astype(int) - fake.astype(int)).sum(-1)
    centre = diff[44:84, 60:100].mean()  # the inner face
    corners = np.concatenate([diff[:10, :10].ravel(), diff[-10:, -10:].ravel()]).mean()
    assert centre > 5 * corners  # swapped inside the face; outside, only sensor noise differs
    assert corners < 15


def test_mtcnn_finds_faces_in_synthetic_videos(tmp_path):
    source = {**VIDEO_SOURCE, "identities": 10, "videos_per_class": 8, "frames": 8, "width": 192,
              "height": 160, "seed": 9}
    acquire("det", source, tmp_path)
    table = read_sources(tmp_path / "sources.csv")
    detector = FaceDetector(FaceSpec(min_face_size=40, detect_max_side=320))
    for label in (0, 1):
        hits = total = 0
        for path in table.loc[table["label"] == label, "path"]:
            frames, _, _ = read_video_frames(tmp_path / path, 8)
            boxes = detector.detect(frames)
            hits += sum(b is not None for b in boxes)
            total += len(boxes)
        assert total == 64
        assert hits / total >= 0.95, f"label {label}: a face in {hits}/{total} frames"


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    """A dataset folder with good videos and every kind of bad one."""
    root = tmp_path_factory.mktemp("bad")
    acquire("good", {**VIDEO_SOURCE, "videos_per_class": 2}, root)
    rows = read_sources(root / "sources.csv").to_dict("records")
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 50)
    good = (root / rows[0]["path"]).read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 3])
    rng = np.random.default_rng(0)
    _write_video(root / "faceless.mp4",
                 [rng.integers(0, 255, (128, 160, 3), dtype=np.uint8) for _ in range(12)])
    ident = synthetic.sample_identity(rng)
    _write_video(root / "short.mp4", synthetic.render_frames(ident, None, 5, 160, 128, rng, 0.5))
    for name in ("zero", "text", "truncated", "faceless", "short", "missing"):
        rows.append({"path": f"{name}.mp4", "video_id": name, "label": 1, "split": "",
                     "kind": "video", "group": ""})
    pd.DataFrame(rows).to_csv(root / "sources.csv", index=False)
    return root


def test_bad_videos_are_logged_and_skipped(bad_inputs, tmp_path):
    spec = FaceSpec(frames_per_video=10, min_frames=10, size=32, min_face_size=30,
                    detect_max_side=320)
    out = tmp_path / "shards" / "shard0"
    stats = extract_shard(bad_inputs / "sources.csv", bad_inputs, 0, 1, spec, None, out)
    log = pd.read_csv(out.with_suffix(".log.csv"), keep_default_na=False).set_index("video_id")
    assert log.loc["zero", "status"] == "empty"
    assert log.loc["text", "status"] == "unreadable"
    assert log.loc["faceless", "status"] == "no_face"
    assert log.loc["short", "status"] == "too_short"
    assert log.loc["missing", "status"] == "missing"
    assert log.loc["truncated", "status"] in {"unreadable", "too_short", "ok"}
    good = [v for v in log.index if v.startswith(("real/", "fake/"))]
    assert len(good) == 4 and (log.loc[good, "status"] == "ok").all()
    crops = pd.read_csv(out.with_suffix(".csv"), keep_default_na=False)
    counts = crops.groupby("video_id").size()
    ok = log.index[log["status"] == "ok"]
    assert (counts[ok] == 10).all()  # every ok video: exactly frames_per_video crops
    faces = np.load(out.with_suffix(".npy"), mmap_mode="r")
    assert faces.shape[1:] == (32, 32, 3) and stats["crops"] == len(crops)
    assert faces[: len(crops)].std() > 5  # real image content, not the empty preallocation


def test_sharded_extraction_and_pack_stops_on_a_split_without_both_classes(bad_inputs,
                                                                          tmp_path, capsys):
    spec = FaceSpec(frames_per_video=10, min_frames=10, size=32, min_face_size=30,
                    detect_max_side=320)
    faces_dir = tmp_path / "faces"
    for shard in range(3):
        extract_shard(bad_inputs / "sources.csv", bad_inputs, shard, 3, spec, None,
                      faces_dir / "shards" / f"shard{shard}")
    # 4 (or 5) good videos cannot give train, val and test both classes
    with pytest.raises(UserError) as err:
        pack(faces_dir, bad_inputs / "sources.csv", 3, {"train": 0.5, "val": 0.25, "test": 0.25},
             seed=0)
    text = str(err.value)
    assert re.search(r"the (train|val|test) split has \d+ real and \d+ fake videos", text)
    assert "every split needs both classes" in text and "faces.split" in text
    assert "no_face 1" in text and "missing 1" in text  # the failed files, by status
    assert not (faces_dir / "faces.npy").exists()


def _shards(faces_dir: Path, videos: list[tuple[str, int, str, str]], statuses: list[str],
            crops: int = 2, shards: int = 2) -> Path:
    """Shard files as extract_shard writes them (no MTCNN), and the sources.csv."""
    rows = [{"path": f"{v}.mp4", "video_id": v, "label": lab, "split": split, "kind": "video",
             "group": group} for v, lab, split, group in videos]
    rows += [{"path": f"bad{i}.mp4", "video_id": f"bad{i}", "label": 1, "split": "",
              "kind": "video", "group": ""} for i in range(len(statuses))]
    sources = faces_dir.parent / "sources.csv"
    faces_dir.joinpath("shards").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(sources, index=False)
    for shard in range(shards):
        mine = rows[shard::shards]
        log, crop_rows = [], []
        for r in mine:
            status = "ok" if not r["video_id"].startswith("bad") else statuses[
                int(r["video_id"][3:])]
            log.append({"source": r["path"], "video_id": r["video_id"], "label": r["label"],
                        "status": status, "frames_read": 8, "faces": crops,
                        "upscaled": 1 if status == "ok" else 0, "message": ""})
            if status == "ok":
                crop_rows += [{"video_id": r["video_id"], "label": r["label"], "split": "",
                               "frame_index": i, "source": r["path"], "detected": 1}
                              for i in range(crops)]
        prefix = faces_dir / "shards" / f"shard{shard}"
        pd.DataFrame(crop_rows).to_csv(prefix.with_suffix(".csv"), index=False)
        pd.DataFrame(log).to_csv(prefix.with_suffix(".log.csv"), index=False)
        np.save(prefix.with_suffix(".npy"), np.full((len(crop_rows), 8, 8, 3), 7, np.uint8))
    return sources


def test_pack_records_settings_warnings_and_failed_files(tmp_path, capsys):
    videos = [(f"v{i}", i % 2, "", f"g{i // 2}") for i in range(24)]  # 12 real, 12 fake
    faces_dir = tmp_path / "demo" / "faces"
    sources = _shards(faces_dir, videos, ["no_face", "no_face", "unreadable"])
    settings = {"size": 8, "min_face_size": 40, "detect_max_side": 320}
    source = {"dataset": "demo", "type": "synthetic", "layout": None}
    summary = pack(faces_dir, sources, 2, {"train": 0.5, "val": 0.25, "test": 0.25}, 0,
                   face_settings=settings, source=source)
    manifest = pd.read_csv(faces_dir / "manifest.csv", keep_default_na=False)
    log = pd.read_csv(faces_dir / "extraction_log.csv", keep_default_na=False)
    assert list(manifest.columns[:5]) == ["index", "video_id", "label", "split", "frame_index"]
    assert set(log.columns) >= {"source", "video_id", "label", "status", "frames_read", "faces"}
    assert manifest.groupby("video_id")["split"].nunique().max() == 1  # one split per video
    assert len(np.load(faces_dir / "faces.npy")) == len(manifest) == summary["faces"] == 48
    on_disk = json.loads((faces_dir / "summary.json").read_text())
    assert on_disk["face_settings"] == settings
    assert on_disk["source"] == source  # a ticket trained on these faces says where they came from
    assert on_disk["failed"] == {"no_face": 2, "unreadable": 1}
    assert on_disk["upscaled_frames"] == 24
    for split in ("train", "val", "test"):
        counts = on_disk["splits"][split]
        assert counts["real_videos"] >= 1 and counts["fake_videos"] >= 1
    # 24 videos: every split has fewer than 10 of a class; each gets a sentence
    assert len(on_disk["warnings"]) == 3
    assert all("fewer than 10 per class" in w for w in on_disk["warnings"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("demo: 24 of 27 files ok; failed: no_face 2, unreadable 1 (see ")
    assert "extraction_log.csv" in line and "3 warnings" in line


def test_check_splits_names_the_split_its_counts_and_the_fix():
    counts = {"train": {"real": 30, "fake": 30}, "val": {"real": 12, "fake": 11},
              "test": {"real": 0, "fake": 9}}
    with pytest.raises(UserError) as err:
        check_splits(counts, "mine")
    text = str(err.value)
    assert "the test split has 0 real and 9 fake videos" in text
    assert "'datasets.mine.faces.split'" in text
    with pytest.raises(UserError, match="split folders"):
        check_splits(counts, "mine", "images", given=True)
    counts["test"]["real"] = 10
    warnings = check_splits(counts, "mine")
    assert warnings == [("The test split of mine has only 9 fake videos (fewer than 10 per "
                        "class): its accuracy and AUC are noisy.")]


def test_small_faces_are_retried_at_a_larger_size(tmp_path, caplog):
    """A ~58 px face in a 960×720 frame: at detect_max_side 240 it is ~15 px, below
    min_face_size 20; the retry at 480 and 960 px finds it."""
    rng = np.random.default_rng(1)
    ident = synthetic.sample_identity(rng)
    frames = []
    for f in synthetic.render_frames(ident, None, 4, 160, 128, rng, 0.5):
        canvas = np.full((720, 960, 3), 110, np.uint8)
        canvas[300:396, 400:520] = cv2.resize(f, (120, 96), interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    _write_video(tmp_path / "group.mp4", frames)
    spec = FaceSpec(frames_per_video=4, min_frames=4, size=32, min_face_size=20,
                    detect_max_side=240)
    detector = FaceDetector(spec)
    row = {"path": "group.mp4", "video_id": "group", "label": 0}
    assert all(b is None for b in detector.detect(
        read_video_frames(tmp_path / "group.mp4", 4)[0]))  # nothing at 240 px
    with caplog.at_level(logging.INFO, logger="deepfake_lth.data.faces"):
        crops, _rows, entry = extract_file(row, tmp_path / "group.mp4", spec, detector, "video")
    assert entry["status"] == "ok" and entry["faces"] == 4 and entry["upscaled"] == 4
    assert len(crops) == 4 and "4 of 4 frames had a face only at a larger detection size" in (
        caplog.text)
    # without the retry the same video is no_face
    detector.retry_larger = lambda frames, boxes: (boxes, 0)
    _, _, entry = extract_file(row, tmp_path / "group.mp4", spec, detector, "video")
    assert entry["status"] == "no_face"


def test_assign_splits_by_group_and_keeps_given_splits():
    videos = pd.DataFrame({
        "video_id": [f"v{i}" for i in range(40)],
        "label": [i % 2 for i in range(40)],
        "split": ["test" if i < 4 else "" for i in range(40)],
        "group": [f"g{i // 4}" for i in range(40)],
    })
    split = assign_splits(videos, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=1)
    assert (split[[f"v{i}" for i in range(4)]] == "test").all()
    by_group = pd.DataFrame({"group": videos["group"].values, "split": split.values})
    free = by_group.iloc[4:]
    assert free.groupby("group")["split"].nunique().max() == 1
    assert set(split) == {"train", "val", "test"}
    again = assign_splits(videos, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=1)
    assert (again == split).all()


def test_sampling_and_cropping_helpers():
    assert sample_indices(100, 4) == [0, 33, 66, 99]
    assert sample_indices(3, 40) == [0, 1, 2]
    assert sample_indices(0, 40) == []
    frame = np.full((50, 60, 3), 200, np.uint8)
    crop = crop_face(frame, np.array([-20, -20, 20, 20]), 16, 0.0)  # past the corner: padded
    assert crop.shape == (16, 16, 3) and crop[0, 0].sum() == 0 and crop[-1, -1].sum() > 0
    boxes = [None, np.array([1, 1, 2, 2]), None, None, np.array([5, 5, 6, 6])]
    filled = fill_missing_boxes(boxes)
    assert filled[0][0] == 1 and filled[2][0] == 1 and filled[3][0] == 5
    assert fill_missing_boxes([None, None]) is None


def test_sparse_and_dense_samples_read_in_order(tmp_path):
    rng = np.random.default_rng(1)
    frames = [np.full((64, 80, 3), i * 2, np.uint8) for i in range(100)]
    frames = [np.clip(f + rng.integers(0, 3, f.shape), 0, 255).astype(np.uint8) for f in frames]
    _write_video(tmp_path / "long.mp4", frames)
    got, idx, n = read_video_frames(tmp_path / "long.mp4", 10)  # sparse
    assert n == 100 and idx == sample_indices(100, 10) and len(got) == 10
    means = [g.mean() for g in got]
    assert all(abs(m - 2 * i - 1) < 4 for m, i in zip(means, idx))
    got, idx, n = read_video_frames(tmp_path / "long.mp4", 40)  # dense
    assert len(got) == 40 and all(abs(g.mean() - 2 * i - 1) < 4 for g, i in zip(got, idx))


@pytest.mark.parametrize("ext, fourcc, gray", [(".avi", "MJPG", False), (".mkv", "mp4v", False),
                                               (".mov", "mp4v", False), (".mp4", "mp4v", True)])
def test_other_containers_and_grayscale(tmp_path, ext, fourcc, gray):
    rng = np.random.default_rng(4)
    ident = synthetic.sample_identity(rng)
    frames = synthetic.render_frames(ident, None, 14, 192, 160, rng, 0.5)
    if gray:
        frames = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
                  for f in frames]
    path = tmp_path / f"clip{ext}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (192, 160))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    spec = FaceSpec(frames_per_video=10, min_frames=10, size=32, min_face_size=40,
                    detect_max_side=320)
    from deepfake_lth.data.faces import extract_file

    row = {"path": path.name, "video_id": "clip", "label": 0, "split": ""}
    crops, _rows, entry = extract_file(row, path, spec, FaceDetector(spec), "video")
    assert entry["status"] == "ok", entry
    assert len(crops) == 10 and entry["frames_read"] == 14
    # colour: a face in (nearly) every frame; grayscale loses MTCNN a few, the rest borrow boxes
    assert entry["faces"] >= (5 if gray else 9)


def test_defaults_find_small_faces_in_1080p_frames():
    """Three ~80 px faces in 1920×1080 frames (a group shot): the defaults (20 px at 640) find
    them; the demo's tuning (40 px at 320) needs them at 15 px and finds them only on retry."""
    rng = np.random.default_rng(2)
    tiles = [synthetic.render_frames(synthetic.sample_identity(rng), None, 4, 160, 128, rng, 0.5)
             for _ in range(3)]
    frames = []
    for k in range(4):
        canvas = np.full((1080, 1920, 3), 100, np.uint8)
        for j, tile in enumerate(tiles):
            canvas[400:520, 300 + 550 * j : 450 + 550 * j] = cv2.resize(
                tile[k], (150, 120), interpolation=cv2.INTER_AREA)
        frames.append(canvas)
    defaults = FaceDetector(FaceSpec())
    assert all(b is not None for b in defaults.detect(frames))
    demo = FaceDetector(FaceSpec(min_face_size=40, detect_max_side=320))
    missed = demo.detect(frames)
    assert all(b is None for b in missed)
    boxes, found = demo.retry_larger(frames, missed)
    assert found == 4 and all(60 < b[3] - b[1] < 110 for b in boxes)


def test_long_gop_h264_videos_give_forty_faces_each(tmp_path):
    """H.264 as published (a keyframe every 250 frames, B-frames, CRF 23), one of them a
    portrait clip stored as landscape pixels with a display rotation: every video ``ok`` with
    40 crops, read ahead on a thread while MTCNN runs on the previous video."""
    from deepfake_lth.data.decode import write_h264

    rng = np.random.default_rng(21)
    rows = []
    for i, (w, h, rotation) in enumerate([(192, 160, None), (160, 192, -90), (192, 160, None)]):
        ident = synthetic.sample_identity(rng)
        frames = [f[..., ::-1] for f in synthetic.render_frames(ident, None, 60, w, h, rng, 0.5)]
        if rotation:  # what the phone stores; the display rotation turns it back upright
            frames = [np.rot90(f, 1) for f in frames]
        write_h264(tmp_path / f"v{i}.mp4", frames, gop=250, crf=23, bframes=3,
                   rotation=rotation)
        rows.append({"path": f"v{i}.mp4", "video_id": f"v{i}", "label": i % 2, "split": "",
                     "kind": "video", "group": ""})
    pd.DataFrame(rows).to_csv(tmp_path / "sources.csv", index=False)
    spec = FaceSpec(frames_per_video=40, min_frames=40, size=32, min_face_size=30,
                    detect_max_side=320)
    out = tmp_path / "shards" / "shard0"
    stats = extract_shard(tmp_path / "sources.csv", tmp_path, 0, 1, spec, None, out, threads=2)
    log = pd.read_csv(out.with_suffix(".log.csv"), keep_default_na=False)
    assert list(log["status"]) == ["ok"] * 3 and list(log["frames_read"]) == [60] * 3
    crops = pd.read_csv(out.with_suffix(".csv"), keep_default_na=False)
    assert crops.groupby("video_id").size().to_dict() == {"v0": 40, "v1": 40, "v2": 40}
    assert stats["crops"] == 120
    assert (log["faces"] >= 36).all()  # upright: MTCNN finds the rotated clip's face too
    # after the first frames, MTCNN's pyramid stops at about half the face size found
    assert (log["reduced_pyramid"] >= 20).all() and stats["reduced_pyramid_frames"] >= 60
