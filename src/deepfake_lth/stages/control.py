"""``deepfake-lth control``: control baselines of the IMP ticket at round k.

After Frankle et al. 2021 ("Pruning neural networks at initialization: why are we missing
the mark?") and Su et al. 2020 ("Sanity-checking pruning methods"); :data:`CONTROLS` lists them,
family :data:`FAMILY` (``control-{name}/round{k}``):

- ``reinit``: the ticket's mask with fresh random weights (seed + 1000), trained once;
- ``shuffle``: the ticket's mask shuffled within each layer (its per-layer counts, random
  positions), its start weights (round k−1 rewound as the ticket is) moved with it by the
  same permutation, trained like the ticket;
- ``random-chain``: round k−1 of the random chain itself (dense for k = 1), of which as many
  surviving weights per layer as IMP removes at round k are removed *at random*, rewound and
  retrained with the IMP round's schedule. Each round has the ticket's layer-wise sparsity
  and training; only the magnitude criterion differs, at every round (the matched control of
  the winning-ticket verdict);
- weaker, for older configs: ``random-mask`` (a random mask with the ticket's per-layer counts
  on θ0, trained once) and ``random-prune-trained`` (the ticket's own round k−1 network pruned
  at random, which inherits k−1 magnitude rounds).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.files import read_metrics
from deepfake_lth.pruning import plan
from deepfake_lth.stages.family import (
    CONTROL,
    Family,
    LevelJob,
    alternatives,
    exact_budget,
    faces_inputs,
    imp_rounds,
    level_of,
    train_spec,
)
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
from deepfake_lth.stages.spec import StageSpec

CONTROL_SEED_OFFSET = 1000  # fresh weights / random masks of the controls: seed + 1000
CONTROLS = ("reinit", "shuffle", "random-chain", "random-mask", "random-prune-trained")
MATCHED_CONTROL = "random-chain"  # the control the winning-ticket verdict compares with
# controls trained like the ticket (the IMP round's schedule: rewind, retrain epochs); the
# others train once from their start weights with train.max_epochs
TRAINED_LIKE_TICKET = ("shuffle", "random-chain", "random-prune-trained")
CONTROL_LABELS = {
    "reinit": "Control: random re-init",
    "shuffle": "Control: layer-wise shuffle",
    "random-chain": "Control: random pruning chain",
    "random-mask": "Control: random mask",
    "random-prune-trained": "Control: random last round",
}


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
            raise UserError(f"masks disagree on the shape of {name}: the ticket and round k−1 of "
                            "its chain must come from the same model")
        n_remove = int(prev.sum()) - int(ticket.sum())
        if n_remove < 0:
            raise UserError(f"{name}: the round-k ticket keeps more weights than round k−1 "
                            "of the chain; pass round k−1 of the control's chain as --prev")
        alive = prev.flatten().nonzero().squeeze(1)
        drop = alive[torch.randperm(alive.numel(), generator=gen)[:n_remove]]
        flat = prev.flatten().clone()
        flat[drop] = False
        out[name] = flat.view(prev.shape)
    return out


def shuffle_within_layers(mask: Mapping, start: Mapping, seed: int) -> tuple[dict, dict]:
    """The ticket (``mask`` and its ``start`` weights) with one random permutation per layer
    applied to both: every layer keeps its count of weights and the values they start from,
    at random positions. Other tensors (biases, BatchNorm) are left as they are."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    out_mask, out_start = {}, dict(start)
    for name, m in mask.items():
        perm = torch.randperm(m.numel(), generator=gen)
        out_mask[name] = m.bool().flatten()[perm].view(m.shape)
        out_start[name] = start[name].flatten()[perm].view(m.shape).clone()
    return out_mask, out_start


def _chain_mask(model, prev_dir: Path, k: int, ticket_mask: Mapping, seed: int) -> dict:
    """Round k−1's mask (all weights for k = 1) pruned at random to the ticket's counts."""
    from deepfake_lth.pruning.checkpoints import load_mask
    from deepfake_lth.pruning.masks import full_mask

    prev_mask = full_mask(model) if k == 1 else load_mask(prev_dir / "mask.pt")
    return random_prune_like(prev_mask, ticket_mask, seed)


def control(
    faces_dir: str | Path,
    imp_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    name: str,
    spec: Mapping[str, Any] | str | StageSpec | None = None,
    *,
    prev_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Control ``name`` at the sparsity of the IMP ticket in ``imp_dir`` (round k).
    ``prev_dir`` is round k−1 (dense/ for k = 1) of the random chain (``random-chain``) or of
    the IMP chain (``shuffle``, ``random-prune-trained``)."""
    from deepfake_lth.pruning.checkpoints import load_mask, load_state
    from deepfake_lth.pruning.masks import fresh_init, mask_state, random_mask_like

    if name not in CONTROLS:
        raise UserError(f"control {name!r} is not one of {', '.join(CONTROLS)}")
    imp_dir, dense_dir = Path(imp_dir), Path(dense_dir)
    imp_metrics = read_metrics(imp_dir)
    imp_mask = load_mask(imp_dir / "mask.pt")
    k = int(imp_metrics.get("round") or 1)
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    spec = job.spec
    model = build(model_name, spec)
    other_seed = seed + CONTROL_SEED_OFFSET
    rewind = spec.prune.rewind
    meta: dict[str, Any] = {}
    prior = 0
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
            raise UserError(f"control {name} needs --prev: round {k - 1} of its chain "
                            "(dense/ for round 1)")
        prev_dir = Path(prev_dir)
        prev_metrics = check_previous_round(prev_dir, k, f"control {name} round")
        chain = "control-random-chain" if name == "random-chain" else imp_metrics.get("method")
        if k > 1 and prev_metrics.get("method") not in (None, chain):
            raise UserError(f"{prev_dir}/metrics.json is {prev_metrics.get('method')}, but "
                            f"control {name} round {k} starts from round {k - 1} of {chain}; "
                            "pass that folder as --prev")
        prev_state = load_state(prev_dir / "checkpoint.pt")
        load_into(model, prev_state, str(prev_dir / "checkpoint.pt"))
        if name == "shuffle":  # the ticket's mask and start weights, permuted per layer
            ticket_start = rewound_start(rewind, prev_state, dense_dir, imp_mask)
            mask, start = shuffle_within_layers(imp_mask, ticket_start, other_seed + k)
        else:  # random-chain, random-prune-trained: round k−1 pruned at random
            mask = _chain_mask(model, prev_dir, k, imp_mask, other_seed + k)
            start = rewound_start(rewind, prev_state, dense_dir, mask)
        prior = prior_epochs(rewind, prev_metrics)
        meta["control_prev"] = str(prev_dir)
    load_into(model, start, f"the {name} start weights")
    return train_and_write(
        job,
        model=model,
        mask=mask,
        prior=prior,
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
                        help="round k−1 (dense/ for k = 1) of the random chain (random-chain) "
                        "or of the IMP chain (shuffle, random-prune-trained)")


def run(args: argparse.Namespace) -> int:
    control(args.faces, args.imp, args.dense, args.out, args.model, args.seed, args.name,
            spec_from_args(args), prev_dir=args.prev)
    return 0


# --------------------------------------------------------------------------- the family


def control_ticket_method(config) -> str:
    """The IMP method the controls are of: ``imp-{prune.criteria[0]}``."""
    criteria = config["prune"]["criteria"]
    return f"imp-{criteria[0] if criteria else 'global'}"


def control_sources(config, dataset: str, model: str, seed: int, control: str,
                    k: int) -> dict[str, Path]:
    """The run folders control ``control`` at round ``k`` is built from: ``ticket`` (the IMP
    round k it controls for: its mask, per-layer counts and metrics) and, for the controls
    that start from a trained network, ``prev``: round k−1 of the random chain itself
    (``random-chain``) or of the IMP chain (``shuffle``, ``random-prune-trained``); round 0 is
    the dense network. The workflow's inputs of a control job are these folders' files."""
    if control not in CONTROLS:
        raise UserError(f"control {control!r} is not one of {', '.join(CONTROLS)}")
    rounds = len(imp_rounds(config))
    if not 1 <= k <= rounds:
        raise ValueError(f"round {k} is outside 1..{rounds} of {control_ticket_method(config)}")
    base = plan.run_dir(config["results"], dataset, model, seed)
    imp = base / control_ticket_method(config)
    out = {"ticket": imp / f"round{k}"}
    if control == "random-chain":
        out["prev"] = base / "dense" if k == 1 else base / f"control-{control}" / f"round{k - 1}"
    elif control in ("shuffle", "random-prune-trained"):
        out["prev"] = base / "dense" if k == 1 else imp / f"round{k - 1}"
    return out


def _sources(config, job: LevelJob) -> dict[str, Path]:
    k, _ = level_of(config, FAMILY, job)
    return control_sources(config, job.dataset, job.model, job.seed,
                           FAMILY.groups(job.method)["control"], k)


def _inputs(config, job: LevelJob) -> dict[str, str]:
    """The ticket's mask and metrics, and round k−1's checkpoint (and mask) where it has one."""
    src = _sources(config, job)
    out = {**faces_inputs(job), "init": str(job.dense_dir / "init.pt"),
           "ticket": str(src["ticket"] / "mask.pt"),
           "ticket_metrics": str(src["ticket"] / "metrics.json")}
    if "prev" in src:
        out["prev_checkpoint"] = str(src["prev"] / "checkpoint.pt")
        out["prev_metrics"] = str(src["prev"] / "metrics.json")
        if src["prev"].name != "dense":
            out["prev_mask"] = str(src["prev"] / "mask.pt")
    return out


def _spec(config, job: LevelJob) -> dict[str, Any]:
    """The controls trained like the ticket retrain with the IMP round's schedule; the others
    train once from θ0 (or fresh weights) with train.max_epochs."""
    name = FAMILY.groups(job.method)["control"]
    epochs = plan.round_epochs(config) if name in TRAINED_LIKE_TICKET else None
    return train_spec(config, job.model, max_epochs=epochs, exact=exact_budget(config),
                      rewind=name in TRAINED_LIKE_TICKET)


def _arguments(config, job: LevelJob) -> list[str]:
    src = _sources(config, job)
    args = ["--imp", str(src["ticket"]), "--dense", str(job.dense_dir),
            "--name", FAMILY.groups(job.method)["control"]]
    return args + (["--prev", str(src["prev"])] if "prev" in src else [])


def _planned(config, model=None) -> list[str]:
    if not config["prune"]["criteria"] or config["prune"]["rounds"] < 1:
        return []
    return [f"control-{c}" for c in config["controls"]]


FAMILY = Family(
    name="control", pattern=f"control-(?P<control>{alternatives(CONTROLS)})",
    level_dir="round", stage="control", module=__name__, rule="control",
    help="control baselines at an IMP sparsity", roles=frozenset({CONTROL}),
    planned=_planned, levels=lambda config, method: imp_rounds(config),
    label=lambda m: CONTROL_LABELS[m["control"]], order=30,
    inputs=_inputs, spec=_spec, arguments=_arguments,
    registries={"controls": CONTROLS}, rank=lambda m: CONTROLS.index(m["control"]),
)
