"""``deepfake-lth transfer``: a ticket of dataset A trained on dataset B (Table I), and its
two baselines: B's own dense network (``--baseline``) and A's dense network fine-tuned on B
without a mask (``--finetune``, method ``dense-finetuned``), which separates what pretraining
on A gives from what the ticket's mask gives."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.files import atomic_write, read_metrics, write_metrics
from deepfake_lth.stages.runner import (
    Job,
    add_common_arguments,
    build,
    load_into,
    prior_epochs,
    spec_from_args,
    train_and_write,
)
from deepfake_lth.stages.spec import StageSpec

DENSE_FINETUNED = "dense-finetuned"  # transfer baseline: A's dense network fine-tuned on B


def transfer(
    faces_dir: str | Path,
    ticket_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    weights: str = "trained",
    spec: Mapping[str, Any] | str | StageSpec | None = None,
) -> dict[str, Any]:
    """Train dataset A's ticket (``ticket_dir``: mask and weights) on dataset B
    (``faces_dir``) with the mask fixed. ``weights``: ``trained`` (θ2 = m1 ⊙ θ1, A's ticket
    checkpoint) or ``init`` (A's θ0 from ``dense_dir`` under A's mask)."""
    from deepfake_lth.pruning.checkpoints import load_mask, load_state
    from deepfake_lth.pruning.masks import mask_state

    if weights not in ("trained", "init"):
        raise UserError(f"transfer.weights: {weights!r} is not one of trained, init")
    ticket_dir, dense_dir = Path(ticket_dir), Path(dense_dir)
    source = read_metrics(ticket_dir)
    mask = load_mask(ticket_dir / "mask.pt")
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    model = build(model_name, job.spec)
    if weights == "trained":
        start = load_state(ticket_dir / "checkpoint.pt")
    else:
        start = load_state(dense_dir / "init.pt")
    load_into(model, mask_state(start, mask), f"the {weights} weights of {ticket_dir}")
    return train_and_write(
        job,
        model=model,
        mask=mask,
        prior=prior_epochs("none" if weights == "trained" else "init", source),
        meta={
            "method": source.get("method"),
            "criterion": source.get("criterion"),
            "round": source.get("round"),
            "target_sparsity": source.get("sparsity"),
            "source_dataset": source.get("dataset"),
            "source_test_acc": source.get("test_acc"),
            "ticket": str(ticket_dir),
            "weights": weights,
            "rewind": "none" if weights == "trained" else "init",
        },
    )


def finetune_dense(
    faces_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    spec: Mapping[str, Any] | str | StageSpec | None = None,
) -> dict[str, Any]:
    """Dataset A's dense network (``dense_dir``: its trained checkpoint) trained on dataset B
    (``faces_dir``) with the ticket's transfer schedule and no mask: method
    ``dense-finetuned``."""
    from deepfake_lth.pruning.checkpoints import load_state

    dense_dir = Path(dense_dir)
    source = read_metrics(dense_dir)
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    model = build(model_name, job.spec)
    load_into(model, load_state(dense_dir / "checkpoint.pt"), str(dense_dir / "checkpoint.pt"))
    return train_and_write(
        job,
        model=model,
        mask=None,
        prior=prior_epochs("none", source),
        meta={
            "method": DENSE_FINETUNED,
            "criterion": None,
            "round": 0,
            "target_sparsity": 0.0,
            "source_dataset": source.get("dataset"),
            "source_test_acc": source.get("test_acc"),
            "ticket": str(dense_dir),
            "weights": "trained",
            "rewind": "none",
        },
    )


def transfer_dense(
    dense_dir: str | Path, out_dir: str | Path, source_dataset: str | None = None
) -> dict[str, Any]:
    """The dense baseline of a transfer pair: dataset B's own dense metrics (and checkpoint),
    copied with method ``dense`` and the source dataset noted."""
    dense_dir, out_dir = Path(dense_dir), Path(out_dir)
    metrics = read_metrics(dense_dir)
    metrics.update({"method": "dense", "source_dataset": source_dataset, "weights": None})
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint.pt", "predictions.csv"):
        src_path = dense_dir / name
        if src_path.is_file():  # a copy, not a link: a fresh mtime keeps Snakemake consistent
            with src_path.open("rb") as src:
                atomic_write(out_dir / name, lambda fh, src=src: shutil.copyfileobj(src, fh),
                             binary=True)
    write_metrics(out_dir / "metrics.json", metrics)
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, faces_required=False)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--ticket", help="dataset A's ticket folder (mask.pt, checkpoint.pt)")
    group.add_argument(
        "--finetune",
        help="dataset A's dense/ folder: fine-tune its checkpoint on B without a mask "
        "(method dense-finetuned)",
    )
    group.add_argument(
        "--baseline",
        help="dataset B's own dense/ folder: copy its metrics as the transfer's dense baseline",
    )
    parser.add_argument("--dense", help="dataset A's dense/ folder (θ0, for --weights init)")
    parser.add_argument("--weights", default="trained", choices=["trained", "init"],
                        help="start from the ticket's trained weights or from A's θ0 under its mask")
    parser.add_argument("--source-dataset", help="dataset A's name (for --baseline)")


def run(args: argparse.Namespace) -> int:
    if args.baseline:
        transfer_dense(args.baseline, args.out, args.source_dataset)
        return 0
    if not args.faces:
        what = "--finetune" if args.finetune else "--ticket"
        raise UserError(f"transfer {what} needs --faces (dataset B's packed faces folder)")
    if args.finetune:
        finetune_dense(args.faces, args.finetune, args.out, args.model, args.seed,
                       spec_from_args(args))
        return 0
    if args.weights == "init" and not args.dense:
        raise UserError("transfer --weights init needs --dense (dataset A's dense/ folder)")
    transfer(args.faces, args.ticket, args.dense or "", args.out, args.model, args.seed,
             args.weights, spec_from_args(args))
    return 0
