"""Building and loading registry models (the declarations are in :mod:`.registry`).

Every registered model maps a float batch ``(B, 3, S, S)`` (ImageNet-normalised) to logits
``(B, num_outputs)``. The spec also names the module Grad-CAM hooks (``target_layer``: the
last convolutional stage, whose output is never overwritten in place) and the module whose
flattened output is the penultimate feature vector (``feature_layer``: the input of the
final linear layer).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.models.registry import MODELS, ModelSpec, get_spec, resolve

__all__ = ["MODELS", "ModelSpec", "build_model", "count_parameters", "get_spec",
           "load_pretrained", "prunable_parameters"]


def build_model(
    name: str,
    input_size: int | None = None,
    pretrained: str | None = None,
    num_outputs: int = 1,
) -> nn.Module:
    """Build registered model ``name`` for square inputs of side ``input_size`` (default: the
    spec's), mapping ``(B, 3, S, S)`` to ``(B, num_outputs)`` logits.

    ``pretrained`` is an optional local ``state_dict`` file (e.g. ImageNet weights) loaded
    into every layer but the final linear one; nothing is ever downloaded. Initialisation
    draws from torch's global generator, so the result is fixed by ``torch.manual_seed``.
    """
    spec = get_spec(name)
    size = spec.input_size if input_size is None else input_size
    if isinstance(size, bool) or not isinstance(size, int):
        raise UserError(
            f"models.{name}.input_size must be an integer, got {size!r}; e.g. {spec.input_size}"
        )
    if size < spec.min_input_size:
        raise UserError(
            f"models.{name}.input_size is {size}, but {name} needs inputs of at least "
            f"{spec.min_input_size}×{spec.min_input_size}; raise it (default {spec.input_size})"
        )
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise UserError(f"num_outputs must be a positive integer, got {num_outputs!r}")
    model = resolve(spec.builder)(input_size=size, num_outputs=num_outputs)
    if pretrained:
        load_pretrained(model, pretrained, model_name=name)
    return model


def _head_name(model: nn.Module) -> str:
    """Name of the final linear layer (the last nn.Linear in module order)."""
    heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return heads[-1] if heads else ""


def load_pretrained(model: nn.Module, path: str | Path, model_name: str = "model") -> None:
    """Load a local ``state_dict`` file into ``model``, skipping the final linear layer.

    Accepts a plain state_dict or one wrapped as ``{"state_dict": ...}``; also skips an
    ImageNet head named ``last_linear`` (pretrainedmodels) and reshapes 2-D pointwise
    weights to 1×1 convs (older Xception checkpoints). Any other mismatch is a UserError.
    """
    where = f"models.{model_name}.pretrained"
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{where}: weights file {path} does not exist; give the path of a local "
            "state_dict file, or null to start from random weights"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise UserError(
            f"{where}: {path} is not a state_dict readable with torch.load(weights_only=True) "
            f"({exc.__class__.__name__}: {exc}); save the weights with "
            "torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{where}: {path} does not hold a state_dict (name → tensor)")

    head = _head_name(model)
    skip_prefixes = tuple(p for p in (f"{head}.", "last_linear.") if p != ".")
    own = model.state_dict()
    kept: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith(skip_prefixes):
            continue
        target = own.get(key)
        if (
            target is not None
            and value.dim() == 2
            and target.dim() == 4
            and target.shape[2:] == (1, 1)
            and value.shape == target.shape[:2]
        ):
            value = value[:, :, None, None]
        if target is not None and value.shape != target.shape:
            raise UserError(
                f"{where}: {path}: {key} has shape {tuple(value.shape)}, but {model_name} "
                f"expects {tuple(target.shape)}; the file is for another architecture"
            )
        kept[key] = value
    result = model.load_state_dict(kept, strict=False)
    missing = [
        k
        for k in result.missing_keys
        if not k.startswith(skip_prefixes) and not k.endswith("num_batches_tracked")
    ]
    if missing or result.unexpected_keys:
        raise UserError(
            f"{where}: {path} does not match {model_name}: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[:3]}); "
            "the file is for another architecture"
        )


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of every nn.Conv2d and nn.Linear (no biases, no norm layers), keyed by their
    state_dict names, in module order."""
    out: dict[str, nn.Parameter] = {}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        weight = module._parameters.get("weight")
        if not isinstance(weight, nn.Parameter):
            raise TypeError(
                f"{name or 'model'}: weight is not a plain parameter (a pruning hook or "
                "parametrization is attached); remove it before listing prunable weights"
            )
        out[f"{name}.weight" if name else "weight"] = weight
    return out


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (elements of parameters with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
