"""Reading batches from the packed faces: slices, uint8 rows (pinned on CUDA), a read-ahead
thread, and the normalised, flipped training batch on the device."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from deepfake_lth.data.store import to_tensor


def batch_slices(n: int, batch_size: int) -> Iterable[slice]:
    """Consecutive slices of at most ``batch_size`` positions out of ``n``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def read_batch(images, idx: np.ndarray, pin: bool = False) -> torch.Tensor:
    """uint8 rows ``idx`` of ``images`` (a :class:`deepfake_lth.data.store.FaceImages` view or an
    array) as a CPU tensor, in pinned memory when ``pin`` (for a ``non_blocking`` copy)."""
    batch = torch.from_numpy(np.ascontiguousarray(images[idx]))
    return batch.pin_memory() if pin else batch


def prefetched(load: Callable, items: Sequence, enabled: bool = True) -> Iterator:
    """``load(item)`` for every item in order; with ``enabled`` the next item's load runs on a
    background thread while the caller works on the current one (reading overlaps compute).
    Closing the iterator early waits for the load in flight, nothing more."""
    if not enabled or len(items) < 2:
        for item in items:
            yield load(item)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(load, items[0])
        for i in range(len(items)):
            current = pending.result()
            if i + 1 < len(items):
                pending = pool.submit(load, items[i + 1])
            yield current


def prefetch_enabled(prefetch: bool | None, device: torch.device) -> bool:
    """Read ahead on a background thread? None: on CUDA, where reading overlaps the device's
    work; not on the CPU, where the demo's small batches come from the page cache and the
    thread only competes for the cores (bench/scale.py measures both)."""
    return device.type == "cuda" if prefetch is None else bool(prefetch)


def load_batch(
    images,
    labels: torch.Tensor,
    idx: torch.Tensor,
    flips: torch.Tensor | None,
    input_size: int | None,
    device: torch.device,
    raw: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training batch ``idx`` of uint8 ``images``: normalised input (flipped where
    ``flips`` is True) and float labels, on ``device``. ``raw``: the batch's uint8 rows,
    already read (:func:`read_batch`)."""
    if raw is None:
        raw = read_batch(images, idx.numpy())
    x = to_tensor(raw, input_size, device)
    if flips is not None and bool(flips.any()):
        if x.device.type == "cpu":
            for i in flips.nonzero().flatten().tolist():  # mirror the chosen faces in place
                x[i] = x[i].flip(2)
        else:  # one kernel instead of one per face; the same values
            chosen = flips.to(x.device, non_blocking=True).view(-1, 1, 1, 1)
            x = torch.where(chosen, x.flip(3), x).contiguous(memory_format=torch.channels_last)
    return x, labels[idx].to(device, non_blocking=True)
