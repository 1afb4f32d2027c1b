"""``deepfake-lth lowrank``: the trained dense network factorized by truncated SVD down to a
ticket's parameter count, then fine-tuned.

Method ``lowrank-{allocation}`` (``uniform`` or ``energy``, how the ranks are shared out:
:func:`deepfake_lth.pruning.lowrank.plan_ranks`), level ``sparsity{pct}``: each ungrouped
convolution and linear layer of the trained dense network whose factors are smaller than it
is replaced by its truncated SVD, the ranks chosen so that the network has at most as many
parameters as an IMP ticket at that sparsity
(:func:`deepfake_lth.pruning.lowrank.budget_at_sparsity`), then fine-tuned from there (no
rewinding, no mask: the factors are dense) for one IMP round's epochs (``lowrank.budget:
round``) or the k rounds' IMP spent reaching the level of round k (``matched``).

The run folder holds ``checkpoint.pt`` (the factorized state dict), ``ranks.json`` (layer →
rank; :func:`load_network` and ``deepfake-lth export`` read it) and ``metrics.json``, whose
``sparsity`` is the parameter-equivalent sparsity: the fraction of the dense network's
prunable weights a ticket with as many parameters would have removed (at least the level's,
as the ranks round down). Compared with IMP at equal parameter count (role
:data:`LOWRANK`). Family :data:`FAMILY`; config section ``lowrank``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning import plan
from deepfake_lth.stages.family import (
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
    cumulative_epochs,
    load_into,
    parameter_counts,
    read_metrics,
    spec_from_args,
    train_and_write,
)
from deepfake_lth.stages.spec import StageSpec

LOWRANK = "lowrank"  # its role: compared with IMP at equal parameter count
# how plan_ranks shares the budget out (deepfake_lth.pruning.lowrank.ALLOCATIONS; importable
# here without torch)
ALLOCATIONS = ("uniform", "energy")
OUTPUTS = ("checkpoint.pt", "metrics.json", "ranks.json")


def lowrank(
    faces_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    sparsity: float,
    allocation: str = "uniform",
    spec: Mapping[str, Any] | str | StageSpec | None = None,
    multiple: int = 1,
) -> dict[str, Any]:
    """Factorize the trained dense network of ``dense_dir`` to the parameters of a ticket at
    ``sparsity`` (ranks by ``allocation``, rounded down to ``multiple``), fine-tune it and
    write ``out_dir`` (with ``ranks.json``)."""
    from deepfake_lth.pruning.checkpoints import load_state
    from deepfake_lth.pruning.lowrank import (
        RANKS_FILE,
        budget_at_sparsity,
        factorize,
        plan_ranks,
        write_ranks,
    )

    if not 0 < float(sparsity) < 1:
        raise UserError(f"lowrank sparsity must be in (0, 1), got {sparsity!r}")
    dense_dir = Path(dense_dir)
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    dense = build(model_name, job.spec)
    load_into(dense, load_state(dense_dir / "checkpoint.pt"), str(dense_dir / "checkpoint.pt"))
    budget = budget_at_sparsity(dense, sparsity)
    ranks = plan_ranks(dense, budget, allocation, multiple)
    model = factorize(dense, ranks)
    write_ranks(job.out_dir / RANKS_FILE, ranks)
    before, after = parameter_counts(dense), parameter_counts(model)
    removed = before["params_total"] - after["params_total"]
    return train_and_write(
        job,
        model=model,
        mask=None,
        prior=cumulative_epochs(read_metrics(dense_dir)),  # fine-tuned from trained weights
        meta={
            "method": f"lowrank-{allocation}",
            "criterion": None,
            "allocation": allocation,
            "rank_multiple": int(multiple),
            # the IMP round this level matches (as methods.Level does)
            "round": plan.nearest_round_at(job.spec.prune.rate, sparsity),
            "target_sparsity": float(sparsity),
            "sparsity": removed / before["prunable_total"],
            "budget": float(budget),
            "params_ratio": after["params_total"] / before["params_total"],
            "dense_params_total": before["params_total"],
            "dense_prunable_total": before["prunable_total"],
            "ranks": {k: int(v) for k, v in ranks.items()},
            "rewind": "none",
        },
    )


def load_network(folder: str | Path, model_name: str,
                 spec: Mapping[str, Any] | StageSpec | None = None):
    """The trained network of a run folder: the registry model at the spec's input size
    with ``checkpoint.pt`` loaded, factorized first to the ranks of ``ranks.json`` where the
    folder has one (a low-rank network); not moved to a device, in training mode."""
    from deepfake_lth.pruning.checkpoints import load_state
    from deepfake_lth.pruning.lowrank import RANKS_FILE, lowrank_like, read_ranks

    folder = Path(folder)
    model = build(model_name, spec or {})
    ranks = read_ranks(folder / RANKS_FILE)
    if ranks:
        model = lowrank_like(model, ranks)
    load_into(model, load_state(folder / "checkpoint.pt"), str(folder / "checkpoint.pt"))
    return model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--dense", required=True, help="dense/ folder (its checkpoint is "
                        "factorized)")
    parser.add_argument("--sparsity", type=float, required=True,
                        help="the ticket sparsity whose parameter count the factorization "
                        "matches, e.g. 0.5904")
    parser.add_argument("--allocation", choices=ALLOCATIONS, default="uniform",
                        help="how the ranks share the budget (deepfake_lth.pruning.lowrank)")
    parser.add_argument("--multiple", type=int, default=1,
                        help="ranks rounded down to a multiple of this (e.g. 8 for SIMD)")


def run(args: argparse.Namespace) -> int:
    lowrank(args.faces, args.dense, args.out, args.model, args.seed, args.sparsity,
            args.allocation, spec_from_args(args), multiple=args.multiple)
    return 0


# --------------------------------------------------------------------------- the family


def sparsities(config: Mapping[str, Any]) -> list[float]:
    """The levels of ``lowrank.sparsities``, or the one-shot levels (deduplicated by pct)."""
    seen: dict[int, float] = {}
    for s in config["lowrank"]["sparsities"] or plan.oneshot_sparsities(config):
        seen.setdefault(plan.pct(s), float(s))
    return [seen[p] for p in sorted(seen)]


def epochs(config: Mapping[str, Any], sparsity: float) -> int:
    """Fine-tuning epochs at ``sparsity``: one IMP round's (``lowrank.budget: round``) or, at
    the level of round k, the k rounds' (``matched``)."""
    k = plan.nearest_round_at(config["prune"]["rate"], sparsity)
    matched = config["lowrank"]["budget"] == "matched"
    return plan.round_epochs(config) * (k if matched else 1)


def _planned(config, model=None) -> list[str]:
    models = config["lowrank"]["models"]
    if not models or (model is not None and model not in models):
        return []
    return [f"lowrank-{a}" for a in config["lowrank"]["allocations"]]


def _spec(config, job) -> dict[str, Any]:
    """The fine-tuning budget (:func:`epochs`; exact under ``prune.budget: exact``), the
    model's input size and the rate (the level's round is recorded at it)."""
    _, sparsity = level_of(config, FAMILY, job)
    spec = train_spec(config, job.model, max_epochs=epochs(config, sparsity),
                      exact=exact_budget(config), rewind=False)
    spec["prune"] = {"rate": config["prune"]["rate"]}
    return spec


def _inputs(config, job) -> dict[str, str]:
    return {**faces_inputs(job), "checkpoint": str(job.dense_dir / "checkpoint.pt"),
            "dense_metrics": str(job.dense_dir / "metrics.json")}


def _arguments(config, job) -> list[str]:
    _, sparsity = level_of(config, FAMILY, job)
    return ["--dense", str(job.dense_dir), "--sparsity", repr(float(sparsity)),
            "--allocation", FAMILY.groups(job.method)["allocation"],
            "--multiple", str(int(config["lowrank"]["multiple"]))]


FAMILY = Family(
    name="lowrank", pattern=f"lowrank-(?P<allocation>{alternatives(ALLOCATIONS)})",
    level_dir="sparsity", stage="lowrank", module=__name__, rule="lowrank",
    help="factorize the dense model by truncated SVD to a ticket's parameters and fine-tune",
    roles=frozenset({LOWRANK}), planned=_planned,
    levels=lambda config, method: [(plan.nearest_round(config, s), s)
                                   for s in sparsities(config)],
    label=lambda m: f"Low-rank ({m['allocation']})", order=47,
    inputs=_inputs, spec=_spec, arguments=_arguments, outputs=OUTPUTS,
    registries={"lowrank-allocations": ALLOCATIONS},
    rank=lambda m: ALLOCATIONS.index(m["allocation"]),
)
