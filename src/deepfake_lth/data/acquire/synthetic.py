"""The embedded demo data: procedurally drawn faces, real and face-swapped, as real files.

Two layouts, chosen by ``source.kind``:

- ``images``: a face-crop image set laid out like the OpenForensics Kaggle set,
  ``Train|Validation|Test/Real|Fake/*.jpg`` (identities disjoint across the three splits);
- ``videos``: MP4 files (``real/*.mp4``, ``fake/*.mp4``) like FaceForensics++; with
  ``families: [swap, mouth]`` the fakes come from two manipulation families, the swap below
  and a mouth reenactment (:func:`reenact_mouth`) that leaves the rest of the face untouched.

Each identity has its own face shape, skin tone, eyes, brows, nose, mouth, hair, background
and lighting; each video its own motion (pose jitter, scale, small rotation). A fake is made
the way graphics-based face swaps are: the inner face (eyes, brows, nose, mouth) of a donor
identity is aligned to the target's landmarks, resampled, colour-corrected only in part and
blended into the target with a soft mask. That leaves the artifacts MesoNet-style detectors
look for: resampling blur, a colour mismatch, a visible blend boundary and a jittering
alignment. ``difficulty`` (0..1) shrinks every artifact; real faces get some of the same
degradations (blur, noise, compression) so that no single cue gives the answer away.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same bytes.
These are not the paper's data; they exist so that the whole study runs in minutes on a CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from deepfake_lth.core.errors import UserError

log = logging.getLogger(__name__)

CANVAS = 128  # side of the canonical face canvas the faces are drawn on
SKIN_TONES = np.array(
    [  # RGB, light to dark
        (255, 224, 196), (241, 194, 160), (224, 172, 135), (198, 134, 98),
        (161, 102, 70), (120, 78, 52), (92, 58, 40), (232, 190, 172),
    ],
    dtype=np.float32,
)
HAIR = np.array(
    [(20, 16, 14), (60, 40, 25), (110, 75, 40), (170, 130, 80), (200, 180, 140), (90, 90, 90),
     (130, 50, 30)],
    dtype=np.float32,
)
IRIS = np.array([(70, 45, 25), (40, 90, 140), (60, 110, 70), (110, 80, 50), (30, 30, 30)],
                dtype=np.float32)


@dataclass
class Identity:
    """What makes one synthetic person look like themself."""

    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lip: np.ndarray
    bg: tuple[np.ndarray, np.ndarray]
    face_w: float  # half-axes of the face ellipse, as fractions of the canvas
    face_h: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    brow_dy: float
    brow_t: int
    brow_tilt: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_h: float
    hair_style: int
    hair_h: float
    light: float  # direction of the key light, radians


def sample_identity(rng: np.random.Generator) -> Identity:
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.08, 3)
    bg1 = rng.uniform(20, 235, 3)
    bg2 = np.clip(bg1 + rng.normal(0, 50, 3), 0, 255)
    return Identity(
        skin=np.clip(skin, 0, 255).astype(np.float32),
        hair=np.clip(HAIR[rng.integers(len(HAIR))] * rng.uniform(0.85, 1.15), 0, 255),
        iris=IRIS[rng.integers(len(IRIS))].copy(),
        lip=np.clip(skin * np.array([0.72, 0.42, 0.42]) + rng.normal(0, 8, 3), 0, 255),
        bg=(bg1.astype(np.float32), bg2.astype(np.float32)),
        face_w=rng.uniform(0.27, 0.33),
        face_h=rng.uniform(0.36, 0.42),
        eye_y=rng.uniform(0.42, 0.47),
        eye_dx=rng.uniform(0.105, 0.135),
        eye_w=rng.uniform(0.062, 0.078),
        eye_h=rng.uniform(0.028, 0.036),
        brow_dy=rng.uniform(0.05, 0.07),
        brow_t=int(rng.integers(2, 5)),
        brow_tilt=rng.uniform(-0.02, 0.02),
        nose_len=rng.uniform(0.1, 0.14),
        nose_w=rng.uniform(0.03, 0.045),
        mouth_y=rng.uniform(0.68, 0.73),
        mouth_w=rng.uniform(0.07, 0.1),
        lip_h=rng.uniform(0.014, 0.022),
        hair_style=int(rng.integers(3)),
        hair_h=rng.uniform(0.08, 0.16),
        light=rng.uniform(-0.8, 0.8),
    )


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * CANVAS * 16)), int(round(y * CANVAS * 16))


def _ellipse(img, cx, cy, ax, ay, color, angle=0.0, thickness=-1):
    cv2.ellipse(img, _pt(cx, cy), _pt(ax, ay), angle, 0, 360, tuple(float(c) for c in color),
                thickness, cv2.LINE_AA, 4)


def landmarks(ident: Identity) -> np.ndarray:
    """Left eye, right eye and mouth centres on the canvas (pixels), for alignment."""
    return np.array(
        [
            [0.5 - ident.eye_dx, ident.eye_y],
            [0.5 + ident.eye_dx, ident.eye_y],
            [0.5, ident.mouth_y],
        ],
        dtype=np.float32,
    ) * CANVAS


def draw_face(ident: Identity, expression: float = 0.0, blink: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The face on the canonical canvas: float RGB image and its alpha (head and hair)."""
    img = np.zeros((CANVAS, CANVAS, 3), np.float32)
    alpha = np.zeros((CANVAS, CANVAS), np.float32)
    fw, fh = ident.face_w, ident.face_h
    # hair behind the head, neck
    if ident.hair_style != 2:
        _ellipse(img, 0.5, 0.47, fw * 1.15, fh * 1.05, ident.hair)
        _ellipse(alpha, 0.5, 0.47, fw * 1.15, fh * 1.05, (1.0,))
    cv2.rectangle(img, _pt(0.5 - fw * 0.45, 0.75), _pt(0.5 + fw * 0.45, 1.0),
                  tuple(float(c) for c in ident.skin * 0.82), -1, cv2.LINE_AA, 4)
    cv2.rectangle(alpha, _pt(0.5 - fw * 0.45, 0.75), _pt(0.5 + fw * 0.45, 1.0), 1.0, -1,
                  cv2.LINE_AA, 4)
    # ears and head
    for side in (-1, 1):
        _ellipse(img, 0.5 + side * fw * 0.97, 0.5, 0.03, 0.06, ident.skin * 0.93)
        _ellipse(alpha, 0.5 + side * fw * 0.97, 0.5, 0.03, 0.06, (1.0,))
    _ellipse(img, 0.5, 0.52, fw, fh, ident.skin)
    _ellipse(alpha, 0.5, 0.52, fw, fh, (1.0,))
    # shading: key light from one side, darker towards the jaw
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32) / CANVAS
    shade = 1.0 + 0.18 * np.cos(ident.light) * 0 + 0.16 * np.sin(ident.light) * (xx - 0.5) / fw
    shade -= 0.12 * np.clip((yy - 0.6) / fh, 0, None)
    img *= shade[..., None]
    # highlights on forehead, cheeks and the nose bridge, as skin shows under a key light
    glow = np.zeros((CANVAS, CANVAS), np.float32)
    _ellipse(glow, 0.5, ident.eye_y - 0.13, fw * 0.55, 0.05, (1.0,))
    for side in (-1, 1):
        _ellipse(glow, 0.5 + side * ident.eye_dx * 1.1, ident.eye_y + 0.1, 0.05, 0.035, (0.8,))
    _ellipse(glow, 0.5, ident.eye_y + ident.nose_len * 0.6, 0.012, ident.nose_len * 0.4, (0.9,))
    glow = cv2.GaussianBlur(glow, (0, 0), 3) * alpha * 0.22
    img += glow[..., None] * (255.0 - img)
    # hair on top
    if ident.hair_style == 0:
        _ellipse(img, 0.5, 0.52 - fh + ident.hair_h * 0.5, fw * 1.02, ident.hair_h, ident.hair)
    elif ident.hair_style == 1:
        cv2.ellipse(img, _pt(0.5, 0.52), _pt(fw * 1.03, fh * 1.02), 0, 180, 360,
                    tuple(float(c) for c in ident.hair), int(ident.hair_h * CANVAS * 0.7),
                    cv2.LINE_AA, 4)
    # eyes: sclera, iris, pupil, lid
    open_ = max(0.15, 1.0 - blink)
    for side in (-1, 1):
        ex = 0.5 + side * ident.eye_dx
        _ellipse(img, ex, ident.eye_y, ident.eye_w * 1.3, ident.eye_h * 2.1, ident.skin * 0.72)
        _ellipse(img, ex, ident.eye_y, ident.eye_w, ident.eye_h * open_, (245, 245, 240))
        _ellipse(img, ex, ident.eye_y, ident.eye_h * 0.95 * open_, ident.eye_h * 0.95 * open_,
                 ident.iris)
        _ellipse(img, ex, ident.eye_y, ident.eye_h * 0.45 * open_, ident.eye_h * 0.45 * open_,
                 (10, 10, 10))
        _ellipse(img, ex, ident.eye_y, ident.eye_w, ident.eye_h * open_, (25, 20, 20),
                 thickness=2)
        by = ident.eye_y - ident.brow_dy
        cv2.line(img, _pt(ex - ident.eye_w * 1.1, by + side * ident.brow_tilt),
                 _pt(ex + ident.eye_w * 1.1, by - side * ident.brow_tilt),
                 tuple(float(c) for c in np.minimum(ident.hair, ident.skin * 0.45) * 0.8),
                 ident.brow_t, cv2.LINE_AA)
    # nose: bridge shading and nostrils
    ny = ident.eye_y + ident.nose_len
    cv2.line(img, _pt(0.5 + 0.01, ident.eye_y + 0.02), _pt(0.5 + ident.nose_w * 0.6, ny),
             tuple(float(c) for c in ident.skin * 0.75), 2, cv2.LINE_AA, 4)
    for side in (-1, 1):
        _ellipse(img, 0.5 + side * ident.nose_w * 0.6, ny + 0.01, 0.013, 0.008, ident.skin * 0.45)
    # mouth: lips and the line between them; expression opens and widens it
    mw = ident.mouth_w * (1 + 0.15 * expression)
    _ellipse(img, 0.5, ident.mouth_y, mw, ident.lip_h * (1 + expression), ident.lip)
    cv2.line(img, _pt(0.5 - mw, ident.mouth_y), _pt(0.5 + mw, ident.mouth_y), (90, 40, 40),
             1 + int(expression > 0.5), cv2.LINE_AA, 4)
    img = cv2.GaussianBlur(img, (3, 3), 0.7)
    alpha = cv2.GaussianBlur(alpha, (3, 3), 0.7)
    return np.clip(img, 0, 255), alpha


def inner_mask(ident: Identity, softness: float) -> np.ndarray:
    """Soft mask over the inner face (brows to chin), as a face swap blends it."""
    m = np.zeros((CANVAS, CANVAS), np.float32)
    cy = (ident.eye_y - ident.brow_dy + ident.mouth_y + 0.05) / 2
    ay = (ident.mouth_y + 0.05 - (ident.eye_y - ident.brow_dy - 0.03)) / 2
    _ellipse(m, 0.5, cy, ident.face_w * 0.8, ay, (1.0,))
    k = max(1, int(softness * CANVAS * 0.08)) * 2 + 1
    return cv2.GaussianBlur(m, (k, k), 0) if k > 1 else m


def swap_face(
    target: Identity,
    target_img: np.ndarray,
    donor: Identity,
    donor_img: np.ndarray,
    rng: np.random.Generator,
    difficulty: float,
    style: dict,
    out_px: float = CANVAS,
) -> np.ndarray:
    """Blend the donor's inner face into the target canvas, leaving swap artifacts.

    ``out_px`` is the size the canvas will have in the frame: the resampling artifact is
    made at that scale, so it survives the placement in the frame.
    """
    # align donor landmarks to target landmarks, with a per-frame misalignment
    jitter = rng.normal(0, style["misalign"], (3, 2)).astype(np.float32)
    affine = cv2.getAffineTransform(landmarks(donor), landmarks(target) + jitter)
    warped = cv2.warpAffine(donor_img, affine, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    # resampling: the swapped face was generated at a lower resolution and scaled up
    low = max(8, int(min(CANVAS, out_px) * style["resample"]))
    warped = cv2.resize(cv2.resize(warped, (low, low), interpolation=cv2.INTER_AREA),
                        (CANVAS, CANVAS), interpolation=cv2.INTER_LINEAR)
    mask = inner_mask(target, style["softness"])
    # colour: partial transfer of the target's skin statistics
    sel = mask > 0.5
    if sel.any():
        shift = target_img[sel].mean(0) - warped[sel].mean(0)
        warped = warped + shift * style["color_fix"]
    warped += style["tint"]
    out = target_img * (1 - mask[..., None]) + warped * mask[..., None]
    # a faint seam where the blend mask's edge lies
    edge = cv2.Laplacian(mask, cv2.CV_32F, ksize=3)
    out += (style["seam"] * np.abs(edge) * 255.0)[..., None]
    return np.clip(out, 0, 255)


def mouth_mask(ident: Identity, softness: float) -> np.ndarray:
    """Soft mask over the mouth and its surroundings only, as mouth reenactment blends it."""
    m = np.zeros((CANVAS, CANVAS), np.float32)
    _ellipse(m, 0.5, ident.mouth_y + 0.01, ident.mouth_w * 1.5, ident.lip_h * 2.5 + 0.05, (1.0,))
    k = max(1, int(softness * CANVAS * 0.05)) * 2 + 1
    return cv2.GaussianBlur(m, (k, k), 0)


def reenact_mouth(target: Identity, target_img: np.ndarray, driven_img: np.ndarray,
                  difficulty: float, style: dict, out_px: float = CANVAS) -> np.ndarray:
    """The second manipulation family: the target's own face with only the mouth region
    replaced by a driven one (another expression), generated at low resolution and upsampled
    by pixel repetition (the periodic upsampling traces of a generator), slightly sharpened
    and tinted. Nothing outside the mouth changes: a swap detector's cues (a foreign inner
    face, its seam, misaligned eyes) are absent."""
    factor = int(np.clip(round(style["resample"] ** -1 * 2), 2, 4))
    low = max(8, int(min(CANVAS, out_px) / factor))
    small = cv2.resize(driven_img, (low, low), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (CANVAS, CANVAS), interpolation=cv2.INTER_NEAREST)
    sharp = up + (up - cv2.GaussianBlur(up, (0, 0), 1.0)) * (0.8 * (1.0 - difficulty) + 0.2)
    sharp += style["tint"] * 1.5
    mask = mouth_mask(target, style["softness"])[..., None]
    return np.clip(target_img * (1 - mask) + sharp * mask, 0, 255)


def fake_style(rng: np.random.Generator, difficulty: float) -> dict:
    """Artifact strengths of one fake video (or image); smaller at higher difficulty."""
    e = 1.0 - difficulty
    return {
        "misalign": 0.4 + 1.6 * e * rng.uniform(0.3, 1.0),
        "resample": float(np.clip(rng.uniform(0.5, 0.75) + 0.3 * difficulty, 0.45, 1.0)),
        "softness": rng.uniform(0.3, 1.0),
        "color_fix": float(np.clip(rng.uniform(0.5, 0.9) + 0.35 * difficulty, 0, 1)),
        "tint": rng.normal(0, 6 * e, 3).astype(np.float32),
        "seam": rng.uniform(0.0, 0.25) * e,
    }


def background(ident: Identity, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    bg = ident.bg[0] * (1 - t) + ident.bg[1] * t
    bg = np.repeat(bg, w, axis=1)
    for _ in range(3):  # a few soft shapes behind the person
        c = rng.uniform(0, 255, 3)
        cv2.circle(bg, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(h // 8, h // 3)),
                   tuple(float(v) for v in c), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(bg, (0, 0), 6)


def compose(bg: np.ndarray, face: np.ndarray, alpha: np.ndarray, cx: float, cy: float,
            scale: float, angle: float) -> np.ndarray:
    """Place the canvas face on the background at a pose (centre, scale in px, degrees)."""
    h, w = bg.shape[:2]
    m = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), angle, scale / CANVAS)
    m[:, 2] += (cx - CANVAS / 2, cy - CANVAS / 2)
    f = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_LINEAR)
    a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    return bg * (1 - a) + f * a


def degrade(frame: np.ndarray, rng: np.random.Generator, blur: float, noise: float) -> np.ndarray:
    """Camera-like blur and sensor noise shared by real and fake frames."""
    if blur > 0.05:
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
    frame = frame + rng.normal(0, noise, frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255)


def _to_bgr8(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(frame + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)


def render_frames(
    target: Identity,
    donor: Identity | None,
    n_frames: int,
    width: int,
    height: int,
    rng: np.random.Generator,
    difficulty: float,
    mouth: bool = False,
) -> list[np.ndarray]:
    """Frames (BGR uint8) of one video: a moving face, swapped when ``donor`` is given, its
    mouth reenacted (:func:`reenact_mouth`) when ``mouth``."""
    bg = background(target, width, height, rng)
    style = fake_style(rng, difficulty) if donor is not None or mouth else None
    drive = rng.uniform(0, 2 * np.pi) if mouth else 0.0
    size = min(width, height)
    base_scale = size * rng.uniform(0.8, 1.0)
    cx0, cy0 = width / 2 + rng.uniform(-0.1, 0.1) * width, height / 2 + rng.uniform(-0.05, 0.05) * height
    blur, noise = rng.uniform(0.0, 0.9), rng.uniform(1.0, 4.0)
    phase = rng.uniform(0, 2 * np.pi, 4)
    speed = rng.uniform(0.05, 0.2, 4)
    frames = []
    for t in range(n_frames):
        expression = 0.5 + 0.5 * np.sin(phase[0] + speed[0] * t * 2)
        blink = 1.0 if (t + int(phase[1] * 10)) % 37 == 0 else 0.0
        cx = cx0 + 0.04 * size * np.sin(phase[2] + speed[2] * t)
        cy = cy0 + 0.03 * size * np.sin(phase[3] + speed[3] * t)
        scale = base_scale * (1 + 0.05 * np.sin(phase[1] + speed[1] * t))
        face, alpha = draw_face(target, expression, blink)
        if donor is not None:
            dface, _ = draw_face(donor, expression, blink)
            face = swap_face(target, face, donor, dface, rng, difficulty, style, scale)
        elif mouth:  # the mouth follows another expression than the face around it
            driven, _ = draw_face(target, 0.5 + 0.5 * np.sin(drive + speed[0] * t * 3), blink)
            face = reenact_mouth(target, face, driven, difficulty, style, scale)
        angle = 6 * np.sin(phase[0] + speed[3] * t)
        frame = compose(bg, face, alpha, cx, cy, scale, angle)
        frames.append(_to_bgr8(degrade(frame, rng, blur, noise)))
    return frames


def render_image(target: Identity, donor: Identity | None, width: int, height: int,
                 rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """One face-crop image (BGR uint8), as the OpenForensics crops are."""
    return render_frames(target, donor, 1, width, height, rng, difficulty)[0]


def write_video(path: Path, frames: list[np.ndarray], fps: float, quality: int) -> None:
    """MP4 (MPEG-4 part 2); frames pass a JPEG round-trip first to mimic a compressed source."""
    from deepfake_lth.core.files import atomic_path

    h, w = frames[0].shape[:2]
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write MP4 files here ({tmp})")
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
        for f in frames:
            writer.write(cv2.imdecode(cv2.imencode(".jpg", f, params)[1], cv2.IMREAD_COLOR))
        writer.release()


def _pairs(n_ids: int, rng: np.random.Generator) -> tuple[int, int]:
    t = int(rng.integers(n_ids))
    d = int(rng.integers(n_ids - 1))
    return t, d + (d >= t)


def generate_videos(source: dict, out_dir: Path) -> pd.DataFrame:
    """``real/*.mp4`` and ``fake/*.mp4``; the fakes cycle through ``source.families``
    (``swap``: a face swap, ``mouth``: mouth reenactment), named in the manipulation column."""
    rng = np.random.default_rng(source["seed"])
    idents = [sample_identity(rng) for _ in range(source["identities"])]
    families = list(source.get("families") or ["swap"])
    rows = []
    for label, folder in ((0, "real"), (1, "fake")):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        for i in range(source["videos_per_class"]):
            vrng = np.random.default_rng([source["seed"], label, i])
            family = families[i % len(families)] if label else ""
            if label == 0 or family == "mouth":
                t, d = i % len(idents), None
                name = f"{t:03d}" if label == 0 else f"{t:03d}_mouth"
            else:
                t, d = _pairs(len(idents), vrng)
                name = f"{t:03d}_{d:03d}"
            name = f"{name}_{i:03d}"
            frames = render_frames(idents[t], None if d is None else idents[d], source["frames"],
                                   source["width"], source["height"], vrng, source["difficulty"],
                                   mouth=family == "mouth")
            path = out_dir / folder / f"{name}.mp4"
            write_video(path, frames, source["fps"], source["jpeg_quality"])
            rows.append({"path": f"{folder}/{name}.mp4", "video_id": f"{folder}/{name}",
                         "label": label, "split": "", "kind": "video", "group": f"id{t:03d}",
                         "manipulation": family})
    return pd.DataFrame(rows)


def generate_images(source: dict, out_dir: Path, name: str = "?") -> pd.DataFrame:
    """Train|Validation|Test/Real|Fake/*.jpg with identities disjoint across splits."""
    rng = np.random.default_rng(source["seed"])
    n = source["identities"]
    idents = [sample_identity(rng) for _ in range(n)]
    order = rng.permutation(n)
    cut1, cut2 = int(round(n * 0.7)), int(round(n * 0.85))
    split_ids = {"Train": order[:cut1], "Validation": order[cut1:cut2], "Test": order[cut2:]}
    split_names = {"Train": "train", "Validation": "val", "Test": "test"}
    share = {"Train": 0.7, "Validation": 0.15, "Test": 0.15}
    params = [cv2.IMWRITE_JPEG_QUALITY, source["jpeg_quality"]]
    rows = []
    for split, ids in split_ids.items():
        if len(ids) < 2:
            raise UserError(
                f"datasets.{name}.source.identities: {n} identities leave {len(ids)} for the "
                f"{split} split; synthetic images need at least 2 per split (use 14 or more)"
            )
        count = max(1, int(round(source["images_per_class"] * share[split])))
        for label, folder in ((0, "Real"), (1, "Fake")):
            d = out_dir / split / folder
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                irng = np.random.default_rng([source["seed"], label, i, len(rows)])
                t = int(ids[irng.integers(len(ids))])
                donor = None
                if label == 1:
                    others = [j for j in ids if j != t]
                    donor = idents[int(others[irng.integers(len(others))])]
                img = render_image(idents[t], donor, source["width"], source["height"], irng,
                                   source["difficulty"])
                name = f"{folder.lower()}_{i:05d}.jpg"
                ok, buf = cv2.imencode(".jpg", img, params)
                (d / name).write_bytes(buf.tobytes())
                rows.append({"path": f"{split}/{folder}/{name}", "video_id": f"{split}/{folder}/{i:05d}",
                             "label": label, "split": split_names[split], "kind": "image",
                             "group": f"id{t:03d}", "manipulation": "swap" if label else ""})
    return pd.DataFrame(rows)


def acquire(name: str, source: dict, out_dir: Path, seed: int = 0) -> pd.DataFrame:
    """Generate the dataset's files under ``out_dir`` and return their sources table."""
    defaults = {"kind": "videos", "identities": 24, "videos_per_class": 20, "images_per_class": 200,
                "frames": 60, "width": 256, "height": 224, "fps": 25, "difficulty": 0.5,
                "jpeg_quality": 85, "seed": seed, "families": ["swap"]}
    source = {**defaults, **{k: v for k, v in source.items() if k != "type"}}
    log.info("generating synthetic %s for %s under %s", source["kind"], name, out_dir)
    if source["kind"] == "images":
        return generate_images(source, out_dir, name)
    return generate_videos(source, out_dir)
