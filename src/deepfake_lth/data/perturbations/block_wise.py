"""Local block-wise distortion (DeeperForensics-1.0, ``BW``): grey (128) squares pasted at
random places.

DeeperForensics pastes ``level parameter × (min(h, w) // 256)`` squares of 8 × 8 px on a
frame; level parameters 16, 32, 48, 64, 80 (larger is worse),
``get_distortion_parameter('BW', level)`` of ``perturbation/add_distortion_to_video.py`` in
github.com/EndlessSora/DeeperForensics-1.0 (Jiang et al., CVPR 2020). On a crop of 256 px
or more this is its rule unchanged. A smaller crop would get no square at all under it
(``min(h, w) // 256`` is 0), so there the count is the level parameter and the square's
side is 8 px scaled to the crop (8 × side / 256, at least 1 px): the share of the face
covered is that of a 256-px face (level 5: at most 7.8 %).

The positions are drawn from the face's own generator, one square after another, so level
k's squares are the first of level k + 1's: severity grows with the level face by face.
"""

from __future__ import annotations

import numpy as np

from deepfake_lth.data.perturbations.common import REFERENCE_SIDE, side

NAME = "block-wise"
LABEL = "Block-wise"
LEVELS = (16, 32, 48, 64, 80)
UNIT = "squares per 256 px of side"
SOURCE = "DeeperForensics-1.0 (BW)"
BLOCK = 8  # px, on a face of REFERENCE_SIDE px or more
GREY = 128


def blocks(image: np.ndarray, count: int) -> tuple[int, int]:
    """(number of squares, side of a square in px) for ``image``."""
    s = side(image)
    if s >= REFERENCE_SIDE:
        return count * (s // REFERENCE_SIDE), BLOCK
    return count, max(1, round(BLOCK * s / REFERENCE_SIDE))


def apply(image: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` with the level's grey squares at positions drawn from ``rng``."""
    n, width = blocks(image, int(count))
    out = image.copy()
    h, w = image.shape[:2]
    if width >= min(h, w):
        return out
    # DeeperForensics draws corners in 0 .. size − 1 − width (random.randint, inclusive)
    corners = rng.integers(0, [h - width, w - width], size=(n, 2))
    for top, left in corners:
        out[top:top + width, left:left + width] = GREY
    return out
