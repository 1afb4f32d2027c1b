"""Streaming reads of the packed store: lazy split views, batch reads in order, and training
that gives the same weights and metrics from the memory map as from memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fit_helpers import fit_with
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.store import MANIFEST_COLUMNS, FaceImages, FaceSplit, load_split, read_rows
from deepfake_lth.training.evaluate import evaluate

torch.set_num_threads(1)


def write_packed(folder: Path, n_videos: int = 24, frames: int = 5, size: int = 16) -> Path:
    """A small packed set: fakes carry a faint checkerboard; videos split 70/15/15 in an
    interleaved order, so every split's rows are scattered over faces.npy."""
    rng = np.random.default_rng(0)
    checker = (np.indices((size, size)).sum(0) % 2)[..., None] * 60.0
    images, rows = [], []
    for v in range(n_videos):
        label = v % 2
        split = ("train", "train", "val", "train", "test", "train", "train")[v % 7]
        base = rng.uniform(60, 190)
        for f in range(frames):
            img = base + rng.normal(0, 20, (size, size, 3)) + label * checker
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            rows.append((len(rows), f"v{v}", label, split, f, "synthetic"))
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "faces.npy", np.stack(images))
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(folder / "manifest.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    return write_packed(tmp_path_factory.mktemp("packed") / "faces")


def test_read_rows_keeps_the_order_asked_for() -> None:
    array = np.arange(40 * 2 * 2 * 3, dtype=np.uint8).reshape(40, 2, 2, 3)
    for rows in ([5, 1, 30, 2], [3, 4, 5, 6], [7], [9, 2, 9], [0, 1, 3]):
        out = read_rows(array, np.array(rows))
        assert out.flags.c_contiguous and out.dtype == np.uint8
        np.testing.assert_array_equal(out, array[rows])
    assert read_rows(array, np.array([], dtype=np.int64)).shape == (0, 2, 2, 3)


def test_face_images_index_like_an_array(packed: Path) -> None:
    lazy = load_split(packed, "train")
    eager = load_split(packed, "train", mmap=False)
    assert isinstance(lazy.images, FaceImages) and isinstance(lazy.images.array, np.memmap)
    assert isinstance(eager.images, np.ndarray) and not isinstance(eager.images, np.memmap)
    assert lazy.images.shape == eager.images.shape and len(lazy.images) == len(eager)
    assert lazy.images.dtype == np.uint8 and lazy.images.ndim == 4
    n = len(lazy)
    perm = np.random.default_rng(1).permutation(n)
    keys = [perm[:7], slice(3, 11), slice(None, None, 2), perm[:1], np.arange(n) % 3 == 0, 4,
            torch.from_numpy(perm[:5])]
    for key in keys:
        got = lazy.images[key]
        want = eager.images[key.numpy() if isinstance(key, torch.Tensor) else key]
        assert type(got) is np.ndarray
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(lazy.images), eager.images)
    sub = lazy.subset(perm[:6])
    assert isinstance(sub.images, FaceImages)
    np.testing.assert_array_equal(sub.images[:], eager.images[perm[:6]])
    np.testing.assert_array_equal(sub.labels, eager.labels[perm[:6]])


def test_manifest_rows_beyond_faces_npy_are_a_user_error(tmp_path: Path) -> None:
    folder = write_packed(tmp_path / "faces", n_videos=7, frames=2)
    np.save(folder / "faces.npy", np.zeros((5, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(UserError, match="manifest.csv names row 13 but .*faces.npy has 5"):
        load_split(folder, "train")


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.fc(self.drop(x))


class CountingImages(FaceImages):
    """A FaceImages that records how many faces each read returns."""

    def __init__(self, images: FaceImages) -> None:
        super().__init__(images.array, images.rows)
        self.reads: list[int] = []

    def __getitem__(self, key) -> np.ndarray:
        out = super().__getitem__(key)
        self.reads.append(len(out))
        return out

    def subset(self, positions) -> CountingImages:
        sub = CountingImages(super().subset(positions))
        sub.reads = self.reads
        return sub


KW = {"input_size": 12, "lr": 1e-2, "batch_size": 8, "max_epochs": 3, "patience": 5,
      "amp": True, "device": "cpu", "seed": 3}


def _train(train: FaceSplit, val: FaceSplit, **kw) -> tuple[dict, list[dict]]:
    torch.manual_seed(0)
    model = TinyNet()
    result = fit_with(model, train, val, **{**KW, **kw})
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in result.history]
    return model.state_dict(), history


@pytest.mark.parametrize("max_train_samples", [None, 30])
def test_streaming_trains_bit_identical_to_in_memory(packed: Path, max_train_samples) -> None:
    eager = [load_split(packed, s, mmap=False) for s in ("train", "val")]
    lazy = [load_split(packed, s) for s in ("train", "val")]
    counting = CountingImages(lazy[0].images)
    lazy[0].images = counting
    ref_state, ref_hist = _train(*eager, max_train_samples=max_train_samples, prefetch=False)
    for prefetch in (False, True):
        counting.reads.clear()
        state, hist = _train(*lazy, max_train_samples=max_train_samples, prefetch=prefetch)
        assert hist == ref_hist
        assert state.keys() == ref_state.keys()
        for k in state:
            assert torch.equal(state[k], ref_state[k]), k
        # batch by batch: never the whole split at once
        assert counting.reads and max(counting.reads) <= KW["batch_size"]
        assert sum(counting.reads) == 3 * min(len(counting), max_train_samples or len(counting))
    assert len(ref_hist) == 3 and ref_hist[0]["train_loss"] != ref_hist[-1]["train_loss"]


def test_evaluate_streams_the_same_metrics(packed: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    eager, lazy = load_split(packed, "test", mmap=False), load_split(packed, "test")
    want = evaluate(model, eager, 12, "cpu", batch_size=4, prefetch=False)
    got = evaluate(model, lazy, 12, "cpu", batch_size=4, prefetch=True)
    np.testing.assert_array_equal(got.pop("probs"), want.pop("probs"))
    assert got.keys() == want.keys() and got["n"] == len(lazy) > 4
    for key, value in want.items():
        assert got[key] == value or (np.isnan(got[key]) and np.isnan(value)), key


@pytest.mark.parametrize(("side", "size", "n"), [(40, 24, 75), (40, None, 40), (40, 40, 33)])
def test_to_tensor_in_chunks_gives_the_same_tensor(monkeypatch, side: int, size, n: int) -> None:
    from deepfake_lth.data import store as data

    images = np.random.default_rng(0).integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    chunked = data.to_tensor(images, size)
    monkeypatch.setattr(data, "CONVERT_CHUNK", 10**9)
    whole = data.to_tensor(images, size)
    assert n > 32 and torch.equal(chunked, whole) and chunked.stride() == whole.stride()
    assert chunked.is_contiguous(memory_format=torch.channels_last)


def test_cpu_evaluation_batches_are_bounded_by_pixels(packed: Path, monkeypatch) -> None:
    from deepfake_lth.training import evaluate as train_mod

    assert train_mod.eval_batch_limit(64) >= 256  # the demo's batches are not split
    assert train_mod.eval_batch_limit(299) < 256 and train_mod.eval_batch_limit(10**4) == 16
    torch.manual_seed(0)
    model, split = TinyNet(), load_split(packed, "train")
    whole = evaluate(model, split, 12, "cpu", batch_size=256)
    monkeypatch.setattr(train_mod, "EVAL_PIXELS", 16 * 12 * 12)  # batches of 16 faces
    reads = CountingImages(split.images)
    split.images = reads
    parts = evaluate(model, split, 12, "cpu", batch_size=256)
    assert max(reads.reads) == 16 < len(split)
    np.testing.assert_array_equal(parts["probs"], whole["probs"])
