"""Evaluation of a detector on a split: logits per face (batched, bounded memory on the CPU)
and the split's metrics."""

from __future__ import annotations

from contextlib import closing

import numpy as np
import torch
from torch import nn

from deepfake_lth.data.store import FaceSplit, to_tensor
from deepfake_lth.training.batches import batch_slices, prefetch_enabled, prefetched, read_batch
from deepfake_lth.training.device import amp_dtype
from deepfake_lth.training.scoring import split_metrics

# faces × side² of one evaluation forward on the CPU: bounds the memory of its activations
# (an evaluation batch of 256 faces at 256 px held ~1.1 GB of them); 256 faces up to 128 px
EVAL_PIXELS = 2**22


def eval_batch_limit(side: int) -> int:
    """Most faces of ``side`` px per evaluation batch on the CPU (at least 16). Evaluation
    is per face (batch norm uses its running statistics): the batch size bounds the memory,
    the values stay those of one big batch (bit for bit with the registry models on the CPU
    as measured; at most the last bits where a backend picks another kernel). The demo's
    inputs (≤ 128 px, batches of 256) are not split at all."""
    return max(16, EVAL_PIXELS // max(1, int(side)) ** 2)


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    split: FaceSplit,
    input_size: int | None,
    device: torch.device,
    batch_size: int,
    amp: bool = False,
    prefetch: bool | None = None,
) -> np.ndarray:
    """Logits (float64, CPU) of every sample of ``split``."""
    was_training = model.training
    model.eval()
    out = []
    dtype = amp_dtype(amp, device)
    pin = device.type == "cuda"
    positions = np.arange(len(split))
    if device.type == "cpu":
        batch_size = min(batch_size, eval_batch_limit(input_size or split.images.shape[1]))
    slices = list(batch_slices(len(split), batch_size))
    batches = prefetched(lambda sl: read_batch(split.images, positions[sl], pin), slices,
                         prefetch_enabled(prefetch, device))
    with closing(batches):  # an error stops the read-ahead thread too
        for raw in batches:
            x = to_tensor(raw, input_size, device)
            with torch.autocast(
                device_type=device.type, dtype=dtype or torch.float16, enabled=dtype is not None
            ):
                logits = model(x)
            out.append(logits.float().reshape(len(x), -1)[:, 0].cpu())
    model.train(was_training)
    if not out:
        return np.zeros(0, dtype=np.float64)
    return torch.cat(out).double().numpy()


def evaluate(
    model: nn.Module,
    split: FaceSplit,
    input_size: int | None,
    device: torch.device | str,
    batch_size: int = 256,
    amp: bool = False,
    prefetch: bool | None = None,
) -> dict:
    """The scores of :func:`~deepfake_lth.training.scoring.split_metrics` (frame and video
    accuracy, AUC, EER, AP; NaN with one class), mean BCE loss and per-sample probabilities. Batches are
    read from ``split`` as they are used (``prefetch``: one ahead, on a background thread;
    None: on CUDA only, see :func:`fit`)."""
    device = torch.device(device)
    logits = predict_logits(model, split, input_size, device, batch_size, amp, prefetch)
    labels = np.asarray(split.labels, dtype=np.float64)
    n = len(labels)
    if n == 0:
        empty = split_metrics(labels, labels, split.video_ids)
        return {"loss": float("nan"), **empty, "n": 0, "probs": np.zeros(0)}
    probs = 1.0 / (1.0 + np.exp(-logits))
    # numerically stable BCE with logits: max(z, 0) − z·y + log(1 + e^−|z|)
    loss = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
    return {
        "loss": float(loss.mean()),
        **split_metrics(labels, probs, split.video_ids),
        "acc": float(np.mean((logits > 0) == (labels > 0.5))),  # exact where p rounds to 0.5
        "n": n,
        "probs": probs,
    }
