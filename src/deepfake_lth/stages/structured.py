"""``deepfake-lth structured-round``: one round of structured pruning (whole conv channels).

Round k removes ``prune.rate`` of the surviving channels of round k−1 by filter L1 norm
(:mod:`deepfake_lth.pruning.structured` holds the channel groups, masks and compaction), rewinds,
and retrains with the pruned channels held at zero.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning.plan import imp_sparsity
from deepfake_lth.pruning.structured import CRITERIA
from deepfake_lth.stages.imp import check_previous_round
from deepfake_lth.stages.runner import (
    Job,
    add_common_arguments,
    build,
    load_into,
    prior_epochs,
    rewound_start,
    spec_from_args,
    train_and_write,
)
from deepfake_lth.stages.spec import parse_spec

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
    spec: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """Structured round ``k``: prune ``prune.rate`` of the surviving channels of round k−1
    (``prev_dir``; round 0 is ``dense_dir``) by filter L1 norm, rewind, retrain with the
    pruned channels held at zero. Writes channels.pt, checkpoint.pt (full shape, pruned
    channels zero), mask.pt (the weight mask) and metrics.json (method
    ``structured-{criterion}``)."""
    from deepfake_lth.pruning.checkpoints import load_state
    from deepfake_lth.pruning.structured import (
        apply_channel_mask,
        channel_counts,
        channel_mask,
        channel_sparsity,
        channel_weight_mask,
        check_channel_mask,
        compact_model,
        count_parameters,
        load_channels,
        save_channels,
        stray_channel_params,
    )

    spec = parse_spec(spec)
    if criterion not in CRITERIA:
        raise UserError(f"structured criterion {criterion!r} is not one of {', '.join(CRITERIA)}")
    prev_dir, dense_dir, out_dir = Path(prev_dir), Path(dense_dir), Path(out_dir)
    prev_metrics = check_previous_round(prev_dir, k, "structured round")
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    model = build(model_name, spec)
    prev_state = load_state(prev_dir / "checkpoint.pt")
    load_into(model, prev_state, str(prev_dir / "checkpoint.pt"))
    if k == 1:
        prev_cmask = None
    else:
        path = prev_dir / "channels.pt"
        if not path.is_file():
            raise UserError(
                f"{path} is missing: round {k} needs the channel mask of structured round "
                f"{k - 1}; pass a structured round folder as --prev"
            )
        prev_cmask = check_channel_mask(model, load_channels(path), str(path))
    rate = spec["prune"]["rate"]
    cmask = channel_mask(model, prev_cmask, rate, criterion)
    mask = channel_weight_mask(model, cmask)
    start = rewound_start(spec["prune"]["rewind"], prev_state, dense_dir, mask)
    load_into(model, start, "the rewound weights")
    apply_channel_mask(model, cmask)
    compact = compact_model(model, cmask)
    save_channels(out_dir / "channels.pt", cmask)
    log.info(
        "channel sparsity %.4f; channels per layer: %s",
        channel_sparsity(cmask),
        ", ".join(f"{n} {c}" for n, c in channel_counts(cmask).items()),
    )
    metrics = train_and_write(
        job,
        model=model,
        mask=mask,
        prior=prior_epochs(spec["prune"]["rewind"], prev_metrics),
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--prev", required=True,
                        help="folder of structured round k−1 (dense/ for k = 1)")
    parser.add_argument("--dense", required=True, help="dense/ folder (θ0 for rewinding)")
    parser.add_argument("--round", type=int, required=True, help="round k (≥ 1)")
    parser.add_argument("--criterion", required=True, choices=list(CRITERIA),
                        help="global: one filter-L1 threshold over all channel groups; "
                        "local: the same fraction of every group")


def run(args: argparse.Namespace) -> int:
    structured_round(
        args.faces,
        args.prev,
        args.dense,
        args.out,
        args.model,
        args.seed,
        args.round,
        args.criterion,
        spec_from_args(args),
    )
    return 0
