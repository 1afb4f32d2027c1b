"""The packed face dataset: ``faces.npy`` (uint8, N×S×S×3, RGB) + ``manifest.csv``.

Every stage after extraction reads faces through this module, so a dataset is loaded once
per job and every model and method of a dataset sees the same split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_lth.errors import UserError

SPLITS = ("train", "val", "test")
# ImageNet statistics: the inputs of every registry model are normalised with them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MANIFEST_COLUMNS = ["index", "video_id", "label", "split", "frame_index", "source"]


@dataclass
class FaceSplit:
    """One split of a packed dataset, as uint8 images and labels."""

    images: np.ndarray  # uint8, (n, S, S, 3), RGB; may be a read-only memory map
    labels: np.ndarray  # int64, (n,), 0 real, 1 fake
    video_ids: np.ndarray  # str, (n,)
    rows: np.ndarray  # int64, (n,), row in faces.npy / manifest.csv

    def __len__(self) -> int:
        return len(self.labels)


def faces_dir(results: str | Path, dataset: str) -> Path:
    return Path(results) / dataset / "faces"


def load_manifest(faces: str | Path):
    import pandas as pd

    path = Path(faces) / "manifest.csv"
    if not path.exists():
        raise UserError(f"{path} is missing: run the data stage first (snakemake {path})")
    return pd.read_csv(path, dtype={"video_id": str, "source": str})


def load_split(faces: str | Path, split: str, mmap: bool = True) -> FaceSplit:
    """Faces of one split (``train``, ``val`` or ``test``) of a packed dataset folder."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    faces = Path(faces)
    manifest = load_manifest(faces)
    sel = manifest[manifest["split"] == split]
    array = np.load(faces / "faces.npy", mmap_mode="r" if mmap else None)
    rows = sel["index"].to_numpy(dtype=np.int64)
    images = array[rows] if len(rows) else np.zeros((0, *array.shape[1:]), dtype=np.uint8)
    return FaceSplit(
        images=np.ascontiguousarray(images),
        labels=sel["label"].to_numpy(dtype=np.int64),
        video_ids=sel["video_id"].to_numpy(dtype=str),
        rows=rows,
    )


def to_tensor(images: np.ndarray, size: int | None = None, device=None):
    """uint8 NHWC images -> normalised float NCHW tensor, resized to ``size`` when given.

    The arithmetic runs on contiguous NCHW memory (a per-channel broadcast over an NHWC
    layout is several times slower on the CPU); the result is handed back in channels-last
    memory format, the layout the CPU convolutions train fastest on.
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images))
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)


def from_tensor(x) -> np.ndarray:
    """Inverse of :func:`to_tensor` for display: float NCHW -> uint8 NHWC."""
    import torch

    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    img = (x * std + mean).clamp(0, 1).mul(255).round().byte()
    return img.permute(0, 2, 3, 1).cpu().numpy()
