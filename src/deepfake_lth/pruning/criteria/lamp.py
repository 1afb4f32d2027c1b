"""LAMP: layer-adaptive magnitude-based pruning (Lee, Park, Mo, Ahn and Shin, ICLR 2021).

A weight's score is its squared magnitude divided by the sum of the squared magnitudes of the
surviving weights of its layer that are at least as large; one global threshold on these
scores then sets every layer's sparsity. The largest weight of a layer scores 1, so no layer
is emptied while another still has small weights.
"""

from __future__ import annotations

import torch


def scores(magnitudes: list[torch.Tensor], alive: list[torch.Tensor]) -> list[torch.Tensor]:
    """LAMP scores per layer (flat, float64); pruned weights score 0 and are not ranked."""
    out = []
    for mag, keep in zip(magnitudes, alive):
        sq = mag.double().square() * keep.double()
        values, order = torch.sort(sq[keep], stable=True)  # ascending, survivors only
        suffix = values.flip(0).cumsum(0).flip(0)  # Σ of the squares from here to the largest
        # weights tied in magnitude share the sum over all that are at least as large
        first = torch.searchsorted(values, values, right=False)
        layer = torch.zeros_like(sq)
        alive_idx = keep.nonzero().squeeze(1)
        layer[alive_idx[order]] = torch.where(suffix[first] > 0, values / suffix[first],
                                              torch.zeros_like(values))
        out.append(layer)
    return out
