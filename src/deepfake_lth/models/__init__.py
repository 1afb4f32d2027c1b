"""Model registry: a name maps to a builder and its defaults (in the style of timm/open_lth).

The declarations (:mod:`.registry`) import without torch, so the workflow can read them;
building and loading (:mod:`.build`) import torch when first used.
"""

from __future__ import annotations

from deepfake_lth.models.registry import MODELS, ModelSpec, get_spec

_BUILD = ("build_model", "count_parameters", "load_pretrained", "prunable_parameters")
__all__ = [
    "MODELS",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "get_spec",
    "load_pretrained",
    "prunable_parameters",
]


def __getattr__(name: str):
    if name in _BUILD:
        from deepfake_lth.models import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
