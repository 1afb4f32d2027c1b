"""Training and evaluation of one detector on a packed face dataset.

One process, no DataLoader workers: batches are read by index from the packed
``faces.npy`` (:class:`deepfake_lth.data.FaceImages`; the split is never copied into
memory) in an order drawn from a seeded generator and converted per batch on the device, so
a run is fixed by its seed (on the CPU bit for bit). On CUDA the next batch is read on a
background thread into pinned memory and copied with ``non_blocking``,
``cudnn.benchmark`` is on, and AMP runs in bf16 where the device has it (fp16 with a
GradScaler elsewhere). Adam on BCEWithLogitsLoss of a single logit, early stopping on the
validation loss or accuracy, the best validation weights restored at the end. A mask, when
given, is enforced at every step (:class:`deepfake_lth.pruning.MaskEnforcer`). With a
:class:`deepfake_lth.resume.ResumeState` the state is saved at the end of every epoch and a
rerun continues from there, ending bit-identical to an uninterrupted run on the CPU.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from deepfake_lth.data import FaceSplit, to_tensor
from deepfake_lth.errors import UserError
from deepfake_lth.scoring import roc_auc, video_accuracy

if TYPE_CHECKING:
    from deepfake_lth.pruning import MaskEnforcer
    from deepfake_lth.resume import ResumeState, StopSignals

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
    resumed_from: list[int] = field(default_factory=list)  # last completed epoch at each resume


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def amp_dtype(amp: bool, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of a run: bf16 on a CUDA device that has it, fp16 on other CUDA
    devices (with a GradScaler), None (no autocast) on the CPU or without ``amp``."""
    device = torch.device(device)
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _amp_enabled(amp: bool, device: torch.device) -> bool:
    return amp_dtype(amp, device) is not None


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, file=sys.stderr, leave=False, disable=not sys.stderr.isatty()
    )


def _batches(n: int, batch_size: int) -> Iterable[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def read_batch(images, idx: np.ndarray, pin: bool = False) -> torch.Tensor:
    """uint8 rows ``idx`` of ``images`` (a :class:`deepfake_lth.data.FaceImages` view or an
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


def _prefetch(prefetch: bool | None, device: torch.device) -> bool:
    """Read ahead on a background thread? None: on CUDA, where reading overlaps the device's
    work; not on the CPU, where the demo's small batches come from the page cache and the
    thread only competes for the cores (bench/scale.py measures both)."""
    return device.type == "cuda" if prefetch is None else bool(prefetch)


@torch.inference_mode()
def _predict(
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
    slices = list(_batches(len(split), batch_size))
    batches = prefetched(lambda sl: read_batch(split.images, positions[sl], pin), slices,
                         _prefetch(prefetch, device))
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
    """Frame accuracy (at 0.5), ROC AUC (NaN with one class), video accuracy (mean fake
    probability per video at 0.5), mean BCE loss and per-sample probabilities. Batches are
    read from ``split`` as they are used (``prefetch``: one ahead, on a background thread;
    None: on CUDA only, see :func:`fit`)."""
    device = torch.device(device)
    logits = _predict(model, split, input_size, device, batch_size, amp, prefetch)
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
        "video_acc": video_accuracy(probs, labels, np.asarray(split.video_ids)),
        "n": n,
        "probs": probs,
    }


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step (forward, backward, optimizer) with the mask enforced; returns
    the logits and the loss.

    The gradients are masked before the step, so Adam's moments stay zero at pruned positions.
    ``mask_weights=False`` skips the second pass, w ← m ⊙ w after the step: with zero
    gradients, zero moments and zero weights, Adam's update (its L2 decay included) is exactly
    zero there, so :func:`fit` re-applies the mask once per epoch only, as a safety net.
    ``amp`` runs the forward under autocast in ``amp_dtype`` (bf16 needs no ``scaler``).
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=x.device.type, dtype=amp_dtype, enabled=amp):
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
    from deepfake_lth.resume import capture_rng

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
    compile: bool = False,
    prefetch: bool | None = None,
    resume: ResumeState | None = None,
    stop: StopSignals | None = None,
) -> FitResult:
    """Train ``model`` with Adam and early stopping; the best validation weights are loaded
    into ``model`` at the end. ``mask`` keeps pruned weights at zero; ``save_epochs`` keeps
    CPU copies of the weights after those epochs (0: before training) for rewinding.

    ``compile``: run the model through ``torch.compile``. ``prefetch``: read the next batch
    on a background thread (None: on CUDA only). ``resume``: save the whole training state at the end of every
    epoch and, when it holds a state of this job, continue from it (the caller clears it once
    the job's outputs are written). ``stop``: when its ``requested`` flag is set, finish the
    current step and raise :class:`deepfake_lth.resume.StopRequested`, the state of the last
    completed epoch saved (a stop mid-epoch discards that epoch's partial work, which keeps a
    resumed run bit-identical to an uninterrupted one).
    """
    from deepfake_lth.pruning import MaskEnforcer

    if monitor not in MONITORS:
        raise UserError(f"train.monitor: {monitor!r} is not one of {', '.join(MONITORS)}")
    if len(train) == 0:
        raise UserError("the train split is empty: check the dataset's manifest.csv splits")
    if len(val) == 0:
        raise UserError("the val split is empty: early stopping needs validation faces")
    device = torch.device(device)
    dtype = amp_dtype(amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels
    pin = device.type == "cuda"
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
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    net = torch.compile(model) if compile else model
    labels_all = torch.from_numpy(np.asarray(train.labels, dtype=np.float32))

    result = FitResult()
    better = (
        (lambda new, best: new < best) if monitor == "val_loss" else (lambda new, best: new > best)
    )
    best = math.inf if monitor == "val_loss" else -math.inf
    since_best = 0
    first_epoch = 1
    elapsed_before = 0.0
    saved = resume.load() if resume is not None else None
    if saved is not None:
        from deepfake_lth.resume import restore_rng

        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        gen.set_state(saved["generator"])
        restore_rng(saved["rng"])
        best, since_best = saved["best"], saved["since_best"]
        result.best_epoch = saved["best_epoch"]
        result.best_state = saved["best_state"]
        result.stopped_early = saved["stopped_early"]
        result.history = list(saved["history"])
        result.epoch_states = dict(saved["epoch_states"])
        result.epochs = first_epoch = int(saved["epoch"])
        result.resumed_from = [*saved["resumed_from"], result.epochs]
        first_epoch += 1
        elapsed_before = float(saved["train_seconds"])
        log.info("resumed from epoch %d (the state saved after it)", result.epochs)
    elif 0 in save_epochs:
        result.epoch_states[0] = _cpu_state(model)
    n = len(train)
    n_batches = math.ceil(n / batch_size)
    start = time.perf_counter()
    done = result.stopped_early or since_best >= patience
    for epoch in range(first_epoch, max_epochs + 1):
        if done:
            break
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        # a last batch of one breaks batch norm: skipped (unless it is the only one)
        steps = [sl for sl in _batches(n, batch_size) if sl.stop - sl.start > 1 or sl.start == 0]
        order_np = order.numpy()
        batches = prefetched(
            lambda sl, order_np=order_np: read_batch(train.images, order_np[sl], pin),
            steps,
            _prefetch(prefetch, device),
        )
        with _progress(n_batches, f"epoch {epoch}") as bar, closing(batches):
            for sl, raw in zip(steps, batches, strict=True):
                idx = order[sl]
                x, y = load_batch(
                    train.images, labels_all, idx, flips[sl] if augment else None, input_size,
                    device, raw=raw
                )
                logits, loss = train_step(
                    net, optimizer, criterion, x, y, scaler=scaler, enforcer=enforcer,
                    amp=dtype is not None, amp_dtype=dtype or torch.float16, mask_weights=False
                )
                loss_sum += loss.detach() * len(idx)
                correct += ((logits.detach() > 0) == (y > 0.5)).sum()
                seen += len(idx)
                bar.update(1)
                if stop is not None and stop.requested:
                    _stop(epoch, resume, stop, mid_epoch=True)
            bar.update(n_batches - len(steps))
        if enforcer is not None:  # exact zeros already (see train_step); kept as a safety net
            enforcer.mask_weights()
        val_metrics = evaluate(net, val, input_size, device, max(batch_size, 256), amp, prefetch)
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
            result.stopped_early = done = True
            log.info("early stopping after epoch %d (best epoch %d)", epoch, result.best_epoch)
        if resume is not None:
            resume.save(
                _resume_payload(
                    epoch=epoch, model=model, optimizer=optimizer, scaler=scaler, gen=gen,
                    result=result, best=best, since_best=since_best,
                    elapsed=elapsed_before + time.perf_counter() - start,
                )
            )
        if stop is not None and stop.requested:
            _stop(epoch, resume, stop, mid_epoch=False)
    result.train_seconds = elapsed_before + time.perf_counter() - start
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


def _stop(epoch: int, resume: ResumeState | None, stop: StopSignals, *, mid_epoch: bool) -> None:
    """Raise StopRequested, saying which epoch's state a rerun continues from."""
    from deepfake_lth.resume import StopRequested

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
