"""The study's arithmetic and names: sparsities of rounds and levels, folder names.

Which methods a config runs, and their folders, are the method registry's
(:mod:`deepfake_lth.stages.methods`), built on these functions; docs/ARCHITECTURE.md has the path
scheme. Importable without torch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError

STEP_SIZE_RE = re.compile(r"imp-(\w+)-rate(0?\.\d+)")


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


def seeds_of(config: Mapping[str, Any], model: str) -> list[int]:
    """The seeds ``model`` is trained with: its own ``models.{model}.seeds``, else ``seeds``."""
    own = (config["models"].get(model) or {}).get("seeds")
    return [int(s) for s in (own if own else config["seeds"])]


def trained_datasets(config: Mapping[str, Any]) -> list[str]:
    """The datasets networks are trained on: all but those with ``role: test`` (scored only)."""
    return [d for d, ds in config["datasets"].items() if (ds or {}).get("role", "train") == "train"]


def verdict_target(config: Mapping[str, Any]) -> tuple[str, str, list[int]] | None:
    """``claims.winning_ticket``'s dataset, model and seeds (None when it names none)."""
    wt = (config.get("claims") or {}).get("winning_ticket") or {}
    if not isinstance(wt, Mapping) or not wt.get("dataset") or not wt.get("model"):
        return None
    return str(wt["dataset"]), str(wt["model"]), [int(s) for s in wt.get("seeds") or []]


def verdict_seeds(config: Mapping[str, Any], dataset: str, model: str) -> list[int]:
    """The seeds of ``claims.winning_ticket`` when it names this dataset and model, else []:
    what the winning-ticket claim compares runs for each (stages/methods.verdict_levels)."""
    target = verdict_target(config)
    return target[2] if target and target[:2] == (dataset, model) else []


def planned_seeds(config: Mapping[str, Any], dataset: str, model: str) -> list[int]:
    """Every seed with a run folder of this dataset × model: the model's seeds and the
    winning-ticket claim's (:func:`verdict_seeds`)."""
    return sorted(set(seeds_of(config, model)) | set(verdict_seeds(config, dataset, model)))


def all_seeds(config: Mapping[str, Any]) -> list[int]:
    """Every seed any model is trained with (sorted)."""
    return sorted({s for m in config["models"] for s in seeds_of(config, m)})


def run_dir(results: str | Path, dataset: str, model: str, seed: int) -> Path:
    return Path(results) / dataset / model / f"seed{seed}"


# ---- beyond the paper: step sizes, pruning at initialization, separability -------------


def rate_tag(rate: float) -> str:
    """A pruning rate as written in folder names: 0.05 → ``0.05``, 0.1 → ``0.1``."""
    return f"{float(rate):g}"


def step_size_method(criterion: str, rate: float) -> str:
    """Name (and folder) of IMP at another step size: ``imp-global-rate0.05``. The config's
    own ``prune.rate`` keeps the plain name ``imp-{criterion}``."""
    return f"imp-{criterion}-rate{rate_tag(rate)}"


def parse_step_size_method(name: str) -> tuple[str, float] | None:
    """``imp-global-rate0.05`` → (``global``, 0.05); None for any other method name."""
    m = STEP_SIZE_RE.fullmatch(str(name))
    return (m.group(1), float(m.group(2))) if m else None


def rounds_to_reach(rate: float, sparsity: float) -> int:
    """IMP rounds at ``rate`` needed to reach ``sparsity``: ceil(log(1 − s) / log(1 − rate))."""
    if not 0 < rate < 1 or not 0 <= sparsity < 1:
        raise UserError(
            f"rounds_to_reach: rate {rate!r} and sparsity {sparsity!r} must be in (0, 1)"
        )
    if sparsity == 0:
        return 0
    # the tolerance keeps 1 − 0.8^8 at exactly 8 rounds of 0.2 despite rounding
    return max(1, math.ceil(math.log1p(-sparsity) / math.log1p(-rate) - 1e-9))


def nearest_round_at(rate: float, sparsity: float) -> int:
    """IMP round whose sparsity 1 − (1 − rate)^k is nearest ``sparsity`` (k ≥ 1)."""
    return min(range(1, 200), key=lambda k: (abs(imp_sparsity(rate, k) - sparsity), k))


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
    """Levels of SNIP and GraSP: prune_init.sparsities, or the one-shot levels."""
    levels = config["prune_init"]["sparsities"] or oneshot_sparsities(config)
    seen: dict[int, float] = {}
    for s in levels:
        seen.setdefault(pct(s), s)
    return [seen[p] for p in sorted(seen)]


# ---- training budgets: the epoch cap of a job ---------------------------------------------


def round_epochs(config: Mapping[str, Any]) -> int:
    """Epoch cap of one IMP round: ``prune.retrain_epochs`` when the round continues from
    trained weights (rewind ``none``) and it is set, else ``train.max_epochs``."""
    epochs = config["train"]["max_epochs"]
    retrain = config["prune"]["retrain_epochs"]
    if retrain and config["prune"]["rewind"] == "none":
        return min(int(retrain), int(epochs))
    return int(epochs)


def oneshot_epochs(config: Mapping[str, Any], sparsity: float) -> int:
    """Epoch cap of one-shot pruning to ``sparsity``, at the level of IMP round k:
    ``oneshot.budget`` ``matched`` — the k rounds' epochs IMP spent reaching it
    (k × :func:`round_epochs`); ``round`` — one round's."""
    budget = config["oneshot"]["budget"]
    k = nearest_round_at(config["prune"]["rate"], sparsity)
    return round_epochs(config) * (k if budget == "matched" else 1)


def pai_epochs(config: Mapping[str, Any], sparsity: float) -> int:
    """Epoch cap of SNIP/GraSP at ``sparsity`` (trained from θ0): ``train.max_epochs``, plus
    under ``prune_init.budget: matched`` the k rounds' epochs IMP spent reaching the level
    of round k (k × :func:`round_epochs`)."""
    epochs = int(config["train"]["max_epochs"])
    if config["prune_init"]["budget"] != "matched":
        return epochs
    return epochs + nearest_round_at(config["prune"]["rate"], sparsity) * round_epochs(config)


# ---- stage inputs: the levels a stage reads -----------------------------------------------


def parse_levels(levels: str | Sequence[Any]) -> list[dict[str, Any]]:
    """A stage's ``--levels``: a JSON list of {"method", "level", "path"} (or of folders);
    ``level`` defaults to the folder's name, ``method`` to its parent's."""
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
    from deepfake_lth.pruning.masks import state_sparsity

    metrics = Path(folder) / "metrics.json"
    if metrics.is_file():
        try:
            value = json.loads(metrics.read_text()).get("sparsity")
            if isinstance(value, (int, float)):
                return float(value)
        except json.JSONDecodeError:
            pass
    return state_sparsity(state, names)
