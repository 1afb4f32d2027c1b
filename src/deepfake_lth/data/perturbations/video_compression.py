"""Video compression (DeeperForensics-1.0, ``VC``): H.264 re-encoding at a constant rate
factor (libx264, FFmpeg's defaults otherwise: preset medium, 4:2:0 chroma, B-frames; but
see the last paragraph).

Levels: CRF 30, 32, 35, 38, 40 (larger is worse), ``get_distortion_parameter('VC', level)`` of
``perturbation/add_distortion_to_video.py`` in github.com/EndlessSora/DeeperForensics-1.0
(Jiang et al., CVPR 2020), which runs ``ffmpeg -i in -crf {level} out``. FaceForensics++'s
c40 is CRF 40, level 5.

**Of face crops, not frames.** Each test video's face crops are encoded, in frame order, as
one H.264 stream at the crop's size (an image of an image dataset: a one-frame stream) and
decoded again. These are the pixels the network sees: the stage perturbs the packed test
faces (``faces.npy``), with the decoded video, the detector and the crop box left as they
were, so real and fake faces get the same encoder and settings and nothing but the codec
changes. Re-encoding whole frames would need the source videos and a second face
detection, and the boxes would move with the artefacts. Two differences from compressing
the frame remain: the codec's blocks (16-px macroblocks, 4- and 8-px transforms) are
coarser relative to a small crop than to a face in a large frame, so a given CRF costs a
64-px crop more than a 256-px face; and consecutive crops are the sampled frames
(``faces.frames_per_video`` of a clip), so inter prediction spans the gap between them.
An odd side is padded by one edge pixel for 4:2:0 and cropped after decoding.

libx264 runs on one thread and without MB-tree rate control: on these small frames its
MB-tree reads memory it has not written, so the same crops gave different streams from one
call to the next (a one-frame stream took 32 forms in 200 encodes); without it the output is
a function of the input alone, as the tests check. MB-tree shifts bits between frames after
analysing the ones ahead; quality at a CRF then varies a little less over a video.
"""

from __future__ import annotations

import io

import numpy as np

from deepfake_lth.core.errors import UserError

NAME = "video-compression"
LABEL = "Video compression"
LEVELS = (30, 32, 35, 38, 40)
UNIT = "H.264 CRF"
SOURCE = "DeeperForensics-1.0 (VC)"
FPS = 25


def apply_video(frames: np.ndarray, crf: int) -> np.ndarray:
    """``frames`` (n, H, W, 3 uint8 RGB: one video's crops in order) encoded as H.264 at
    ``crf`` and decoded."""
    import av

    n, h, w = frames.shape[:3]
    pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
    padded = np.pad(frames, pad, mode="edge") if h % 2 or w % 2 else frames
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = padded.shape[2], padded.shape[1], "yuv420p"
        stream.codec_context.options = {"crf": str(int(crf)), "preset": "medium",
                                        "threads": "1", "x264-params": "mbtree=0"}
        for frame in padded:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                             format="rgb24")))
        out.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer, "r", format="h264") as src:
        decoded = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    if len(decoded) != n:
        raise UserError(f"H.264 at CRF {crf} gave back {len(decoded)} of {n} frames")
    return np.stack(decoded)[:, :h, :w]
