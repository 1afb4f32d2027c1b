"""Footage for checking face extraction: the demo's drawn faces (``acquire.synthetic``) in
scenes that look like camera footage to a decoder and to MTCNN.

A scene has a textured background larger than the frame (the camera pans across it), sensor
noise in every frame, and people whose face box height (as MTCNN reports it), position and
presence are given per frame: a zoom is a height that changes, a person walking out is a
NaN, a cut is two clips joined. The tests of the face-size-aware detector and
``bench/extraction.py`` draw their clips here; nothing in the workflow reads this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from deepfake_lth.data.acquire import synthetic

# MTCNN's box height over the side of the canvas a face is drawn at (measured on the drawn
# faces: 0.60-0.72)
BOX_PER_CANVAS = 0.68


@dataclass
class Track:
    """One person: who, and per frame the face box centre and height in pixels (NaN: not in
    the frame)."""

    identity: synthetic.Identity
    cx: np.ndarray
    cy: np.ndarray
    height: np.ndarray


def track(identity, n: int, cx: float, cy: float, height, wobble: float = 0.02,
          seed: int = 0) -> Track:
    """A person at (``cx``, ``cy``) for ``n`` frames, the face ``height`` px tall (a number,
    or one per frame), moving a little as people talking do (``wobble``: of the height)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    h = np.broadcast_to(np.asarray(height, dtype=np.float64), (n,)).copy()
    phase, speed = rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.05, 0.15, 2)
    x = cx + wobble * 4 * h * np.sin(phase[0] + speed[0] * t)
    y = cy + wobble * 2 * h * np.sin(phase[1] + speed[1] * t)
    return Track(identity, x, y, h)


def textured_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Float RGB: colour gradients, blurred shapes and fine grain at several scales (walls,
    furniture, fabric), the detail that makes real footage cost bits to encode and decode."""
    bg = np.zeros((height, width, 3), np.float32)
    for scale, amp in ((64, 60.0), (16, 30.0), (4, 18.0), (1, 10.0)):
        small = rng.normal(0, 1, (height // scale + 2, width // scale + 2, 3)).astype(np.float32)
        layer = cv2.resize(small, (width + 2 * scale, height + 2 * scale),
                           interpolation=cv2.INTER_CUBIC)[scale : scale + height,
                                                          scale : scale + width]
        bg += amp * (0.75 * layer.mean(axis=2, keepdims=True) + 0.25 * layer)  # mostly luma
    bg += rng.uniform(60, 190, 3).astype(np.float32)
    for _ in range(12):  # objects with sharp edges
        x, y = int(rng.integers(width)), int(rng.integers(height))
        w, h = int(rng.integers(width // 20, width // 5)), int(rng.integers(height // 20, height // 4))
        cv2.rectangle(bg, (x, y), (x + w, y + h), tuple(float(v) for v in rng.uniform(0, 255, 3)),
                      -1, cv2.LINE_AA)
    return np.clip(bg, 0, 255)


def _place(frame: np.ndarray, face: np.ndarray, alpha: np.ndarray, cx: float, cy: float,
           canvas: float, angle: float) -> None:
    """The face drawn into ``frame`` (float RGB, in place), composed in its region only."""
    h, w = frame.shape[:2]
    r = canvas * 0.75
    x0, y0 = max(0, int(cx - r)), max(0, int(cy - r))
    x1, y1 = min(w, int(cx + r) + 1), min(h, int(cy + r) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    frame[y0:y1, x0:x1] = synthetic.compose(frame[y0:y1, x0:x1], face, alpha, cx - x0, cy - y0,
                                            canvas, angle)


def render_clip(width: int, height: int, n_frames: int, tracks: list[Track],
                rng: np.random.Generator, noise: float = 3.0, pan: float = 1.5) -> list[np.ndarray]:
    """RGB uint8 frames: the camera pans ``pan`` px a frame across a textured background, the
    people of ``tracks`` talk (expression, blinks, a little head roll), every frame gets its
    own sensor noise (standard deviation ``noise``; from a pool of fields, shifted)."""
    return list(iter_clip(width, height, n_frames, tracks, rng, noise, pan))


def iter_clip(width: int, height: int, n_frames: int, tracks: list[Track],
              rng: np.random.Generator, noise: float = 3.0, pan: float = 1.5):
    """``render_clip``'s frames one at a time (a 1080p clip of 300 frames is 1.9 GB)."""
    margin = int(abs(pan) * n_frames) + 8
    bg = textured_background(width + margin, height + 8, rng)
    fields = [rng.normal(0, noise, (height, width, 3)).astype(np.float32) for _ in range(3)]
    phase = rng.uniform(0, 2 * np.pi, len(tracks))
    for t in range(n_frames):
        off = int(round(abs(pan) * t))
        frame = bg[4 : 4 + height, off : off + width].copy()
        for k, tr in enumerate(tracks):
            if not np.isfinite(tr.height[t]) or tr.height[t] <= 0:
                continue
            face, alpha = synthetic.draw_face(tr.identity, 0.5 + 0.5 * np.sin(phase[k] + 0.3 * t),
                                              1.0 if (t + k * 7) % 41 == 0 else 0.0)
            _place(frame, face, alpha, float(tr.cx[t]), float(tr.cy[t]),
                   float(tr.height[t]) / BOX_PER_CANVAS, 4 * np.sin(phase[k] + 0.1 * t))
        frame += np.roll(fields[t % 3], (7 * t) % width, axis=1)
        yield np.clip(frame, 0, 255).astype(np.uint8)
