"""What several perturbations share: colour spaces, rounding, and the scale of a face crop.

Faces are uint8 RGB ``(H, W, 3)`` arrays (``faces.npy``). DeeperForensics-1.0 defines its
spatial distortions on video frames; here they act on the face crops the network sees, so a
size in pixels is carried from a face of ``REFERENCE_SIDE`` pixels in the frame to the crop
(:func:`scaled`).
"""

from __future__ import annotations

import numpy as np

# The side of a face in the frame that DeeperForensics' pixel sizes are read against: its
# block-wise rule counts blocks per 256 pixels of frame side (``min(h, w) // 256``), the one
# scale its code names, and a face of 256 px is typical of its 1080p sources.
REFERENCE_SIDE = 256


def side(image: np.ndarray) -> int:
    """The shorter side of a face crop, in pixels."""
    return int(min(image.shape[0], image.shape[1]))


def scaled(pixels: float, image: np.ndarray) -> float:
    """``pixels`` on a face of REFERENCE_SIDE px, carried to this crop's size."""
    return pixels * side(image) / REFERENCE_SIDE


def odd_at_least(value: float, low: int = 3) -> int:
    """The nearest odd integer to ``value``, at least ``low`` (a kernel size)."""
    k = int(round(value))
    k = k if k % 2 else k + 1 if value >= k else k - 1
    return max(low, k)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float pixels in 0..255 rounded and clipped to uint8."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def rgb_to_ycrcb(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 YCrCb in [0, 1] (full range; chroma neutral at 0.5)."""
    import cv2

    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2YCrCb)


def ycrcb_to_rgb(ycrcb: np.ndarray) -> np.ndarray:
    """Float YCrCb in [0, 1] -> uint8 RGB (rounded, clipped)."""
    import cv2

    return to_uint8(cv2.cvtColor(ycrcb.astype(np.float32), cv2.COLOR_YCrCb2RGB) * 255.0)
