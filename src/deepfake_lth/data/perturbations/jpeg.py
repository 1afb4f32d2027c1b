"""JPEG compression at a quality level (libjpeg through OpenCV, 4:2:0 chroma).

Levels: qualities 65, 58, 50, 40, 25 (smaller is worse), the ``jpeg_compression`` levels of
Tiny-ImageNet-C (``ImageNet-C/create_c/make_tinyimagenet_c.py`` in
github.com/hendrycks/robustness; Hendrycks and Dietterich, ICLR 2019), whose images are
64 px like the demo's faces. (DeeperForensics-1.0's "JPEG" type is a down-then-up resize:
``pixelation`` here.)
"""

from __future__ import annotations

import numpy as np

from deepfake_lth.core.errors import UserError

NAME = "jpeg"
LABEL = "JPEG"
LEVELS = (65, 58, 50, 40, 25)
UNIT = "JPEG quality"
SOURCE = "Tiny-ImageNet-C (jpeg_compression)"


def apply(image: np.ndarray, quality: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` encoded as a JPEG of ``quality`` and decoded."""
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise UserError(f"OpenCV could not encode a {image.shape} face as JPEG")
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])
