"""``deepfake-lth prune-init``: pruning at initialization (SNIP, GraSP), then training once.

Family :data:`FAMILY` (``snip|grasp/sparsity{pct}``); config section ``prune_init``. The
scores are :mod:`deepfake_lth.pruning.saliency`'s.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning import plan
from deepfake_lth.stages.family import (
    PRUNE_INIT,
    Family,
    alternatives,
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
    spec_from_args,
    train_and_write,
)
from deepfake_lth.stages.spec import StageSpec

log = logging.getLogger(__name__)

SCORES = ("snip", "grasp")  # the saliency scores of θ0: SNIP (Lee et al. 2019), GraSP (Wang et al. 2020)
LABELS = {"snip": "SNIP", "grasp": "GraSP"}


def score_batches(split, n_batches: int, batch_size: int, input_size: int, device, seed: int):
    """``n_batches`` training batches (x, y) for pruning at initialization: a seeded random
    draw of the split, without augmentation, on ``device``."""
    import numpy as np
    import torch

    from deepfake_lth.data.store import to_tensor

    if len(split) == 0:
        raise UserError("the train split is empty: pruning at initialization scores on it")
    if n_batches < 1 or batch_size < 1:
        raise UserError(f"score batches: need ≥ 1 batch of ≥ 1 face, got {n_batches}×{batch_size}")
    order = np.random.default_rng(seed).permutation(len(split))[: n_batches * batch_size]
    out = []
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start : start + batch_size])
        x = to_tensor(split.images[idx], input_size, device)
        y = torch.as_tensor(np.asarray(split.labels)[idx], dtype=torch.float32, device=device)
        out.append((x, y))
    return out


def prune_at_init(
    faces_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    method: str,
    sparsity: float,
    spec: Mapping[str, Any] | str | StageSpec | None = None,
    *,
    batches: int | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Pruning at initialization: score θ0 (``dense_dir/init.pt``) with SNIP or GraSP on
    ``batches`` training batches, keep the mask of ``sparsity``, train m ⊙ θ0 once
    (``batches`` and the GraSP ``temperature`` default to the schema's ``prune_init``)."""
    from deepfake_lth.core.schema import section_defaults
    from deepfake_lth.data.store import load_split
    from deepfake_lth.pruning.checkpoints import load_state
    from deepfake_lth.pruning.masks import collapsed_layers, mask_state
    from deepfake_lth.pruning.saliency import grasp_mask, snip_mask

    defaults = section_defaults("prune_init")
    batches = defaults["batches"] if batches is None else batches
    temperature = defaults["temperature"] if temperature is None else temperature
    if method not in SCORES:
        raise UserError(f"pruning at initialization: {method!r} is not one of {', '.join(SCORES)}")
    if not 0 < sparsity < 1:
        raise UserError(f"{method} sparsity must be in (0, 1), got {sparsity!r}")
    dense_dir = Path(dense_dir)
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    spec, device = job.spec, job.device
    model = build(model_name, spec)
    init = load_state(dense_dir / "init.pt")
    load_into(model, init, str(dense_dir / "init.pt"))
    model.to(device)
    train_split = load_split(faces_dir, "train")
    data = score_batches(
        train_split,
        int(batches),
        int(spec.train.batch_size),
        job.input_size,
        device,
        seed,
    )
    if method == "snip":
        mask = snip_mask(model, data, sparsity)
    else:
        mask = grasp_mask(model, data, sparsity, temperature=temperature)
    del data
    collapsed = collapsed_layers(mask)
    if collapsed:
        log.warning("%s removed every weight of %s", method, ", ".join(collapsed))
    load_into(model, mask_state(init, mask), "θ0 under the mask")
    meta: dict[str, Any] = {
        "method": method,
        "criterion": "global",
        # the IMP round this level matches (as methods.Level does); one pruning step, at θ0
        "round": plan.nearest_round_at(spec.prune.rate, sparsity),
        "target_sparsity": float(sparsity),
        "rewind": "init",
        "score_batches": int(batches),
        "score_samples": min(int(batches) * int(spec.train.batch_size), len(train_split)),
        "collapsed_layers": collapsed,
    }
    if method == "grasp":
        meta["temperature"] = float(temperature)
    return train_and_write(
        job,
        model=model,
        mask=mask,
        meta=meta,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--dense", required=True, help="dense/ folder (θ0 = init.pt)")
    parser.add_argument("--method", required=True, choices=list(SCORES),
                        help="the saliency score: snip or grasp")
    parser.add_argument("--sparsity", type=float, required=True,
                        help="target fraction of prunable weights removed, e.g. 0.59")
    parser.add_argument("--batches", type=int, default=None,
                        help="training batches the scores use (default: prune_init.batches)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="GraSP temperature (default: prune_init.temperature)")


def run(args: argparse.Namespace) -> int:
    prune_at_init(args.faces, args.dense, args.out, args.model, args.seed, args.method,
                  args.sparsity, spec_from_args(args), batches=args.batches,
                  temperature=args.temperature)
    return 0


# --------------------------------------------------------------------------- the family


def _spec(config, job) -> dict[str, Any]:
    """Trained once from θ0 with the ``prune_init.budget`` epochs (plan.pai_epochs); the rate
    places the level at its IMP round."""
    _, sparsity = level_of(config, FAMILY, job)
    spec = train_spec(config, job.model, max_epochs=plan.pai_epochs(config, sparsity),
                      exact=exact_budget(config), rewind=False)
    spec["prune"] = {"rate": config["prune"]["rate"]}
    return spec


def _arguments(config, job) -> list[str]:
    _, sparsity = level_of(config, FAMILY, job)
    c = config["prune_init"]
    return ["--dense", str(job.dense_dir), "--method", job.method,
            "--sparsity", repr(float(sparsity)), "--batches", str(c["batches"]),
            "--temperature", repr(float(c["temperature"]))]


FAMILY = Family(
    name="prune-init", pattern=f"(?P<score>{alternatives(SCORES)})", level_dir="sparsity",
    stage="prune-init", module=__name__, rule="prune_init",
    help="SNIP or GraSP at initialization, then train once", roles=frozenset({PRUNE_INIT}),
    planned=lambda config, model=None: list(config["prune_init"]["methods"]),
    levels=lambda config, method: [(plan.nearest_round(config, s), s)
                                   for s in plan.pai_sparsities(config)],
    label=lambda m: LABELS[m["score"]], order=50,
    inputs=lambda config, job: {**faces_inputs(job), "init": str(job.dense_dir / "init.pt")},
    spec=_spec, arguments=_arguments,
    registries={"prune-init": SCORES}, rank=lambda m: SCORES.index(m["score"]),
)
