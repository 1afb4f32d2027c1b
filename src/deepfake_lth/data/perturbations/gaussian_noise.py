"""White Gaussian noise in the colour components (DeeperForensics-1.0, ``GNC``): independent
normal noise added to each pixel's luma and chroma.

Levels: noise variances 0.001, 0.002, 0.005, 0.01, 0.05 (larger is worse),
``get_distortion_parameter('GNC', level)`` of ``perturbation/add_distortion_to_video.py`` in
github.com/EndlessSora/DeeperForensics-1.0 (Jiang et al., CVPR 2020). Its code adds the noise
in studio-range YCbCr divided by 255 (luma spans 219/255 of [0, 1], chroma 224/255), so on
full-range YCbCr in [0, 1] its standard deviation is √variance × 255/219 in luma and
× 255/224 in chroma: this draws exactly that.

One standard normal field is drawn per face and scaled by the level's standard deviation,
so a face's noise grows with the level and is the same at every level up to scale.
"""

from __future__ import annotations

import math

import numpy as np

from deepfake_lth.data.perturbations.common import rgb_to_ycrcb, ycrcb_to_rgb

NAME = "gaussian-noise"
LABEL = "Gaussian noise"
LEVELS = (0.001, 0.002, 0.005, 0.01, 0.05)
UNIT = "noise variance"
SOURCE = "DeeperForensics-1.0 (GNC)"
# full-range / studio-range spans of luma and chroma (Y, Cr, Cb)
RANGE = np.array([255 / 219, 255 / 224, 255 / 224], dtype=np.float32)


def apply(image: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` with N(0, variance) noise (studio-range units) on Y, Cr and Cb."""
    ycrcb = rgb_to_ycrcb(image)
    noise = rng.standard_normal(ycrcb.shape, dtype=np.float32)
    return ycrcb_to_rgb(ycrcb + noise * (math.sqrt(variance) * RANGE))
