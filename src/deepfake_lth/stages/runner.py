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
from deepfake_lth.core.schema import read_spec
from deepfake_lth.stages.spec import StageSpec, input_size_of, parse_spec

log = logging.getLogger(__name__)


def dataset_name(faces_dir: str | Path) -> str:
    """``results/{dataset}/faces`` → ``dataset``."""
    path = Path(faces_dir).absolute()
    return path.parent.name if path.name == "faces" else path.name


def setup(spec: StageSpec, seed: int):
    """Threads, device and seeds of a job; returns the torch device."""
    import torch

    from deepfake_lth.training.device import resolve_device, seed_everything

    torch.set_num_threads(int(spec.threads))
    device = resolve_device(spec.device)
    seed_everything(seed, device)
    return device


def build(model_name: str, spec: StageSpec | Mapping[str, Any], pretrained: bool = False):
    """The registry model of ``model_name`` at the spec's input size (random weights from the
    global generator; ImageNet weights only when ``pretrained`` and the spec names a file)."""
    from deepfake_lth.models import build_model

    spec = parse_spec(spec)
    return build_model(
        model_name,
        input_size=input_size_of(model_name, spec),
        pretrained=spec.pretrained if pretrained else None,
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


@dataclass(frozen=True)
class Job:
    """One training job: the packed faces it trains on, the run folder it writes, its model,
    seed and parsed spec, and the device :func:`setup` chose."""

    faces_dir: Path
    out_dir: Path
    model_name: str
    seed: int
    spec: StageSpec
    device: Any

    @classmethod
    def start(cls, faces_dir: str | Path, out_dir: str | Path, model_name: str, seed: int,
              spec: StageSpec | Mapping[str, Any] | str | None) -> Job:
        """Threads, device and seeds set up (:func:`setup`) for a job of ``spec``."""
        spec = parse_spec(spec)
        return cls(Path(faces_dir), Path(out_dir), model_name, seed, spec, setup(spec, seed))

    @property
    def input_size(self) -> int:
        return input_size_of(self.model_name, self.spec)


def train(job: Job, model, mask: Mapping | None, splits, *, meta: Mapping[str, Any],
          save_epochs: tuple[int, ...] = (), teacher=None):
    """Fit ``model`` (weights already set) on the train split with ``mask`` enforced (and
    distilled from ``teacher``), with a resume state keyed by everything the job computes
    from; SIGTERM/SIGINT end the step, keep the state and exit non-zero."""
    from deepfake_lth.training.fit import Distillation, fit
    from deepfake_lth.training.resume import (
        ResumeState,
        StopRequested,
        StopSignals,
        resume_key,
        state_path,
    )

    train_split, val_split, _ = splits
    resume = ResumeState(state_path(job.out_dir), resume_key(
        stage="train_and_write", model=job.model_name, seed=job.seed,
        spec=_resume_spec(job.spec), meta=dict(meta), save_epochs=list(save_epochs),
        init=model.state_dict(), mask=mask,
        inputs=[job.faces_dir / "faces.npy", job.faces_dir / "manifest.csv"],
    ))
    distill = None if teacher is None else Distillation(
        teacher, job.spec.kd.temperature, job.spec.kd.weight)
    with StopSignals() as stop:
        try:
            result = fit(model, train_split, val_split, job.spec.train,
                         input_size=job.input_size, device=job.device, seed=job.seed,
                         mask=mask, save_epochs=save_epochs, resume=resume, stop=stop,
                         distill=distill)
        except StopRequested as exc:
            raise stop.stopped(exc, resume) from None
    return result, resume


def _resume_spec(spec: StageSpec) -> dict[str, Any]:
    """The spec as the resume key sees it: what the job computes from, not how it runs."""
    import dataclasses

    out = dataclasses.asdict(spec)
    out.pop("device"), out.pop("threads")
    return out


def evaluate_run(job: Job, model, splits) -> dict[str, Any]:
    """The trained network scored on the validation and test splits: test scores, test
    p(fake) per face, and the accuracies at thresholds chosen on validation (frames, and
    video means). Non-finite scores are an error naming the run."""
    import numpy as np

    from deepfake_lth.training.evaluate import evaluate
    from deepfake_lth.training.scoring import thresholded_scores

    _, val_split, test_split = splits
    hp = job.spec.train
    test = evaluate(model, test_split, job.input_size, job.device, hp.eval_batch_size, hp.amp)
    val = evaluate(model, val_split, job.input_size, job.device, hp.eval_batch_size, hp.amp)
    for name, scores in (("test", test), ("validation", val)):
        bad = int((~np.isfinite(scores["probs"])).sum())
        if bad:
            raise UserError(f"{job.out_dir}: {bad} {name} faces score a non-finite p(fake): "
                            "the training diverged; lower train.lr or turn off train.amp, "
                            "then rerun this job")
    thresholds = thresholded_scores(
        (val["probs"], val_split.labels, val_split.video_ids),
        (test["probs"], test_split.labels, test_split.video_ids))
    return {"test": test, "val": val, "thresholds": thresholds}


def write_run(job: Job, model, mask: Mapping | None, result, scores: Mapping[str, Any],
              splits, meta: Mapping[str, Any], prior: int) -> dict[str, Any]:
    """checkpoint.pt (+ mask.pt, epoch{E}.pt), predictions.csv (test faces: video, label,
    p(fake)) and metrics.json (last)."""
    import numpy as np
    import pandas as pd

    from deepfake_lth.pruning.checkpoints import atomic_torch_save, save_mask
    from deepfake_lth.pruning.masks import prunable_parameters

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if mask is not None:
        stray = sum(int(((state[n] != 0) & ~mask[n]).sum()) for n in mask)
        if stray:  # the enforcer guarantees this; a failure here is a bug, not bad input
            raise RuntimeError(f"{stray} pruned weights are nonzero after training")
    for epoch, epoch_state in result.epoch_states.items():
        atomic_torch_save(epoch_state, job.out_dir / f"epoch{epoch}.pt")
    atomic_torch_save(state, job.out_dir / "checkpoint.pt")
    if mask is not None:
        save_mask(job.out_dir / "mask.pt", mask)
    test_split = splits[2]
    write_csv(pd.DataFrame({"row": np.asarray(test_split.rows),
                            "video_id": np.asarray(test_split.video_ids),
                            "label": np.asarray(test_split.labels),
                            "prob": np.asarray(scores["test"]["probs"])}),
              job.out_dir / "predictions.csv")
    metrics = run_metrics(job, model, mask, state, list(prunable_parameters(model)), result,
                          scores, test_split, prior)
    metrics.update(meta)
    write_metrics(job.out_dir / "metrics.json", metrics)
    return metrics


def run_metrics(job: Job, model, mask, state, names, result, scores, test_split,
                prior: int) -> dict[str, Any]:
    """metrics.json of a run folder (docs/ARCHITECTURE.md lists its keys)."""
    import numpy as np

    from deepfake_lth.pruning.masks import sparsity, state_sparsity

    test, val = scores["test"], scores["val"]
    hp = job.spec.train
    return {
        "dataset": dataset_name(job.faces_dir), "model": job.model_name, "seed": job.seed,
        "method": None, "criterion": None, "round": 0,
        "sparsity": state_sparsity(state, names),
        "target_sparsity": 0.0 if mask is None else sparsity(mask),
        **parameter_counts(model),
        **{f"test_{k}": test[k] for k in ("acc", "auc", "loss", "eer", "ap")},
        **{f"video_{k}": test[f"video_{k}"] for k in ("acc", "auc", "eer", "ap")},
        "test_samples": test["n"],
        "test_videos": len(set(np.asarray(test_split.video_ids).tolist())),
        **scores["thresholds"],
        "val_acc": val["acc"], "val_loss": val["loss"], "val_auc": val["auc"],
        "epochs": result.epochs, "budget_epochs": int(hp.max_epochs),
        "min_epochs": int(hp.min_epochs),
        "cumulative_epochs": int(prior) + int(result.epochs),
        "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
        "train_seconds": result.train_seconds, "device": device_name(job.device),
        "threads": int(job.spec.threads), "rewind": job.spec.prune.rewind,
        "input_size": job.input_size, "train": hp.as_dict(),
        "layer_sparsity": {n: state_sparsity(state, [n]) for n in names},
        "history": result.history, "resumed_from": list(result.resumed_from),
    }


def train_and_write(job: Job, *, model, mask: Mapping | None, meta: dict[str, Any],
                    save_epochs: tuple[int, ...] = (), prior: int = 0,
                    teacher=None) -> dict[str, Any]:
    """Train ``model`` on the job's faces (:func:`train`), score it (:func:`evaluate_run`)
    and write the run folder (:func:`write_run`). ``prior``: epochs of training the start
    weights have had since θ0 (:func:`prior_epochs`); metrics.json records
    ``budget_epochs`` (the job's cap) and ``cumulative_epochs`` (``prior`` + this job's)."""
    from deepfake_lth.data.store import load_splits
    from deepfake_lth.pruning.masks import layer_sparsity, sparsity

    splits = load_splits(job.faces_dir, ("train", "val", "test"))
    if mask is not None:
        log.info("mask sparsity %.4f; per layer: %s", sparsity(mask),
                 ", ".join(f"{k} {v:.3f}" for k, v in layer_sparsity(mask).items()))
    result, resume = train(job, model, mask, splits, meta=meta, save_epochs=save_epochs,
                           teacher=teacher)
    scores = evaluate_run(job, model, splits)
    metrics = write_run(job, model, mask, result, scores, splits, meta, prior)
    resume.clear()  # the job is complete: its state is of no further use
    log.info("%s %s seed %d %s: sparsity %.4f, test acc %.4f auc %.4f video acc %.4f (%d "
             "epochs)", metrics["dataset"], job.model_name, job.seed, metrics["method"],
             metrics["sparsity"], metrics["test_acc"], metrics["test_auc"],
             metrics["video_acc"], result.epochs)
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


def add_chain_arguments(parser: argparse.ArgumentParser, criteria, what: str = "round") -> None:
    """The arguments of a round of a chain (IMP, KD, structured): round k−1, θ0, k, criterion."""
    parser.add_argument("--prev", required=True, help=f"folder of {what} k−1 (dense/ for k = 1)")
    parser.add_argument("--dense", required=True, help="dense/ folder (θ0 for rewinding)")
    parser.add_argument("--round", type=int, required=True, help="round k (≥ 1)")
    parser.add_argument("--criterion", required=True, choices=list(criteria),
                        help="pruning criterion (deepfake_lth.pruning.criteria)")


def spec_from_args(args: argparse.Namespace) -> StageSpec:
    """The parsed ``--spec`` with ``--device``/``--threads`` applied."""
    return parse_spec(apply_execution(read_spec(args.spec), args))


__all__ = [
    "add_chain_arguments",
    "add_common_arguments",
    "build",
    "cumulative_epochs",
    "Job",
    "dataset_name",
    "device_name",
    "evaluate_run",
    "load_into",
    "parameter_counts",
    "prior_epochs",
    "read_metrics",
    "rewound_start",
    "setup",
    "spec_from_args",
    "train",
    "train_and_write",
    "write_metrics",
    "write_run",
]
