"""The perturbations a detector is scored under (the robustness stage), one module each.

A perturbation module declares ``NAME`` (the config's name), ``LABEL``, ``LEVELS`` (its
parameter at levels 1, 2, …: worse with each), ``UNIT``, ``SOURCE`` (where the levels come
from; the module's docstring cites it) and either ``apply(face, parameter, rng)`` (one face)
or ``apply_video(faces, parameter)`` (one video's faces in frame order, together). Adding one
is its module and one line in ``MODULES``; the config's ``robustness.perturbations`` and
``robustness.levels`` are checked against :data:`PERTURBATIONS`.

:func:`perturb` applies one at one level to faces of a split: the same function of the pixels
for real and fake faces (it never sees a label), level 0 the faces unchanged. A face's random
draws (block positions, noise) come from a generator seeded by ``(seed, perturbation, row)``,
its row in ``faces.npy``: the result does not depend on the batch, the order, the job or the
level, so each level's draws extend the previous level's, and every network and training
seed is scored on the same perturbed faces.

Imports numpy only (OpenCV and PyAV when a perturbation runs): the workflow reads it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.perturbations import (
    block_wise,
    colour_contrast,
    colour_saturation,
    gaussian_blur,
    gaussian_noise,
    jpeg,
    pixelation,
    resize,
    video_compression,
)

# DeeperForensics-1.0's seven (its order), then the others
MODULES: tuple[ModuleType, ...] = (
    colour_saturation, colour_contrast, block_wise, gaussian_noise, gaussian_blur, pixelation,
    video_compression, jpeg, resize,
)


@dataclass(frozen=True)
class Perturbation:
    """One registered perturbation (see the module docstring)."""

    name: str
    label: str
    levels: tuple  # the parameter at level 1, 2, …
    unit: str
    source: str
    module: str  # the module's file, relative to the package root (a code input)
    apply: Callable | None  # (face, parameter, rng) -> face
    apply_video: Callable | None  # (faces of one video, parameter) -> faces

    def parameter(self, level: int):
        """The parameter at ``level`` (1 … len(levels))."""
        check_level(self.name, level)
        if level < 1:
            raise ValueError("level 0 is the unperturbed face: it has no parameter")
        return self.levels[level - 1]


def _entry(module: ModuleType) -> Perturbation:
    return Perturbation(
        module.NAME, module.LABEL, tuple(module.LEVELS), module.UNIT, module.SOURCE,
        "data/perturbations/" + module.__name__.rpartition(".")[2] + ".py",
        getattr(module, "apply", None), getattr(module, "apply_video", None))


PERTURBATIONS: dict[str, Perturbation] = {m.NAME: _entry(m) for m in MODULES}


def get(name: str) -> Perturbation:
    """The perturbation ``name``; UserError naming the registered ones otherwise."""
    if name not in PERTURBATIONS:
        raise UserError(f"unknown perturbation {name!r}; the registered ones are "
                        f"{', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[name]


def check_level(name: str, level: int) -> None:
    """UserError unless ``level`` is 0 (unperturbed) or one of ``name``'s levels."""
    top = len(get(name).levels)
    if not isinstance(level, int | np.integer) or not 0 <= level <= top:
        raise UserError(f"perturbation {name!r} has levels 1 to {top} (0: unperturbed), "
                        f"not {level!r}")


def config_problems(names: Sequence[str], levels: Sequence[int],
                    key: str = "robustness") -> list[str]:
    """What is wrong with a config's perturbation ``names`` and ``levels``, each naming the
    key and what is allowed (for config validation)."""
    out = []
    for i, name in enumerate(names):
        if name not in PERTURBATIONS:
            out.append(f"'{key}.perturbations[{i}]': {name!r} is not a perturbation; "
                       f"allowed: {', '.join(PERTURBATIONS)}")
    known = [n for n in names if n in PERTURBATIONS] or list(PERTURBATIONS)
    for i, level in enumerate(levels):
        for name in known:
            top = len(PERTURBATIONS[name].levels)
            if not 1 <= level <= top:
                out.append(f"'{key}.levels[{i}]': {level} is out of range for {name}; its "
                           f"levels are 1 to {top} (level 0, the unperturbed test split, is "
                           "every run's own metrics.json)")
                break
    return out


def face_rng(seed: int, name: str, row: int) -> np.random.Generator:
    """The generator of one face's draws under perturbation ``name``."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(row)])


def perturb(name: str, level: int, faces: np.ndarray, rows: Sequence[int],
            videos: Sequence[str] | None = None, seed: int = 0) -> np.ndarray:
    """``faces`` (n, H, W, 3 uint8 RGB) under perturbation ``name`` at ``level``.

    ``rows``: each face's row in ``faces.npy`` (seeds its draws); ``videos``: each face's
    video, needed by a perturbation of whole videos (the faces of a video are taken in the
    order of their rows, which is their order in the video). Level 0: a copy of ``faces``.
    """
    p = get(name)
    check_level(name, level)
    faces = np.asarray(faces)
    if level == 0 or len(faces) == 0:
        return faces.copy()
    param = p.parameter(level)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) != len(faces):
        raise ValueError(f"{len(rows)} rows for {len(faces)} faces")
    out = np.empty_like(faces)
    if p.apply_video is None:
        for i, face in enumerate(faces):
            out[i] = p.apply(face, param, face_rng(seed, name, rows[i]))
        return out
    if videos is None:
        raise ValueError(f"perturbation {name!r} needs each face's video")
    videos = np.asarray(videos)
    for video in dict.fromkeys(videos.tolist()):
        at = np.flatnonzero(videos == video)
        at = at[np.argsort(rows[at], kind="stable")]
        out[at] = p.apply_video(faces[at], param)
    return out
