"""``deepfake-lth oneshot``: prune the trained dense network once, straight to a sparsity.

Family :data:`FAMILY` (``oneshot-{criterion}/sparsity{pct}``), compared with IMP at the same
sparsity; its epoch budget is ``oneshot.budget`` (:func:`deepfake_lth.pruning.plan.oneshot_epochs`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning import plan
from deepfake_lth.pruning.criteria import CRITERIA, criterion_label
from deepfake_lth.stages.family import (
    CRITERION,
    ONESHOT,
    Family,
    exact_budget,
    faces_inputs,
    level_of,
    train_spec,
)
from deepfake_lth.stages.runner import (
    Job,
    add_common_arguments,
    build,
    load_into,
    prior_epochs,
    read_metrics,
    rewound_start,
    spec_from_args,
    train_and_write,
)
from deepfake_lth.stages.spec import StageSpec


def oneshot(
    faces_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    sparsity: float,
    criterion: str,
    spec: Mapping[str, Any] | str | StageSpec | None = None,
) -> dict[str, Any]:
    """Prune the trained dense network once, straight to ``sparsity``, rewind and retrain."""
    from deepfake_lth.pruning.checkpoints import load_state
    from deepfake_lth.pruning.masks import full_mask, prune_to_sparsity

    if not 0 < sparsity < 1:
        raise UserError(f"one-shot sparsity must be in (0, 1), got {sparsity!r}")
    dense_dir = Path(dense_dir)
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    spec = job.spec
    model = build(model_name, spec)
    dense_state = load_state(dense_dir / "checkpoint.pt")
    load_into(model, dense_state, str(dense_dir / "checkpoint.pt"))
    mask = prune_to_sparsity(dense_state, sparsity, criterion, mask=full_mask(model))
    start = rewound_start(spec.prune.rewind, dense_state, dense_dir, mask)
    load_into(model, start, "the rewound weights")
    return train_and_write(
        job,
        model=model,
        mask=mask,
        prior=prior_epochs(spec.prune.rewind, read_metrics(dense_dir)),
        meta={
            "method": f"oneshot-{criterion}",
            "criterion": criterion,
            # the IMP round this level matches (as methods.Level does); one pruning step
            "round": plan.nearest_round_at(spec.prune.rate, sparsity),
            "target_sparsity": float(sparsity),
        },
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--dense", required=True, help="dense/ folder (its checkpoint is pruned)")
    parser.add_argument("--sparsity", type=float, required=True,
                        help="target fraction of prunable weights removed, e.g. 0.59")
    parser.add_argument("--criterion", required=True, choices=list(CRITERIA),
                        help="pruning criterion (deepfake_lth.pruning.criteria)")


def run(args: argparse.Namespace) -> int:
    oneshot(args.faces, args.dense, args.out, args.model, args.seed, args.sparsity,
            args.criterion, spec_from_args(args))
    return 0


# --------------------------------------------------------------------------- the family


def _spec(config, job) -> dict[str, Any]:
    """The one-shot budget (``oneshot.budget``), the rewind mode and the rate (the level's
    round is recorded at it)."""
    _, sparsity = level_of(config, FAMILY, job)
    spec = train_spec(config, job.model, max_epochs=plan.oneshot_epochs(config, sparsity),
                      exact=exact_budget(config))
    spec["prune"]["rate"] = config["prune"]["rate"]
    return spec


def _inputs(config, job) -> dict[str, str]:
    return {**faces_inputs(job), "checkpoint": str(job.dense_dir / "checkpoint.pt"),
            "dense_metrics": str(job.dense_dir / "metrics.json"),
            "init": str(job.dense_dir / "init.pt")}


def _arguments(config, job) -> list[str]:
    _, sparsity = level_of(config, FAMILY, job)
    return ["--dense", str(job.dense_dir), "--sparsity", repr(float(sparsity)),
            "--criterion", FAMILY.groups(job.method)["criterion"]]


FAMILY = Family(
    name="oneshot", pattern=f"oneshot-{CRITERION}", level_dir="sparsity", stage="oneshot",
    module=__name__, rule="oneshot",
    help="prune the dense model once to a sparsity and retrain", roles=frozenset({ONESHOT}),
    planned=lambda config, model=None: [f"oneshot-{c}" for c in config["oneshot"]["criteria"]],
    levels=lambda config, method: [(plan.nearest_round(config, s), s)
                                   for s in plan.oneshot_sparsities(config)],
    label=lambda m: f"One-shot {criterion_label(m['criterion'])}", order=20,
    inputs=_inputs, spec=_spec, arguments=_arguments,
)
