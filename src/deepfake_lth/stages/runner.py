"""The one runner every training stage uses: set up, train with the mask enforced, evaluate,
write the run folder (``checkpoint.pt``, ``mask.pt``, ``metrics.json``, ``predictions.csv``).

A stage (dense, IMP round, one-shot, control, transfer, SNIP/GraSP, structured round) only
decides the mask and the start weights, then calls :func:`train_and_write`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.execution import add_execution_arguments, apply_execution
from deepfake_lth.core.files import read_metrics, write_csv, write_metrics
from deepfake_lth.stages.spec import input_size_of, parse_spec

log = logging.getLogger(__name__)


def dataset_name(faces_dir: str | Path) -> str:
    """``results/{dataset}/faces`` → ``dataset``."""
    path = Path(faces_dir).absolute()
    return path.parent.name if path.name == "faces" else path.name


def setup(spec: dict[str, Any], seed: int):
    """Threads, device and seeds of a job; returns the torch device."""
    import torch

    from deepfake_lth.training.device import resolve_device, seed_everything

    torch.set_num_threads(int(spec["threads"]))
    device = resolve_device(spec["device"])
    seed_everything(seed, device)
    return device


def build(model_name: str, spec: dict[str, Any], pretrained: bool = False):
    """The registry model of ``model_name`` at the spec's input size (random weights from the
    global generator; ImageNet weights only when ``pretrained`` and the spec names a file)."""
    from deepfake_lth.models import build_model

    return build_model(
        model_name,
        input_size=input_size_of(model_name, spec),
        pretrained=spec["pretrained"] if pretrained else None,
    )


def load_into(model, state: Mapping, source: str) -> None:
    """``model.load_state_dict(state)``; a mismatch is a UserError naming ``source``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(
            f"{source} does not fit this model ({str(exc).splitlines()[0]}); was it trained "
            "with another model or input_size?"
        ) from None


def parameter_counts(model) -> dict[str, int]:
    """All and prunable parameters of ``model``, and how many of each are nonzero."""
    from deepfake_lth.pruning.masks import prunable_parameters

    params = list(model.parameters())
    prunable = list(prunable_parameters(model).values())
    return {
        "params_total": sum(p.numel() for p in params),
        "params_nonzero": sum(int(p.count_nonzero()) for p in params),
        "prunable_total": sum(p.numel() for p in prunable),
        "prunable_nonzero": sum(int(p.count_nonzero()) for p in prunable),
    }


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def rewound_start(mode: str, prev_state, dense_dir: Path, mask):
    """Masked weights a pruned network starts from under rewind ``mode``."""
    from deepfake_lth.pruning.checkpoints import load_state
    from deepfake_lth.pruning.masks import mask_state
    from deepfake_lth.pruning.rewind import parse_rewind, rewind_weights

    kind, epoch = parse_rewind(mode)
    init_state = load_state(Path(dense_dir) / "init.pt") if kind == "init" else None
    epoch_states = None
    if kind == "epoch":
        path = Path(dense_dir) / f"epoch{epoch}.pt"
        if not path.is_file():
            raise UserError(
                f"{path} is missing: rewind {mode} needs the dense run to save epoch {epoch}; "
                "rerun the dense stage with this prune.rewind"
            )
        epoch_states = {epoch: load_state(path)}
    state = rewind_weights(mode, prev_state, init_state, epoch_states)
    return mask_state(state, mask)


def cumulative_epochs(metrics: Mapping[str, Any]) -> int:
    """Epochs of training behind a finished run (its metrics.json): ``cumulative_epochs``, or
    for a run written before it was recorded, its own ``epochs``."""
    value = metrics.get("cumulative_epochs", metrics.get("epochs"))
    return int(value or 0)


def prior_epochs(rewind: str, weights_from: Mapping[str, Any] | None = None) -> int:
    """Epochs of training the start weights of a network have had since θ0, before its own
    job: with rewind ``none`` all of those of the run they come from (``weights_from``, its
    metrics), with ``epoch:E`` E, with ``init`` (or fresh weights, or no such run) none."""
    from deepfake_lth.pruning.rewind import parse_rewind

    if weights_from is None:
        return 0
    kind, epoch = parse_rewind(rewind)
    return {"none": cumulative_epochs(weights_from), "epoch": epoch or 0}.get(kind, 0)


def rewind_epochs(spec: dict[str, Any]) -> tuple[int, ...]:
    """Epochs the dense run keeps weights of, for rewinding (``epoch:E``)."""
    from deepfake_lth.pruning.rewind import parse_rewind

    kind, epoch = parse_rewind(spec["prune"]["rewind"])
    return (epoch,) if kind == "epoch" else ()


def val_threshold(probs, labels) -> float:
    """The decision threshold on p(fake) that maximises accuracy on the validation split
    (midpoint between neighbouring scores; 0.5 when the split is empty or one-class)."""
    import numpy as np

    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels) > 0.5
    if len(probs) == 0 or labels.all() or not labels.any():
        return 0.5
    order = np.argsort(probs, kind="mergesort")
    p, y = probs[order], labels[order]
    # threshold between p[i-1] and p[i]: predicted fake from i on; correct = reals below + fakes from i
    reals_below = np.concatenate([[0], np.cumsum(~y)])
    fakes_from = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    correct = reals_below + fakes_from
    distinct = np.concatenate([[True], p[1:] > p[:-1], [True]])  # cut only between distinct scores
    correct = np.where(distinct, correct, -1)
    best = int(np.argmax(correct))
    if best == 0:
        return float(p[0]) / 2
    if best == len(p):
        return (float(p[-1]) + 1.0) / 2
    return (float(p[best - 1]) + float(p[best])) / 2


@dataclass(frozen=True)
class Job:
    """One training job: the packed faces it trains on, the run folder it writes, its model,
    seed and parsed spec, and the device :func:`setup` chose."""

    faces_dir: Path
    out_dir: Path
    model_name: str
    seed: int
    spec: dict[str, Any]
    device: Any

    @classmethod
    def start(cls, faces_dir: str | Path, out_dir: str | Path, model_name: str, seed: int,
              spec: dict[str, Any]) -> Job:
        """Threads, device and seeds set up (:func:`setup`) for a job of a parsed ``spec``."""
        return cls(Path(faces_dir), Path(out_dir), model_name, seed, spec, setup(spec, seed))


def train_and_write(
    job: Job,
    *,
    model,
    mask: Mapping | None,
    meta: dict[str, Any],
    save_epochs: tuple[int, ...] = (),
    prior: int = 0,
    teacher=None,
) -> dict[str, Any]:
    """Train ``model`` (weights already set) on the job's faces with ``mask`` enforced (and
    distilled from ``teacher`` with the spec's ``distill`` temperature and weight), evaluate
    on the validation and test splits, write checkpoint.pt (+ mask.pt, epoch{E}.pt),
    predictions.csv (test faces: video, label, p(fake)) and metrics.json (last).
    ``prior``: epochs of training the start weights have had since θ0 (:func:`prior_epochs`);
    metrics.json records ``budget_epochs`` (the job's cap, ``train.max_epochs``) and
    ``cumulative_epochs`` (``prior`` + the epochs this job trained)."""
    import numpy as np

    from deepfake_lth.data.store import load_splits
    from deepfake_lth.pruning.checkpoints import atomic_torch_save, save_mask
    from deepfake_lth.pruning.masks import (
        layer_sparsity,
        prunable_parameters,
        sparsity,
        state_sparsity,
    )
    from deepfake_lth.training.evaluate import evaluate
    from deepfake_lth.training.fit import Distillation, fit
    from deepfake_lth.training.resume import (
        ResumeState,
        StopRequested,
        StopSignals,
        resume_key,
        state_path,
    )

    faces_dir, out_dir, model_name = job.faces_dir, job.out_dir, job.model_name
    seed, spec, device = job.seed, job.spec, job.device
    train_split, val_split, test_split = load_splits(faces_dir, ("train", "val", "test"))
    # resume state of this job, keyed by everything it computes from (docs: resume.py)
    resume = ResumeState(state_path(out_dir), resume_key(
        stage="train_and_write", model=model_name, seed=seed, spec=spec, meta=meta,
        save_epochs=list(save_epochs), init=model.state_dict(), mask=mask,
        inputs=[Path(faces_dir) / "faces.npy", Path(faces_dir) / "manifest.csv"],
    ))
    input_size = input_size_of(model_name, spec)
    t = spec["train"]
    if mask is not None:
        log.info(
            "mask sparsity %.4f; per layer: %s",
            sparsity(mask),
            ", ".join(f"{k} {v:.3f}" for k, v in layer_sparsity(mask).items()),
        )
    with StopSignals() as stop:  # SIGTERM/SIGINT: end the step, keep the state, exit non-zero
        try:
            result = fit(
                model,
                train_split,
                val_split,
                input_size=input_size,
                lr=t["lr"],
                weight_decay=t["weight_decay"],
                batch_size=t["batch_size"],
                max_epochs=t["max_epochs"],
                patience=t["patience"],
                monitor=t["monitor"],
                augment=t["augment"],
                max_train_samples=t["max_train_samples"],
                amp=t["amp"],
                device=device,
                seed=seed,
                mask=mask,
                save_epochs=save_epochs,
                compile=bool(t.get("compile", False)),
                resume=resume,
                stop=stop,
                distill=None if teacher is None else Distillation(
                    teacher, spec["distill"]["temperature"], spec["distill"]["weight"]),
            )
        except StopRequested as exc:
            raise stop.stopped(exc, resume) from None
    eval_bs = max(int(t["batch_size"]), 256)
    test = evaluate(model, test_split, input_size, device, eval_bs, t["amp"])
    val = evaluate(model, val_split, input_size, device, eval_bs, t["amp"])
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    names = list(prunable_parameters(model))
    if mask is not None:
        stray = sum(int(((state[n] != 0) & ~mask[n]).sum()) for n in mask)
        if stray:  # the enforcer guarantees this; a failure here is a bug, not bad input
            raise RuntimeError(f"{stray} pruned weights are nonzero after training")

    threshold = val_threshold(val["probs"], val_split.labels)
    test_labels = np.asarray(test_split.labels)
    test_acc_val_threshold = (
        float(np.mean((test["probs"] > threshold) == (test_labels > 0.5)))
        if len(test_labels) else float("nan")
    )
    for epoch, epoch_state in result.epoch_states.items():
        atomic_torch_save(epoch_state, out_dir / f"epoch{epoch}.pt")
    atomic_torch_save(state, out_dir / "checkpoint.pt")
    if mask is not None:
        save_mask(out_dir / "mask.pt", mask)
    import pandas as pd

    write_csv(pd.DataFrame({"row": np.asarray(test_split.rows),
                            "video_id": np.asarray(test_split.video_ids),
                            "label": test_labels, "prob": np.asarray(test["probs"])}),
              out_dir / "predictions.csv")
    metrics: dict[str, Any] = {
        "dataset": dataset_name(faces_dir),
        "model": model_name,
        "seed": seed,
        "method": None,
        "criterion": None,
        "round": 0,
        "sparsity": state_sparsity(state, names),
        "target_sparsity": 0.0 if mask is None else sparsity(mask),
        **parameter_counts(model),
        "test_acc": test["acc"],
        "test_auc": test["auc"],
        "test_loss": test["loss"],
        "test_eer": test["eer"],
        "test_ap": test["ap"],
        "video_acc": test["video_acc"],
        "video_auc": test["video_auc"],
        "video_eer": test["video_eer"],
        "video_ap": test["video_ap"],
        "test_samples": test["n"],
        "test_videos": len(set(np.asarray(test_split.video_ids).tolist())),
        "val_threshold": threshold,
        "test_acc_val_threshold": test_acc_val_threshold,
        "val_acc": val["acc"],
        "val_loss": val["loss"],
        "val_auc": val["auc"],
        "epochs": result.epochs,
        "budget_epochs": int(t["max_epochs"]),
        "cumulative_epochs": int(prior) + int(result.epochs),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds": result.train_seconds,
        "device": device_name(device),
        "threads": int(spec["threads"]),
        "rewind": spec["prune"]["rewind"],
        "input_size": input_size,
        "train": t,
        "layer_sparsity": {n: state_sparsity(state, [n]) for n in names},
        "history": result.history,
        "resumed_from": list(result.resumed_from),
    }
    metrics.update(meta)
    write_metrics(out_dir / "metrics.json", metrics)
    resume.clear()  # the job is complete: its state is of no further use
    log.info(
        "%s %s seed %d %s: sparsity %.4f, test acc %.4f auc %.4f video acc %.4f (%d epochs)",
        metrics["dataset"],
        model_name,
        seed,
        metrics["method"],
        metrics["sparsity"],
        test["acc"],
        test["auc"],
        test["video_acc"],
        result.epochs,
    )
    return metrics


# --------------------------------------------------------------------------- command line


def add_common_arguments(parser: argparse.ArgumentParser, faces_required: bool = True) -> None:
    """Arguments every training stage takes."""
    parser.add_argument(
        "--faces", required=faces_required, help="packed dataset folder (results/{dataset}/faces)"
    )
    parser.add_argument("--out", required=True, help="output folder of this stage (a run folder)")
    parser.add_argument("--model", required=True, help="registry model name, e.g. mesonet")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, data order, masks")
    parser.add_argument(
        "--spec", default="{}", help="JSON config slice the stage depends on (or @file.json); "
        "see deepfake_lth.stages.spec"
    )
    add_execution_arguments(parser)


def spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed ``--spec`` with ``--device``/``--threads`` applied."""
    return apply_execution(parse_spec(args.spec), args)


__all__ = [
    "add_common_arguments",
    "build",
    "cumulative_epochs",
    "Job",
    "dataset_name",
    "device_name",
    "load_into",
    "parameter_counts",
    "prior_epochs",
    "read_metrics",
    "rewind_epochs",
    "rewound_start",
    "setup",
    "spec_from_args",
    "train_and_write",
    "val_threshold",
    "write_metrics",
]
