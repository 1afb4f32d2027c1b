"""``deepfake-lth train``: round 0, the dense detector; θ0 is kept as ``init.pt`` for rewinding."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.stages.runner import (
    Job,
    add_common_arguments,
    build,
    spec_from_args,
    train_and_write,
)
from deepfake_lth.stages.spec import StageSpec


def train_dense(
    faces_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    spec: Mapping[str, Any] | str | StageSpec | None = None,
) -> dict[str, Any]:
    """Round 0: θ0 → ``init.pt``, the trained dense network → ``checkpoint.pt``, metrics;
    ``epoch{E}.pt`` too for each of the spec's ``save_epochs`` (rewind ``epoch:E``)."""
    from deepfake_lth.pruning.checkpoints import atomic_torch_save

    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    model = build(model_name, job.spec, pretrained=True)
    init = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_torch_save(init, Path(out_dir) / "init.pt")
    return train_and_write(
        job,
        model=model,
        mask=None,
        meta={"method": "dense", "criterion": None, "round": 0, "target_sparsity": 0.0},
        save_epochs=job.spec.save_epochs,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    train_dense(args.faces, args.out, args.model, args.seed, spec_from_args(args))
    return 0
