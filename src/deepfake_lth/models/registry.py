"""The model registry's declarations, importable without torch (the workflow reads them).

Each architecture is declared once here: its builder (``module:function``, imported only
when a model is built), input sizes, the layers Grad-CAM and the separability probe hook,
its share of a GPU (a Snakemake resource, so that small models share one GPU), and the
function listing its channel groups for structured tickets (the same for every model: the
coupled channels are traced, not written by hand; None: structured pruning is not offered).
A new model is one module under ``models/`` plus one entry here; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepfake_lth.core.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture and its defaults."""

    name: str
    builder: str  # "module:function"; function(input_size=S, num_outputs=n) -> nn.Module
    input_size: int  # default side of the square input
    min_input_size: int  # smallest side that works (the module's MIN_INPUT_SIZE)
    target_layer: str  # dotted module name of the last convolutional stage (Grad-CAM)
    feature_layer: str  # dotted module name whose flattened output is the penultimate feature
    description: str
    gpu_share: float  # fraction of one GPU a training job of this model needs (1, 1/2, 1/4)
    # "module:function" listing its prunable channel groups (the dependency graph traced by
    # Torch-Pruning for every model here); None: structured pruning is not offered for it
    channel_groups: str | None = None


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mesonet",
            builder="deepfake_lth.models.mesonet:build_mesonet",
            input_size=256,
            min_input_size=32,
            target_layer="block4.bn",
            feature_layer="classifier.act",
            description="Meso-4 (Afchar et al. 2018): 4 conv blocks + 2 dense, 27,977 params "
            "at 256 px",
            gpu_share=0.25,
            channel_groups="deepfake_lth.pruning.structured:channel_groups",
        ),
        ModelSpec(
            name="cnn5",
            builder="deepfake_lth.models.cnn5:build_cnn5",
            input_size=128,
            min_input_size=32,
            target_layer="features.block5.relu",
            feature_layer="pool",
            description="CNN-5: 5 conv-BN-ReLU-pool blocks (16-32-64-128-176), global average "
            "pooling, linear; 0.30M params",
            gpu_share=0.25,
            channel_groups="deepfake_lth.pruning.structured:channel_groups",
        ),
        ModelSpec(
            name="resnet18",
            builder="deepfake_lth.models.resnet:build_resnet18",
            input_size=224,
            min_input_size=32,
            target_layer="layer4",
            feature_layer="avgpool",
            description="ResNet-18 (He et al. 2016, torchvision); 11.2M params",
            gpu_share=0.5,
            channel_groups="deepfake_lth.pruning.structured:channel_groups",
        ),
        ModelSpec(
            name="xception",
            builder="deepfake_lth.models.xception:build_xception",
            input_size=299,
            min_input_size=71,
            target_layer="relu4",
            feature_layer="pool",
            description="Xception (Chollet 2017) as in FaceForensics++; 20.8M params",
            gpu_share=1.0,
            channel_groups="deepfake_lth.pruning.structured:channel_groups",
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The registered spec of ``name``; UserError naming the registered models otherwise."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise UserError(
            f"unknown model {name!r}: registered models are {', '.join(sorted(MODELS))}; "
            "fix the name under `models:` in the config"
        ) from None


def gpu_share_percent(name: str) -> int:
    """A model's GPU share as the integer Snakemake resource ``gpu_share`` (percent of a GPU)."""
    return round(100 * get_spec(name).gpu_share)


def resolve(dotted: str):
    """The object named ``module:attribute``."""
    import importlib

    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)
