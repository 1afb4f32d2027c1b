"""The perturbations of the robustness stage (data/perturbations/): seeded, the identity at
level 0, worse with each level, the same for a face whatever its batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepfake_lth.core.errors import UserError
from deepfake_lth.data import perturbations as pert

NAMES = list(pert.PERTURBATIONS)


def faces_like(n: int = 6, side: int = 64) -> np.ndarray:
    """Face-like crops of two short videos: smooth shading, an oval, skin-coloured texture at
    several scales, moving a little from frame to frame."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    out = []
    for t in range(n):
        oval = (((xx - 0.5 - 0.01 * t) / 0.32) ** 2 + ((yy - 0.5) / 0.42) ** 2) < 1
        base = np.stack([0.75 - 0.2 * yy, 0.55 - 0.1 * yy, 0.45 + 0.1 * xx], -1)
        texture = (0.06 * np.sin(22 * xx + 3 * t) * np.cos(17 * yy)
                   + 0.04 * np.sin(47 * (xx + yy)) + 0.03 * np.cos(90 * xx - 60 * yy))
        img = np.where(oval[..., None], base + texture[..., None], 0.25 + 0.1 * xx[..., None])
        out.append(np.clip(img * 255, 0, 255).astype(np.uint8))
    return np.stack(out)


def mse(a, b) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


# --------------------------------------------------------------------------- perturbations


@pytest.mark.parametrize("name", NAMES)
def test_each_perturbation_is_seeded_and_level_zero_is_the_identity(name):
    faces = faces_like()
    rows, videos = np.arange(10, 16), np.array(["a"] * 3 + ["b"] * 3)
    first = pert.perturb(name, 3, faces, rows, videos, seed=7)
    assert first.shape == faces.shape and first.dtype == np.uint8
    assert np.array_equal(first, pert.perturb(name, 3, faces, rows, videos, seed=7))
    assert not np.array_equal(first, faces)
    assert np.array_equal(pert.perturb(name, 0, faces, rows, videos), faces)
    # a face's result depends on its row (and video), not on the batch or its order
    order = np.array([4, 5, 3, 1, 2, 0])
    shuffled = pert.perturb(name, 3, faces[order], rows[order], videos[order], seed=7)
    assert np.array_equal(shuffled, first[order])


@pytest.mark.parametrize("name", ["block-wise", "gaussian-noise"])
def test_random_perturbations_follow_the_seed_and_the_row(name):
    faces = np.repeat(faces_like(1), 2, axis=0)  # one face twice, two rows
    a = pert.perturb(name, 4, faces, [0, 1], seed=0)
    assert not np.array_equal(a[0], a[1])  # its own draws per row
    assert not np.array_equal(a, pert.perturb(name, 4, faces, [0, 1], seed=1))


@pytest.mark.parametrize(("name", "neutral"), [
    ("colour-saturation", 1.0), ("colour-contrast", 1.0), ("block-wise", 0),
    ("gaussian-noise", 0.0), ("pixelation", 1), ("resize", 1.0)])
def test_the_neutral_parameter_leaves_the_face_as_it_was(name, neutral):
    face = faces_like(1)[0]
    out = pert.get(name).apply(face, neutral, np.random.default_rng(0))
    assert np.array_equal(out, face)


@pytest.mark.parametrize("name", NAMES)
def test_severity_grows_with_the_level(name):
    faces = faces_like()
    rows, videos = np.arange(6), np.array(["a"] * 3 + ["b"] * 3)
    errors = [mse(pert.perturb(name, level, faces, rows, videos), faces) for level in range(6)]
    assert errors[0] == 0
    assert all(b >= a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[5] > errors[1] > 0 or name == "gaussian-blur", errors
    assert errors[5] > errors[3], errors


def test_measures_of_each_distortion_move_the_right_way():
    faces = faces_like(2)
    rows = np.arange(2)

    def chroma(x):
        return float(np.abs(pert.common.rgb_to_ycrcb(x[0])[..., 1:] - 0.5).mean())

    def detail(x):
        import cv2
        return float(np.var(cv2.Laplacian(x[0].astype(np.float32), cv2.CV_32F)))

    def grey(x):
        return float(np.mean(np.all(x == 128, axis=-1)))

    for name, measure, sign in (("colour-saturation", chroma, -1), ("gaussian-blur", detail, -1),
                                ("pixelation", detail, -1), ("resize", detail, -1),
                                ("block-wise", grey, 1)):
        values = [measure(pert.perturb(name, lv, faces, rows)) for lv in range(6)]
        assert all(sign * (b - a) >= 0 for a, b in zip(values, values[1:], strict=False)), \
            (name, values)
        assert sign * (values[5] - values[0]) > 0, (name, values)
    assert chroma(pert.perturb("colour-saturation", 5, faces, rows)) < 0.01  # grey
    # DeeperForensics' own kernel on a 256-px face
    big = np.repeat(np.repeat(faces, 4, axis=1), 4, axis=2)
    import cv2
    assert np.array_equal(pert.perturb("gaussian-blur", 1, big[:1], [0])[0],
                          cv2.GaussianBlur(big[0], (7, 7), 7 / 6))


def test_video_compression_encodes_each_video_and_odd_sizes():
    from deepfake_lth.data.perturbations import video_compression

    # libx264's MB-tree made one-frame streams differ from call to call: it is off
    face = faces_like(1)
    first = video_compression.apply_video(face, 35)
    assert all(np.array_equal(first, video_compression.apply_video(face, 35))
               for _ in range(20))
    faces = faces_like(4, side=37)  # odd: padded for 4:2:0, cropped back
    out = video_compression.apply_video(faces, 40)
    assert out.shape == faces.shape
    one = video_compression.apply_video(faces[:1], 30)  # an image: a one-frame stream
    assert one.shape == faces[:1].shape
    videos = np.array(["a", "a", "b", "b"])
    together = pert.perturb("video-compression", 5, faces, np.arange(4), videos)
    assert np.array_equal(together[2:], video_compression.apply_video(faces[2:], 40))
    with pytest.raises(ValueError, match="needs each face's video"):
        pert.perturb("video-compression", 1, faces, np.arange(4))


def test_registry_names_levels_and_sources():
    assert NAMES[:7] == ["colour-saturation", "colour-contrast", "block-wise",
                         "gaussian-noise", "gaussian-blur", "pixelation", "video-compression"]
    assert {"jpeg", "resize"} <= set(NAMES)
    assert all(len(p.levels) == 5 and p.source for p in pert.PERTURBATIONS.values())
    assert pert.get("video-compression").levels == (30, 32, 35, 38, 40)
    assert pert.get("gaussian-blur").parameter(5) == 21
    with pytest.raises(UserError, match="registered ones are colour-saturation"):
        pert.get("fog")
    with pytest.raises(UserError, match="levels 1 to 5"):
        pert.perturb("jpeg", 6, faces_like(1), [0])
    modules = {p.module for p in pert.PERTURBATIONS.values()}
    assert all(Path(pert.__file__).parents[2].joinpath(m).is_file() for m in modules)
