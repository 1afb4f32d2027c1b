"""The method registry: every family of pruned networks the study trains, declared once.

A *method* is a folder name under ``results/{dataset}/{model}/seed{seed}/`` (``imp-global``,
``oneshot-local``, ``control-reinit``, ``snip``, ``imp-global-rate0.05`` …); a *family* is the
kind of method and says, in one place:

- which method names a config plans (``planned``) and the folder pattern they match;
- the levels of a method (its ``round{k}`` or ``sparsity{pct}`` folders and their sparsities);
- the stage (``deepfake-lth <stage>``) and the Snakemake rule that write a level;
- its label in the report, its place in the report's order, and the statistics it takes
  part in (``roles``).

The workflow's input functions, the plan, the report and the statistics ask this registry
instead of matching method names. Adding a family is one entry in :data:`FAMILIES`; adding an
IMP criterion is one line in :mod:`deepfake_lth.pruning.criteria` (docs/ARCHITECTURE.md has the
checklists). Importable without torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning import plan
from deepfake_lth.pruning.criteria import CRITERIA, criterion_label

# Statistics a family takes part in (Family.roles):
TICKET = "ticket"  # IMP at prune.rate: the paper's tickets (curves, Table I, claims)
ONESHOT = "oneshot"  # one-shot pruning: compared with IMP at the same sparsity
CONTROL = "control"  # a control of the IMP ticket (winning-ticket verdict)
PAI = "pai"  # pruning at initialization (SNIP, GraSP)
STEP_SIZE = "step-size"  # IMP at another rate, compared at its final sparsity
STRUCTURED = "structured"  # structured tickets (whole channels; latency)
DISTILLED = "distilled"  # IMP retrained with the dense network as teacher: compared with IMP

# The controls of the IMP ticket at round k (``control-{name}``), after Frankle et al. 2021
# ("Pruning neural networks at initialization: why are we missing the mark?") and Su et al.
# 2020 ("Sanity-checking pruning methods"):
#   reinit                — the ticket's mask, fresh random weights, trained once from scratch;
#   shuffle               — the ticket's mask shuffled within each layer (same per-layer counts,
#                           random positions), its start weights moved with it, trained like it;
#   random-chain          — a chain of random pruning: control round k prunes control round k−1
#                           (round 0: dense) at random, removing the per-layer counts IMP removes
#                           at round k, and retrains with the IMP round's schedule. It has the
#                           ticket's layer-wise sparsity and training at every round; only the
#                           magnitude criterion differs (the matched control).
# Weaker controls, kept for older configs:
#   random-mask           — a random mask of the ticket's layer-wise sparsity on θ0, trained once;
#   random-prune-trained  — the ticket's own round k−1 network pruned at random (IMP's counts of
#                           round k) and retrained like the ticket: it inherits k−1 magnitude
#                           rounds, so it tests only the last step.
CONTROLS = ("reinit", "shuffle", "random-chain", "random-mask", "random-prune-trained")
MATCHED_CONTROL = "random-chain"  # the control the winning-ticket verdict compares with
# controls trained like the ticket (the IMP round's schedule: rewind, retrain epochs); the
# others train once from their start weights with train.max_epochs
TRAINED_LIKE_TICKET = ("shuffle", "random-chain", "random-prune-trained")
PAI_METHODS = ("snip", "grasp")
PAI_LABELS = {"snip": "SNIP", "grasp": "GraSP"}
CONTROL_LABELS = {
    "reinit": "Control: random re-init",
    "shuffle": "Control: layer-wise shuffle",
    "random-chain": "Control: random pruning chain",
    "random-mask": "Control: random mask",
    "random-prune-trained": "Control: random last round",
}
DENSE_FINETUNED = "dense-finetuned"  # transfer baseline: A's dense network fine-tuned on B


@dataclass(frozen=True)
class Level:
    """One trained network of a method: its folder and the sparsity it was pruned to."""

    method: str  # dense | imp-global | oneshot-global | control-reinit | snip ...
    sparsity: float
    path: Path  # folder with checkpoint.pt (and mask.pt, metrics.json)
    round: int  # IMP round (0 dense); for a sparsity level, the round whose sparsity it matches


@dataclass(frozen=True)
class Family:
    """A kind of method (see the module docstring)."""

    name: str
    pattern: str  # regular expression a method name of this family matches in full
    level_dir: str  # "round" (round{k}) or "sparsity" (sparsity{pct})
    stage: str  # deepfake-lth subcommand that writes one level
    rule: str  # Snakemake rule that runs it
    roles: frozenset[str]
    planned: Callable[[Mapping[str, Any], str | None], list[str]]  # (config, model) -> methods
    levels: Callable[[Mapping[str, Any], str], list[tuple[int, float]]]  # -> [(round, sparsity)]
    label: Callable[[re.Match], str]
    order: int  # place in the report's tables and legends
    extra: dict[str, Any] = field(default_factory=dict)

    def match(self, method: str) -> re.Match | None:
        return re.fullmatch(self.pattern, str(method))

    def folder(self, k: int, sparsity: float) -> str:
        """Folder name of one level: ``round{k}`` or ``sparsity{pct}``."""
        return f"round{k}" if self.level_dir == "round" else f"sparsity{plan.pct(sparsity)}"


def _alternatives(names) -> str:
    return "|".join(re.escape(n) for n in names)


# --------------------------------------------------------------------------- levels


def _imp_rounds(config: Mapping[str, Any], _method: str) -> list[tuple[int, float]]:
    rate = config["prune"]["rate"]
    return [(k, plan.imp_sparsity(rate, k)) for k in range(1, config["prune"]["rounds"] + 1)]


def _step_rounds(config: Mapping[str, Any], method: str) -> list[tuple[int, float]]:
    rate, rounds = plan.step_size_rate(config, method)
    return [(k, plan.imp_sparsity(rate, k)) for k in range(1, rounds + 1)]


def _structured_rounds(config: Mapping[str, Any], _method: str) -> list[tuple[int, float]]:
    rate = config["prune"]["rate"]
    return [(k, plan.imp_sparsity(rate, k)) for k in range(1, config["structured"]["rounds"] + 1)]


def _kd_rounds(config: Mapping[str, Any], _method: str) -> list[tuple[int, float]]:
    rate = config["prune"]["rate"]
    rounds = config["distill"]["rounds"] or config["prune"]["rounds"]
    return [(k, plan.imp_sparsity(rate, k)) for k in range(1, rounds + 1)]


def _oneshot_levels(config: Mapping[str, Any], _method: str) -> list[tuple[int, float]]:
    return [(plan.nearest_round(config, s), s) for s in plan.oneshot_sparsities(config)]


def _pai_levels(config: Mapping[str, Any], _method: str) -> list[tuple[int, float]]:
    return [(plan.nearest_round(config, s), s) for s in plan.pai_sparsities(config)]


# --------------------------------------------------------------------------- planned


def _planned_imp(config, _model=None) -> list[str]:
    return [f"imp-{c}" for c in config["prune"]["criteria"]]


def _planned_oneshot(config, _model=None) -> list[str]:
    return [f"oneshot-{c}" for c in config["oneshot"]["criteria"]]


def _planned_controls(config, _model=None) -> list[str]:
    if not config["prune"]["criteria"] or config["prune"]["rounds"] < 1:
        return []
    return [f"control-{c}" for c in config["controls"]]


def _planned_pai(config, _model=None) -> list[str]:
    return list(config["prune_at_init"]["methods"])


def _planned_steps(config, _model=None) -> list[str]:
    return [name for name, *_ in plan.step_sizes(config)]


def _planned_structured(config, model=None) -> list[str]:
    models = config["structured"]["models"]
    if model is not None and model not in models:
        return []
    return [f"structured-{c}" for c in config["structured"]["criteria"]]


def _planned_kd(config, model=None) -> list[str]:
    if model is not None and model not in config["distill"]["models"]:
        return []
    return [f"kd-{c}" for c in config["distill"]["criteria"]] if config["distill"]["models"] else []


_CRITERION = f"(?P<criterion>{_alternatives(CRITERIA)})"

FAMILIES: tuple[Family, ...] = (
    Family(
        name="imp", pattern=f"imp-{_CRITERION}", level_dir="round", stage="imp-round",
        rule="imp_round", roles=frozenset({TICKET}), planned=_planned_imp, levels=_imp_rounds,
        label=lambda m: f"IMP-{criterion_label(m['criterion'])}", order=10,
    ),
    Family(
        name="oneshot", pattern=f"oneshot-{_CRITERION}", level_dir="sparsity", stage="oneshot",
        rule="oneshot", roles=frozenset({ONESHOT}), planned=_planned_oneshot,
        levels=_oneshot_levels, label=lambda m: f"One-shot {criterion_label(m['criterion'])}",
        order=20,
    ),
    Family(
        name="control", pattern=f"control-(?P<control>{_alternatives(CONTROLS)})",
        level_dir="round", stage="control", rule="control", roles=frozenset({CONTROL}),
        planned=_planned_controls, levels=_imp_rounds,
        label=lambda m: CONTROL_LABELS[m["control"]], order=30,
    ),
    Family(
        name="structured", pattern="structured-(?P<criterion>global|local)", level_dir="round",
        stage="structured-round", rule="structured_round", roles=frozenset({STRUCTURED}),
        planned=_planned_structured, levels=_structured_rounds,
        label=lambda m: f"Structured-{m['criterion'].capitalize()}", order=40,
    ),
    Family(
        name="kd", pattern=f"kd-{_CRITERION}", level_dir="round", stage="kd-round",
        rule="kd_round", roles=frozenset({DISTILLED}), planned=_planned_kd, levels=_kd_rounds,
        label=lambda m: f"KD IMP-{criterion_label(m['criterion'])}", order=45,
    ),
    Family(
        name="pai", pattern=f"(?P<pai>{_alternatives(PAI_METHODS)})", level_dir="sparsity",
        stage="prune-init", rule="prune_init", roles=frozenset({PAI}), planned=_planned_pai,
        levels=_pai_levels, label=lambda m: PAI_LABELS[m["pai"]], order=50,
    ),
    Family(
        name="imp-rate", pattern=f"imp-{_CRITERION}-rate(?P<rate>0?\\.\\d+)", level_dir="round",
        stage="imp-round", rule="imp_round_rate", roles=frozenset({STEP_SIZE}),
        planned=_planned_steps, levels=_step_rounds,
        label=lambda m: f"IMP-{criterion_label(m['criterion'])} (rate {float(m['rate']):g})",
        order=60,
    ),
)
BY_NAME = {f.name: f for f in FAMILIES}


# --------------------------------------------------------------------------- queries


def family_of(method: str) -> Family:
    """The family of a method name; UserError naming the known patterns otherwise."""
    for fam in FAMILIES:
        if fam.match(method):
            return fam
    raise UserError(
        f"unknown method {method!r}: methods are "
        + "; ".join(f"{f.name}: {f.pattern}" for f in FAMILIES)
    )


def family_or_none(method: str) -> Family | None:
    return next((f for f in FAMILIES if f.match(method)), None)


def label(method: str) -> str:
    """Folder name → the paper's words: ``imp-global`` → ``IMP-Global``."""
    if method == "dense":
        return "Dense"
    fam = family_or_none(method)
    return fam.label(fam.match(method)) if fam else method


def sort_key(method: str) -> tuple[int, int, str]:
    """Dense first, then the families in their order; a step size after its IMP criterion."""
    if method == "dense":
        return (0, 0, method)
    fam = family_or_none(method)
    if fam is None:
        return (10_000, 0, method)
    m = fam.match(method)
    crit = m.groupdict().get("criterion")
    sub = list(CRITERIA).index(crit) if crit in CRITERIA else 0
    if fam.name == "control":
        sub = CONTROLS.index(m["control"])
    return (fam.order, sub, method)


def with_role(methods, role: str) -> list[str]:
    """The methods among ``methods`` whose family takes part in ``role``."""
    return [m for m in methods if (f := family_or_none(m)) is not None and role in f.roles]


def criterion_of(method: str) -> str | None:
    fam = family_or_none(method)
    return fam.match(method).groupdict().get("criterion") if fam else None


def planned_methods(config: Mapping[str, Any], model: str | None = None) -> list[str]:
    """Pruning methods the config runs for ``model`` (every model: None), besides dense."""
    out: list[str] = []
    for fam in FAMILIES:
        out += fam.planned(config, model)
    return out


def method_levels(config: Mapping[str, Any], dataset: str, model: str, seed: int,
                  method: str) -> list[Level]:
    """Every trained network of ``method`` for one dataset × model × seed, the dense one first."""
    base = plan.run_dir(config["results"], dataset, model, seed)
    out = [Level("dense", 0.0, base / "dense", 0)]
    fam = family_of(method)
    for k, s in fam.levels(config, method):
        out.append(Level(method, s, base / method / fam.folder(k, s), k))
    return out


def planned_levels(config: Mapping[str, Any], dataset: str, model: str, seed: int) -> list[Level]:
    """Every trained network the config plans for one dataset × model × seed, dense first."""
    out = [Level("dense", 0.0, plan.run_dir(config["results"], dataset, model, seed) / "dense", 0)]
    for method in planned_methods(config, model):
        out += method_levels(config, dataset, model, seed, method)[1:]
    return out


def level_for(config: Mapping[str, Any], dataset: str, model: str, seed: int, method: str,
              sparsity: float) -> Level:
    """The trained network of ``method`` nearest to ``sparsity`` (sparsity 0: dense)."""
    levels = method_levels(config, dataset, model, seed, method)
    if sparsity <= 0 or method == "dense" or len(levels) == 1:
        return levels[0]
    if family_of(method).level_dir == "round":
        k = plan.nearest_round(config, sparsity)
        return levels[0] if k == 0 else next(lv for lv in levels if lv.round == k)
    return min(levels[1:], key=lambda lv: abs(lv.sparsity - sparsity))


def transfer_level(config: Mapping[str, Any], method: str, sparsity: float) -> float:
    """Actual sparsity of the ticket of ``method`` transferred for a requested ``sparsity``."""
    if family_of(method).level_dir == "round":
        return plan.imp_sparsity(config["prune"]["rate"], max(1, plan.nearest_round(config, sparsity)))
    return plan.nearest_oneshot(config, sparsity)


def transfer_methods(config: Mapping[str, Any]) -> list[str]:
    """Folder names under results/transfer/{A}-to-{B}/{model}/seed{seed}/: dense (B's own),
    dense-finetuned (A's dense network fine-tuned on B, no mask), then the tickets."""
    names = ["dense", DENSE_FINETUNED]
    for method in config["transfer"]["methods"]:
        for s in config["transfer"]["sparsities"]:
            names.append(f"{method}-sparsity{plan.pct(transfer_level(config, method, s))}")
    return list(dict.fromkeys(names))


def parse_transfer_method(config: Mapping[str, Any], name: str) -> tuple[str, float]:
    """``imp-global-sparsity59`` -> (``imp-global``, 0.59…): the source method and its sparsity;
    the two dense folders (``dense``, ``dense-finetuned``) -> (name, 0.0)."""
    if name in ("dense", DENSE_FINETUNED):
        return name, 0.0
    method, _, p = name.rpartition("-sparsity")
    for s in config["transfer"]["sparsities"]:
        level = transfer_level(config, method, s)
        if plan.pct(level) == int(p):
            return method, level
    raise ValueError(f"{name!r} is not a transfer method of this config")


def control_sources(config: Mapping[str, Any], dataset: str, model: str, seed: int,
                    control: str, k: int) -> dict[str, Path]:
    """The run folders control ``control`` at round ``k`` is built from: ``ticket`` (the IMP
    round k it controls for: its mask, per-layer counts and metrics) and, for the controls
    that start from a trained network, ``prev``: round k−1 of the random chain itself
    (``random-chain``) or of the IMP chain (``shuffle``, ``random-prune-trained``); round 0 is
    the dense network. The workflow's inputs of a control job are these folders' files."""
    if control not in CONTROLS:
        raise UserError(f"control {control!r} is not one of {', '.join(CONTROLS)}")
    imp = control_ticket_method(config)
    imp_levels = method_levels(config, dataset, model, seed, imp)
    if not 1 <= k < len(imp_levels):
        raise ValueError(f"round {k} is outside 1..{len(imp_levels) - 1} of {imp}")
    out = {"ticket": imp_levels[k].path}
    if control == "random-chain":
        chain = method_levels(config, dataset, model, seed, f"control-{control}")
        out["prev"] = chain[k - 1].path
    elif control in ("shuffle", "random-prune-trained"):
        out["prev"] = imp_levels[k - 1].path
    return out


def control_ticket_method(config: Mapping[str, Any]) -> str:
    """The IMP method the controls are of: ``imp-{prune.criteria[0]}``."""
    criteria = config["prune"]["criteria"]
    return f"imp-{criteria[0] if criteria else 'global'}"


def method_pattern(families: tuple[str, ...] | None = None) -> str:
    """One regular expression matching the method names of ``families`` (default: all)."""
    fams = [f for f in FAMILIES if families is None or f.name in families]
    return "|".join(f"(?:{re.sub(r'[(][?]P<[a-z]+>', '(', f.pattern)})" for f in fams)


def registry_schema(name: str) -> dict[str, Any]:
    """The JSON-schema fragment of ``x-registry: name`` in the config schema: the registered
    names as an ``enum``, or for ``methods:fam1,fam2`` a ``pattern`` over those families."""
    from deepfake_lth.models.registry import MODELS

    if name == "models":
        return {"enum": list(MODELS)}
    if name == "structured-models":
        return {"enum": [n for n, s in MODELS.items() if s.channel_groups]}
    if name == "criteria":
        return {"enum": list(CRITERIA)}
    if name == "controls":
        return {"enum": list(CONTROLS)}
    if name == "pai":
        return {"enum": list(PAI_METHODS)}
    if name.startswith("methods:"):
        families = tuple(name.partition(":")[2].split(","))
        unknown = set(families) - set(BY_NAME)
        if unknown:
            raise ValueError(f"x-registry {name!r}: no method families {sorted(unknown)}")
        return {"pattern": f"^(?:{method_pattern(families)})$"}
    raise ValueError(f"x-registry {name!r} names no registry")


def fill_registries(node: Any) -> Any:
    """The config schema with every ``x-registry`` marker replaced by its fragment."""
    if isinstance(node, dict):
        out = {k: fill_registries(v) for k, v in node.items() if k != "x-registry"}
        if "x-registry" in node:
            out.update(registry_schema(node["x-registry"]))
        return out
    if isinstance(node, list):
        return [fill_registries(v) for v in node]
    return node


def training_code() -> list[str]:
    """Source files (relative to the package) every training job runs: the runner, training,
    masks, data, files, and the modules the model and criteria registries name. The workflow
    makes them code inputs, so editing one reruns the training jobs."""
    from deepfake_lth.models.registry import MODELS

    def module_file(dotted: str) -> str:
        return dotted.partition(":")[0].removeprefix("deepfake_lth.").replace(".", "/") + ".py"

    files = ["stages/runner.py", "stages/spec.py", "training/fit.py", "training/device.py",
             "training/batches.py", "training/evaluate.py",
             "training/resume.py", "training/scoring.py", "pruning/masks.py",
             "pruning/rewind.py", "pruning/checkpoints.py", "data/store.py", "core/files.py",
             "pruning/criteria/__init__.py", "models/registry.py", "models/build.py"]
    files += [module_file(s.builder) for s in MODELS.values()]
    files += [module_file(c.scores) for c in CRITERIA.values() if c.scores]
    return list(dict.fromkeys(files))
