"""Colour saturation change (DeeperForensics-1.0, ``CS``): the chroma of every pixel moved
towards grey.

Each pixel's two chroma components (Cr, Cb, neutral at 0.5) are scaled by the level's
factor about 0.5, the luma is kept. Levels: factors 0.4, 0.3, 0.2, 0.1, 0.0 (smaller is
worse; 0.0 leaves a grey-scale face), ``get_distortion_parameter('CS', level)`` of
``perturbation/add_distortion_to_video.py`` in github.com/EndlessSora/DeeperForensics-1.0
(Jiang et al., CVPR 2020). DeeperForensics' code maps YCbCr to the studio range and back on
the way; that moves neutral chroma by under 0.3 % and is left out.
"""

from __future__ import annotations

import numpy as np

from deepfake_lth.data.perturbations.common import rgb_to_ycrcb, ycrcb_to_rgb

NAME = "colour-saturation"
LABEL = "Colour saturation"
LEVELS = (0.4, 0.3, 0.2, 0.1, 0.0)
UNIT = "chroma factor"
SOURCE = "DeeperForensics-1.0 (CS)"


def apply(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` with its chroma scaled by ``factor`` about neutral grey."""
    ycrcb = rgb_to_ycrcb(image)
    ycrcb[..., 1:] = 0.5 + (ycrcb[..., 1:] - 0.5) * factor
    return ycrcb_to_rgb(ycrcb)
