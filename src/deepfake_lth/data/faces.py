"""Frames and faces: sample N evenly spaced frames per video and crop the face with MTCNN.

One extraction job handles one shard of a dataset's ``sources.csv`` (rows ``i`` with
``i % shards == shard``) and writes ``shards/shard{i}.npy`` (uint8 face crops, a sparse
file sized for the worst case), ``shards/shard{i}.csv`` (one row per crop) and
``shards/shard{i}.log.csv`` (one row per source file). ``pack`` merges the shards.

Per-file status, as written to ``extraction_log.csv``:

==========  ===============================================================================
ok          faces cropped; a video gives exactly ``frames_per_video`` crops
empty       a zero-byte file
unreadable  not a video/image FFmpeg (PyAV, OpenCV) can decode (corrupt, a text file named .mp4)
too_short   fewer than ``min_frames`` readable frames
no_face     MTCNN found a face in fewer than half of the sampled frames (or none in an image),
            also after retrying the frames without one at larger sizes
missing     the file listed in sources.csv does not exist
==========  ===============================================================================

Choices, documented for real footage: a frame with several faces keeps the largest; a
sampled frame where MTCNN finds no face (motion blur, a turned head) borrows the box of the
nearest frame that has one, so every ``ok`` video contributes the same number of crops; a
crop reaching past the frame border is padded with black, never dropped. Detection runs on
a copy of the frame downscaled to ``detect_max_side`` (boxes scaled back), and the crop is
cut from the full-resolution frame. MTCNN's ``min_face_size`` applies to that downscaled copy,
so small faces in large frames can be missed: before a file is called ``no_face``, its frames
without a detection are retried at twice the size, then twice again, up to full resolution.
The ``upscaled`` column of the log counts the frames whose face was found only that way.

The pyramid adapts to the faces of each video (``adaptive_pyramid``, on by default): MTCNN
spends most of its time on the fine levels of its image pyramid, which look for the smallest
faces (``min_face_size``), and interview-like footage holds none. The first sampled frames
of a video are searched with the whole pyramid; every later frame only for faces down to
``adaptive_min_face_fraction`` (0.5) of the smallest face chosen so far (rounded to a level
of the whole pyramid, whose finest levels it drops: the same boxes), never below
``min_face_size``. A frame where that finds nothing, or a face that shrank (a cut, a zoom
out) so that the floor is more than ``MAX_FLOOR`` (0.65) of it, is searched again with the
whole pyramid, so the statuses and the largest face stay those of the whole
pyramid; only the largest face of a frame is kept, so only it sets the floor. The
``reduced_pyramid`` column counts the frames whose face came from the reduced pyramid.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake_lth.data.decode import read_video_frames, sample_indices  # noqa: F401
from deepfake_lth.data.media import VIDEO_EXTS

log = logging.getLogger(__name__)

LOG_COLUMNS = ["source", "video_id", "label", "status", "frames_read", "faces", "upscaled",
               "reduced_pyramid", "message"]
CROP_COLUMNS = ["video_id", "label", "split", "frame_index", "source", "detected"]
# MTCNN input pixels per batch on the CPU: 16 frames of 640x360 (bounded memory)
CPU_BATCH_PIXELS = 16 * 640 * 360
# frames of a video searched with the whole pyramid before it adapts to the faces found
FULL_PYRAMID_FRAMES = 1
# the reduced pyramid's face is kept when its floor is at most this fraction of the face: the
# same boxes as the whole pyramid up to 0.65 (measured on drawn faces of 35-130 px; IoU
# 0.91-0.95 from 0.65 to 1). At 0.65 rather than 0.6 (with one whole-pyramid frame instead of
# two), a face that jitters a little below the smallest so far keeps the reduced pyramid:
# detection 0.51x instead of 0.54x of the whole pyramid on the real-like clips of
# `python bench/extraction.py` (BENCHMARKS.md §1)
MAX_FLOOR = 0.65


@dataclass
class FaceSpec:
    """The data parameters that decide the crops (config key ``faces``)."""

    frames_per_video: int = 40
    min_frames: int = 40
    size: int = 64
    margin: float = 0.3
    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    detect_max_side: int = 640
    batch_size: int = 16
    adaptive_pyramid: bool = True
    adaptive_min_face_fraction: float = 0.5

    @classmethod
    def from_dict(cls, d: dict) -> FaceSpec:
        names = cls.__dataclass_fields__
        kw = {k: v for k, v in d.items() if k in names}
        if "thresholds" in kw:
            kw["thresholds"] = tuple(kw["thresholds"])
        return cls(**kw)


def read_image(path: Path) -> np.ndarray | None:
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class FaceDetector:
    """MTCNN (facenet-pytorch) on downscaled frames; the largest face per frame."""

    def __init__(self, spec: FaceSpec, device: str = "cpu"):
        from facenet_pytorch import MTCNN

        self.spec = spec
        self.device = device
        self.mtcnn = MTCNN(
            keep_all=True,
            min_face_size=spec.min_face_size,
            thresholds=list(spec.thresholds),
            device=device,
            post_process=False,
        )

    def detect(self, frames: list[np.ndarray], max_side: int | None = None,
               min_face: float | None = None) -> list[np.ndarray | None]:
        """Largest face box (x1, y1, x2, y2) in full-resolution pixels per frame, or None,
        detected on the frame downscaled to ``max_side`` (default ``detect_max_side``) with
        the whole pyramid (``min_face``: the smallest face searched, in pixels of that copy;
        default ``min_face_size``).

        Frames of one size go to MTCNN in batches of ``batch_size``; on the CPU a batch holds
        at most CPU_BATCH_PIXELS pixels (batching gives the same boxes, 1.3-1.7x faster on
        one thread at 192-640 px; see BENCHMARKS.md).
        """
        side = max_side or self.spec.detect_max_side
        found = self._detect(frames, side, min_face or self.spec.min_face_size)
        return [None if f is None else f[0] for f in found]

    def _batch_size(self, frames: list[np.ndarray], side: int) -> int:
        bs = self.spec.batch_size
        if not str(self.device).startswith("cuda") and frames:
            h, w = frames[0].shape[:2]
            s = min(1.0, side / max(h, w))
            bs = max(1, min(bs, CPU_BATCH_PIXELS // max(1, int(h * s * w * s))))
        return bs

    def _detect(self, frames: list[np.ndarray], side: int,
                min_face: float) -> list[tuple[np.ndarray, float] | None]:
        """Per frame: the largest face's box (full-resolution pixels) and its longer side in
        pixels of the detection copy, or None; MTCNN searching faces down to ``min_face``."""
        out: list[tuple[np.ndarray, float] | None] = []
        bs = self._batch_size(frames, side)
        configured = self.mtcnn.min_face_size
        self.mtcnn.min_face_size = min_face
        try:
            for start in range(0, len(frames), bs):
                chunk = frames[start : start + bs]
                scales, small = [], []
                for f in chunk:
                    h, w = f.shape[:2]
                    s = min(1.0, side / max(h, w))
                    scales.append(s)
                    small.append(f if s >= 1.0 else cv2.resize(
                        f, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
                if len(small) > 1 and len({im.shape for im in small}) == 1:
                    boxes, _ = self.mtcnn.detect(np.stack(small))
                else:
                    boxes = [self.mtcnn.detect(im)[0] for im in small]
                for b, s in zip(boxes, scales):
                    if b is None or len(b) == 0:
                        out.append(None)
                        continue
                    b = np.asarray(b, dtype=np.float32)
                    big = b[int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))]
                    out.append((big / s, float(max(big[2] - big[0], big[3] - big[1]))))
        finally:
            self.mtcnn.min_face_size = configured
        return out

    def pyramid_floor(self, smallest: float) -> float:
        """The smallest face the reduced pyramid searches: ``min_face_size`` / factor^k, the
        whole pyramid less its k finest levels (so the levels kept, and the boxes, are those
        of the whole pyramid: changing MTCNN's ``min_face_size`` to any other value moves
        every level and the boxes with them, IoU 0.90 at 25 px against 20 px), with k the
        level nearest ``adaptive_min_face_fraction`` of ``smallest`` (0.42-0.59 of it at
        0.5), never below ``min_face_size``."""
        full, factor = self.spec.min_face_size, self.mtcnn.factor
        wanted = self.spec.adaptive_min_face_fraction * smallest / full
        levels = max(0, round(math.log(max(wanted, 1e-9)) / math.log(1 / factor)))
        return full / factor**levels

    def detect_video(self, frames: list[np.ndarray]) -> tuple[list[np.ndarray | None], int]:
        """``detect`` for the sampled frames of one video, in order, with the pyramid adapted
        to the faces found (module docstring); also how many frames kept the face the reduced
        pyramid found. Without ``adaptive_pyramid``: ``detect(frames)``, 0."""
        spec = self.spec
        if not spec.adaptive_pyramid or len(frames) <= FULL_PYRAMID_FRAMES:
            return self.detect(frames), 0
        side, full = spec.detect_max_side, spec.min_face_size
        found: list[tuple[np.ndarray, float] | None] = []
        smallest, reduced = None, 0
        bs = self._batch_size(frames, side)
        while len(found) < len(frames):
            start = len(found)
            floor = full if smallest is None else self.pyramid_floor(smallest)
            if floor <= full:  # nothing to reduce (yet): the whole pyramid
                n = FULL_PYRAMID_FRAMES if start == 0 else bs
                found += self._detect(frames[start : start + n], side, full)
            else:
                chunk = self._detect(frames[start : start + bs], side, floor)
                # nothing, or a face that shrank (a cut, a zoom out): again with all levels
                redo = [i for i, f in enumerate(chunk) if f is None or f[1] * MAX_FLOOR < floor]
                for i, f in zip(redo, self._detect([frames[start + i] for i in redo], side,
                                                   full)):
                    chunk[i] = f
                reduced += len(chunk) - len(redo)
                found += chunk
            sizes = [f[1] for f in found[start:] if f is not None]
            if sizes:
                smallest = min([*sizes, *([smallest] if smallest else [])])
        return [None if f is None else f[0] for f in found], reduced

    def retry_larger(self, frames: list[np.ndarray],
                     boxes: list[np.ndarray | None]) -> tuple[list[np.ndarray | None], int]:
        """``boxes`` with the frames that have none detected again at 2×, 4×, …
        ``detect_max_side``, up to full resolution; also how many were found that way."""
        boxes = list(boxes)
        full = max((max(f.shape[:2]) for f in frames), default=0)
        side, found = self.spec.detect_max_side, 0
        while side < full:
            side = min(2 * side, full)
            todo = [i for i, b in enumerate(boxes) if b is None]
            if not todo:
                break
            for i, b in zip(todo, self.detect([frames[i] for i in todo], max_side=side)):
                if b is not None:
                    boxes[i] = b
                    found += 1
        return boxes, found


def crop_face(frame: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Square crop around ``box`` enlarged by ``margin``, padded at borders, resized to ``size``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + margin)
    left, top = round(cx - side / 2), round(cy - side / 2)
    side_i = max(1, round(side))
    h, w = frame.shape[:2]
    pad = [max(0, -top), max(0, top + side_i - h), max(0, -left), max(0, left + side_i - w)]
    region = frame[max(0, top) : min(h, top + side_i), max(0, left) : min(w, left + side_i)]
    if region.size == 0:
        region = np.zeros((side_i, side_i, 3), np.uint8)
    elif any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    interp = cv2.INTER_AREA if side_i > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interp)


def fill_missing_boxes(boxes: list[np.ndarray | None]) -> list[np.ndarray] | None:
    """Give frames without a detection the box of the nearest frame with one."""
    have = [i for i, b in enumerate(boxes) if b is not None]
    if not have:
        return None
    return [boxes[i] if boxes[i] is not None else boxes[min(have, key=lambda j: abs(j - i))]
            for i in range(len(boxes))]


def center_box(img: np.ndarray) -> np.ndarray:
    """The whole image as a box (for sets that are already face crops)."""
    h, w = img.shape[:2]
    return np.array([0, 0, w, h], dtype=np.float32)


def load_media(path: Path, kind: str, spec: FaceSpec, threads: int = 0):
    """The sampled frames of one file, as ``(frames, indices, frames_read)``; an exception
    is returned, not raised (a reader thread hands it to ``extract_file``)."""
    try:
        if kind == "video":
            return read_video_frames(path, spec.frames_per_video, threads)
        img = read_image(path)
        return ([img], [0], 1) if img is not None else ([], [], 0)
    except Exception as exc:  # noqa: BLE001 - reported as unreadable by extract_file
        return exc


def extract_file(row: dict, path: Path, spec: FaceSpec, detector: FaceDetector | None,
                 kind: str, media=None) -> tuple[list[np.ndarray], list[dict], dict]:
    """Crops, crop rows and the log row of one source file. Never raises on bad input.
    ``media``: what ``load_media`` returned for the file (read ahead), else read here."""
    entry = {"source": row["path"], "video_id": row["video_id"], "label": row["label"],
             "status": "ok", "frames_read": 0, "faces": 0, "upscaled": 0, "reduced_pyramid": 0,
             "message": ""}

    def fail(status: str, message: str):
        entry.update(status=status, message=message)
        log.warning("%s: %s (%s)", row["path"], status, message)
        return [], [], entry

    if not path.exists():
        return fail("missing", f"{path} does not exist")
    if path.stat().st_size == 0:
        return fail("empty", "zero-byte file")
    try:
        media = load_media(path, kind, spec) if media is None else media
        if isinstance(media, Exception):
            raise media
        frames, indices, entry["frames_read"] = media
        if kind == "video":
            if entry["frames_read"] == 0:
                return fail("unreadable", "FFmpeg could not decode any frame")
            if len(frames) < spec.min_frames:
                return fail("too_short", f"{len(frames)} readable frames < min_frames {spec.min_frames}")
        elif not frames:
            return fail("unreadable", "not an image OpenCV can decode")
        if detector is None:
            boxes: list = [center_box(f) for f in frames]
            detected = [True] * len(frames)
        else:
            raw, entry["reduced_pyramid"] = (detector.detect_video(frames) if kind == "video"
                                              else (detector.detect(frames), 0))
            if sum(b is not None for b in raw) < 0.5 * len(frames):  # no_face, unless larger
                raw, entry["upscaled"] = detector.retry_larger(frames, raw)
                if entry["upscaled"]:
                    log.info("%s: %d of %d frames had a face only at a larger detection size "
                             "than detect_max_side %d", row["path"], entry["upscaled"],
                             len(frames), detector.spec.detect_max_side)
            detected = [b is not None for b in raw]
            entry["faces"] = sum(detected)
            if sum(detected) == 0 or sum(detected) < 0.5 * len(frames):
                return fail("no_face", f"a face in {sum(detected)} of {len(frames)} sampled frames"
                            " (also at full resolution)")
            boxes = fill_missing_boxes(raw)
        entry["faces"] = sum(detected)
        margin = spec.margin if detector is not None else 0.0  # a face-crop set: keep it whole
        crops = [crop_face(f, b, spec.size, margin) for f, b in zip(frames, boxes)]
    except Exception as exc:  # noqa: BLE001 - a broken file must not stop the shard
        return fail("unreadable", f"{type(exc).__name__}: {exc}")
    rows = [{"video_id": row["video_id"], "label": row["label"], "split": row.get("split", ""),
             "frame_index": idx, "source": row["path"], "detected": int(d)}
            for idx, d in zip(indices, detected)]
    return crops, rows, entry


def read_ahead(files: list[tuple[dict, Path, str]], spec: FaceSpec, threads: int = 0):
    """``(file, media)`` per file, the next file decoded on a thread while the caller
    detects faces in the current one (FFmpeg and torch release the GIL)."""
    def load(item):
        _, path, kind = item
        if not path.is_file() or path.stat().st_size == 0:
            return None  # extract_file reports it
        return load_media(path, kind, spec, threads)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending = pool.submit(load, files[0]) if files else None
        for i, item in enumerate(files):
            media = pending.result()
            pending = pool.submit(load, files[i + 1]) if i + 1 < len(files) else None
            yield item, media


def extract_shard(sources_csv: Path, dataset_dir: Path, shard: int, shards: int, spec: FaceSpec,
                  detect: bool | None, out_prefix: Path, device: str = "cpu",
                  threads: int = 0) -> dict:
    """Extract the faces of one shard; returns counts. Writes ``{prefix}.npy|.csv|.log.csv``.
    ``threads``: FFmpeg decoding threads (0: one per core); decoding overlaps detection."""
    from tqdm import tqdm

    from deepfake_lth.data.acquire import read_sources, resolve

    table = read_sources(sources_csv)
    mine = table.iloc[shard::shards]
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    kinds = set(mine["kind"]) or {"video"}
    # detect faces: always for videos; for images unless the set is already face crops
    use_detector = any(k == "video" for k in kinds) or bool(detect)
    if detect is False and kinds == {"image"}:
        use_detector = False
    detector = FaceDetector(spec, device) if use_detector else None
    per_file = spec.frames_per_video if "video" in kinds else 1
    capacity = max(1, len(mine) * per_file)
    npy_tmp = out_prefix.with_suffix(".npy.tmp")
    store = np.lib.format.open_memmap(npy_tmp, mode="w+", dtype=np.uint8,
                                      shape=(capacity, spec.size, spec.size, 3))
    crop_rows: list[dict] = []
    log_rows: list[dict] = []
    t0, n_frames = time.time(), 0
    files = []
    for row in mine.to_dict("records"):
        kind = row["kind"] or ("video" if Path(row["path"]).suffix.lower() in VIDEO_EXTS else "image")
        files.append((row, resolve(row["path"], dataset_dir), kind))
    for (row, path, kind), media in tqdm(read_ahead(files, spec, threads), total=len(files),
                                         desc=f"shard {shard}/{shards}", mininterval=5,
                                         disable=None):
        det = detector if (kind == "video" or detect is not False) else None
        crops, rows, entry = extract_file(row, path, spec, det, kind, media)
        for c, r in zip(crops, rows):
            store[len(crop_rows)] = c
            crop_rows.append(r)
        log_rows.append(entry)
        n_frames += entry["frames_read"] if kind == "image" else len(crops)
    store.flush()
    del store
    elapsed = time.time() - t0
    _write_csv(out_prefix.with_suffix(".csv"), CROP_COLUMNS, crop_rows)
    _write_csv(out_prefix.with_suffix(".log.csv"), LOG_COLUMNS, log_rows)
    npy_tmp.replace(out_prefix.with_suffix(".npy"))  # last: its presence marks a finished shard
    stats = {"files": len(log_rows), "crops": len(crop_rows), "seconds": round(elapsed, 2),
             "upscaled_frames": sum(r["upscaled"] for r in log_rows),
             "reduced_pyramid_frames": sum(r["reduced_pyramid"] for r in log_rows),
             "frames_per_second": round(n_frames / elapsed, 2) if elapsed > 0 else None,
             "status": {s: sum(r["status"] == s for r in log_rows) for s in {r["status"] for r in log_rows}}}
    log.info("shard %d/%d: %s", shard, shards, json.dumps(stats))
    return stats


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sources", required=True, help="resources/{dataset}/sources.csv")
    parser.add_argument("--shard", type=int, required=True,
                        help="the shard to extract: rows i of sources.csv with "
                        "i %% shards == shard")
    parser.add_argument("--shards", type=int, required=True,
                        help="number of shards the dataset is split into")
    parser.add_argument("--spec", required=True,
                        help="the dataset's face settings (config 'faces', with "
                        "datasets.{name}.faces on top) as JSON")
    parser.add_argument("--detect", choices=["auto", "yes", "no"], default="auto",
                        help="run MTCNN on images (videos always)")
    parser.add_argument("--out", required=True, help="output prefix, e.g. .../shards/shard0")
    parser.add_argument("--device", default=os.environ.get("DLTH_DEVICE") or "auto",
                        help="auto | cpu | cuda | cuda:N for MTCNN (default: $DLTH_DEVICE, which "
                        "the workflow sets from the config's device, else auto)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (MTCNN) and for FFmpeg's decoding")


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = FaceSpec.from_dict(json.loads(args.spec))
    detect = {"auto": None, "yes": True, "no": False}[args.detect]
    sources = Path(args.sources)
    extract_shard(sources, sources.parent, args.shard, args.shards, spec, detect, Path(args.out),
                  device, threads=args.threads)
    return 0
