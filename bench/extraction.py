"""Face extraction: frames per second of the extraction stage against a naive baseline.

    python bench/extraction.py [--quick]

Three inputs, generated once and cached under ``bench/out/videos``: the demo's videos (the
synthetic generator at 192x160, 48 frames) and the same kind of faces at 1920x1080, 300
frames, encoded as cameras and video sites encode (``decode.write_h264``: H.264, CRF 23,
3 B-frames), once with a short GOP (a keyframe every 12 frames) and once with a long GOP
(a keyframe every 250 frames, as real footage: FF++ c23, DFDC).

- naive: decode every frame with OpenCV, keep ``frames_per_video`` evenly spaced ones, run
  ``MTCNN.detect`` one frame at a time at full resolution (same MTCNN settings), keep the
  largest face and crop it; one process, with torch on one thread or on every core,
  whichever a short probe finds faster.
- stage: ``faces.extract_shard`` with the real ``FaceDetector`` (one sequential decode per
  video with only the sampled frames converted, the next video decoded on a thread while
  MTCNN runs, detection on a copy downscaled to ``detect_max_side``, batched), on one process
  of 2 threads (torch and FFmpeg), as one extract job of the workflow runs, and over 2 shards
  in 2 worker processes of one thread each. The workers are started and warmed up (imports,
  MTCNN weights) before the clock starts, as the baseline's imports are.
- reading: the 40 sampled frames of each long-GOP video with ``decode.read_video_frames``,
  with the reader the project had before (OpenCV, seeking to each sampled frame in a video of
  more than 160 frames), and one sequential decode of every frame (PyAV and OpenCV, no
  conversion); 2 decoding threads.

The variants run interleaved and each counts with its fastest run, the one least disturbed by
other processes on a shared machine. The boxes of the stage are compared with the
full-resolution boxes of the baseline on the same frames (IoU: the crops must still hold the
face), and, on the demo videos, the boxes and statuses of the stage with the previous reader's
frames against those with the current reader's (IoU >= 0.99, same statuses).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import _cli  # bench/_cli.py: the shared command line
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DEMO_SOURCE = {"type": "synthetic", "kind": "videos", "identities": 8, "frames": 48,
               "width": 192, "height": 160, "difficulty": 0.5, "seed": 11}
HD = {"width": 1920, "height": 1080, "frames": 300, "poses": 25, "seed": 12, "crf": 23,
      "bframes": 3}
GOPS = {"1080p-short-gop": 12, "1080p-long-gop": 250}
GOALS = {"demo": 1.5, "1080p-short-gop": 3.0, "1080p-long-gop": 3.0}
GOALS_SINGLE = {"1080p-long-gop": 3.0}
GOALS_TWO = {"1080p-long-gop": 5.0}
READ_GOAL = 1.2
IOU_GOAL = 0.8
SAME_BOX_IOU = 0.99
CORES = 2


def _config_faces(path: Path, dataset: str | None = None) -> dict:
    """The face settings of a config file (of ``dataset`` when given: the global ``faces``
    with the dataset's own keys on top), without the split keys."""
    from deepfake_lth.workflow import config as study_config

    cfg = study_config.load(path)
    faces = cfg["datasets"][dataset]["faces"] if dataset else cfg["faces"]
    return {k: v for k, v in faces.items() if k not in ("split", "split_seed")}


# --------------------------------------------------------------------------- inputs


def demo_videos(root: Path, per_class: int) -> Path:
    """``2 * per_class`` demo-size videos with a sources.csv (cached)."""
    from deepfake_lth.data.acquire import acquire

    folder = root / f"demo-{per_class}"
    if not (folder / "sources.csv").exists():
        acquire("bench-demo", {**DEMO_SOURCE, "videos_per_class": per_class}, folder)
    return folder


def hd_videos(root: Path, per_class: int, gop: int) -> Path:
    """``2 * per_class`` 1920x1080 H.264 videos of the synthetic kind, a keyframe every
    ``gop`` frames, with a sources.csv (cached). The face moves through ``poses`` rendered
    poses and back; every frame gets its own sensor noise, as a camera's do."""
    import pandas as pd

    from deepfake_lth.data.acquire import synthetic as syn
    from deepfake_lth.data.acquire import write_sources
    from deepfake_lth.data.decode import write_h264

    folder = root / f"hd-{per_class}-gop{gop}-n{HD['frames']}-noise2"
    if (folder / "sources.csv").exists():
        return folder
    rng = np.random.default_rng(HD["seed"])
    idents = [syn.sample_identity(rng) for _ in range(2 * per_class + 1)]
    noise = [rng.normal(0, 1.5, (HD["height"], HD["width"], 3)).astype(np.int16)
             for _ in range(4)]
    rows = []
    for label, name in ((0, "real"), (1, "fake")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            vrng = np.random.default_rng([HD["seed"], label, i])
            t = 2 * i + label
            donor = idents[t + 1] if label else None
            poses = syn.render_frames(idents[t], donor, HD["poses"], HD["width"], HD["height"],
                                      vrng, 0.5)
            cycle = poses + poses[-2:0:-1]  # there and back: no jump at the loop

            def frame(j: int) -> np.ndarray:  # two fields shifted apart: no motion predicts it
                n = np.roll(noise[j % 4], 7 * j, axis=1) + np.roll(noise[(j + 1) % 4], 5 * j, 0)
                return np.clip(cycle[j % len(cycle)][..., ::-1] + n, 0, 255).astype(np.uint8)

            path = folder / name / f"{i:03d}.mp4"
            write_h264(path, [frame(j) for j in range(HD["frames"])], fps=25, gop=gop,
                       crf=HD["crf"], bframes=HD["bframes"])
            rows.append({"path": f"{name}/{i:03d}.mp4", "video_id": f"{name}/{i:03d}",
                         "label": label, "split": "", "kind": "video", "group": f"id{t:03d}"})
    write_sources(pd.DataFrame(rows), folder / "sources.csv")
    return folder


# --------------------------------------------------------------------------- readers


def previous_reader(path: Path, k: int) -> tuple[list[np.ndarray], list[int], int]:
    """The reader the project had before (faces.read_video_frames of main 3c95874): OpenCV,
    seeking (CAP_PROP_POS_FRAMES) to each sampled frame when a video has more than 4k
    frames, else decoding in order; kept here to compare against."""
    import cv2

    from deepfake_lth.data.decode import read_frames_opencv, sample_indices

    cap = cv2.VideoCapture(str(path))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if count > 4 * k:
            frames, indices = [], []
            for idx in sample_indices(count, k):
                cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
                ok, frame = cap.read()
                if ok and frame is not None:
                    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    indices.append(idx)
            if len(frames) == len(sample_indices(count, k)):
                return frames, indices, count
    finally:
        cap.release()
    return read_frames_opencv(path, k)  # the same sequential reading as before


def bench_reading(folder: Path, k: int, threads: int = CORES, repeats: int = 3) -> dict:
    """Seconds to read the ``k`` sampled frames of every video (current reader, previous
    reader) and to decode every frame once (PyAV, OpenCV), interleaved, fastest of
    ``repeats`` (the previous reader: one run)."""
    import av
    import cv2

    from deepfake_lth.data.acquire import read_sources
    from deepfake_lth.data.decode import read_video_frames

    paths = [folder / p for p in read_sources(folder / "sources.csv")["path"]]

    def pyav_decode(path):
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type, s.codec_context.thread_count = "AUTO", threads
            return sum(1 for _ in c.decode(s))

    def opencv_decode(path):
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
        n = 0
        while cap.grab():
            n += 1
        cap.release()
        return n

    variants = {"sampled": lambda p: read_video_frames(p, k, threads),
                "sampled_previous": lambda p: previous_reader(p, k),
                "decode_pyav": pyav_decode, "decode_opencv": opencv_decode}
    best = {name: [float("inf")] * len(paths) for name in variants}
    for r in range(repeats):  # interleaved per video; each video's fastest run per variant
        for i, p in enumerate(paths):
            for name, fn in variants.items():
                if r and name == "sampled_previous":
                    continue  # the slow reference (minutes on a long GOP): measured once
                t0 = time.perf_counter()
                fn(p)
                best[name][i] = min(best[name][i], time.perf_counter() - t0)
    best = {name: sum(v) for name, v in best.items()}
    one_decode = min(best["decode_pyav"], best["decode_opencv"])
    return {"seconds": {n: round(v, 3) for n, v in best.items()},
            "ratio": best["sampled"] / one_decode,
            "previous_ratio": best["sampled_previous"] / one_decode, "videos": len(paths)}


def same_as_previous(folder: Path, spec_dict: dict) -> dict:
    """Boxes and statuses of the stage on the frames of the current and the previous reader."""
    from deepfake_lth.data.acquire import read_sources
    from deepfake_lth.data.faces import FaceDetector, FaceSpec, extract_file, load_media

    spec = FaceSpec.from_dict(spec_dict)
    det = FaceDetector(spec)
    ious, statuses, missed = [], 0, 0
    for row in read_sources(folder / "sources.csv").to_dict("records"):
        path = folder / row["path"]
        now, before = load_media(path, "video", spec), previous_reader(path, spec.frames_per_video)
        a = extract_file(row, path, spec, det, "video", now)[2]["status"]
        b = extract_file(row, path, spec, det, "video", before)[2]["status"]
        statuses += a == b
        for x, y in zip(det.detect(now[0]), det.detect(before[0])):
            if x is None or y is None:
                missed += (x is None) != (y is None)
            else:
                ious.append(iou(x, y))
    n = len(read_sources(folder / "sources.csv"))
    return {"videos": n, "same_status": statuses, "boxes": len(ious), "one_side_only": missed,
            "iou_min": float(min(ious)) if ious else 0.0}


# --------------------------------------------------------------------------- baseline


def naive_extract(folder: Path, spec_dict: dict, threads: int, videos: int | None = None,
                  frames_per_video: int | None = None) -> dict:
    """Decode all frames, keep the sampled ones, detect one at a time at full resolution
    (the first ``videos`` videos and ``frames_per_video`` sampled frames when given)."""
    import cv2
    import torch
    from facenet_pytorch import MTCNN

    from deepfake_lth.data.acquire import read_sources
    from deepfake_lth.data.faces import FaceSpec, crop_face, sample_indices

    torch.set_num_threads(threads)
    spec = FaceSpec.from_dict(spec_dict)
    mtcnn = MTCNN(keep_all=True, min_face_size=spec.min_face_size,
                  thresholds=list(spec.thresholds), post_process=False)
    table = read_sources(folder / "sources.csv")
    table = table if videos is None else table.head(videos)
    t0 = time.perf_counter()
    boxes: dict[str, list] = {}
    n_frames = 0
    for _, row in table.iterrows():
        cap = cv2.VideoCapture(str(folder / row["path"]))
        wanted = set(sample_indices(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
                                    spec.frames_per_video))
        kept, i = [], 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i in wanted:
                kept.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            i += 1
        cap.release()
        video_boxes = []
        for f in kept[:frames_per_video]:
            b, _ = mtcnn.detect(f)
            if b is None or len(b) == 0:
                video_boxes.append(None)
                continue
            b = np.asarray(b, dtype=np.float32)
            box = b[int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))]
            crop_face(f, box, spec.size, spec.margin)
            video_boxes.append(box)
        boxes[row["video_id"]] = video_boxes
        n_frames += len(video_boxes)
    return {"seconds": time.perf_counter() - t0, "frames": n_frames, "boxes": boxes}


# --------------------------------------------------------------------------- the stage


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    import facenet_pytorch  # noqa: F401

    import deepfake_lth.data.faces  # noqa: F401


def _warm(spec_dict: dict) -> int:
    from deepfake_lth.data.faces import FaceDetector, FaceSpec

    det = FaceDetector(FaceSpec.from_dict(spec_dict))
    det.detect([np.zeros((120, 160, 3), np.uint8)])
    time.sleep(0.5)  # keeps this worker busy so that the other warm-up task starts the second
    return os.getpid()


def _extract(folder: str, shard: int, shards: int, spec_dict: dict, prefix: str,
             threads: int = 1) -> dict:
    import torch

    from deepfake_lth.data.faces import FaceSpec, extract_shard

    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        stats = extract_shard(Path(folder) / "sources.csv", Path(folder), shard, shards,
                              FaceSpec.from_dict(spec_dict), None, Path(prefix), threads=threads)
        stats["worker_seconds"] = time.perf_counter() - t0
    finally:
        torch.set_num_threads(1)
    return stats


def stage_extract(pool: cf.ProcessPoolExecutor, folder: Path, spec_dict: dict, shards: int,
                  scratch: Path, threads: int = 1) -> dict:
    """Wall time of ``shards`` extract_shard calls (``threads`` each) at once in the pool."""
    t0 = time.perf_counter()
    futures = [pool.submit(_extract, str(folder), i, shards, spec_dict,
                           str(scratch / f"s{shards}-{i}" / f"shard{i}"), threads)
               for i in range(shards)]
    stats = [f.result() for f in futures]
    wall = time.perf_counter() - t0
    ok = sum(s["status"].get("ok", 0) for s in stats)
    return {"seconds": wall, "crops": sum(s["crops"] for s in stats),
            "files": sum(s["files"] for s in stats), "ok": ok}


def stage_boxes(folder: Path, spec_dict: dict) -> dict[str, list]:
    """The stage's boxes (FaceDetector on the frames read_video_frames samples), per video."""
    from deepfake_lth.data.acquire import read_sources
    from deepfake_lth.data.faces import FaceDetector, FaceSpec, read_video_frames

    spec = FaceSpec.from_dict(spec_dict)
    det = FaceDetector(spec)
    out = {}
    for _, row in read_sources(folder / "sources.csv").iterrows():
        frames, _, _ = read_video_frames(folder / row["path"], spec.frames_per_video)
        out[row["video_id"]] = det.detect(frames)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def compare_boxes(full: dict[str, list], fast: dict[str, list]) -> dict:
    values, missed_fast, missed_full = [], 0, 0
    for vid, boxes in full.items():
        for a, b in zip(boxes, fast[vid]):
            if a is None and b is None:
                continue
            if b is None:
                missed_fast += 1
            elif a is None:
                missed_full += 1
            else:
                values.append(iou(a, b))
    arr = np.array(values) if values else np.zeros(1)
    return {"frames": len(values), "mean": float(arr.mean()), "min": float(arr.min()),
            "p05": float(np.percentile(arr, 5)), "share_ge_0.8": float((arr >= IOU_GOAL).mean()),
            "face_only_at_full_res": missed_fast, "face_only_downscaled": missed_full}


# --------------------------------------------------------------------------- run


def naive_threads(folder: Path, spec_dict: dict, frames: int = 6) -> tuple[int, dict]:
    """The baseline's faster torch thread count (1 or CORES) on a few frames: on a loaded
    machine a team of threads can be slower than one thread, and the baseline gets its best."""
    per_frame = {}
    for threads in sorted({1, CORES}):
        naive_extract(folder, spec_dict, threads, videos=1, frames_per_video=1)  # warm-up
        r = naive_extract(folder, spec_dict, threads, videos=1, frames_per_video=frames)
        per_frame[threads] = r["seconds"] / max(r["frames"], 1)
    return min(per_frame, key=per_frame.get), per_frame


def bench_input(name: str, folder: Path, spec_dict: dict, pool, scratch: Path,
                repeats: int) -> dict:
    """Interleaved: stage (CORES processes of one thread), naive, stage on one process of
    CORES threads, ``repeats`` times,
    then the stage once more. Each variant's time is its fastest run: on a shared machine
    the fastest run is the one least disturbed by other processes."""
    threads, probe = naive_threads(folder, spec_dict)
    stage, naive, single = [], [], []
    for r in range(repeats):
        stage.append(stage_extract(pool, folder, spec_dict, CORES, scratch / f"{name}-{r}a"))
        naive.append(naive_extract(folder, spec_dict, threads))
        single.append(stage_extract(pool, folder, spec_dict, 1, scratch / f"{name}-{r}s",
                                    threads=CORES))
    stage.append(stage_extract(pool, folder, spec_dict, CORES, scratch / f"{name}-z"))
    frames = naive[0]["frames"]
    stage_s = min(s["seconds"] for s in stage)
    naive_s = min(n["seconds"] for n in naive)
    single_s = min(s["seconds"] for s in single)
    boxes = compare_boxes(naive[0]["boxes"], stage_boxes(folder, spec_dict))
    return {
        "input": name,
        "videos": stage[0]["files"],
        "frames": frames,
        "crops": stage[0]["crops"],
        "ok_videos": stage[0]["ok"],
        "spec": spec_dict,
        "naive_fps": frames / naive_s,
        "stage_fps": stage[0]["crops"] / stage_s,
        "stage_single_fps": single[0]["crops"] / single_s,
        "speedup": (stage[0]["crops"] / stage_s) / (frames / naive_s),
        "speedup_single_process": (single[0]["crops"] / single_s) / (frames / naive_s),
        "naive_threads": threads,
        "naive_probe_seconds_per_frame": {str(k): round(v, 4) for k, v in probe.items()},
        "naive_seconds": [round(n["seconds"], 2) for n in naive],
        "stage_seconds": [round(s["seconds"], 2) for s in stage],
        "stage_single_seconds": [round(s["seconds"], 2) for s in single],
        "iou": boxes,
    }


def _target(id_: str, title: str, measured: float, goal: float, op: str, unit: str,
            met: bool) -> dict:
    return {"id": id_, "title": title, "measured": round(measured, 3 if unit == "" else 2),
            "goal": goal, "op": op, "unit": unit, "met": met}


def run(quick: bool = False) -> dict:
    """The three inputs; targets: speed-ups (1 and 2 processes), reading / one decode on the
    long GOP, IoU of the boxes, the same boxes and statuses as the previous reader."""
    videos = OUT / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    demo = demo_videos(videos, 2)
    hd = {name: hd_videos(videos, 1 if quick else 2, gop) for name, gop in GOPS.items()}
    generate_s = time.perf_counter() - t0
    demo_spec = _config_faces(ROOT / "config.yaml", "demo-videos")
    hd_spec = _config_faces(ROOT / "config" / "paper.yaml")
    ctx = mp.get_context("spawn")
    rows = []
    reading = {name: bench_reading(folder, hd_spec["frames_per_video"])
               for name, folder in hd.items()}
    same = same_as_previous(demo, demo_spec)
    with (cf.ProcessPoolExecutor(CORES, mp_context=ctx, initializer=_worker_init) as pool,
          tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp):
        list(pool.map(_warm, [hd_spec] * CORES))
        inputs = [("demo", demo, demo_spec, 2 if quick else 3),
                  *((name, folder, hd_spec, 1) for name, folder in hd.items())]
        for name, folder, spec, repeats in inputs:
            rows.append(bench_input(name, folder, spec, pool, Path(tmp), repeats))
    for r in rows:
        r["file_frames"] = HD["frames"] if r["input"] in GOPS else DEMO_SOURCE["frames"]
        r["reading"] = reading.get(r["input"])
    targets = []
    for r in rows:
        size = f"({r['videos']} videos × {r['file_frames']} frames, {r['frames']} sampled)"
        complete = r["crops"] == r["frames"] and r["ok_videos"] == r["videos"]
        if r["input"] in GOALS_SINGLE:
            goal = GOALS_SINGLE[r["input"]]
            targets.append(_target(
                f"extraction-{r['input']}-1-process",
                f"extraction frames/s, stage (1 process, {CORES} threads) / naive, "
                f"{r['input']} {size}", r["speedup_single_process"], goal, ">=", "x",
                r["speedup_single_process"] >= goal and complete))
        goal = GOALS_TWO.get(r["input"], GOALS[r["input"]])
        targets.append(_target(
            f"extraction-{r['input']}",
            f"extraction frames/s, stage ({CORES} processes) / naive, {r['input']} {size}",
            r["speedup"], goal, ">=", "x", r["speedup"] >= goal and complete))
    long_read = reading["1080p-long-gop"]
    targets.append(_target(
        "extraction-read-long-gop", "reading 40 sampled frames / one sequential decode, "
        "1080p long-GOP H.264", long_read["ratio"], READ_GOAL, "<=", "x",
        long_read["ratio"] <= READ_GOAL))
    targets.append(_target(
        "extraction-same-as-previous", "demo videos: min IoU of the boxes, current / previous "
        f"reader ({same['same_status']} of {same['videos']} statuses the same)",
        same["iou_min"], SAME_BOX_IOU, ">=", "",
        same["iou_min"] >= SAME_BOX_IOU and same["same_status"] == same["videos"]
        and same["one_side_only"] == 0))
    hd_row = rows[-1]
    targets.append(_target(
        "extraction-iou-1080p", "IoU of downscaled vs full-resolution face boxes, 1080p (mean)",
        hd_row["iou"]["mean"], IOU_GOAL, ">=", "", hd_row["iou"]["mean"] >= IOU_GOAL))
    return {"name": "extraction", "rows": rows, "targets": targets, "same_as_previous": same,
            "settings": {"cores": CORES, "generate_seconds": round(generate_s, 1), "hd": HD,
                         "gops": GOPS}}


def table(result: dict) -> str:
    lines = [
        ("| input | videos × frames (sampled) | naive frames/s | stage frames/s (2 processes) | "
         "stage frames/s (1 process, 2 threads) | speed-up | speed-up, 1 process | "
         "IoU mean / min |"),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['input']} | {r['videos']} × {r.get('file_frames', '?')} "
            f"({r['frames'] // max(r['videos'], 1)}) | "
            f"{r['naive_fps']:.1f} ({r['naive_threads']}) | {r['stage_fps']:.1f} | "
            f"{r['stage_single_fps']:.1f} | {r['speedup']:.2f}x | "
            f"{r['speedup_single_process']:.2f}x | "
            f"{r['iou']['mean']:.3f} / {r['iou']['min']:.3f} |"
        )
    lines += ["", "| input | 40 sampled frames, current reader | previous reader (seeking) | "
              "one decode, PyAV | one decode, OpenCV | current / one decode | "
              "previous / one decode |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        rd = r.get("reading")
        if rd:
            sec = rd["seconds"]
            lines.append(
                f"| {r['input']} ({rd['videos']} videos) | {sec['sampled']:.2f} s | "
                f"{sec['sampled_previous']:.2f} s | {sec['decode_pyav']:.2f} s | "
                f"{sec['decode_opencv']:.2f} s | {rd['ratio']:.2f}x | "
                f"{rd['previous_ratio']:.2f}x |")
    same = result.get("same_as_previous")
    if same:
        lines += ["", "| demo videos, current vs previous reader | statuses the same | "
                  "boxes compared | min IoU | a face on one side only |", "|---|---:|---:|---:|---:|",
                  f"| {same['videos']} videos | {same['same_status']} of {same['videos']} | "
                  f"{same['boxes']} | {same['iou_min']:.3f} | {same['one_side_only']} |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return _cli.main(__doc__, run, table, "fewer videos, one repeat", argv)


if __name__ == "__main__":
    raise SystemExit(main())
