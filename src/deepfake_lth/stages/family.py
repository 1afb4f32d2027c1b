"""What a method family declares, and the building blocks families share.

A *method* is a folder name under ``results/{dataset}/{model}/seed{seed}/`` (``imp-global``,
``oneshot-local``, ``control-reinit``, ``snip`` …); a *family* is a kind of method. Each family
is declared once, as ``FAMILY = Family(...)`` in the stage module that trains it
(``stages/imp.py`` …), and listed by one line in :data:`deepfake_lth.stages.methods.FAMILIES`.
Its declaration says which methods a config plans, their levels (``round{k}`` or
``sparsity{pct}`` folders), the files a level's job reads (:attr:`Family.inputs`), the exact
config slice it computes from (:attr:`Family.spec`), its command line
(:attr:`Family.arguments`), its label and its roles in the statistics. The workflow generates
one Snakemake rule per family from this (``workflow/rules/prune.smk``).

Importable without torch: the Snakefile plans the DAG from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_lth.pruning import plan
from deepfake_lth.pruning.criteria import CRITERIA

# Statistics a family takes part in (Family.roles):
TICKET = "ticket"  # IMP at prune.rate: the paper's tickets (curves, Table I, claims)
ONESHOT = "oneshot"  # one-shot pruning: compared with IMP at the same sparsity
CONTROL = "control"  # a control of the IMP ticket (winning-ticket verdict)
PRUNE_INIT = "prune-init"  # pruning at initialization (SNIP, GraSP)
STEP_SIZE = "step-size"  # IMP at another rate, compared at its final sparsity
STRUCTURED = "structured"  # structured tickets (whole channels; latency)
DISTILLED = "distilled"  # IMP retrained with the dense network as teacher: compared with IMP

LEVEL_FILES = ("checkpoint.pt", "mask.pt", "metrics.json")  # what every level job writes

Config = Mapping[str, Any]


def alternatives(names) -> str:
    return "|".join(re.escape(n) for n in names)


CRITERION = f"(?P<criterion>{alternatives(CRITERIA)})"


@dataclass(frozen=True)
class Level:
    """One trained network of a method: its folder and the sparsity it was pruned to."""

    method: str  # dense | imp-global | oneshot-global | control-reinit | snip ...
    sparsity: float
    path: Path  # folder with checkpoint.pt (and mask.pt, metrics.json)
    round: int  # IMP round (0 dense); for a sparsity level, the round whose sparsity it matches


@dataclass(frozen=True)
class LevelJob:
    """One job of a family: the level folder ``{results}/{dataset}/{model}/seed{seed}/{method}/
    {level}`` it writes (the rule's wildcards)."""

    results: str
    dataset: str
    model: str
    seed: int
    method: str
    level: str  # round{k} | sparsity{pct}

    @classmethod
    def of(cls, config: Config, wildcards: Mapping[str, Any]) -> LevelJob:
        w = dict(wildcards.items()) if hasattr(wildcards, "items") else dict(wildcards)
        return cls(str(config["results"]), w["dataset"], w["model"], int(w["seed"]),
                   w["method"], w["level"])

    @property
    def run_dir(self) -> Path:
        return plan.run_dir(self.results, self.dataset, self.model, self.seed)

    @property
    def out_dir(self) -> Path:
        return self.run_dir / self.method / self.level

    @property
    def dense_dir(self) -> Path:
        return self.run_dir / "dense"

    @property
    def faces_dir(self) -> Path:
        return Path(self.results) / self.dataset / "faces"

    @property
    def k(self) -> int:
        """The round of a ``round{k}`` level."""
        return int(self.level.removeprefix("round"))

    @property
    def pct(self) -> int:
        return int(self.level.removeprefix("sparsity"))


@dataclass(frozen=True)
class Family:
    """A kind of method (see the module docstring)."""

    name: str
    pattern: str  # regular expression a method name of this family matches in full
    level_dir: str  # "round" (round{k}) or "sparsity" (sparsity{pct})
    stage: str  # deepfake-lth subcommand that writes one level
    module: str  # the module of that subcommand (its add_arguments and run)
    rule: str  # the Snakemake rule that runs it
    help: str  # the subcommand's one-line help
    roles: frozenset[str]
    planned: Callable[[Config, str | None], list[str]]  # (config, model) -> methods
    levels: Callable[[Config, str], list[tuple[int, float]]]  # -> [(round, sparsity)]
    label: Callable[[re.Match], str]
    order: int  # place in the report's tables and legends
    inputs: Callable[[Config, LevelJob], dict[str, str]]  # the files a level's job reads
    spec: Callable[[Config, LevelJob], dict[str, Any]]  # the config slice it computes from
    arguments: Callable[[Config, LevelJob], list[str]]  # its command line after the common
    outputs: tuple[str, ...] = LEVEL_FILES
    registries: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # x-registry names
    rank: Callable[[re.Match], int] | None = None  # order within the family (default: criterion)
    # a family's own config section, for a family whose keys the schema file does not hold:
    # its key and JSON schema (with defaults), added to the config schema when it is loaded
    config_key: str | None = None
    config_schema: Mapping[str, Any] | None = None

    def match(self, method: str) -> re.Match | None:
        return re.fullmatch(self.pattern, str(method))

    def folder(self, k: int, sparsity: float) -> str:
        """Folder name of one level: ``round{k}`` or ``sparsity{pct}``."""
        return f"round{k}" if self.level_dir == "round" else f"sparsity{plan.pct(sparsity)}"

    def level_pattern(self) -> str:
        return r"round\d+" if self.level_dir == "round" else r"sparsity\d+"

    def method_pattern(self) -> str:
        """The family's pattern without named groups (a Snakemake wildcard constraint)."""
        return re.sub(r"[(][?]P<[a-z_]+>", "(", self.pattern)

    def groups(self, method: str) -> dict[str, str]:
        m = self.match(method)
        if m is None:
            raise ValueError(f"{method!r} is not a method of family {self.name}")
        return m.groupdict()


# --------------------------------------------------------------------------- levels


def imp_rounds(config: Config, rounds: int | None = None,
               rate: float | None = None) -> list[tuple[int, float]]:
    """(round, sparsity) of IMP rounds 1…``rounds`` at ``rate`` (default: the config's)."""
    rate = config["prune"]["rate"] if rate is None else rate
    rounds = config["prune"]["rounds"] if rounds is None else rounds
    return [(k, plan.imp_sparsity(rate, k)) for k in range(1, rounds + 1)]


def level_of(config: Config, family: Family, job: LevelJob) -> tuple[int, float]:
    """(round, sparsity) of the level a job writes; ValueError when the config has no such
    level (a typo in a target path)."""
    for k, s in family.levels(config, job.method):
        if family.folder(k, s) == job.level:
            return k, s
    raise ValueError(f"{job.level} is not a level of {job.method} in this config")


def previous_level(config: Config, family: Family, job: LevelJob) -> Path:
    """Round k−1 of a chain's job (the dense network for round 1)."""
    k, _ = level_of(config, family, job)
    return job.dense_dir if k == 1 else job.run_dir / job.method / f"round{k - 1}"


# --------------------------------------------------------------------------- inputs


def faces_inputs(job: LevelJob) -> dict[str, str]:
    return {"faces": str(job.faces_dir / "faces.npy"),
            "manifest": str(job.faces_dir / "manifest.csv")}


def chain_inputs(config: Config, family: Family, job: LevelJob) -> dict[str, str]:
    """A round of a chain: the faces, θ0 (rewinding), round k−1's checkpoint and (k > 1) mask,
    and every other file of round k−1 its stage reads (``channels.pt``)."""
    prev = previous_level(config, family, job)
    out = {**faces_inputs(job), "init": str(job.dense_dir / "init.pt"),
           "checkpoint": str(prev / "checkpoint.pt")}
    if prev != job.dense_dir:
        out["mask"] = str(prev / "mask.pt")
        out.update({Path(f).stem: str(prev / f) for f in family.outputs
                    if f not in LEVEL_FILES})
    return out


# --------------------------------------------------------------------------- specs


def model_spec(config: Config, model: str, *, pretrained: bool = False) -> dict[str, Any]:
    """The model keys a job reads: its input size (and for a job that builds a network from
    scratch, the ImageNet weights file)."""
    m = config["models"][model]
    out = {"input_size": m.get("input_size")}
    if pretrained:
        out["pretrained"] = m.get("pretrained")
    return out


def train_spec(config: Config, model: str, *, max_epochs: int | None = None,
               exact: bool = False, rewind: bool = True) -> dict[str, Any]:
    """The training slice of a job: ``train`` (its epoch budget ``max_epochs`` when given;
    with ``exact`` the run trains them all, early stopping only picking the best epoch), the
    rewind mode, and the model's input size."""
    train = dict(config["train"])
    if max_epochs is not None:
        train["max_epochs"] = int(max_epochs)
    if exact:
        train["min_epochs"] = train["max_epochs"]
    out: dict[str, Any] = {"train": train, **model_spec(config, model)}
    if rewind:
        out["prune"] = {"rewind": config["prune"]["rewind"]}
    return out


def exact_budget(config: Config) -> bool:
    """Whether pruned networks train exactly their epoch budget (``prune.budget: exact``)."""
    return config["prune"].get("budget", "exact") == "exact"


def round_spec(config: Config, model: str, rate: float | None = None) -> dict[str, Any]:
    """The spec of one round of a chain (IMP, KD, structured): the round's epoch cap
    (:func:`deepfake_lth.pruning.plan.round_epochs`), the rewind mode and the rate."""
    spec = train_spec(config, model, max_epochs=plan.round_epochs(config),
                      exact=exact_budget(config))
    spec["prune"]["rate"] = float(config["prune"]["rate"] if rate is None else rate)
    return spec


# --------------------------------------------------------------------------- arguments


def chain_arguments(config: Config, family: Family, job: LevelJob) -> list[str]:
    """``--prev --dense --round --criterion`` of a round of a chain."""
    k, _ = level_of(config, family, job)
    return ["--prev", str(previous_level(config, family, job)), "--dense", str(job.dense_dir),
            "--round", str(k), "--criterion", family.groups(job.method)["criterion"]]


def dense_spec(config: Config, model: str) -> dict[str, Any]:
    """Round 0 (the dense network): ``train``, the model's input size and ImageNet weights,
    and the epochs whose weights rewinding (``prune.rewind: epoch:E``) restarts from."""
    from deepfake_lth.pruning.rewind import parse_rewind

    kind, epoch = parse_rewind(config["prune"]["rewind"])
    return {"train": dict(config["train"]), **model_spec(config, model, pretrained=True),
            "save_epochs": [epoch] if kind == "epoch" else []}
