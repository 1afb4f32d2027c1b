"""Training of one detector on a packed face dataset: the fit loop, in parts.

One process, no DataLoader workers: batches are read by index from the packed
``faces.npy`` (:class:`deepfake_lth.data.store.FaceImages`; the split is never copied into
memory) in an order drawn from a seeded generator and converted per batch on the device, so
a run is fixed by its seed (on the CPU bit for bit). On CUDA the next batch is read on a
background thread into pinned memory and copied with ``non_blocking``,
``cudnn.benchmark`` is on, and AMP runs in bf16 where the device has it (fp16 with a
GradScaler elsewhere). Adam on BCEWithLogitsLoss of a single logit, early stopping on the
validation loss or accuracy, the best validation weights restored at the end. A mask, when
given, is enforced at every step (:class:`deepfake_lth.pruning.masks.MaskEnforcer`). With a
:class:`deepfake_lth.training.resume.ResumeState` the state is saved at the end of every epoch and a
rerun continues from there, ending bit-identical to an uninterrupted run on the CPU.

The parts, in the paper's words: :func:`train_step` (one optimisation step with the mask
enforced), :func:`train_epoch` (one pass over the train split), :func:`early_stopping` (the
validation check that keeps the best weights), :func:`save_training_state` and
:func:`restore_training_state` (the resume state of an interrupted job) and
:func:`restore_best_weights`; :func:`fit` runs them epoch by epoch.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.store import FaceSplit
from deepfake_lth.training.batches import (
    batch_slices,
    load_batch,
    prefetch_enabled,
    prefetched,
    read_batch,
)
from deepfake_lth.training.device import amp_dtype
from deepfake_lth.training.evaluate import evaluate
from deepfake_lth.training.hparams import MONITORS, TrainingHparams

if TYPE_CHECKING:
    from deepfake_lth.pruning.masks import MaskEnforcer
    from deepfake_lth.training.resume import ResumeState, StopSignals

log = logging.getLogger(__name__)


@dataclass
class Distillation:
    """Knowledge distillation from a teacher (Hinton et al. 2015) for a single-logit detector:
    the loss is (1 − weight)·BCE(z, y) + weight·T²·BCE(z / T, σ(z_teacher / T)), the soft
    target being the teacher's temperature-softened p(fake); T² keeps the soft term's gradient
    on the scale of the label term's."""

    teacher: nn.Module
    temperature: float = 4.0
    weight: float = 0.5

    def __post_init__(self) -> None:
        if not self.temperature > 0 or not 0 <= self.weight <= 1:
            raise UserError(f"distill: temperature must be > 0 and weight in [0, 1], got "
                            f"{self.temperature} and {self.weight}")

    def blend(self, loss: torch.Tensor, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The label loss ``loss`` of ``logits`` blended with the teacher's soft targets."""
        t = float(self.temperature)
        with torch.no_grad():
            soft = torch.sigmoid(self.teacher(x).reshape(len(x), -1)[:, 0].float() / t)
        kd = nn.functional.binary_cross_entropy_with_logits(logits.float() / t, soft)
        return (1 - self.weight) * loss + self.weight * t * t * kd


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
    resumed_from: list[int] = field(default_factory=list)  # last completed epoch at each resume


@dataclass
class Training:
    """The state of one training run that outlives an epoch: what a resume state saves."""

    model: nn.Module
    net: nn.Module  # the model, compiled when asked
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    enforcer: MaskEnforcer | None
    generator: torch.Generator  # data order and flips
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None without AMP
    monitor: str
    distill: Distillation | None = None
    result: FitResult = field(default_factory=FitResult)
    best: float = math.nan
    since_best: int = 0
    elapsed_before: float = 0.0  # training seconds of the runs this one resumes

    def __post_init__(self) -> None:
        if math.isnan(self.best):
            self.best = math.inf if self.monitor == "val_loss" else -math.inf

    def better(self, new: float) -> bool:
        if math.isnan(new):
            return False
        return new < self.best if self.monitor == "val_loss" else new > self.best


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, file=sys.stderr, leave=False, disable=not sys.stderr.isatty()
    )


def _subset(split: FaceSplit, max_samples: int | None, seed: int) -> FaceSplit:
    """A fixed, seeded random subset of at most ``max_samples`` samples (a lazy view of a
    memory-mapped split stays lazy)."""
    if not max_samples or len(split) <= max_samples:
        return split
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(split), size=max_samples, replace=False))
    return split.subset(keep)


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
    amp_dtype: torch.dtype = torch.float16,
    mask_weights: bool = True,
    distill: Distillation | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step (forward, backward, optimizer) with the mask enforced; returns
    the logits and the loss.

    The gradients are masked before the step, so Adam's moments stay zero at pruned positions.
    ``mask_weights=False`` skips the second pass, w ← m ⊙ w after the step: with zero
    gradients, zero moments and zero weights, Adam's update (its L2 decay included) is exactly
    zero there, so :func:`fit` re-applies the mask once per epoch only, as a safety net.
    ``amp`` runs the forward under autocast in ``amp_dtype`` (bf16 needs no ``scaler``).
    ``distill``: the label loss is blended with a teacher's soft targets (:class:`Distillation`).
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=x.device.type, dtype=amp_dtype, enabled=amp):
        logits = model(x).reshape(len(x), -1)[:, 0]
    loss = criterion(logits.float(), y)
    if distill is not None:
        loss = distill.blend(loss, logits, x)
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


_CRITERION = nn.BCEWithLogitsLoss()


def check_splits(train: FaceSplit, val: FaceSplit, monitor: str) -> None:
    """The inputs :func:`fit` needs, each with the fix when missing."""
    if monitor not in MONITORS:
        raise UserError(f"train.monitor: {monitor!r} is not one of {', '.join(MONITORS)}")
    if len(train) == 0:
        raise UserError("the train split is empty: check the dataset's manifest.csv splits")
    if len(val) == 0:
        raise UserError("the val split is empty: early stopping needs validation faces")


def start_training(
    model: nn.Module,
    hparams: TrainingHparams,
    *,
    device: torch.device,
    seed: int,
    mask: Mapping[str, torch.Tensor] | None,
    distill: Distillation | None = None,
) -> Training:
    """Seed, move the model, enforce the mask, and build the optimizer and AMP scaler (and
    put a distillation teacher on the device, in eval mode)."""
    from deepfake_lth.pruning.masks import MaskEnforcer

    dtype = amp_dtype(hparams.amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels
    torch.manual_seed(seed)  # dropout and anything else drawn from the global generator
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    enforcer = MaskEnforcer(model, mask) if mask is not None else None
    if enforcer is not None:
        enforcer.mask_weights()
    optimizer = build_optimizer(model, lr=hparams.lr, weight_decay=hparams.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    net = torch.compile(model) if hparams.compile else model
    if distill is not None:
        distill.teacher.to(device).eval().requires_grad_(False)
    return Training(model, net, optimizer, scaler, enforcer, generator, device, dtype,
                    hparams.monitor, distill)


def restore_training_state(run: Training, saved: dict) -> int:
    """Continue from a resume state: weights, optimizer, scaler, generators, early-stopping
    counters and history as they were after the saved epoch. Returns that epoch."""
    from deepfake_lth.training.resume import restore_rng

    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scaler.load_state_dict(saved["scaler"])
    run.generator.set_state(saved["generator"])
    restore_rng(saved["rng"])
    run.best, run.since_best = saved["best"], saved["since_best"]
    result = run.result
    result.best_epoch = saved["best_epoch"]
    result.best_state = saved["best_state"]
    result.stopped_early = saved["stopped_early"]
    result.history = list(saved["history"])
    result.epoch_states = dict(saved["epoch_states"])
    result.epochs = int(saved["epoch"])
    result.resumed_from = [*saved["resumed_from"], result.epochs]
    run.elapsed_before = float(saved["train_seconds"])
    log.info("resumed from epoch %d (the state saved after it)", result.epochs)
    return result.epochs


def save_training_state(run: Training, resume: ResumeState, epoch: int, elapsed: float) -> None:
    """Save everything :func:`restore_training_state` needs to continue after ``epoch``."""
    resume.save(
        _resume_payload(
            epoch=epoch, model=run.model, optimizer=run.optimizer, scaler=run.scaler,
            gen=run.generator, result=run.result, best=run.best, since_best=run.since_best,
            elapsed=elapsed,
        )
    )


def train_epoch(
    run: Training,
    train: FaceSplit,
    labels: torch.Tensor,
    epoch: int,
    *,
    batch_size: int,
    augment: bool,
    input_size: int | None,
    prefetch: bool | None,
    stop: StopSignals | None,
    resume: ResumeState | None,
) -> tuple[float, float]:
    """One pass over ``train`` in a seeded order, with seeded flips; returns the mean train
    loss and accuracy. A stop request ends the job after the current step."""
    n = len(train)
    n_batches = math.ceil(n / batch_size)
    run.net.train()
    order = torch.randperm(n, generator=run.generator)
    flips = torch.rand(n, generator=run.generator) < 0.5
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device, dtype=torch.long)
    seen = 0
    # a last batch of one breaks batch norm: skipped (unless it is the only one)
    steps = [sl for sl in batch_slices(n, batch_size) if sl.stop - sl.start > 1 or sl.start == 0]
    order_np = order.numpy()
    pin = run.device.type == "cuda"
    batches = prefetched(
        lambda sl: read_batch(train.images, order_np[sl], pin), steps,
        prefetch_enabled(prefetch, run.device),
    )
    with _progress(n_batches, f"epoch {epoch}") as bar, closing(batches):
        for sl, raw in zip(steps, batches, strict=True):
            idx = order[sl]
            x, y = load_batch(train.images, labels, idx, flips[sl] if augment else None,
                              input_size, run.device, raw=raw)
            logits, loss = train_step(
                run.net, run.optimizer, _CRITERION, x, y, scaler=run.scaler,
                enforcer=run.enforcer, amp=run.dtype is not None,
                amp_dtype=run.dtype or torch.float16, mask_weights=False, distill=run.distill,
            )
            loss_sum += loss.detach() * len(idx)
            correct += ((logits.detach() > 0) == (y > 0.5)).sum()
            seen += len(idx)
            bar.update(1)
            if stop is not None and stop.requested:
                _stop(epoch, resume, stop, mid_epoch=True)
        bar.update(n_batches - len(steps))
    if run.enforcer is not None:  # exact zeros already (see train_step); kept as a safety net
        run.enforcer.mask_weights()
    return float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)


def early_stopping(run: Training, record: dict, hparams: TrainingHparams,
                   elapsed: float | None = None) -> bool:
    """Keep the weights of the best validation epoch so far; True once ``patience`` epochs
    have passed without improvement and ``min_epochs`` are done (training stops). Logs the
    epoch's progress line (``elapsed``: the training seconds so far, resumed runs included),
    the line the console shows for a running job (:mod:`deepfake_lth.workflow.console`)."""
    improved = run.better(record[run.monitor])
    if improved:
        run.best, run.since_best = record[run.monitor], 0
        run.result.best_epoch = record["epoch"]
        run.result.best_state = _cpu_state(run.model)
    else:
        run.since_best += 1
    log.info(
        "epoch %d/%d: train loss %.4f acc %.3f | val loss %.4f acc %.3f auc %.4f%s (%.1fs, "
        "%.0fs in all)",
        record["epoch"], hparams.max_epochs, record["train_loss"], record["train_acc"],
        record["val_loss"], record["val_acc"], record.get("val_auc", float("nan")),
        " *" if improved else "", record["seconds"],
        record["seconds"] if elapsed is None else elapsed,
    )
    if run.since_best >= hparams.patience and record["epoch"] >= hparams.min_epochs:
        run.result.stopped_early = True
        log.info("early stopping after epoch %d (best epoch %d)", record["epoch"],
                 run.result.best_epoch)
    return run.result.stopped_early


def restore_best_weights(run: Training, save_epochs: set[int]) -> None:
    """Load the best validation weights into the model; epochs asked for rewinding that were
    never reached get the last weights instead."""
    result = run.result
    for e in sorted(e for e in save_epochs if e not in result.epoch_states):
        log.warning(
            "training stopped after epoch %d, before epoch %d; the weights of epoch %d stand in "
            "for epoch %d", result.epochs, e, result.epochs, e,
        )
        result.epoch_states[e] = _cpu_state(run.model)
    if result.best_state:
        run.model.load_state_dict(result.best_state)
    else:  # every validation value was NaN: keep the last weights
        result.best_epoch = result.epochs
        result.best_state = _cpu_state(run.model)


def fit(
    model: nn.Module,
    train: FaceSplit,
    val: FaceSplit,
    hparams: TrainingHparams | None = None,
    *,
    input_size: int | None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    mask: Mapping[str, torch.Tensor] | None = None,
    save_epochs: Iterable[int] = (),
    prefetch: bool | None = None,
    resume: ResumeState | None = None,
    stop: StopSignals | None = None,
    distill: Distillation | None = None,
) -> FitResult:
    """Train ``model`` as ``hparams`` say (Adam, early stopping); the best validation weights
    are loaded into ``model`` at the end. ``mask`` keeps pruned weights at zero;
    ``save_epochs`` keeps CPU copies of the weights after those epochs (0: before training) for
    rewinding; ``prefetch``: read ahead on a thread (None: on CUDA only). ``resume``: save the
    training state after every epoch and continue from a saved one (the caller clears it once
    the outputs are written). ``stop``: when ``stop.requested``, end the current step and raise
    :class:`deepfake_lth.training.resume.StopRequested` (a stop mid-epoch discards that epoch,
    so a resumed run stays bit-identical). ``distill``: a teacher whose soft targets are
    blended with the label loss (:class:`Distillation`)."""
    hp = hparams or TrainingHparams.from_dict()
    check_splits(train, val, hp.monitor)
    device = torch.device(device)
    train = _subset(train, hp.max_train_samples, seed)
    save_epochs = {int(e) for e in save_epochs}
    run = start_training(model, hp, device=device, seed=seed, mask=mask, distill=distill)
    labels = torch.from_numpy(np.asarray(train.labels, dtype=np.float32))
    saved = resume.load() if resume is not None else None
    last = restore_training_state(run, saved) if saved is not None else 0
    if saved is None and 0 in save_epochs:
        run.result.epoch_states[0] = _cpu_state(model)
    start = time.perf_counter()
    done = run.result.stopped_early
    for epoch in range(last + 1, hp.max_epochs + 1):
        if done:
            break
        t0 = time.perf_counter()
        train_loss, train_acc = train_epoch(
            run, train, labels, epoch, batch_size=hp.batch_size, augment=hp.augment,
            input_size=input_size, prefetch=prefetch, stop=stop, resume=resume,
        )
        val_metrics = evaluate(run.net, val, input_size, device, hp.eval_batch_size, hp.amp,
                               prefetch)
        record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                  "val_loss": val_metrics["loss"], "val_acc": val_metrics["acc"],
                  "val_auc": val_metrics["auc"], "seconds": time.perf_counter() - t0}
        run.result.history.append(record)
        run.result.epochs = epoch
        if epoch in save_epochs:
            run.result.epoch_states[epoch] = _cpu_state(model)
        elapsed = run.elapsed_before + time.perf_counter() - start
        done = early_stopping(run, record, hp, elapsed)
        if resume is not None:
            save_training_state(run, resume, epoch, elapsed)
        if stop is not None and stop.requested:
            _stop(epoch, resume, stop, mid_epoch=False)
    run.result.train_seconds = run.elapsed_before + time.perf_counter() - start
    restore_best_weights(run, save_epochs)
    return run.result


def _resume_payload(
    *,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    gen: torch.Generator,
    result: FitResult,
    best: float,
    since_best: int,
    elapsed: float,
) -> dict:
    """Everything :func:`fit` needs to continue after ``epoch`` as if never stopped."""
    from deepfake_lth.training.resume import capture_rng

    return {
        "epoch": epoch,
        "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "generator": gen.get_state(),
        "rng": capture_rng(),
        "best": best,
        "since_best": since_best,
        "best_epoch": result.best_epoch,
        "best_state": result.best_state,
        "stopped_early": result.stopped_early,
        "history": result.history,
        "epoch_states": result.epoch_states,
        "train_seconds": elapsed,
        "resumed_from": list(result.resumed_from),
    }


def _stop(epoch: int, resume: ResumeState | None, stop: StopSignals, *, mid_epoch: bool) -> None:
    """Raise StopRequested, saying which epoch's state a rerun continues from."""
    from deepfake_lth.training.resume import StopRequested

    done = epoch - 1 if mid_epoch else epoch  # the epoch of the state that stands
    when = f"{'during' if mid_epoch else 'after'} epoch {epoch}"
    if resume is not None and done > 0:
        where = f"a rerun resumes after epoch {done} ({resume.path})"
    elif resume is not None:
        where = "no epoch completed: a rerun starts over"
    else:
        where = "no resume state is kept: a rerun starts over"
    log.warning("stop requested %s: %s", when, where)
    raise StopRequested(
        f"stopped {when}; {where}",
        signum=getattr(stop, "signum", None),
        state=resume.path if resume is not None else None,
        epoch=done,
    )
