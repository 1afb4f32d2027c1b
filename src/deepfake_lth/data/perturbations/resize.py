"""Down-then-up resizing, as a site that re-scales uploads does: area averaging down to a
fraction of the side, bicubic interpolation back up.

Levels: scales 0.9, 0.8, 0.7, 0.6, 0.5 of the side (smaller is worse), the ``pixelate``
factors of Tiny-ImageNet-C (``ImageNet-C/create_c/make_tinyimagenet_c.py`` in
github.com/hendrycks/robustness; Hendrycks and Dietterich, ICLR 2019), whose images are
64 px like the demo's faces. Unlike ``pixelation`` (DeeperForensics: integer factors 2–6,
bilinear both ways) the shrinking is anti-aliased and the enlarging smooth.
"""

from __future__ import annotations

import numpy as np

NAME = "resize"
LABEL = "Resize down-up"
LEVELS = (0.9, 0.8, 0.7, 0.6, 0.5)
UNIT = "scale"
SOURCE = "Tiny-ImageNet-C (pixelate factors)"


def apply(image: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` shrunk to ``scale`` of its size (area) and enlarged back (bicubic)."""
    import cv2

    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
