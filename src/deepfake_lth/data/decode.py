"""Video decoding: ``k`` evenly spaced frames of a video, upright, at the cost of one decode.

Real footage is encoded with long GOPs (H.264 from cameras and video sites: a keyframe
every few seconds, B-frames), so seeking to each sampled frame decodes again from the
previous keyframe every time (10-17x one sequential decode on 300-frame DFDC clips). This
module decodes each video once, in order, with FFmpeg's frame threads (PyAV,
``thread_type="AUTO"``), and converts to RGB only the sampled frames, on a second thread
while decoding goes on; every other frame is dropped as decoded. PyAV decodes as fast as
OpenCV's reader (BENCHMARKS.md, section 1), gives the frames to convert where and when this
module wants, and reports the display matrix, so portrait clips stored as landscape pixels
with a rotation (DFDC has them) come out upright.

Frame counts: the container's count decides which frames are sampled; when it is missing,
the video packets are counted (no decoding); when the video holds fewer frames than that,
the frames actually decoded are counted and sampled again (a second pass). Files PyAV
cannot open (or a missing PyAV) fall back to OpenCV's sequential reader, which rotates by
the same metadata itself.

``write_h264`` encodes frames the way cameras and video sites do (libx264, constant quality
``crf``, B-frames, a keyframe every ``gop`` frames); the benchmark and the tests use it.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

Frames = tuple[list[np.ndarray], list[int], int]


def sample_indices(n_frames: int, k: int) -> list[int]:
    """``k`` evenly spaced frame indices of ``n_frames`` (all of them when fewer)."""
    if n_frames <= 0:
        return []
    if n_frames <= k:
        return list(range(n_frames))
    return [round(x) for x in np.linspace(0, n_frames - 1, k)]


def read_video_frames(path: Path, k: int, threads: int = 0) -> Frames:
    """Up to ``k`` evenly spaced RGB frames (upright), their indices, and the video's frame
    count (0: nothing decodable). ``threads``: FFmpeg decoding threads (0: one per core)."""
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency; OpenCV still reads
        return read_frames_opencv(path, k)
    try:
        return _read_pyav(av, Path(path), k, threads)
    except (av.FFmpegError, ValueError, IndexError) as exc:
        log.info("%s: PyAV cannot read it (%s); trying OpenCV", path, exc)
        return read_frames_opencv(path, k)


def _open(av, path: Path, threads: int):
    container = av.open(str(path))
    if not container.streams.video:
        container.close()
        raise ValueError("no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = max(0, int(threads))
    return container, stream


def _read_pyav(av, path: Path, k: int, threads: int) -> Frames:
    container, stream = _open(av, path, threads)
    count = int(stream.frames or 0)
    if count <= 0:  # no count in the header: count the packets (no decoding), then reopen
        with container:
            count = sum(1 for p in container.demux(stream) if p.size)
        container, stream = _open(av, path, threads)
    with container:
        wanted = sample_indices(count, k)
        frames, indices, decoded = _decode_wanted(av, container, stream, wanted)
    if len(frames) == len(wanted) and frames:
        return frames, indices, count
    if decoded == 0:
        return [], [], 0
    # fewer frames than the container says: sample what was decoded (all of it, this time)
    log.info("%s: the container says %d frames, %d decode; sampling those", path, count, decoded)
    container, stream = _open(av, path, threads)
    with container:
        frames, indices, _ = _decode_wanted(av, container, stream, sample_indices(decoded, k))
    return frames, indices, decoded


def _decode_wanted(av, container, stream, wanted: list[int]) -> Frames:
    """One sequential decode up to the last wanted frame; only wanted frames are converted,
    on a second thread while decoding goes on (the conversion, ~4 ms a 1080p frame, would
    otherwise add ~40 % to one decode). Returns the frames, their indices and how many
    frames were decoded. A decoding error ends the video there (a truncated file keeps the
    frames before the damage)."""
    wanted_set, pending, indices = set(wanted), [], []
    last, i = (wanted[-1] if wanted else None), 0  # None: decode it all (to count)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rgb") as convert:
        try:
            for frame in container.decode(stream):
                if i in wanted_set:
                    pending.append(convert.submit(_rgb, frame))
                    indices.append(i)
                i += 1
                if last is not None and i > last:
                    break
        except av.FFmpegError as exc:
            log.info("decoding stopped at frame %d: %s", i, exc)
        frames = [f.result() for f in pending]
    return frames, indices, i


def _rgb(frame) -> np.ndarray:
    return upright(frame.to_ndarray(format="rgb24"), frame.rotation)


def upright(rgb: np.ndarray, rotation: float | int | None) -> np.ndarray:
    """The frame as displayed: ``rotation`` is the display matrix's angle in degrees,
    counter-clockwise (FFmpeg's convention; -90 for a phone's portrait clip)."""
    turns = int(round((rotation or 0) / 90)) % 4
    return rgb if turns == 0 else np.ascontiguousarray(np.rot90(rgb, turns))


# --------------------------------------------------------------------------- OpenCV fallback


def read_frames_opencv(path: Path, k: int) -> Frames:
    """The same with OpenCV, decoding sequentially (it applies the rotation metadata)."""
    import cv2

    def opened():
        cap = cv2.VideoCapture(str(path))
        return cap if cap.isOpened() else None

    cap = opened()
    if cap is None:
        return [], [], 0
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if count > 0:
            wanted = sample_indices(count, k)
            frames, indices = _opencv_sequential(cap, wanted)
            if len(frames) == len(wanted):
                return frames, indices, count
            cap.release()
            cap = opened()
        # the container's frame count is missing or wrong: count by grabbing, then sample
        n = 0
        while cap is not None and cap.grab():
            n += 1
        if n == 0:
            return [], [], 0
        cap.release()
        cap = opened()
        frames, indices = _opencv_sequential(cap, sample_indices(n, k))
        return frames, indices, n
    finally:
        if cap is not None:
            cap.release()


def _opencv_sequential(cap, wanted: list[int]) -> tuple[list[np.ndarray], list[int]]:
    """Decode up to the last wanted frame, converting only the wanted ones."""
    import cv2

    wanted_set, frames, indices, idx = set(wanted), [], [], 0
    last = wanted[-1] if wanted else -1
    while idx <= last and cap.grab():
        if idx in wanted_set:
            ok, frame = cap.retrieve()
            if ok and frame is not None:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                indices.append(idx)
        idx += 1
    return frames, indices


# --------------------------------------------------------------------------- encoding


def write_h264(path: Path, frames, fps: int = 25, gop: int = 250,
               crf: int = 23, bframes: int = 3, preset: str = "veryfast",
               rotation: int | None = None, bitrate: int | None = None) -> None:
    """Encode RGB ``frames`` (a list or any iterable) as H.264 MP4 (libx264): a keyframe
    every ``gop`` frames (no scene-cut keyframes), constant quality ``crf`` (or an average
    ``bitrate`` in bits per second), ``bframes`` B-frames, and optionally a display rotation
    (degrees counter-clockwise, as a phone writes it)."""
    import itertools

    import av

    from deepfake_lth.core.files import atomic_path

    frames = iter(frames)
    first = next(frames)
    frames = itertools.chain([first], frames)
    h, w = first.shape[:2]
    with atomic_path(Path(path)) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = bframes
        options = {"preset": preset, "bf": str(bframes), "keyint_min": str(gop),
                   "sc_threshold": "0"}
        if bitrate:
            stream.codec_context.bit_rate = int(bitrate)
        else:
            options["crf"] = str(crf)
        stream.codec_context.options = options
        if rotation:
            stream.set_display_rotation(rotation)
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f),
                                                             format="rgb24")))
        out.mux(stream.encode())
