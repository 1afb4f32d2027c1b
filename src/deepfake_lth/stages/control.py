"""``deepfake-lth control``: control baselines of the IMP ticket at round k.

- ``reinit``: the ticket's mask with fresh random weights (seed + 1000), trained once;
- ``random-mask``: a random mask with the ticket's per-layer counts on θ0, trained once;
- ``random-prune-trained``: the ticket's own round k−1 network, of which the same number of
  surviving weights per layer as IMP removes at round k is removed *at random*, rewound and
  retrained like the ticket. Its training is the ticket's, so a ticket above it owes that to
  the magnitude criterion, not to the extra rounds of training (the matched control used in
  the winning-ticket verdict; see docs/ARCHITECTURE.md and the README).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.files import read_metrics
from deepfake_lth.pruning.methods import CONTROLS
from deepfake_lth.stages.runner import (
    Job,
    add_common_arguments,
    build,
    load_into,
    rewound_start,
    spec_from_args,
    train_and_write,
)
from deepfake_lth.stages.spec import parse_spec

CONTROL_SEED_OFFSET = 1000  # fresh weights / random masks of the controls: seed + 1000


def random_prune_like(prev_mask: Mapping, ticket_mask: Mapping, seed: int) -> dict:
    """``prev_mask`` with, in every layer, as many survivors removed at random as the ticket
    removed there (``ticket_mask`` ⊆ ``prev_mask`` gives the counts)."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for name, prev in prev_mask.items():
        prev = prev.bool()
        ticket = ticket_mask[name].bool()
        if tuple(prev.shape) != tuple(ticket.shape):
            raise UserError(f"masks disagree on the shape of {name}: round k−1 and round k of "
                            "one IMP chain must come from the same model")
        n_remove = int(prev.sum()) - int(ticket.sum())
        if n_remove < 0:
            raise UserError(f"{name}: the round-k ticket keeps more weights than round k−1; "
                            "pass round k−1 of the same chain as --prev")
        alive = prev.flatten().nonzero().squeeze(1)
        drop = alive[torch.randperm(alive.numel(), generator=gen)[:n_remove]]
        flat = prev.flatten().clone()
        flat[drop] = False
        out[name] = flat.view(prev.shape)
    return out


def control(
    faces_dir: str | Path,
    imp_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    name: str,
    spec: Mapping[str, Any] | str | None = None,
    *,
    prev_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Control ``name`` at the sparsity of the IMP ticket in ``imp_dir`` (round k);
    ``random-prune-trained`` also needs round k−1 of its chain (``prev_dir``; dense/ for k = 1)."""
    from deepfake_lth.pruning.checkpoints import load_mask, load_state
    from deepfake_lth.pruning.masks import fresh_init, full_mask, mask_state, random_mask_like

    spec = parse_spec(spec)
    if name not in CONTROLS:
        raise UserError(f"control {name!r} is not one of {', '.join(CONTROLS)}")
    imp_dir, dense_dir = Path(imp_dir), Path(dense_dir)
    imp_metrics = read_metrics(imp_dir)
    imp_mask = load_mask(imp_dir / "mask.pt")
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    model = build(model_name, spec)
    other_seed = seed + CONTROL_SEED_OFFSET
    meta: dict[str, Any] = {}
    if name == "reinit":
        mask = imp_mask
        # fresh weights from the architecture's own initializer (no pretrained file)
        start = mask_state(fresh_init(lambda: build(model_name, spec), other_seed), mask)
        rewind = "reinit"
    elif name == "random-mask":
        mask = random_mask_like(imp_mask, other_seed)
        start = mask_state(load_state(dense_dir / "init.pt"), mask)
        rewind = "init"
    else:
        if prev_dir is None:
            raise UserError("control random-prune-trained needs --prev: round k−1 of the IMP "
                            "chain (dense/ for round 1)")
        prev_dir = Path(prev_dir)
        prev_state = load_state(prev_dir / "checkpoint.pt")
        load_into(model, prev_state, str(prev_dir / "checkpoint.pt"))
        k = int(imp_metrics.get("round") or 1)
        prev_mask = full_mask(model) if k == 1 else load_mask(prev_dir / "mask.pt")
        mask = random_prune_like(prev_mask, imp_mask, other_seed + k)
        start = rewound_start(spec["prune"]["rewind"], prev_state, dense_dir, mask)
        rewind = spec["prune"]["rewind"]
        meta["control_prev"] = str(prev_dir)
    load_into(model, start, f"the {name} start weights")
    return train_and_write(
        job,
        model=model,
        mask=mask,
        meta={
            "method": f"control-{name}",
            "criterion": imp_metrics.get("criterion"),
            "round": imp_metrics.get("round"),
            "target_sparsity": imp_metrics.get("target_sparsity"),
            "rewind": rewind,
            "control_of": imp_metrics.get("method"),
            "control_seed": other_seed,
            **meta,
        },
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--imp", required=True, help="the IMP round folder controlled for")
    parser.add_argument("--dense", required=True, help="dense/ folder (θ0)")
    parser.add_argument("--name", required=True, choices=list(CONTROLS), help="which control")
    parser.add_argument("--prev", default=None,
                        help="round k−1 of the IMP chain (dense/ for k = 1); random-prune-trained")


def run(args: argparse.Namespace) -> int:
    control(args.faces, args.imp, args.dense, args.out, args.model, args.seed, args.name,
            spec_from_args(args), prev_dir=args.prev)
    return 0
