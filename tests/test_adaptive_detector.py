"""The face-size-aware detector (faces.adaptive_pyramid) keeps what the whole pyramid finds:
the same frames with a face, the same largest face (box IoU >= 0.95), the same statuses, on
clips whose faces change size (zoom, two people, a person leaving, a cut) and on the demo's
videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfake_lth.data import scenes
from deepfake_lth.data.acquire import acquire, read_sources, synthetic
from deepfake_lth.data.faces import FaceDetector, FaceSpec, extract_file, read_video_frames

torch.set_num_threads(1)

IOU = 0.95
W, H = 640, 360


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def same_as_whole_pyramid(frames: list[np.ndarray], spec: FaceSpec) -> int:
    """Assert that the adaptive pass finds what the whole pyramid finds, frame by frame, and
    that extract_file gives both the same status and face count; the frames kept from the
    reduced pyramid."""
    whole = FaceDetector(FaceSpec(**{**spec.__dict__, "adaptive_pyramid": False}))
    adaptive = FaceDetector(spec)
    ref = whole.detect(frames)
    got, reduced = adaptive.detect_video(frames)
    assert [b is None for b in got] == [b is None for b in ref]
    for i, (a, b) in enumerate(zip(ref, got)):
        if a is not None:
            assert iou(a, b) >= IOU, f"frame {i}: {a} vs {b}"
    row = {"path": "clip.mp4", "video_id": "clip", "label": 0}
    media = (frames, list(range(len(frames))), len(frames))
    entries = [extract_file(row, _Present(), spec, det, "video", media)[2]
               for det in (whole, adaptive)]
    assert entries[0]["status"] == entries[1]["status"]
    assert entries[0]["faces"] == entries[1]["faces"]
    assert entries[0]["reduced_pyramid"] == 0 and entries[1]["reduced_pyramid"] == reduced
    return reduced


class _Present:
    """A path that exists and is not empty (the frames are handed to extract_file)."""

    def exists(self):
        return True

    def stat(self):
        return type("st", (), {"st_size": 1})()


def _spec(**kw) -> FaceSpec:
    return FaceSpec(frames_per_video=kw.pop("n", 24), min_frames=kw.pop("min_frames", 12),
                    size=32, **kw)


def test_the_reduced_pyramid_is_the_whole_one_less_its_finest_levels():
    det = FaceDetector(FaceSpec(min_face_size=20))
    factor = det.mtcnn.factor
    assert det.pyramid_floor(30) == det.pyramid_floor(10) == 20  # nothing to drop
    for smallest in (50, 73, 83, 120, 300):
        floor = det.pyramid_floor(smallest)
        levels = np.log(floor / 20) / np.log(1 / factor)
        assert levels >= 1 and abs(levels - round(levels)) < 1e-6  # a level of the whole pyramid
        assert 0.5 * smallest * factor**0.5 <= floor <= 0.5 * smallest / factor**0.5  # nearest
    assert FaceDetector(FaceSpec(adaptive_min_face_fraction=0.25)).pyramid_floor(83) < 25


def test_zoom_out_and_back_in():
    """The face stays 150 px tall, shrinks to 45 px and grows back: frames whose face shrank
    towards the reduced pyramid's floor are searched again with the whole pyramid."""
    rng = np.random.default_rng(0)
    n = 32
    height = np.concatenate([np.full(8, 150.0), np.linspace(150, 45, 12), np.linspace(45, 150, 12)])
    person = scenes.track(synthetic.sample_identity(rng), n, W / 2, H / 2, height)
    frames = scenes.render_clip(W, H, n, [person], rng)
    assert same_as_whole_pyramid(frames, _spec(n=n)) > 0


def test_two_people_of_different_sizes_and_the_larger_leaving():
    """A 140 px face beside a 50 px one; the larger walks out for a few frames (the smaller
    is then the largest face) and comes back. The largest face is chosen as by the whole
    pyramid: the same box, on the same person."""
    rng = np.random.default_rng(1)
    n = 30
    big = np.full(n, 140.0)
    big[12:18] = np.nan  # out of the frame
    people = [scenes.track(synthetic.sample_identity(rng), n, 200, 180, big, seed=1),
              scenes.track(synthetic.sample_identity(rng), n, 500, 220, 50.0, seed=2)]
    frames = scenes.render_clip(W, H, n, people, rng)
    assert same_as_whole_pyramid(frames, _spec(n=n)) > 0
    boxes, _ = FaceDetector(_spec(n=n)).detect_video(frames)
    centre_x = [float(b[0] + b[2]) / 2 for b in boxes]
    assert all(abs(x - 200) < 60 for x in centre_x[:12] + centre_x[18:])
    assert all(abs(x - 500) < 40 for x in centre_x[12:18])


def test_a_cut_to_a_smaller_face_and_frames_without_one():
    """A 160 px face, then a cut to another scene with a 60 px face, with three frames of
    empty room between."""
    rng = np.random.default_rng(2)
    first = scenes.render_clip(W, H, 12, [scenes.track(
        synthetic.sample_identity(rng), 12, 300, 180, 160.0)], rng)
    empty = scenes.render_clip(W, H, 3, [], rng)
    second = scenes.render_clip(W, H, 12, [scenes.track(
        synthetic.sample_identity(rng), 12, 400, 150, 60.0)], rng)
    frames = first + empty + second
    assert same_as_whole_pyramid(frames, _spec(n=len(frames))) > 0


@pytest.mark.slow
def test_1080p_faces_of_real_sizes_with_the_default_settings():
    """Faces 150-300 px tall in 1920x1080 frames (50-100 px at detect_max_side 640), the
    defaults: most frames detected with the reduced pyramid, the same boxes."""
    rng = np.random.default_rng(3)
    frames = []
    for height in (150, 220, 300):
        person = scenes.track(synthetic.sample_identity(rng), 6, 900, 500, height)
        frames += scenes.render_clip(1920, 1080, 6, [person], rng)
    assert same_as_whole_pyramid(frames, _spec(n=18, min_frames=18)) >= 10


@pytest.mark.parametrize("settings", [{"min_face_size": 40, "detect_max_side": 320}, {}],
                         ids=["demo-settings", "defaults"])
def test_demo_videos(tmp_path, settings):
    """The demo's synthetic videos (192x160, faces ~100 px), with the demo's face settings
    (min_face_size 40 at 320 px: one level dropped) and with the defaults (20 at 640 px)."""
    source = {"type": "synthetic", "kind": "videos", "identities": 6, "videos_per_class": 2,
              "frames": 24, "width": 192, "height": 160, "seed": 13, "families": ["swap", "mouth"]}
    acquire("demo-like", source, tmp_path)
    reduced = 0
    for path in read_sources(tmp_path / "sources.csv")["path"]:
        frames, _, _ = read_video_frames(tmp_path / path, 24)
        reduced += same_as_whole_pyramid(frames, _spec(**settings))
    assert reduced > 0
