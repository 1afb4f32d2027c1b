"""Where a job runs and how it is seeded: ``device: auto | cpu | cuda | cuda:N``."""

from __future__ import annotations

import random

import numpy as np
import torch

from deepfake_lth.core.errors import UserError


def resolve_device(spec: str) -> torch.device:
    """``auto`` → CUDA when available (CUDA_VISIBLE_DEVICES applies), else CPU; ``cpu``;
    ``cuda`` or ``cuda:N``."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    kind, _, index = spec.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UserError(f"device: {spec!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise UserError(
            f"device: {spec!r} was asked for but CUDA is not available here; "
            "set device: auto or cpu"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise UserError(
            f"device: {spec!r} but only {torch.cuda.device_count()} CUDA device(s) are "
            "visible; pick a smaller index or device: auto"
        )
    return torch.device(spec)


def seed_everything(seed: int, device: torch.device | str | None = None) -> None:
    """Seed python, numpy and torch; on the CPU also ask for deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device is None or torch.device(device).type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


def amp_dtype(amp: bool, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of a run: bf16 on a CUDA device that has it, fp16 on other CUDA
    devices (with a GradScaler), None (no autocast) on the CPU or without ``amp``."""
    device = torch.device(device)
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
