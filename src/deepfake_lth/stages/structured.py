"""``deepfake-lth structured-round``: one round of structured pruning (whole conv channels).

Round k removes ``prune.rate`` of the surviving channels of round k−1 by filter L1 norm
(:mod:`deepfake_lth.pruning.structured` holds the channel groups, masks and compaction), rewinds,
and retrains with the pruned channels held at zero. Family :data:`FAMILY`
(``structured-{criterion}/round{k}``, which also writes ``channels.pt``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning.plan import imp_sparsity
from deepfake_lth.stages.family import (
    LEVEL_FILES,
    STRUCTURED,
    Family,
    chain_arguments,
    chain_inputs,
    imp_rounds,
    round_spec,
)
from deepfake_lth.stages.imp import check_previous_round
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

log = logging.getLogger(__name__)


def structured_round(
    faces_dir: str | Path,
    prev_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    k: int,
    criterion: str,
    spec: Mapping[str, Any] | str | StageSpec | None = None,
) -> dict[str, Any]:
    """Structured round ``k``: prune ``prune.rate`` of the surviving channels of round k−1
    (``prev_dir``; round 0 is ``dense_dir``) by filter L1 norm, rewind, retrain with the
    pruned channels held at zero. Writes channels.pt, checkpoint.pt (full shape, pruned
    channels zero), mask.pt (the weight mask) and metrics.json (method
    ``structured-{criterion}``)."""
    from deepfake_lth.pruning.structured import (
        CRITERIA,
        channel_counts,
        channel_sparsity,
        count_parameters,
        stray_channel_params,
    )

    if criterion not in CRITERIA:
        raise UserError(f"structured criterion {criterion!r} is not one of {', '.join(CRITERIA)}")
    prev_dir, dense_dir, out_dir = Path(prev_dir), Path(dense_dir), Path(out_dir)
    prev_metrics = check_previous_round(prev_dir, k, "structured round")
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    model, mask, cmask, compact = prune_channels(job, prev_dir, dense_dir, k, criterion)
    rate = job.spec.prune.rate
    metrics = train_and_write(
        job,
        model=model,
        mask=mask,
        prior=prior_epochs(job.spec.prune.rewind, prev_metrics),
        meta={
            "method": f"structured-{criterion}",
            "criterion": criterion,
            "round": k,
            "prune_rate": rate,
            "channel_sparsity": channel_sparsity(cmask),
            "target_channel_sparsity": imp_sparsity(rate, k),
            "channels": channel_counts(cmask),
            "channels_total": {n: m.numel() for n, m in cmask.items()},
            "compact_params": count_parameters(compact),
        },
    )
    stray = stray_channel_params(model, cmask)
    if stray:  # the masks guarantee this; a failure here is a bug, not bad input
        raise RuntimeError(f"pruned channels have nonzero biases or BN parameters: {stray[:3]}")
    return metrics


def prune_channels(job: Job, prev_dir: Path, dense_dir: Path, k: int, criterion: str):
    """Round k−1's network with ``rate`` of its surviving channels removed by filter L1 norm,
    rewound, the pruned channels zeroed: (model, weight mask, channel mask, compacted model).
    Writes channels.pt."""
    from deepfake_lth.pruning.checkpoints import load_state
    from deepfake_lth.pruning.structured import (
        apply_channel_mask,
        channel_counts,
        channel_mask,
        channel_sparsity,
        channel_weight_mask,
        check_channel_mask,
        compact_model,
        load_channels,
        save_channels,
    )

    model = build(job.model_name, job.spec)
    prev_state = load_state(prev_dir / "checkpoint.pt")
    load_into(model, prev_state, str(prev_dir / "checkpoint.pt"))
    prev_cmask = None
    if k > 1:
        path = prev_dir / "channels.pt"
        if not path.is_file():
            raise UserError(
                f"{path} is missing: round {k} needs the channel mask of structured round "
                f"{k - 1}; pass a structured round folder as --prev"
            )
        prev_cmask = check_channel_mask(model, load_channels(path), str(path))
    cmask = channel_mask(model, prev_cmask, job.spec.prune.rate, criterion)
    mask = channel_weight_mask(model, cmask)
    start = rewound_start(job.spec.prune.rewind, prev_state, dense_dir, mask)
    load_into(model, start, "the rewound weights")
    apply_channel_mask(model, cmask)
    compact = compact_model(model, cmask)
    save_channels(job.out_dir / "channels.pt", cmask)
    log.info(
        "channel sparsity %.4f; channels per layer: %s",
        channel_sparsity(cmask),
        ", ".join(f"{n} {c}" for n, c in channel_counts(cmask).items()),
    )
    return model, mask, cmask, compact


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from deepfake_lth.pruning.structured import CRITERIA

    add_common_arguments(parser)
    add_chain_arguments(parser, CRITERIA, "structured round")


def run(args: argparse.Namespace) -> int:
    structured_round(args.faces, args.prev, args.dense, args.out, args.model, args.seed,
                     args.round, args.criterion, spec_from_args(args))
    return 0


# --------------------------------------------------------------------------- the family


def _planned(config, model=None) -> list[str]:
    if model is not None and model not in config["structured"]["models"]:
        return []
    return [f"structured-{c}" for c in config["structured"]["criteria"]]


def _structured_models() -> tuple[str, ...]:
    from deepfake_lth.models.registry import MODELS

    return tuple(n for n, s in MODELS.items() if s.channel_groups)


FAMILY = Family(
    name="structured", pattern="structured-(?P<criterion>global|local)", level_dir="round",
    stage="structured-round", module=__name__, rule="structured_round",
    help="one structured pruning round: remove whole conv filters",
    roles=frozenset({STRUCTURED}), planned=_planned,
    levels=lambda config, method: imp_rounds(config, config["structured"]["rounds"]),
    label=lambda m: f"Structured-{m['criterion'].capitalize()}", order=40,
    inputs=lambda config, job: chain_inputs(config, FAMILY, job),
    spec=lambda config, job: round_spec(config, job.model),
    arguments=lambda config, job: chain_arguments(config, FAMILY, job),
    outputs=(*LEVEL_FILES, "channels.pt"),
    registries={"structured-models": _structured_models()},
    rank=lambda m: ("global", "local").index(m["criterion"]),
)
