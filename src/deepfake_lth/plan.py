"""What a config asks for: method names, the sparsities they reach, and their folders.

The workflow (workflow/rules/common.smk), the report and the tests all read the study's
shape from here, so a path is spelt in one place (the path scheme of DESIGN.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# step-size names and rounds are spelt once, next to the stage that writes them (no torch import)
from deepfake_lth.stages import rate_tag, rounds_to_reach, step_size_method  # noqa: F401


def imp_sparsity(rate: float, k: int) -> float:
    """Fraction of prunable weights removed after ``k`` rounds at ``rate``: 1 − (1 − rate)^k."""
    return 1.0 - (1.0 - rate) ** k


def pct(sparsity: float) -> int:
    """Integer percent used in folder names (``sparsity59``)."""
    return int(round(100 * sparsity))


def imp_sparsities(config: dict) -> list[float]:
    rate, rounds = config["prune"]["rate"], config["prune"]["rounds"]
    return [imp_sparsity(rate, k) for k in range(1, rounds + 1)]


def oneshot_sparsities(config: dict) -> list[float]:
    """The configured one-shot levels, or every level the IMP rounds reach (deduplicated by pct)."""
    levels = config["oneshot"]["sparsities"] or imp_sparsities(config)
    seen: dict[int, float] = {}
    for s in levels:
        seen.setdefault(pct(s), s)
    return [seen[p] for p in sorted(seen)]


def nearest_round(config: dict, sparsity: float) -> int:
    """IMP round whose sparsity is closest to ``sparsity`` (0 = the dense model)."""
    levels = [0.0] + imp_sparsities(config)
    return min(range(len(levels)), key=lambda k: (abs(levels[k] - sparsity), k))


def nearest_oneshot(config: dict, sparsity: float) -> float | None:
    """One-shot level closest to ``sparsity``; None for 0 (the dense model)."""
    if sparsity <= 0:
        return None
    return min(oneshot_sparsities(config), key=lambda s: abs(s - sparsity))


def run_dir(results: str | Path, dataset: str, model: str, seed: int) -> Path:
    return Path(results) / dataset / model / f"seed{seed}"


@dataclass(frozen=True)
class Level:
    """One trained network of a method: its folder and the sparsity it was pruned to."""

    method: str  # dense | imp-global | imp-local | oneshot-global | control-reinit ...
    sparsity: float
    path: Path  # folder with checkpoint.pt (and mask.pt, metrics.json)
    round: int  # IMP round (0 dense); for one-shot the round whose sparsity it matches


def level_for(config: dict, dataset: str, model: str, seed: int, method: str, sparsity: float) -> Level:
    """The trained network of ``method`` nearest to ``sparsity`` (sparsity 0: dense)."""
    base = run_dir(config["results"], dataset, model, seed)
    if sparsity <= 0 or method == "dense":
        return Level("dense", 0.0, base / "dense", 0)
    kind, _, criterion = method.partition("-")
    if kind == "imp" or kind == "control":
        k = nearest_round(config, sparsity)
        if k == 0:
            return Level("dense", 0.0, base / "dense", 0)
        s = imp_sparsity(config["prune"]["rate"], k)
        return Level(method, s, base / method / f"round{k}", k)
    if kind == "oneshot":
        s = nearest_oneshot(config, sparsity)
        return Level(method, s, base / method / f"sparsity{pct(s)}", nearest_round(config, s))
    raise ValueError(f"unknown method {method!r}")


def transfer_methods(config: dict) -> list[str]:
    """Folder names under results/transfer/{A}-to-{B}/{model}/seed{seed}/: dense + tickets."""
    names = ["dense"]
    for method in config["transfer"]["methods"]:
        for s in config["transfer"]["sparsities"]:
            names.append(f"{method}-sparsity{pct(transfer_level(config, method, s))}")
    return list(dict.fromkeys(names))


def transfer_level(config: dict, method: str, sparsity: float) -> float:
    """Actual sparsity of the ticket transferred for a requested ``sparsity``."""
    if method.startswith("imp-"):
        return imp_sparsity(config["prune"]["rate"], max(1, nearest_round(config, sparsity)))
    return nearest_oneshot(config, sparsity)


def parse_transfer_method(config: dict, name: str) -> tuple[str, float]:
    """``imp-global-sparsity59`` -> (``imp-global``, 0.59…): the source method and its sparsity."""
    method, _, p = name.rpartition("-sparsity")
    for s in config["transfer"]["sparsities"]:
        level = transfer_level(config, method, s)
        if pct(level) == int(p):
            return method, level
    raise ValueError(f"{name!r} is not a transfer method of this config")


def methods(config: dict) -> list[str]:
    """Pruning methods a dataset × model × seed runs (besides dense)."""
    out = [f"imp-{c}" for c in config["prune"]["criteria"]]
    out += [f"oneshot-{c}" for c in config["oneshot"]["criteria"]]
    out += [f"control-{c}" for c in config["controls"]]
    out += list(config["prune_at_init"]["methods"])
    out += [name for name, *_ in step_sizes(config)]
    return out


# ---- beyond the paper: step sizes, pruning at initialization, separability -------------


def final_sparsity(config: dict) -> float:
    """Sparsity of the last IMP round at prune.rate: the target of every step size."""
    return imp_sparsity(config["prune"]["rate"], config["prune"]["rounds"])


def step_sizes(config: dict) -> list[tuple[str, str, float, int]]:
    """(method, criterion, rate, rounds) of each IMP step size besides prune.rate."""
    base = config["prune"]["rate"]
    target = final_sparsity(config)
    out = []
    for criterion in config["step_sizes"]["criteria"]:
        for rate in config["step_sizes"]["rates"]:
            if math.isclose(rate, base):
                continue
            out.append((step_size_method(criterion, rate), criterion, float(rate),
                        rounds_to_reach(rate, target)))
    return out


def step_size_rate(config: dict, method: str) -> tuple[float, int]:
    """(rate, rounds) of a step-size method such as ``imp-global-rate0.05``."""
    for name, _, rate, rounds in step_sizes(config):
        if name == method:
            return rate, rounds
    raise ValueError(f"{method!r} is not a step size of this config (step_sizes.rates)")


def pai_sparsities(config: dict) -> list[float]:
    """Levels of SNIP and GraSP: prune_at_init.sparsities, or the one-shot levels."""
    levels = config["prune_at_init"]["sparsities"] or oneshot_sparsities(config)
    seen: dict[int, float] = {}
    for s in levels:
        seen.setdefault(pct(s), s)
    return [seen[p] for p in sorted(seen)]


def method_levels(config: dict, dataset: str, model: str, seed: int, method: str) -> list[Level]:
    """Every trained network of ``method`` for one dataset × model × seed, the dense one first."""
    base = run_dir(config["results"], dataset, model, seed)
    out = [Level("dense", 0.0, base / "dense", 0)]
    rate = config["prune"]["rate"]
    if method in ("imp-global", "imp-local") or method.startswith("control-"):
        for k in range(1, config["prune"]["rounds"] + 1):
            out.append(Level(method, imp_sparsity(rate, k), base / method / f"round{k}", k))
    elif method.startswith("oneshot-") or method in ("snip", "grasp"):
        if method.startswith("oneshot-"):
            levels = oneshot_sparsities(config)
        else:
            levels = pai_sparsities(config)
        for s in levels:
            out.append(Level(method, s, base / method / f"sparsity{pct(s)}",
                             nearest_round(config, s)))
    elif method.startswith("structured-"):
        for k in range(1, config["structured"]["rounds"] + 1):
            out.append(Level(method, imp_sparsity(rate, k), base / method / f"round{k}", k))
    elif "-rate" in method:
        step, rounds = step_size_rate(config, method)
        for k in range(1, rounds + 1):
            out.append(Level(method, imp_sparsity(step, k), base / method / f"round{k}", k))
    else:
        raise ValueError(f"unknown method {method!r}")
    return out


# ---- stage inputs: the levels a stage reads -----------------------------------------------


def parse_levels(levels: str | Sequence[Any]) -> list[dict[str, Any]]:
    """A stage's ``--levels``: a JSON list of {"method", "level", "path"} (or of folders);
    ``level`` defaults to the folder's name, ``method`` to its parent's."""
    import json

    from deepfake_lth.errors import UserError

    if isinstance(levels, str):
        try:
            levels = json.loads(levels)
        except json.JSONDecodeError as exc:
            raise UserError(f"--levels is not valid JSON ({exc})") from None
    if not isinstance(levels, list) or not levels:
        raise UserError('--levels must be a non-empty JSON list of {"level", "path"}')
    out = []
    for item in levels:
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, Mapping) or "path" not in item:
            raise UserError(f'--levels: {item!r} has no "path" (a folder with checkpoint.pt)')
        path = Path(item["path"])
        out.append({"method": str(item.get("method") or path.parent.name),
                    "level": str(item.get("level") or path.name), "path": path})
    return out


def level_sparsity(folder: Path, state: Mapping, names: Sequence[str]) -> float:
    """A level's sparsity: its metrics.json's, else the zeros of its prunable weights."""
    import json

    from deepfake_lth.pruning import state_sparsity

    metrics = Path(folder) / "metrics.json"
    if metrics.is_file():
        try:
            value = json.loads(metrics.read_text()).get("sparsity")
            if isinstance(value, (int, float)):
                return float(value)
        except json.JSONDecodeError:
            pass
    return state_sparsity(state, names)
