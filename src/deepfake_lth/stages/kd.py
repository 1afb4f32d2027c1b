"""``deepfake-lth kd-round``: one IMP round retrained with the dense network as teacher.

Round k of method ``kd-{criterion}`` prunes and rewinds round k−1 of the same chain exactly as
an IMP round does (:func:`deepfake_lth.stages.imp.prune_and_rewind`), then retrains with the
label loss blended with the dense network's temperature-softened p(fake)
(:class:`deepfake_lth.training.fit.Distillation`; the spec's ``kd.temperature`` and
``kd.weight``). Compared with plain IMP at the same sparsities (role ``distilled``). Family
:data:`FAMILY`; config section ``kd``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.pruning.criteria import CRITERIA, criterion_label
from deepfake_lth.pruning.plan import imp_sparsity
from deepfake_lth.stages.family import (
    CRITERION,
    DISTILLED,
    Family,
    chain_arguments,
    chain_inputs,
    imp_rounds,
    round_spec,
)
from deepfake_lth.stages.imp import check_previous_round, prune_and_rewind
from deepfake_lth.stages.runner import (
    Job,
    add_chain_arguments,
    add_common_arguments,
    build,
    load_into,
    prior_epochs,
    spec_from_args,
    train_and_write,
)
from deepfake_lth.stages.spec import StageSpec


def kd_round(
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
    """KD round ``k``: IMP round k of the ``kd-{criterion}`` chain, distilled from the dense
    network of ``dense_dir``."""
    from deepfake_lth.pruning.checkpoints import load_state

    prev_dir, dense_dir = Path(prev_dir), Path(dense_dir)
    prev_metrics = check_previous_round(prev_dir, k, "KD round")
    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    spec = job.spec
    teacher = build(model_name, spec)
    load_into(teacher, load_state(dense_dir / "checkpoint.pt"), str(dense_dir / "checkpoint.pt"))
    model, mask = prune_and_rewind(job, prev_dir, dense_dir, k, criterion)
    rate = spec.prune.rate
    return train_and_write(
        job,
        model=model,
        mask=mask,
        teacher=teacher,
        prior=prior_epochs(spec.prune.rewind, prev_metrics),
        meta={
            "method": f"kd-{criterion}",
            "criterion": criterion,
            "round": k,
            "target_sparsity": imp_sparsity(rate, k),
            "prune_rate": rate,
            "teacher": str(dense_dir / "checkpoint.pt"),
            "kd_temperature": spec.kd.temperature,
            "kd_weight": spec.kd.weight,
        },
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    add_chain_arguments(parser, CRITERIA, "KD round")


def run(args: argparse.Namespace) -> int:
    kd_round(args.faces, args.prev, args.dense, args.out, args.model, args.seed, args.round,
             args.criterion, spec_from_args(args))
    return 0


# --------------------------------------------------------------------------- the family


def _planned(config, model=None) -> list[str]:
    models = config["kd"]["models"]
    if not models or (model is not None and model not in models):
        return []
    return [f"kd-{c}" for c in config["kd"]["criteria"]]


def _spec(config, job) -> dict[str, Any]:
    """An IMP round's spec with the distillation temperature and weight."""
    spec = round_spec(config, job.model)
    spec["kd"] = {k: config["kd"][k] for k in ("temperature", "weight")}
    return spec


FAMILY = Family(
    name="kd", pattern=f"kd-{CRITERION}", level_dir="round", stage="kd-round",
    module=__name__, rule="kd_round",
    help="one IMP round retrained with the dense network as teacher (distillation)",
    roles=frozenset({DISTILLED}), planned=_planned,
    levels=lambda config, method: imp_rounds(
        config, config["kd"]["rounds"] or config["prune"]["rounds"]),
    label=lambda m: f"KD IMP-{criterion_label(m['criterion'])}", order=45,
    inputs=lambda config, job: {**chain_inputs(config, FAMILY, job),
                                "teacher": str(job.dense_dir / "checkpoint.pt")},
    spec=_spec,
    arguments=lambda config, job: chain_arguments(config, FAMILY, job),
)
