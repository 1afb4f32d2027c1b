"""Colour contrast change (DeeperForensics-1.0, ``CC``): every pixel value multiplied by the
level's factor, which darkens the face and compresses its range towards black.

Levels: factors 0.85, 0.725, 0.6, 0.475, 0.35 (smaller is worse),
``get_distortion_parameter('CC', level)`` of ``perturbation/add_distortion_to_video.py`` in
github.com/EndlessSora/DeeperForensics-1.0 (Jiang et al., CVPR 2020). Its code truncates to
uint8; this rounds (at most one grey level apart).
"""

from __future__ import annotations

import numpy as np

from deepfake_lth.data.perturbations.common import to_uint8

NAME = "colour-contrast"
LABEL = "Colour contrast"
LEVELS = (0.85, 0.725, 0.6, 0.475, 0.35)
UNIT = "intensity factor"
SOURCE = "DeeperForensics-1.0 (CC)"


def apply(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` with every value times ``factor``."""
    return to_uint8(image.astype(np.float32) * factor)
