"""``deepfake-lth kd-round``: one IMP round retrained with the dense network as teacher.

Round k of method ``kd-{criterion}`` prunes and rewinds round k−1 of the same chain exactly as
an IMP round does (:func:`deepfake_lth.stages.imp.prune_and_rewind`), then retrains with the
label loss blended with the dense network's temperature-softened p(fake)
(:class:`deepfake_lth.training.fit.Distillation`; the spec's ``distill.temperature`` and
``distill.weight``). Compared with plain IMP at the same sparsities (role ``distilled``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.pruning.criteria import CRITERIA
from deepfake_lth.pruning.plan import imp_sparsity
from deepfake_lth.stages.imp import check_previous_round, prune_and_rewind
from deepfake_lth.stages.runner import (
    Job,
    add_common_arguments,
    build,
    load_into,
    prior_epochs,
    spec_from_args,
    train_and_write,
)
from deepfake_lth.stages.spec import parse_spec


def kd_round(
    faces_dir: str | Path,
    prev_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    k: int,
    criterion: str,
    spec: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """KD round ``k``: IMP round k of the ``kd-{criterion}`` chain, distilled from the dense
    network of ``dense_dir``."""
    from deepfake_lth.pruning.checkpoints import load_state

    spec = parse_spec(spec)
    prev_dir, dense_dir = Path(prev_dir), Path(dense_dir)
    prev_metrics = check_previous_round(prev_dir, k, "KD round")
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    teacher = build(model_name, spec)
    load_into(teacher, load_state(dense_dir / "checkpoint.pt"), str(dense_dir / "checkpoint.pt"))
    model, mask = prune_and_rewind(job, prev_dir, dense_dir, k, criterion)
    rate = spec["prune"]["rate"]
    return train_and_write(
        job,
        model=model,
        mask=mask,
        teacher=teacher,
        prior=prior_epochs(spec["prune"]["rewind"], prev_metrics),
        meta={
            "method": f"kd-{criterion}",
            "criterion": criterion,
            "round": k,
            "target_sparsity": imp_sparsity(rate, k),
            "prune_rate": rate,
            "teacher": str(dense_dir / "checkpoint.pt"),
            "kd_temperature": spec["distill"]["temperature"],
            "kd_weight": spec["distill"]["weight"],
        },
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--prev", required=True, help="round k−1 of the KD chain (dense/ for k = 1)")
    parser.add_argument("--dense", required=True, help="dense/ folder: the teacher, and θ0")
    parser.add_argument("--round", type=int, required=True, help="round k (≥ 1)")
    parser.add_argument("--criterion", required=True, choices=list(CRITERIA),
                        help="pruning criterion (deepfake_lth.pruning.criteria)")


def run(args: argparse.Namespace) -> int:
    kd_round(args.faces, args.prev, args.dense, args.out, args.model, args.seed, args.round,
             args.criterion, spec_from_args(args))
    return 0
