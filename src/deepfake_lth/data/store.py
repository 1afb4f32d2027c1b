"""The packed face dataset: ``faces.npy`` (uint8, N×S×S×3, RGB) + ``manifest.csv``.

Every stage after extraction reads faces through this module, so a dataset is loaded once
per job and every model and method of a dataset sees the same split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_lth.core.errors import UserError

SPLITS = ("train", "val", "test")
# ImageNet statistics: the inputs of every registry model are normalised with them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MANIFEST_COLUMNS = ["index", "video_id", "label", "split", "frame_index", "source"]


def read_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of ``array`` (a memory map or an array) as a contiguous uint8 copy.

    The rows are read in ascending order (sequential reads of the file) straight into their
    place in the order asked for; consecutive rows are read at once. From a memory-mapped
    ``.npy`` file the bytes are read with ``pread`` rather than through the map: pages read
    once stay on the kernel's inactive list, so in a tight memory cgroup the page cache of a
    dataset that is read once per epoch gives way first (pages touched through a map are
    promoted, and evicted the process's own code instead: an epoch in a 1.5 GB cgroup read
    its data ~8 times over).
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if len(rows) == 0:
        return np.zeros((0, *array.shape[1:]), dtype=array.dtype)
    if len(rows) and (rows.min() < -len(array) or rows.max() >= len(array)):
        raise IndexError(f"row {int(rows.max())} is out of bounds for {len(array)} faces")
    rows = np.where(rows < 0, rows + len(array), rows)
    order = np.argsort(rows, kind="stable")
    if _file_backed(array):
        return _pread_rows(array, rows, order)
    first, last = int(rows[0]), int(rows[-1])
    if last - first == len(rows) - 1 and np.all(np.diff(rows) == 1):
        return np.array(array[first : last + 1], copy=True).view(np.ndarray)
    ascending = rows[order]
    if np.array_equal(order, np.arange(len(rows))):
        return np.asarray(array[ascending]).view(np.ndarray)
    out = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
    out[order] = array[ascending]
    return out


def _file_backed(array: np.ndarray) -> bool:
    """A memory map of a whole ``.npy`` file's C-contiguous array (what ``np.load(path,
    mmap_mode=...)`` returns; not a slice or view of one), whose rows the file holds at
    ``offset + row × row bytes``."""
    import mmap

    return (
        isinstance(array, np.memmap)
        and isinstance(array.base, mmap.mmap)
        and getattr(array, "filename", None) is not None
        and isinstance(getattr(array, "offset", None), int)
        and array.flags.c_contiguous
        and array.ndim >= 1
    )


def _pread_rows(array: np.memmap, rows: np.ndarray, order: np.ndarray) -> np.ndarray:
    import os

    n = len(rows)
    row_bytes = array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    out = np.empty((n, *array.shape[1:]), dtype=array.dtype)
    flat = out.reshape(n, -1).view(np.uint8)
    ascending, dest = rows[order], order
    fd = os.open(array.filename, os.O_RDONLY)
    try:
        i = 0
        while i < n:  # a run: consecutive rows going to consecutive places
            j = i + 1
            while j < n and ascending[j] == ascending[j - 1] + 1 and dest[j] == dest[j - 1] + 1:
                j += 1
            view = memoryview(flat[dest[i] : dest[i] + (j - i)]).cast("B")
            offset = array.offset + int(ascending[i]) * row_bytes
            done = 0
            while done < len(view):
                got = os.preadv(fd, [view[done:]], offset + done)
                if got <= 0:
                    raise OSError(f"{array.filename}: unexpected end of file at byte "
                                  f"{offset + done}; the packed faces are truncated")
                done += got
            i = j
    finally:
        os.close(fd)
    return out


class FaceImages:
    """The faces of one split as a lazy view of the packed ``faces.npy``: nothing is read
    until indexed, and indexing reads only the rows asked for.

    ``images[positions]`` (an integer, a slice, an integer or boolean array of positions in
    the split) returns a contiguous uint8 NHWC array of just those faces, in that order;
    ``len()``, ``shape``, ``dtype`` and ``ndim`` work as on an array. ``array`` is the
    memory map ``np.load(mmap_mode="r")`` gives (its header: shape, dtype, offset); the rows
    themselves are read from the file with ``pread`` (:func:`read_rows`). Memory thus does
    not grow with the dataset: the file's pages are the kernel's page cache, shared between
    jobs and reclaimable. ``np.asarray(images)`` still works, by reading every row (avoid it
    on a large split).
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray) -> None:
        self.array = array  # (N, S, S, 3) uint8, typically a read-only memory map
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):
            if len(key) == 0:
                return read_rows(self.array, self.rows)
            return self[key[0]][(slice(None), *key[1:])]
        if isinstance(key, int | np.integer):
            return read_rows(self.array, self.rows[[key]])[0]
        if hasattr(key, "numpy") and not isinstance(key, np.ndarray):  # a torch tensor
            key = key.numpy()
        return read_rows(self.array, self.rows[key])

    def subset(self, positions) -> FaceImages:
        """A lazy view of the faces at ``positions`` of this one (nothing is read)."""
        return FaceImages(self.array, self.rows[positions])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = read_rows(self.array, self.rows)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"FaceImages(shape={self.shape}, dtype={self.dtype})"


@dataclass
class FaceSplit:
    """One split of a packed dataset: uint8 images and labels.

    ``images`` is a :class:`FaceImages` view of the memory-mapped ``faces.npy`` (what
    :func:`load_split` returns) or a plain array in memory (tests, ``mmap=False``); both are
    indexed the same way.
    """

    images: np.ndarray | FaceImages  # uint8, (n, S, S, 3), RGB
    labels: np.ndarray  # int64, (n,), 0 real, 1 fake
    video_ids: np.ndarray  # str, (n,)
    rows: np.ndarray  # int64, (n,), row in faces.npy / manifest.csv

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, positions) -> FaceSplit:
        """The samples at ``positions`` (an index array or slice); a lazy view stays lazy."""
        images = (
            self.images.subset(positions)
            if isinstance(self.images, FaceImages)
            else np.ascontiguousarray(self.images[positions])
        )
        return FaceSplit(
            images=images,
            labels=self.labels[positions],
            video_ids=self.video_ids[positions],
            rows=self.rows[positions],
        )


def faces_dir(results: str | Path, dataset: str) -> Path:
    return Path(results) / dataset / "faces"


def load_manifest(faces: str | Path):
    import pandas as pd

    path = Path(faces) / "manifest.csv"
    if not path.exists():
        raise UserError(f"{path} is missing: run the data stage first (snakemake {path})")
    manifest = pd.read_csv(path, dtype={"video_id": str, "source": str, "manipulation": str},
                           keep_default_na=False)
    if "manipulation" not in manifest:  # packed before the column existed
        manifest["manipulation"] = ""
    return manifest


def load_split(faces: str | Path, split: str, mmap: bool = True) -> FaceSplit:
    """Faces of one split (``train``, ``val`` or ``test``) of a packed dataset folder.

    With ``mmap`` (the default) the images are a lazy :class:`FaceImages` view of the
    memory-mapped ``faces.npy``: batches are read by index when used, so a job's memory does
    not grow with the dataset. ``mmap=False`` reads the split into memory (small sets, tests).
    """
    return load_splits(faces, (split,), mmap)[0]


def load_splits(faces: str | Path, splits=SPLITS, mmap: bool = True) -> tuple[FaceSplit, ...]:
    """:func:`load_split` of each of ``splits``, reading the manifest and the array's header
    once."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"split must be one of {SPLITS}, not {unknown[0]!r}")
    faces = Path(faces)
    manifest = load_manifest(faces)
    path = faces / "faces.npy"
    if not path.exists():
        raise UserError(f"{path} is missing: run the pack stage first (snakemake {path})")
    array = np.load(path, mmap_mode="r")
    n = len(array)
    out = []
    for split in splits:
        sel = manifest[manifest["split"] == split]
        rows = sel["index"].to_numpy(dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise UserError(
                f"{faces / 'manifest.csv'} names row {int(rows.max())} but {path} has {n} "
                "faces: the two files do not belong together; rerun the pack stage"
            )
        # mmap=False: only the split's rows, read into memory through the map
        images = FaceImages(array, rows) if mmap else read_rows(array, rows)
        out.append(FaceSplit(
            images=images,
            labels=sel["label"].to_numpy(dtype=np.int64),
            video_ids=sel["video_id"].to_numpy(dtype=str),
            rows=rows,
        ))
    return tuple(out)


# faces converted at a time on the CPU: a float copy of 32 faces at 299 px is 34 MB, of an
# evaluation batch of 256 is 275 MB (and twice that in flight); chunks give the same values
CONVERT_CHUNK = 32


def to_tensor(images, size: int | None = None, device=None):
    """uint8 NHWC images (an array, or a uint8 tensor, e.g. in pinned memory) -> normalised
    float NCHW tensor on ``device``, resized to ``size`` when given.

    The uint8 batch is copied to ``device`` first (``non_blocking``: asynchronous from pinned
    memory), so the conversion, the resize and the normalisation run on the device.

    The arithmetic runs on contiguous NCHW memory (a per-channel broadcast over an NHWC
    layout is several times slower on the CPU); the result is handed back in channels-last
    memory format, the layout the CPU convolutions train fastest on. On the CPU a large batch
    is converted CONVERT_CHUNK faces at a time into the result (every face is converted on its
    own, so the values are the same), which keeps the float intermediates of an evaluation
    batch at large faces out of memory.
    """
    import torch

    if isinstance(images, torch.Tensor):
        x = images
    else:
        x = torch.from_numpy(np.ascontiguousarray(images))
    if device is not None:
        x = x.to(device, non_blocking=True)
    n = x.shape[0]
    if x.device.type != "cpu" or n <= CONVERT_CHUNK:
        return _convert(x, size)
    first = _convert(x[:CONVERT_CHUNK], size)
    c, h, w = first.shape[1:]
    out = torch.empty((n, h, w, c), dtype=first.dtype).permute(0, 3, 1, 2)  # channels-last
    out[:CONVERT_CHUNK] = first
    del first
    for start in range(CONVERT_CHUNK, n, CONVERT_CHUNK):
        out[start : start + CONVERT_CHUNK] = _convert(x[start : start + CONVERT_CHUNK], size)
    return out


def _convert(x, size: int | None):
    """:func:`to_tensor` of uint8 NHWC ``x``, already on its device."""
    import torch
    import torch.nn.functional as F

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
