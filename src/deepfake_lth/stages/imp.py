"""``deepfake-lth imp-round``: one round of iterative magnitude pruning (Algorithm 1).

Round k prunes ``rate`` of the weights that survived round k−1 by the configured criterion
(:mod:`deepfake_lth.pruning.criteria`), rewinds, and retrains with the mask enforced. With
``--rate`` the round belongs to IMP at another step size, method ``imp-{criterion}-rate{rate}``.
Families: :data:`FAMILY` (the paper's tickets) and :data:`STEP_SIZE_FAMILY`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.files import read_metrics
from deepfake_lth.pruning import plan
from deepfake_lth.pruning.criteria import CRITERIA, criterion_label
from deepfake_lth.stages.family import (
    CRITERION,
    STEP_SIZE,
    TICKET,
    Family,
    chain_arguments,
    chain_inputs,
    imp_rounds,
    round_spec,
)
from deepfake_lth.stages.runner import (
    Job,
    add_chain_arguments,
    add_common_arguments,
    build,
    load_into,
    prior_epochs,
    rewound_start,
    spec_from_args,
    train_and_write,
)
from deepfake_lth.stages.spec import StageSpec


def check_previous_round(prev_dir: Path, k: int, kind: str = "round") -> dict[str, Any]:
    """The metrics of round k−1 (``prev_dir``); UserError when it is another round."""
    if k < 1:
        raise UserError(f"{kind} must be ≥ 1, got {k}")
    prev_metrics = read_metrics(prev_dir)
    if prev_metrics.get("round") is not None and int(prev_metrics["round"]) != k - 1:
        raise UserError(
            f"{prev_dir}/metrics.json is round {prev_metrics['round']}, but round {k} needs "
            f"round {k - 1}; pass the previous round's folder as --prev"
        )
    return prev_metrics


def imp_round(
    faces_dir: str | Path,
    prev_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    k: int,
    criterion: str,
    spec: Mapping[str, Any] | str | StageSpec | None = None,
    *,
    rate: float | None = None,
) -> dict[str, Any]:
    """IMP round ``k``: prune ``rate`` (default: the spec's ``prune.rate``) of the surviving
    weights of round k−1 (``prev_dir``; round 0 is ``dense_dir``), rewind, retrain with the
    mask enforced. A ``rate`` writes method ``imp-{criterion}-rate{rate}``."""
    import dataclasses

    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    method = None
    if rate is not None:
        if not isinstance(rate, (int, float)) or not 0 < rate < 1:
            raise UserError(f"--rate must be in (0, 1), got {rate!r}")
        prune = dataclasses.replace(job.spec.prune, rate=float(rate))
        job = dataclasses.replace(job, spec=dataclasses.replace(job.spec, prune=prune))
        method = plan.step_size_method(criterion, rate)
    prev_dir, dense_dir = Path(prev_dir), Path(dense_dir)
    prev_metrics = check_previous_round(prev_dir, k, "IMP round")
    rate = job.spec.prune.rate
    prev_rate = prev_metrics.get("prune_rate") if method is not None and k > 1 else None
    if prev_rate is not None and not math.isclose(float(prev_rate), rate, rel_tol=1e-9):
        raise UserError(
            f"{prev_dir}/metrics.json was pruned at rate {prev_rate}, but {method} prunes at "
            f"rate {rate}; pass round {k - 1} of {method} as --prev"
        )
    model, mask = prune_and_rewind(job, prev_dir, dense_dir, k, criterion)
    return train_and_write(
        job, model=model, mask=mask, prior=prior_epochs(job.spec.prune.rewind, prev_metrics),
        meta={"method": method or f"imp-{criterion}", "criterion": criterion, "round": k,
              "target_sparsity": plan.imp_sparsity(rate, k), "prune_rate": rate},
    )


def prune_and_rewind(job: Job, prev_dir: Path, dense_dir: Path, k: int, criterion: str):
    """The model of round k before retraining, and its mask: round k−1's weights pruned by
    ``criterion`` at the spec's rate, rewound as the spec says."""
    from deepfake_lth.pruning.checkpoints import load_mask, load_state
    from deepfake_lth.pruning.masks import full_mask, magnitude_prune

    model = build(job.model_name, job.spec)
    prev_state = load_state(prev_dir / "checkpoint.pt")
    load_into(model, prev_state, str(prev_dir / "checkpoint.pt"))
    prev_mask = full_mask(model) if k == 1 else load_mask(prev_dir / "mask.pt")
    mask = magnitude_prune(prev_state, prev_mask, job.spec.prune.rate, criterion)
    start = rewound_start(job.spec.prune.rewind, prev_state, dense_dir, mask)
    load_into(model, start, "the rewound weights")
    return model, mask


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    add_chain_arguments(parser, CRITERIA)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="step size: prune this fraction of the surviving weights in this round, written "
        "as method imp-{criterion}-rate{rate} (default: the spec's prune.rate, method "
        "imp-{criterion})",
    )


def run(args: argparse.Namespace) -> int:
    imp_round(args.faces, args.prev, args.dense, args.out, args.model, args.seed, args.round,
              args.criterion, spec_from_args(args), rate=args.rate)
    return 0


# --------------------------------------------------------------------------- the families


def _step_rounds(config, method: str) -> list[tuple[int, float]]:
    rate, rounds = plan.step_size_rate(config, method)
    return imp_rounds(config, rounds, rate)


def _rate(method: str) -> float:
    return float(STEP_SIZE_FAMILY.groups(method)["rate"])


FAMILY = Family(
    name="imp", pattern=f"imp-{CRITERION}", level_dir="round", stage="imp-round",
    module=__name__, rule="imp_round", help="one iterative magnitude pruning round",
    roles=frozenset({TICKET}),
    planned=lambda config, model=None: [f"imp-{c}" for c in config["prune"]["criteria"]],
    levels=lambda config, method: imp_rounds(config),
    label=lambda m: f"IMP-{criterion_label(m['criterion'])}", order=10,
    inputs=lambda config, job: chain_inputs(config, FAMILY, job),
    spec=lambda config, job: round_spec(config, job.model),
    arguments=lambda config, job: chain_arguments(config, FAMILY, job),
)

STEP_SIZE_FAMILY = Family(
    name="imp-rate", pattern=f"imp-{CRITERION}-rate(?P<rate>0?\\.\\d+)", level_dir="round",
    stage="imp-round", module=__name__, rule="imp_round_rate",
    help="one iterative magnitude pruning round", roles=frozenset({STEP_SIZE}),
    planned=lambda config, model=None: [name for name, *_ in plan.step_sizes(config)],
    levels=_step_rounds,
    label=lambda m: f"IMP-{criterion_label(m['criterion'])} (rate {float(m['rate']):g})",
    order=60,
    inputs=lambda config, job: chain_inputs(config, STEP_SIZE_FAMILY, job),
    spec=lambda config, job: round_spec(config, job.model, _rate(job.method)),
    arguments=lambda config, job: [*chain_arguments(config, STEP_SIZE_FAMILY, job),
                                   "--rate", plan.rate_tag(_rate(job.method))],
)
