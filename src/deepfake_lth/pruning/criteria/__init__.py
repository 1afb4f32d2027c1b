"""The registry of pruning criteria: how a round ranks the surviving weights.

A criterion has a *score* per weight and a *scope*: ``global`` removes the lowest scores over
all prunable weights at once (one threshold), ``layer`` removes the same fraction of every
layer. The paper's two criteria are |w| with either scope. A criterion is one module with a
``scores`` function plus one line in :data:`CRITERIA`; the method registry, the config schema
and the workflow's wildcards read the names from here (docs/ARCHITECTURE.md). Importable
without torch: the score functions are imported when a mask is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepfake_lth.core.errors import UserError


@dataclass(frozen=True)
class Criterion:
    """One pruning criterion (see the module docstring)."""

    name: str  # folder part: imp-{name}, oneshot-{name}
    scope: str  # "global" | "layer"
    scores: str | None  # "module:function" (magnitudes, alive) -> scores per layer; None: |w|
    label: str  # the report's word: IMP-{label}
    description: str


CRITERIA: dict[str, Criterion] = {
    c.name: c
    for c in (
        Criterion("global", "global", None, "Global", "|w|, one threshold over all layers"),
        Criterion("local", "layer", None, "Local", "|w|, the same fraction in every layer"),
        Criterion("lamp", "global", "deepfake_lth.pruning.criteria.lamp:scores", "LAMP", "LAMP score"),
    )
}


def get_criterion(name: str) -> Criterion:
    try:
        return CRITERIA[name]
    except (KeyError, TypeError):
        raise UserError(
            f"pruning criterion {name!r} is not one of {', '.join(CRITERIA)}"
        ) from None


def criterion_label(name: str) -> str:
    return CRITERIA[name].label if name in CRITERIA else str(name).capitalize()
