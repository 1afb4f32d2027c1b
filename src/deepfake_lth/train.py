"""Training and evaluation of one detector on a packed face dataset.

One process, no DataLoader workers: the uint8 split stays in memory, batches are taken by
index with a seeded generator and converted per batch, so a run is fixed by its seed (on
the CPU bit for bit). Adam on BCEWithLogitsLoss of a single logit, early stopping on the
validation loss or accuracy, the best validation weights restored at the end. A mask, when
given, is enforced at every step (:class:`deepfake_lth.pruning.MaskEnforcer`).
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from deepfake_lth.data import FaceSplit, to_tensor
from deepfake_lth.errors import UserError

if TYPE_CHECKING:
    from deepfake_lth.pruning import MaskEnforcer

log = logging.getLogger(__name__)

MONITORS = ("val_loss", "val_acc")


def resolve_device(spec: str) -> torch.device:
    """``auto`` → CUDA when available (CUDA_VISIBLE_DEVICES applies), else CPU; ``cpu``;
    ``cuda`` or ``cuda:N``."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    kind, _, index = spec.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UserError(f"device: {spec!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise UserError(
            f"device: {spec!r} was asked for but CUDA is not available here; "
            "set device: auto or cpu"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise UserError(
            f"device: {spec!r} but only {torch.cuda.device_count()} CUDA device(s) are "
            "visible; pick a smaller index or device: auto"
        )
    return torch.device(spec)


def seed_everything(seed: int, device: torch.device | str | None = None) -> None:
    """Seed python, numpy and torch; on the CPU also ask for deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device is None or torch.device(device).type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class FitResult:
    """What :func:`fit` returns; the model itself holds the best weights."""

    history: list[dict] = field(default_factory=list)  # one dict per epoch
    best_epoch: int = 0  # 1-based epoch whose weights were restored
    epochs: int = 0  # epochs run
    stopped_early: bool = False
    train_seconds: float = 0.0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)  # CPU copy
    epoch_states: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _amp_enabled(amp: bool, device: torch.device) -> bool:
    return bool(amp) and device.type == "cuda"


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, file=sys.stderr, leave=False, disable=not sys.stderr.isatty()
    )


def _batches(n: int, batch_size: int) -> Iterable[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.inference_mode()
def _predict(
    model: nn.Module,
    split: FaceSplit,
    input_size: int | None,
    device: torch.device,
    batch_size: int,
    amp: bool = False,
) -> np.ndarray:
    """Logits (float64, CPU) of every sample of ``split``."""
    was_training = model.training
    model.eval()
    out = []
    use_amp = _amp_enabled(amp, device)
    for sl in _batches(len(split), batch_size):
        x = to_tensor(split.images[sl], input_size, device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(x)
        out.append(logits.float().reshape(len(x), -1)[:, 0].cpu())
    model.train(was_training)
    if not out:
        return np.zeros(0, dtype=np.float64)
    return torch.cat(out).double().numpy()


def _video_accuracy(probs: np.ndarray, labels: np.ndarray, video_ids: np.ndarray) -> float:
    """Accuracy of the mean fake probability per video, thresholded at 0.5."""
    if len(probs) == 0:
        return float("nan")
    _, inverse = np.unique(video_ids, return_inverse=True)
    n = inverse.max() + 1
    mean_prob = np.bincount(inverse, weights=probs, minlength=n) / np.bincount(inverse, minlength=n)
    video_label = np.bincount(inverse, weights=labels, minlength=n) / np.bincount(
        inverse, minlength=n
    )
    return float(np.mean((mean_prob > 0.5) == (video_label > 0.5)))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for binary ``labels`` (NaN with one class): the Mann-Whitney U
    statistic with ties counted one half, the value sklearn's ``roc_auc_score`` gives. Plain
    numpy, so that a training job does not import scikit-learn (about a second per job)."""
    labels = np.asarray(labels) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # average 1-based rank of ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def evaluate(
    model: nn.Module,
    split: FaceSplit,
    input_size: int | None,
    device: torch.device | str,
    batch_size: int = 256,
    amp: bool = False,
) -> dict:
    """Frame accuracy (at 0.5), ROC AUC (NaN with one class), video accuracy (mean fake
    probability per video at 0.5), mean BCE loss and per-sample probabilities."""
    device = torch.device(device)
    logits = _predict(model, split, input_size, device, batch_size, amp)
    labels = np.asarray(split.labels, dtype=np.float64)
    n = len(labels)
    if n == 0:
        nan = float("nan")
        return {"loss": nan, "acc": nan, "auc": nan, "video_acc": nan, "n": 0, "probs": np.zeros(0)}
    probs = 1.0 / (1.0 + np.exp(-logits))
    # numerically stable BCE with logits: max(z, 0) − z·y + log(1 + e^−|z|)
    loss = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
    auc = roc_auc(labels, probs)
    return {
        "loss": float(loss.mean()),
        "acc": float(np.mean((logits > 0) == (labels > 0.5))),
        "auc": auc,
        "video_acc": _video_accuracy(probs, labels, np.asarray(split.video_ids)),
        "n": n,
        "probs": probs,
    }


def _subset(split: FaceSplit, max_samples: int | None, seed: int) -> FaceSplit:
    """A fixed, seeded random subset of at most ``max_samples`` samples."""
    if not max_samples or len(split) <= max_samples:
        return split
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(split), size=max_samples, replace=False))
    return FaceSplit(
        images=np.ascontiguousarray(split.images[keep]),
        labels=split.labels[keep],
        video_ids=split.video_ids[keep],
        rows=split.rows[keep],
    )


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam over ``model``'s parameters, with the fused kernel where torch has one.

    The fused kernel is faster than the per-tensor loop and, unlike the loop's ``sqrt``, does not
    slow down on the exact zeros that pruned weights leave in Adam's second moment (see
    BENCHMARKS.md, masked training).
    """
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # a device or dtype without a fused kernel
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def load_batch(
    images: np.ndarray,
    labels: torch.Tensor,
    idx: torch.Tensor,
    flips: torch.Tensor | None,
    input_size: int | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training batch ``idx`` of uint8 ``images``: normalised input (flipped where
    ``flips`` is True) and float labels, on ``device``."""
    x = to_tensor(images[idx.numpy()], input_size, device)
    if flips is not None:
        for i in flips.nonzero().flatten().tolist():  # mirror the chosen faces in place
            x[i] = x[i].flip(2)
    return x, labels[idx].to(device, non_blocking=True)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    scaler: torch.amp.GradScaler | None = None,
    enforcer: MaskEnforcer | None = None,
    amp: bool = False,
    mask_weights: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step (forward, backward, optimizer) with the mask enforced; returns
    the logits and the loss.

    The gradients are masked before the step, so Adam's moments stay zero at pruned positions.
    ``mask_weights=False`` skips the second pass, w ← m ⊙ w after the step: with zero
    gradients, zero moments and zero weights, Adam's update (its L2 decay included) is exactly
    zero there, so :func:`fit` re-applies the mask once per epoch only, as a safety net.
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=amp):
        logits = model(x).reshape(len(x), -1)[:, 0]
    loss = criterion(logits.float(), y)
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    if enforcer is not None:
        enforcer.mask_grads()
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if enforcer is not None and mask_weights:
        enforcer.mask_weights()
    return logits, loss


def fit(
    model: nn.Module,
    train: FaceSplit,
    val: FaceSplit,
    *,
    input_size: int | None,
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    batch_size: int = 32,
    max_epochs: int = 100,
    patience: int = 10,
    monitor: str = "val_loss",
    augment: bool = True,
    max_train_samples: int | None = None,
    amp: bool = True,
    device: torch.device | str = "cpu",
    seed: int = 0,
    mask: Mapping[str, torch.Tensor] | None = None,
    save_epochs: Iterable[int] = (),
) -> FitResult:
    """Train ``model`` with Adam and early stopping; the best validation weights are loaded
    into ``model`` at the end. ``mask`` keeps pruned weights at zero; ``save_epochs`` keeps
    CPU copies of the weights after those epochs (0: before training) for rewinding."""
    from deepfake_lth.pruning import MaskEnforcer

    if monitor not in MONITORS:
        raise UserError(f"train.monitor: {monitor!r} is not one of {', '.join(MONITORS)}")
    if len(train) == 0:
        raise UserError("the train split is empty: check the dataset's manifest.csv splits")
    if len(val) == 0:
        raise UserError("the val split is empty: early stopping needs validation faces")
    device = torch.device(device)
    use_amp = _amp_enabled(amp, device)
    train = _subset(train, max_train_samples, seed)
    save_epochs = {int(e) for e in save_epochs}

    torch.manual_seed(seed)  # dropout and anything else drawn from the global generator
    gen = torch.Generator().manual_seed(seed)  # data order and flips
    model.to(device)
    enforcer = MaskEnforcer(model, mask) if mask is not None else None
    if enforcer is not None:
        enforcer.mask_weights()
    optimizer = build_optimizer(model, lr=lr, weight_decay=weight_decay)
    criterion = nn.BCEWithLogitsLoss()
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    labels_all = torch.from_numpy(np.asarray(train.labels, dtype=np.float32))

    result = FitResult()
    if 0 in save_epochs:
        result.epoch_states[0] = _cpu_state(model)
    better = (
        (lambda new, best: new < best) if monitor == "val_loss" else (lambda new, best: new > best)
    )
    best = math.inf if monitor == "val_loss" else -math.inf
    since_best = 0
    n = len(train)
    n_batches = math.ceil(n / batch_size)
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        with _progress(n_batches, f"epoch {epoch}") as bar:
            for sl in _batches(n, batch_size):
                idx = order[sl]
                if len(idx) < 2 and seen:  # a batch of one breaks batch norm: skip it
                    bar.update(1)
                    continue
                x, y = load_batch(
                    train.images, labels_all, idx, flips[sl] if augment else None, input_size,
                    device
                )
                logits, loss = train_step(
                    model, optimizer, criterion, x, y, scaler=scaler, enforcer=enforcer,
                    amp=use_amp, mask_weights=False
                )
                loss_sum += loss.detach() * len(idx)
                correct += ((logits.detach() > 0) == (y > 0.5)).sum()
                seen += len(idx)
                bar.update(1)
        if enforcer is not None:  # exact zeros already (see train_step); kept as a safety net
            enforcer.mask_weights()
        val_metrics = evaluate(model, val, input_size, device, max(batch_size, 256), amp)
        record = {
            "epoch": epoch,
            "train_loss": float(loss_sum) / max(seen, 1),
            "train_acc": float(correct) / max(seen, 1),
            "val_loss": val_metrics["loss"],
            "val_acc": val_metrics["acc"],
            "val_auc": val_metrics["auc"],
            "seconds": time.perf_counter() - t0,
        }
        result.history.append(record)
        result.epochs = epoch
        if epoch in save_epochs:
            result.epoch_states[epoch] = _cpu_state(model)
        value = record[monitor]
        improved = not math.isnan(value) and better(value, best)
        if improved:
            best, since_best = value, 0
            result.best_epoch = epoch
            result.best_state = _cpu_state(model)
        else:
            since_best += 1
        log.info(
            "epoch %d/%d: train loss %.4f acc %.3f | val loss %.4f acc %.3f%s (%.1fs)",
            epoch,
            max_epochs,
            record["train_loss"],
            record["train_acc"],
            record["val_loss"],
            record["val_acc"],
            " *" if improved else "",
            record["seconds"],
        )
        if since_best >= patience:
            result.stopped_early = True
            log.info("early stopping after epoch %d (best epoch %d)", epoch, result.best_epoch)
            break
    result.train_seconds = time.perf_counter() - start
    missing = sorted(e for e in save_epochs if e not in result.epoch_states)
    for e in missing:  # training stopped before epoch e: keep its last weights instead
        log.warning(
            "training stopped after epoch %d, before epoch %d; the weights of epoch %d stand in "
            "for epoch %d",
            result.epochs,
            e,
            result.epochs,
            e,
        )
        result.epoch_states[e] = _cpu_state(model)
    if result.best_state:
        model.load_state_dict(result.best_state)
    else:  # every validation value was NaN: keep the last weights
        result.best_epoch = result.epochs
        result.best_state = _cpu_state(model)
    return result
