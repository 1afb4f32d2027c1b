"""The method registry: every family of pruned networks the study trains, one line each.

A family is declared in the stage module that trains it (``FAMILY = Family(...)``,
:mod:`deepfake_lth.stages.family` says what it holds); :data:`FAMILIES` lists them. The
workflow's rules (one generated per family), its inputs, the command line, the config schema,
the plan, the report and the statistics ask this registry instead of matching method names.
Adding a family is its module, one line here, and its test (docs/ARCHITECTURE.md); adding an
IMP criterion is one line in :mod:`deepfake_lth.pruning.criteria`. Importable without torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning import plan
from deepfake_lth.pruning.criteria import CRITERIA
from deepfake_lth.stages import control, imp, kd, lowrank, oneshot, prune_init, structured
from deepfake_lth.stages.control import (
    CONTROLS,
    MATCHED_CONTROL,
    TRAINED_LIKE_TICKET,
    control_sources,
    control_ticket_method,
)
from deepfake_lth.stages.family import (
    CONTROL,
    DISTILLED,
    ONESHOT,
    PRUNE_INIT,
    STEP_SIZE,
    STRUCTURED,
    TICKET,
    Family,
    Level,
)
from deepfake_lth.stages.transfer import DENSE_FINETUNED

FAMILIES: tuple[Family, ...] = (
    imp.FAMILY,
    oneshot.FAMILY,
    control.FAMILY,
    structured.FAMILY,
    kd.FAMILY,
    prune_init.FAMILY,
    lowrank.FAMILY,
    imp.STEP_SIZE_FAMILY,
)
BY_NAME = {f.name: f for f in FAMILIES}

__all__ = [
    "BY_NAME", "CONTROL", "CONTROLS", "DENSE_FINETUNED", "DISTILLED", "FAMILIES", "Family",
    "Level", "MATCHED_CONTROL", "ONESHOT", "PRUNE_INIT", "STEP_SIZE", "STRUCTURED", "TICKET",
    "TRAINED_LIKE_TICKET", "control_sources", "control_ticket_method", "criterion_of",
    "family_of", "family_sections", "fill_registries", "family_or_none", "label", "level_for", "method_levels", "method_pattern",
    "parse_transfer_method", "planned_levels", "planned_methods", "registry_schema",
    "sort_key", "transfer_level", "transfer_methods", "with_role",
]


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
    if fam.rank is not None:
        return (fam.order, fam.rank(m), method)
    crit = m.groupdict().get("criterion")
    return (fam.order, list(CRITERIA).index(crit) if crit in CRITERIA else 0, method)


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
    """Every trained network the config plans for one dataset × model × seed, dense first:
    every planned method for the model's seeds, and what the winning-ticket claim compares
    for the seeds of ``claims.winning_ticket`` (:func:`verdict_levels`)."""
    out = [Level("dense", 0.0, plan.run_dir(config["results"], dataset, model, seed) / "dense", 0)]
    if seed in plan.seeds_of(config, model):
        for method in planned_methods(config, model):
            out += method_levels(config, dataset, model, seed, method)[1:]
    if seed in plan.verdict_seeds(config, dataset, model):
        have = {lv.path for lv in out}
        out += [lv for lv in verdict_levels(config, dataset, model, seed) if lv.path not in have]
    return out


def verdict_levels(config: Mapping[str, Any], dataset: str, model: str, seed: int
                   ) -> list[Level]:
    """What the winning-ticket claim compares at its round (the first of 50 % sparsity or
    more): the rounds of the ticket the controls are of up to it, and the matched control's
    (``control-random-chain``: round k prunes its own round k − 1), whatever ``controls``
    says. ``claims.winning_ticket`` runs them for its seeds: a verdict for a few jobs."""
    rounds = method_levels(config, dataset, model, seed, control_ticket_method(config))[1:]
    first = next((lv.round for lv in rounds if lv.sparsity >= 0.5 - 1e-9), rounds[-1].round)
    matched = method_levels(config, dataset, model, seed, f"control-{MATCHED_CONTROL}")[1:]
    return [lv for lv in rounds + matched if lv.round <= first]


def level_for(config: Mapping[str, Any], dataset: str, model: str, seed: int, method: str,
              sparsity: float) -> Level:
    """The trained network of ``method`` nearest to ``sparsity`` (sparsity 0: dense)."""
    levels = method_levels(config, dataset, model, seed, method)
    if sparsity <= 0 or method == "dense" or len(levels) == 1:
        return levels[0]
    if family_of(method).level_dir == "round":  # the dense network counts as round 0
        return min(levels, key=lambda lv: (abs(lv.sparsity - sparsity), lv.round))
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


def method_pattern(families: tuple[str, ...] | None = None) -> str:
    """One regular expression matching the method names of ``families`` (default: all)."""
    unknown = set(families or ()) - set(BY_NAME)
    if unknown:
        raise ValueError(f"no method families {sorted(unknown)}; families: {', '.join(BY_NAME)}")
    fams = [f for f in FAMILIES if families is None or f.name in families]
    return "|".join(f"(?:{f.method_pattern()})" for f in fams)


def registry_schema(name: str) -> dict[str, Any]:
    """The JSON-schema fragment of ``x-registry: name`` in the config schema: the registered
    names as an ``enum`` (models, criteria, and each family's own lists such as ``controls``),
    or for ``methods:fam1,fam2`` a ``pattern`` over those families."""
    from deepfake_lth.models.registry import MODELS

    if name == "models":
        return {"enum": list(MODELS)}
    if name == "criteria":
        return {"enum": list(CRITERIA)}
    for fam in FAMILIES:
        if name in fam.registries:
            return {"enum": list(fam.registries[name])}
    if name.startswith("methods:"):
        families = tuple(name.partition(":")[2].split(","))
        return {"pattern": f"^(?:{method_pattern(families)})$"}
    raise ValueError(f"x-registry {name!r} names no registry")


def family_sections() -> dict[str, Any]:
    """The config sections the families declare themselves (key: JSON schema)."""
    return {f.config_key: dict(f.config_schema) for f in FAMILIES
            if f.config_key and f.config_schema is not None}


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

