"""What each rule's job reads, writes and is passed, computed from the registries.

The Snakefile's rules are thin: their inputs, outputs and command lines are these functions
of a job's wildcards. Training rules are generated, one per method family
(:data:`deepfake_lth.stages.methods.FAMILIES`, workflow/rules/prune.smk), from the family's
declaration: :func:`level_inputs`, :func:`level_outputs`, :func:`level_spec`,
:func:`level_arguments`. A job's ``--spec`` holds exactly the config keys its stage reads, so a
config change reruns only the jobs that compute from it; its code inputs are the modules its
stage imports (:mod:`deepfake_lth.workflow.code`). Importable without torch.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from deepfake_lth.stages import methods
from deepfake_lth.stages.family import Family, LevelJob, dense_spec, train_spec
from deepfake_lth.workflow.code import job_code

Config = Mapping[str, Any]
LEVEL = "{results}/{{dataset}}/{{model}}/seed{{seed}}/{{method}}/{{level}}"


def as_json(obj: Any) -> str:
    """One canonical JSON text (sorted keys, no spaces): equal specs compare equal."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def quoted(args: list[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in args)


# --------------------------------------------------------------------------- level jobs


def level_outputs(results: str, family: Family) -> dict[str, str]:
    """A family's output files, named by stem (``checkpoint``, ``mask``, ``metrics`` …)."""
    base = LEVEL.format(results=results)
    return {f.split(".")[0]: f"{base}/{f}" for f in family.outputs}


def level_inputs(config: Config, family: Family) -> Callable[[Any], dict[str, str]]:
    """Input function of a family's rule: the files its stage reads."""

    def inputs(wildcards: Any) -> dict[str, str]:
        return family.inputs(config, LevelJob.of(config, wildcards))

    return inputs


def level_spec(config: Config, family: Family, job: LevelJob) -> dict[str, Any]:
    return family.spec(config, job)


def level_arguments(config: Config, family: Family) -> Callable[[Any], str]:
    """Params function: the job's command line after ``deepfake-lth {stage}`` (its spec
    included), quoted for the shell. A change of any part reruns the job (params trigger)."""

    def arguments(wildcards: Any) -> str:
        job = LevelJob.of(config, wildcards)
        return quoted(["--faces", str(job.faces_dir), "--out", str(job.out_dir),
                       "--model", job.model, "--seed", str(job.seed),
                       "--spec", as_json(family.spec(config, job)),
                       *family.arguments(config, job)])

    return arguments


def level_code(family: Family) -> Callable[[Any], list[str]]:
    """Code inputs of a family's rule: its stage's modules, its model's and criterion's."""

    def code(wildcards: Any) -> list[str]:
        criterion = family.groups(wildcards.method).get("criterion")
        return job_code(family.module, model=wildcards.model, criterion=criterion)

    return code


# --------------------------------------------------------------------------- other rules


def stage_code(module: str, **lazy: str) -> Callable[[Any], list[str]]:
    """Code inputs of a rule whose jobs run ``module`` (with the job's model, when the rule
    has a ``{model}`` wildcard)."""

    def code(wildcards: Any) -> list[str]:
        model = wildcards.get("model") if hasattr(wildcards, "get") else None
        return job_code(f"deepfake_lth.{module}", model=model, **lazy)

    return code


def dense_arguments(config: Config) -> Callable[[Any], str]:
    def arguments(w: Any) -> str:
        return quoted(["--spec", as_json(dense_spec(config, w.model))])

    return arguments


def transfer_spec(config: Config, model: str) -> dict[str, Any]:
    """A ticket trained on another dataset, and the dense network fine-tuned beside it: the
    epoch cap of a round that starts from trained weights (``prune.retrain_epochs``) when
    ``transfer.weights`` is ``trained``, the budget rule of pruned networks."""
    from deepfake_lth.stages.family import exact_budget

    epochs = config["prune"]["retrain_epochs"]
    cap = None
    if epochs and config["transfer"]["weights"] == "trained":
        cap = min(int(epochs), int(config["train"]["max_epochs"]))
    return train_spec(config, model, max_epochs=cap, exact=exact_budget(config), rewind=False)


def transfer_source(config: Config, src: str, model: str, seed: int, method: str) -> str:
    """Folder of A's ticket for a transfer method such as ``imp-global-sparsity59``."""
    source, sparsity = methods.parse_transfer_method(config, method)
    return str(methods.level_for(config, src, model, seed, source, sparsity).path)


__all__ = [
    "as_json", "dense_arguments", "level_arguments", "level_code", "level_inputs",
    "level_outputs", "level_spec", "quoted", "stage_code", "training_specs", "transfer_source",
    "transfer_spec",
]


def training_specs(config: Config) -> dict[str, dict[str, str]]:
    """Every training job the config plans, by rule: {job's folder: its spec and command line
    as the rule passes them}. Two configs whose entries differ for a job rerun that job (the
    params trigger); tests/test_job_specs.py reads which rules each config key reaches."""
    from deepfake_lth.pruning import plan

    out: dict[str, dict[str, str]] = {f.rule: {} for f in methods.FAMILIES}
    out.update(train_dense={}, transfer_ticket={}, transfer_finetuned={})
    for dataset in config["datasets"]:
        for model in config["models"]:
            for seed in plan.planned_seeds(config, dataset, model):
                base = plan.run_dir(config["results"], dataset, model, seed)
                out["train_dense"][str(base)] = as_json(dense_spec(config, model))
                for level in methods.planned_levels(config, dataset, model, seed)[1:]:
                    family = methods.family_of(level.method)
                    job = LevelJob(str(config["results"]), dataset, model, int(seed),
                                   level.method, level.path.name)
                    out[family.rule][str(level.path)] = level_arguments(config, family)(
                        _Wildcards(job))
    for pair in config["transfer"]["pairs"]:
        for model in config["models"]:
            spec = as_json(transfer_spec(config, model))
            for seed in plan.seeds_of(config, model):
                for name in methods.transfer_methods(config)[1:]:
                    rule = "transfer_finetuned" if name == "dense-finetuned" else "transfer_ticket"
                    out[rule][f"{pair['from']}-to-{pair['to']}/{model}/{seed}/{name}"] = spec
    return out


class _Wildcards(dict):
    """A job's wildcards as Snakemake passes them (attributes and ``get``)."""

    def __init__(self, job: LevelJob):
        super().__init__(dataset=job.dataset, model=job.model, seed=str(job.seed),
                         method=job.method, level=job.level)
        self.__dict__.update(self)
