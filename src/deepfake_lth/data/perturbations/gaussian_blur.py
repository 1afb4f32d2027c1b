"""Gaussian blur (DeeperForensics-1.0, ``GB``).

DeeperForensics blurs a frame with ``cv2.GaussianBlur(img, (k, k), k / 6)``, kernel sizes
k = 7, 9, 13, 17, 21 (larger is worse), ``get_distortion_parameter('GB', level)`` of
``perturbation/add_distortion_to_video.py`` in github.com/EndlessSora/DeeperForensics-1.0
(Jiang et al., CVPR 2020). A blur of σ pixels on a face of 256 px in the frame is a blur of
σ × side / 256 pixels on its crop of ``side`` px (the crop is that face resized), so the
kernel and σ are scaled to the crop; on a 256-px crop they are DeeperForensics' own.
"""

from __future__ import annotations

import numpy as np

from deepfake_lth.data.perturbations.common import odd_at_least, scaled

NAME = "gaussian-blur"
LABEL = "Gaussian blur"
LEVELS = (7, 9, 13, 17, 21)
UNIT = "kernel px on a 256-px face"
SOURCE = "DeeperForensics-1.0 (GB)"


def apply(image: np.ndarray, kernel: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` blurred as DeeperForensics blurs a 256-px face with ``kernel``."""
    import cv2

    k = odd_at_least(scaled(kernel, image))
    sigma = scaled(kernel / 6.0, image)
    return cv2.GaussianBlur(image, (k, k), sigma)
