"""Pixelation (DeeperForensics-1.0, its ``JPEG`` type): the face shrunk by an integer factor
and enlarged back, both with bilinear interpolation.

DeeperForensics' ``jpeg_compression`` is this down-then-up resize, with factors 2, 3, 4, 5, 6
(larger is worse), ``get_distortion_parameter('JPEG', level)`` of
``perturbation/add_distortion_to_video.py`` in github.com/EndlessSora/DeeperForensics-1.0
(Jiang et al., CVPR 2020); its paper calls it pixelation. A factor is relative to the image,
so on the crop it loses the resolution it loses on the frame.
"""

from __future__ import annotations

import numpy as np

NAME = "pixelation"
LABEL = "Pixelation"
LEVELS = (2, 3, 4, 5, 6)
UNIT = "downscale factor"
SOURCE = "DeeperForensics-1.0 (JPEG: pixelation)"


def apply(image: np.ndarray, factor: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` resized to 1/``factor`` and back (bilinear both ways, as OpenCV's default)."""
    import cv2

    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // factor), max(1, h // factor)))
    return cv2.resize(small, (w, h))
