"""Low-rank factorization: convolutions and linear layers replaced by two thinner ones from
a truncated SVD, down to a parameter budget.

A ``k×k`` convolution with weight ``W`` (``C_out × C_in × k × k``) is the matrix
``M = W.reshape(C_out, C_in·k·k)``; with ``M ≈ U_r S_r V_rᵀ`` (rank ``r``) it becomes a
``k×k`` convolution to ``r`` channels (weight ``S_r^½ V_rᵀ``, the original stride, padding
and dilation) followed by a ``1×1`` convolution to ``C_out`` (weight ``U_r S_r^½``, the
original bias): the channel decomposition of Zhang et al. (TPAMI 2016). It is exact at full
rank (``r = min(C_out, C_in·k·k)``), its best rank-``r`` approximation in the Frobenius norm
(Eckart–Young) from one SVD, and both parts are ordinary dense convolutions that any
runtime (ONNX Runtime's MLAS included) runs at full speed; its multiply-adds shrink with its
parameters, ``r·(C_in·k·k + C_out)`` against ``C_out·C_in·k·k``. A spatial decomposition
(``k×1`` then ``1×k``, Jaderberg et al. 2014) needs an iterative fit or a second SVD per
layer and saves only a factor of ``k``. A linear layer becomes two linear layers the same way.

A layer is factorized only where that has fewer parameters than the layer (``r·(C_in·k·k +
C_out) < C_out·C_in·k·k``); grouped (depthwise) convolutions stay as they are. The budget is
a fraction of the whole model's parameters (biases and BatchNorm included, which stay):
:func:`plan_ranks` gives every factorized layer the same fraction of its parameters
(``uniform``: multiply-adds fall with parameters in every layer, so the network gets faster)
or keeps the singular values with the most energy per parameter over the whole network
(``energy``: the smallest reconstruction error for the budget, but late layers, which hold
most parameters and few multiply-adds, are cut most).

:func:`factorize` returns a copy of the model with :class:`LowRankConv2d` and
:class:`LowRankLinear` modules under the original names (a state dict loads into
:func:`lowrank_like`, it trains like any model, ``torch.onnx`` exports it). Applied to a
ticket, the factors are dense: the SVD of a masked weight has no zeros, so a ticket's mask is
not kept (prune the factors with :mod:`deepfake_lth.pruning.masks` afterwards to get one: they
are ordinary Conv2d and Linear weights). :func:`compact_ranks` removes rank channels whose
factors are all zero. A factorized network's run folder holds its ranks beside the checkpoint
(:data:`RANKS_FILE`, :func:`write_ranks`, :func:`read_ranks`): the skeleton to load it into.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.files import write_text

ALLOCATIONS = ("uniform", "energy")
RANKS_FILE = "ranks.json"  # beside a factorized network's checkpoint: {layer: rank}


class LowRankConv2d(nn.Module):
    """``up(down(x))``: a ``k×k`` convolution to ``rank`` channels, then a ``1×1`` one."""

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        kw = {"device": conv.weight.device, "dtype": conv.weight.dtype}
        self.down = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, stride=conv.stride,
                              padding=conv.padding, dilation=conv.dilation, bias=False,
                              padding_mode=conv.padding_mode, **kw)
        self.up = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None, **kw)

    @property
    def rank(self) -> int:
        return self.down.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class LowRankLinear(nn.Module):
    """``up(down(x))``: a linear map to ``rank`` features, then one to the outputs."""

    def __init__(self, fc: nn.Linear, rank: int) -> None:
        super().__init__()
        kw = {"device": fc.weight.device, "dtype": fc.weight.dtype}
        self.down = nn.Linear(fc.in_features, rank, bias=False, **kw)
        self.up = nn.Linear(rank, fc.out_features, bias=fc.bias is not None, **kw)

    @property
    def rank(self) -> int:
        return self.down.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


LOWRANK = (LowRankConv2d, LowRankLinear)


# --------------------------------------------------------------------------- ranks


def factorizable(model: nn.Module) -> dict[str, nn.Module]:
    """The layers that can be factorized: ungrouped Conv2d and Linear, by module name."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, LOWRANK) or any(name.startswith(f"{n}.") for n in out):
            continue
        if (isinstance(m, nn.Conv2d) and m.groups == 1) or isinstance(m, nn.Linear):
            out[name] = m
    return out


def _matrix(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as ``C_out × (C_in·k·k)`` (float32)."""
    return layer.weight.detach().float().reshape(layer.weight.shape[0], -1)


def full_rank(layer: nn.Module) -> int:
    rows, cols = layer.weight.shape[0], layer.weight[0].numel()
    return min(rows, cols)


def rank_cost(layer: nn.Module) -> int:
    """Parameters one rank of the factorized layer costs: ``C_in·k·k + C_out``."""
    return layer.weight[0].numel() + layer.weight.shape[0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _planned_parameters(model: nn.Module, layers: Mapping[str, nn.Module],
                        ranks: Mapping[str, int]) -> int:
    total = count_parameters(model)
    for name, r in ranks.items():
        total += r * rank_cost(layers[name]) - layers[name].weight.numel()
    return total


def _uniform(layers: Mapping[str, nn.Module], fraction: float, multiple: int) -> dict[str, int]:
    """Every layer's rank at ``fraction`` of its parameters (rounded down to ``multiple``),
    where that rank is at least 1 and below full rank."""
    ranks = {}
    for name, layer in layers.items():
        r = int(fraction * layer.weight.numel() / rank_cost(layer))
        r = r // multiple * multiple if r >= multiple else r
        if _pays(layer, r):
            ranks[name] = r
    return ranks


def _energy(layers: Mapping[str, nn.Module], spare: int) -> dict[str, int]:
    """Ranks from 1 up, adding the singular values of most relative energy per parameter
    over all layers while they fit in ``spare`` parameters, each layer up to the largest
    rank whose factors are still smaller than it."""
    items = []
    for name, layer in layers.items():
        s = torch.linalg.svdvals(_matrix(layer))
        energy = (s**2) / (s**2).sum().clamp_min(1e-30)
        items += [(float(e) / rank_cost(layer), name) for e in energy[1:]]
    items.sort(key=lambda t: -t[0])
    ranks: dict[str, int] = dict.fromkeys(layers, 1)
    cap = {n: max(r for r in range(1, full_rank(m)) if _pays(m, r)) for n, m in layers.items()}
    for _, name in items:
        cost = rank_cost(layers[name])
        if cost <= spare and ranks[name] < cap[name]:
            ranks[name] += 1
            spare -= cost
    return {n: r for n, r in ranks.items() if _pays(layers[n], r)}


def _pays(layer: nn.Module, rank: int) -> bool:
    """Whether ``rank`` is below full rank and its factors smaller than the layer."""
    return 1 <= rank < full_rank(layer) and rank * rank_cost(layer) < layer.weight.numel()


def budget_at_sparsity(model: nn.Module, sparsity: float) -> float:
    """The budget (a fraction of all parameters) with as many parameters as a ticket of
    ``model`` at ``sparsity`` (of its Conv2d and Linear weights; the rest counted whole):
    factorizing to it compares the two at equal parameter count."""
    prunable = sum(m.weight.numel() for m in model.modules()
                   if isinstance(m, (nn.Conv2d, nn.Linear)))
    total = count_parameters(model)
    return (total - float(sparsity) * prunable) / total


def plan_ranks(model: nn.Module, budget: float, allocation: str = "uniform",
               multiple: int = 1) -> dict[str, int]:
    """The rank of every layer to factorize so that the factorized model has at most
    ``budget`` of ``model``'s parameters (as close to it as the ranks allow); layers not
    named stay dense. UserError when no factorization reaches the budget."""
    if not 0.0 < float(budget) < 1.0:
        raise UserError(f"lowrank budget must be a fraction in (0, 1), got {budget!r}")
    if allocation not in ALLOCATIONS:
        raise UserError(f"lowrank allocation {allocation!r} is not one of "
                        f"{', '.join(ALLOCATIONS)}")
    if int(multiple) < 1:
        raise UserError(f"lowrank rank multiple must be ≥ 1, got {multiple!r}")
    layers = {n: m for n, m in factorizable(model).items() if _pays(m, 1)}
    target = budget * count_parameters(model)
    if allocation == "energy":
        # every layer at rank 1 first: what is left of the budget is spent on higher ranks
        floor = _planned_parameters(model, layers, dict.fromkeys(layers, 1))
        ranks = _energy(layers, int(target - floor))
        return _check_budget(model, layers, ranks, target, budget)
    lo, hi = 0.0, 1.0  # the largest fraction whose ranks fit the budget
    for _ in range(40):
        mid = (lo + hi) / 2
        if _planned_parameters(model, layers, _uniform(layers, mid, multiple)) <= target:
            lo = mid
        else:
            hi = mid
    return _check_budget(model, layers, _uniform(layers, lo, multiple), target, budget)


def _check_budget(model, layers, ranks, target: float, budget: float) -> dict[str, int]:
    if not ranks or _planned_parameters(model, layers, ranks) > target:
        total = count_parameters(model)
        least = _planned_parameters(model, layers, dict.fromkeys(layers, 1))
        raise UserError(
            f"a lowrank budget of {budget:g} of {total:,} parameters cannot be met: rank 1 "
            f"in every layer leaves {least:,} ({least / total:.3f}); raise the budget"
        )
    return ranks


# --------------------------------------------------------------------------- factorize


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _factors(layer: nn.Module, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(down, up)`` weights of the rank-``rank`` truncated SVD of ``layer``'s weight."""
    u, s, vh = torch.linalg.svd(_matrix(layer), full_matrices=False)
    root = s[:rank].sqrt()
    down = (root[:, None] * vh[:rank]).reshape(rank, *layer.weight.shape[1:])
    up = u[:, :rank] * root[None, :]
    if isinstance(layer, nn.Conv2d):
        up = up[:, :, None, None]
    return down.to(layer.weight.dtype), up.to(layer.weight.dtype)


def lowrank_like(model: nn.Module, ranks: Mapping[str, int]) -> nn.Module:
    """A copy of ``model`` with the layers of ``ranks`` replaced by untrained factorized
    ones of those ranks: the skeleton a factorized state dict loads into."""
    layers = factorizable(model)
    unknown = sorted(set(ranks) - set(layers))
    if unknown:
        raise UserError(f"cannot factorize {unknown[:3]}: not an ungrouped Conv2d or Linear "
                        f"of {type(model).__name__}; the ranks belong to another model")
    new = copy.deepcopy(model)
    for name, r in ranks.items():
        if not 1 <= int(r) <= full_rank(layers[name]):
            raise UserError(f"rank {r} of {name} is outside 1…{full_rank(layers[name])}")
        cls = LowRankConv2d if isinstance(layers[name], nn.Conv2d) else LowRankLinear
        _set_module(new, name, cls(layers[name], int(r)).train(layers[name].training))
    return new


def factorize(model: nn.Module, ranks: Mapping[str, int]) -> nn.Module:
    """A copy of ``model`` whose layers of ``ranks`` are their truncated SVDs (``model`` is
    not modified); e.g. ``factorize(model, plan_ranks(model, 0.4))``."""
    new = lowrank_like(model, ranks)
    layers = factorizable(model)
    with torch.no_grad():
        for name, r in ranks.items():
            down, up = _factors(layers[name], int(r))
            target = new.get_submodule(name)
            target.down.weight.copy_(down)
            target.up.weight.copy_(up)
            if layers[name].bias is not None:
                target.up.bias.copy_(layers[name].bias)
    return new


def ranks_of(model: nn.Module) -> dict[str, int]:
    """The rank of every factorized layer of ``model``, by module name."""
    return {n: m.rank for n, m in model.named_modules() if isinstance(m, LOWRANK)}


def compact_ranks(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without the rank channels whose ``down`` filter or ``up`` column is
    all zero (pruned factors): the same function, fewer parameters. A layer keeps one rank
    channel at least (its output is then its bias)."""
    new = copy.deepcopy(model)
    for name, m in list(new.named_modules()):
        if not isinstance(m, LOWRANK):
            continue
        down = m.down.weight.detach().reshape(m.rank, -1)
        up = m.up.weight.detach().reshape(m.up.weight.shape[0], m.rank)
        keep = ((down != 0).any(1) & (up != 0).any(0)).nonzero().squeeze(1)
        if len(keep) == m.rank:
            continue
        if len(keep) == 0:
            keep = torch.zeros(1, dtype=torch.long)
        small = copy.deepcopy(m)
        if isinstance(m, LowRankConv2d):
            small.down = _sliced(m.down, nn.Conv2d, out=keep)
            small.up = _sliced(m.up, nn.Conv2d, inp=keep)
        else:
            small.down = _sliced(m.down, nn.Linear, out=keep)
            small.up = _sliced(m.up, nn.Linear, inp=keep)
        with torch.no_grad():
            if not ((down != 0).any(1) & (up != 0).any(0)).any():
                small.up.weight.zero_()
        _set_module(new, name, small)
    return new


def _sliced(layer: nn.Module, cls: type, out: torch.Tensor | None = None,
            inp: torch.Tensor | None = None) -> nn.Module:
    """``layer`` keeping the output channels ``out`` or the input channels ``inp``."""
    w = layer.weight.detach()
    w = w[out] if out is not None else w[:, inp]
    new = copy.deepcopy(layer)
    new.weight = nn.Parameter(w.clone(), requires_grad=layer.weight.requires_grad)
    if cls is nn.Conv2d:
        new.out_channels, new.in_channels = w.shape[0], w.shape[1]
    else:
        new.out_features, new.in_features = w.shape[0], w.shape[1]
    return new


# --------------------------------------------------------------------------- files


def read_ranks(path: str | Path) -> dict[str, int] | None:
    """The ranks of a low-rank network (``ranks.json``), or None where there is no file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ranks = json.loads(path.read_text())
        if not isinstance(ranks, dict) or not all(
                isinstance(v, int) and v >= 1 for v in ranks.values()):
            raise ValueError("not an object of positive integer ranks")
        return {str(k): int(v) for k, v in ranks.items()}
    except ValueError as exc:
        raise UserError(f"{path} is not a ranks file ({exc}); it holds {{layer: rank}} as "
                        "JSON") from None


def write_ranks(path: str | Path, ranks: Mapping[str, int]) -> Path:
    """Write ``ranks`` ({layer: rank}) as JSON, atomically."""
    text = json.dumps({str(k): int(v) for k, v in ranks.items()}, indent=1) + "\n"
    return write_text(path, text)
