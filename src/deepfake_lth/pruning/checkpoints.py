"""Checkpoints and masks on disk: atomic torch.save, and loading with ``weights_only=True``
that names the file and the fix when it is truncated or foreign."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning.masks import Mask, State, check_mask


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """torch.save to a temporary name next to ``path``, then rename (no half files)."""
    from deepfake_lth.core.files import atomic_write

    atomic_write(path, lambda fh: torch.save(obj, fh), binary=True)


# what torch.load raises on a truncated, foreign or tampered file (IndexError: a text file)
_LOAD_ERRORS = (
    pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError
)


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as exc:
        raise UserError(
            f"{path} is not readable with torch.load(weights_only=True) "
            f"({exc.__class__.__name__}: {exc}); delete it and rerun its stage"
        ) from None


def load_state(path: str | Path) -> State:
    """A state dict saved with torch.save, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing: run the stage that writes it first")
    state = _torch_load(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state dict (name → tensor); rerun its stage")
    return state


def save_mask(path: str | Path, mask: Mapping[str, torch.Tensor]) -> None:
    """Write ``mask`` as a plain dict of CPU bool tensors (atomically)."""
    atomic_torch_save({k: v.detach().cpu().bool().contiguous() for k, v in mask.items()}, path)


def load_mask(path: str | Path) -> Mask:
    """A mask written by :func:`save_mask`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing: run the pruning stage that writes it first")
    mask = _torch_load(path)
    return check_mask(mask, str(path))
