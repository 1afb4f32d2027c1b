"""Rewinding: the weights a pruned network restarts from (trained weights, θ0 or an early
epoch of dense training)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning.masks import State

REWIND_HELP = "none | init | epoch:E"


def parse_rewind(mode: str) -> tuple[str, int | None]:
    """``'epoch:3'`` -> ('epoch', 3); ``'none'``/``'init'`` -> (mode, None)."""
    if mode in ("none", "init"):
        return mode, None
    kind, _, epoch = str(mode).partition(":")
    if kind == "epoch" and epoch.isdigit():
        return "epoch", int(epoch)
    raise UserError(f"prune.rewind: {mode!r} is not one of {REWIND_HELP}")


def rewind_weights(
    mode: str,
    trained_state: Mapping[str, torch.Tensor] | None,
    init_state: Mapping[str, torch.Tensor] | None,
    epoch_states: Mapping[int, Mapping[str, torch.Tensor]] | None = None,
) -> State:
    """Weights a pruned network restarts from: ``none`` the trained weights (the paper's
    Algorithm 1), ``init`` θ0 (the original LTH), ``epoch:E`` the weights after epoch E of
    dense training. Apply the mask afterwards (:func:`mask_state`)."""
    kind, epoch = parse_rewind(mode)
    if kind == "none":
        source = trained_state
    elif kind == "init":
        source = init_state
    else:
        source = (epoch_states or {}).get(epoch)
    if source is None:
        raise UserError(f"rewind {mode!r}: the weights to rewind to were not given")
    return {k: v.detach().clone() for k, v in source.items()}
