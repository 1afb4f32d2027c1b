"""Structured (channel-level) tickets: prune whole conv filters and remove them physically.

A channel-level variant of IMP in the spirit of Chen et al. 2022 ("structurally sparse
lottery tickets"): every round removes ``rate`` of the remaining output channels (filters) of
the prunable convolutions, ranked by the L1 norm of their filters, in every layer
(``local``) or over the whole network with each filter's norm divided by the mean norm of its
layer's surviving filters (``global``). Every layer keeps at least one channel.

A channel mask is plain data like a weight mask: ``{group name: bool tensor (C,)}``, ``True``
for a surviving channel, for every group of channels that can be pruned. A group is a set of
channels written by one or more convs (each with its BatchNorm) and read by the next layers;
the groups are found by tracing the model (:func:`channel_groups`: Torch-Pruning's dependency
graph, so any architecture of convolutions works, none is described by hand) and named by
their conv:

- ``cnn5``: the five block convs (BN and the next conv's inputs, or the linear head, follow);
- ``mesonet``: the four block convs (the last one feeds ``classifier.fc1`` through a flatten,
  so each channel owns ``side × side`` of its inputs);
- ``resnet18`` (any torchvision ResNet): the inner conv of every residual block (``conv1`` of
  a BasicBlock; ``conv1`` and ``conv2`` of a Bottleneck), and the residual stream of every
  stage, named ``layer1`` … ``layer4``: its channels are written by the stem (stage 1), the
  stage's downsampling conv and the last conv of every block, all added together, and read
  by every block's first conv, the next stage's downsampling conv and the linear head. A
  stream channel is pruned in all of its writers at once, so the additions stay aligned;
- ``xception``: every separable conv's pointwise conv; a channel also passes through the
  next depthwise conv (its filter for that channel goes with it), and the residual streams
  are named by their last block (the middle flow is one stream, ``block11``).

These are the groups the project once wrote by hand for the first three models, channel for
channel (``bench/structured_depgraph.py``).

A pruned channel outputs exactly zero: its filters, conv biases and BN scales and shifts are
zero (:func:`apply_channel_mask`), and a sum of zeros (a residual addition) is zero. The weight
mask (for :class:`~deepfake_lth.pruning.masks.MaskEnforcer`) covers the channel's filters and the
next layers' inputs from it, so it counts every weight the compact model drops; and since the
rest of the network reads the channel only through those masked (zero) inputs, no gradient
reaches the channel's biases or BN parameters, which therefore stay zero through training
(weight decay of a zero is zero). :func:`compact_model` then builds the physically smaller
dense model with the same function.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from deepfake_lth.core.errors import UserError

log = logging.getLogger(__name__)

ChannelMask = dict[str, torch.Tensor]
CRITERIA = ("global", "local")  # channels: one L1 threshold over all groups, or per group


@dataclass(frozen=True)
class ChannelGroup:
    """Channels pruned together: the convs that write them, the layers that read them and
    the depthwise convolutions and norms they pass through."""

    name: str  # key of the group in a channel mask
    writers: tuple[tuple[str, str | None], ...]  # (conv, its BatchNorm2d or None) writing them
    consumers: tuple[tuple[str, int], ...]  # (module name, inputs per channel) of the readers
    passthrough: tuple[str, ...] = ()  # depthwise convs and norms whose channels these are


# --------------------------------------------------------------------------- architecture

TRACE_SIDES = (32, 48, 64, 71, 96, 112, 128, 160, 192, 224, 256, 299, 320, 384, 448, 512)
_GROUPS: dict[tuple, list[ChannelGroup]] = {}  # by architecture (module names, types, shapes)


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The prunable channel groups of ``model``, found by Torch-Pruning's dependency graph
    (DepGraph, Fang et al. CVPR 2023) from a traced forward pass: every set of channels that
    convolutions write together (a residual addition couples its inputs), with the layers
    that read them and the depthwise convolutions they pass through; the classifier's
    outputs are not pruned. Cached per architecture. A group written by one conv is named by
    it; a residual stream (several writers) by the top-level module of its last writer
    (``layer1`` … ``layer4`` in a ResNet). Single-writer groups come first, in module order,
    then the streams."""
    key = tuple((n, type(m).__name__, tuple(getattr(m, "weight", torch.empty(0)).shape))
                for n, m in model.named_modules())
    if key not in _GROUPS:
        _GROUPS[key] = _traced_groups(model)
    return _GROUPS[key]


def _trace_input(model: nn.Module) -> torch.Tensor:
    """The smallest square input of TRACE_SIDES ``model`` runs on (a model that flattens
    before its head takes one side only)."""
    for side in TRACE_SIDES:
        x = torch.zeros(1, 3, side, side)
        try:
            with torch.no_grad():
                model(x)
            return x
        except RuntimeError:
            continue
    raise UserError(f"structured pruning traces the model, but {type(model).__name__} runs "
                    f"on none of the input sides {TRACE_SIDES[0]}…{TRACE_SIDES[-1]}")


def _traced_groups(model: nn.Module) -> list[ChannelGroup]:
    import torch_pruning as tp

    model = copy.deepcopy(model).cpu().float().eval()
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=_trace_input(model))
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    names = {m: n for n, m in model.named_modules()}
    groups = [_group(g, graph, names, order) for g in graph.get_all_groups(
        ignored_layers=heads[-1:], root_module_types=[nn.Conv2d])]
    groups = [g for g in groups if g is not None]
    if not groups:
        raise UserError(f"{type(model).__name__} has no convolution whose channels can be "
                        "pruned; use unstructured IMP for this model")
    singles = sorted((g for g in groups if len(g[0]) == 1), key=lambda g: order[g[0][0][0]])
    streams = sorted((g for g in groups if len(g[0]) > 1), key=lambda g: order[g[0][0][0]])
    out = [ChannelGroup(w[0][0], w, *rest) for w, *rest in singles]
    taken = {g.name for g in out}
    for writers, consumers, passthrough in streams:
        name = writers[-1][0].split(".")[0]
        out.append(ChannelGroup(writers[0][0] if name in taken else name, writers, consumers,
                                passthrough))
        taken.add(out[-1].name)
    return out


ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Identity,
               nn.Dropout)


def _norm_after(graph, conv: str, names: dict) -> str | None:
    """The BatchNorm2d that ``conv``'s output alone reaches, through activations only."""
    from torch_pruning import ops

    node = graph.module2node[graph.model.get_submodule(conv)]
    while len(node.outputs) == 1:
        node = node.outputs[0]
        if isinstance(node.module, nn.BatchNorm2d):
            return names.get(node.module)
        if not isinstance(node.module, (*ELEMENTWISE, ops._ElementWiseOp)):
            return None
    return None


def _group(group, graph, names: dict, order: dict) -> tuple | None:
    """(writers, consumers, passthrough) of one dependency-graph group, in module order; a
    writer's norm is the BatchNorm2d its output goes to."""
    import torch_pruning as tp

    channels = len(group[0].idxs)
    writers, readers, through = [], [], []
    for dep, idxs in group:
        name, handler = names.get(dep.target.module), dep.handler
        if name is None:  # an operation (addition, flatten), not a module
            continue
        if handler == tp.prune_conv_out_channels:
            writers.append(name)
        elif handler in (tp.prune_conv_in_channels, tp.prune_linear_in_channels):
            readers.append((name, len(idxs) // channels))
        elif handler in (tp.prune_depthwise_conv_out_channels,
                         tp.prune_depthwise_conv_in_channels,
                         tp.prune_batchnorm_out_channels):
            through.append(name)
    if not writers:
        return None
    paired = {w: bn for w in writers if (bn := _norm_after(graph, w, names)) in through}
    through = [n for n in dict.fromkeys(through) if n not in paired.values()]
    by = order.__getitem__
    return (tuple((w, paired.get(w)) for w in sorted(set(writers), key=by)),
            tuple(sorted(dict.fromkeys(readers), key=lambda r: by(r[0]))),
            tuple(sorted(through, key=by)))


def _module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _width(model: nn.Module, g: ChannelGroup) -> int:
    return _module(model, g.writers[0][0]).out_channels


def full_channel_mask(model: nn.Module) -> ChannelMask:
    """All-True channel mask (no channel pruned) of ``model``."""
    return {g.name: torch.ones(_width(model, g), dtype=torch.bool) for g in channel_groups(model)}


def check_channel_mask(
    model: nn.Module, cmask: Mapping[str, torch.Tensor], source: str = "channel mask"
) -> ChannelMask:
    """``cmask`` validated against ``model``'s channel groups; UserError otherwise."""
    groups = channel_groups(model)
    want = {g.name for g in groups}
    if set(cmask) != want:
        extra, missing = sorted(set(cmask) - want), sorted(want - set(cmask))
        raise UserError(
            f"{source} does not fit {type(model).__name__}: unknown layers {extra[:3]}, missing "
            f"layers {missing[:3]}; the channel mask belongs to another architecture"
        )
    out: ChannelMask = {}
    for g in groups:
        m = cmask[g.name]
        n = _width(model, g)
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or tuple(m.shape) != (n,):
            raise UserError(
                f"{source}: entry {g.name!r} must be a bool tensor of shape ({n},); the channel "
                "mask belongs to another architecture"
            )
        if not bool(m.any()):
            raise UserError(f"{source}: layer {g.name!r} keeps no channel; keep at least one")
        out[g.name] = m.detach().cpu()
    return out


# --------------------------------------------------------------------------- pruning


def channel_sparsity(cmask: Mapping[str, torch.Tensor]) -> float:
    """Fraction of the prunable channels that are pruned."""
    total = sum(m.numel() for m in cmask.values())
    alive = sum(int(m.sum()) for m in cmask.values())
    return 0.0 if total == 0 else 1.0 - alive / total


def channel_counts(cmask: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Surviving channels of every layer."""
    return {name: int(m.sum()) for name, m in cmask.items()}


def filter_norms(model: nn.Module) -> dict[str, torch.Tensor]:
    """L1 norm of every output filter of every conv that writes prunable channels, by conv
    name (float32, CPU)."""
    return {
        conv: _module(model, conv).weight.detach().abs().float().cpu().flatten(1).sum(1)
        for g in channel_groups(model)
        for conv, _ in g.writers
    }


def channel_scores(model: nn.Module, cmask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Score of every channel of every group: the L1 norm of its filter divided by the mean
    norm of the surviving filters of the same conv, averaged over the group's writers (one
    for a plain conv, so the order within it is that of the filter norms)."""
    norms = filter_norms(model)
    out = {}
    for g in channel_groups(model):
        alive = cmask[g.name]
        total = torch.zeros(alive.numel())
        for conv, _ in g.writers:
            mean = float(norms[conv][alive].mean()) if bool(alive.any()) else 0.0
            if mean > 0:
                total += norms[conv] / mean
        out[g.name] = total / len(g.writers)
    return out


def _remove(order: torch.Tensor, owner: list[tuple[str, int]], alive: dict, n: int) -> None:
    """Clear the first ``n`` entries of ``order`` in ``alive``, keeping one channel per layer."""
    left = {name: int(a.sum()) for name, a in alive.items()}
    removed = 0
    for i in order.tolist():
        if removed >= n:
            break
        name, c = owner[i]
        if left[name] > 1:
            alive[name][c] = False
            left[name] -= 1
            removed += 1


def channel_mask(
    model: nn.Module,
    prev_channel_mask: Mapping[str, torch.Tensor] | None,
    rate: float,
    criterion: str,
) -> ChannelMask:
    """New channel mask without ``rate`` of the surviving channels, the smallest filters by L1.

    ``local``: ``rate`` of the survivors of every layer; ``global``: ``rate`` of all survivors
    by the filter norm divided by the mean norm of its layer's survivors. Counts are rounded
    half up, ties broken by position, and every layer keeps at least one channel.
    """
    if criterion not in CRITERIA:
        raise UserError(f"structured criterion {criterion!r} is not one of {', '.join(CRITERIA)}")
    if not 0.0 <= float(rate) < 1.0:
        raise UserError(f"prune.rate must be in [0, 1), got {rate!r}")
    prev = (
        full_channel_mask(model)
        if prev_channel_mask is None
        else check_channel_mask(model, prev_channel_mask, "previous channel mask")
    )
    score = channel_scores(model, prev)
    alive = {name: m.clone() for name, m in prev.items()}
    if criterion == "local":
        for name, a in alive.items():
            idx = a.nonzero().squeeze(1)
            n = int(rate * len(idx) + 0.5)
            order = idx[torch.sort(score[name][idx], stable=True).indices]
            _remove(torch.arange(len(order)), [(name, int(c)) for c in order], {name: a}, n)
        return alive
    scores, owner = [], []
    for name, a in alive.items():
        idx = a.nonzero().squeeze(1)
        scores.append(score[name][idx])
        owner += [(name, int(c)) for c in idx]
    flat = torch.cat(scores) if scores else torch.zeros(0)
    n = int(rate * flat.numel() + 0.5)
    _remove(torch.sort(flat, stable=True).indices, owner, alive, n)
    return alive


def channel_weight_mask(model: nn.Module, cmask: Mapping[str, torch.Tensor]) -> dict:
    """Weight mask (``{name: bool tensor}`` for every prunable weight, as in
    :mod:`deepfake_lth.pruning`) of ``cmask``: the filters of pruned channels and the inputs
    the next layers read from them are False."""
    from deepfake_lth.pruning.masks import full_mask

    cmask = check_channel_mask(model, cmask)
    mask = full_mask(model)
    for g in channel_groups(model):
        drop = ~cmask[g.name]
        for conv, _ in g.writers:
            mask[f"{conv}.weight"][drop] = False
        for name, per in g.consumers:
            m = mask[f"{name}.weight"]
            m.view(m.shape[0], -1, per, *m.shape[2:])[:, drop] = False
        for name in g.passthrough:  # a depthwise conv's filter per channel
            if f"{name}.weight" in mask:
                mask[f"{name}.weight"][drop] = False
    return mask


def _per_channel_params(model: nn.Module, g: ChannelGroup) -> list[torch.Tensor]:
    """The non-prunable parameters of a channel group: conv biases, BN scales and shifts
    (of its writers, and of the depthwise convs and norms it passes through)."""
    modules = [_module(model, n) for w in g.writers for n in w if n is not None]
    modules += [_module(model, n) for n in g.passthrough]
    out = []
    for m in modules:
        params = (m.bias,) if isinstance(m, nn.Conv2d) else (m.weight, m.bias)
        out += [p for p in params if p is not None]
    return out


def apply_channel_mask(model: nn.Module, cmask: Mapping[str, torch.Tensor]) -> dict:
    """Zero the pruned channels of ``model`` in place (filters, conv biases, BN scales and
    shifts, the next layers' inputs) and return the matching weight mask for
    :class:`~deepfake_lth.pruning.masks.MaskEnforcer`."""
    from deepfake_lth.pruning.masks import apply_mask

    mask = channel_weight_mask(model, cmask)
    apply_mask(model, mask)
    with torch.no_grad():
        for g in channel_groups(model):
            keep = cmask[g.name]
            for p in _per_channel_params(model, g):
                p.mul_(keep.to(device=p.device, dtype=p.dtype))
    return mask


# --------------------------------------------------------------------------- compaction


def _sliced_conv(conv: nn.Conv2d, out_idx: torch.Tensor, in_idx: torch.Tensor) -> nn.Conv2d:
    depthwise = conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
    if conv.groups != 1 and not depthwise:
        raise UserError(f"cannot compact a grouped convolution ({conv})")
    if depthwise and not torch.equal(out_idx, in_idx):
        raise UserError(f"a depthwise convolution keeps its input channels ({conv})")
    w = conv.weight
    new = nn.Conv2d(
        len(in_idx),
        len(out_idx),
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=len(out_idx) if depthwise else 1,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=w.device,
        dtype=w.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(w[out_idx] if depthwise else w[out_idx][:, in_idx])
        if conv.bias is not None:
            new.bias.copy_(conv.bias[out_idx])
    return new


def _sliced_linear(fc: nn.Linear, in_idx: torch.Tensor) -> nn.Linear:
    w = fc.weight
    new = nn.Linear(
        len(in_idx), fc.out_features, bias=fc.bias is not None, device=w.device, dtype=w.dtype
    )
    with torch.no_grad():
        new.weight.copy_(w[:, in_idx])
        if fc.bias is not None:
            new.bias.copy_(fc.bias)
    return new


def _sliced_norm(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    ref = bn.weight if bn.weight is not None else bn.running_mean
    new = nn.BatchNorm2d(
        len(idx),
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
        device=None if ref is None else ref.device,
        dtype=None if ref is None else ref.dtype,
    )
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[idx])
            new.bias.copy_(bn.bias[idx])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[idx])
            new.running_var.copy_(bn.running_var[idx])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def compact_model(model: nn.Module, cmask: Mapping[str, torch.Tensor]) -> nn.Module:
    """A physically smaller copy of ``model`` without the pruned channels.

    Its forward equals that of ``model`` with :func:`apply_channel_mask` applied (pruned
    channels output zero, so dropping them and the inputs that read them changes nothing).
    Module names stay the same; ``model`` is not modified.
    """
    cmask = check_channel_mask(model, cmask)
    groups = channel_groups(model)
    new = copy.deepcopy(model)
    out_idx: dict[str, torch.Tensor] = {}
    in_idx: dict[str, torch.Tensor] = {}
    norms: dict[str, torch.Tensor] = {}
    for g in groups:
        keep = cmask[g.name]
        idx = keep.nonzero().squeeze(1)
        for conv, norm in g.writers:
            out_idx[conv] = idx
            if norm is not None:
                norms[norm] = idx
        for name, per in g.consumers:
            in_idx[name] = (keep.repeat_interleave(per)).nonzero().squeeze(1)
        for name in g.passthrough:  # depthwise convs keep these channels in and out
            if isinstance(_module(model, name), nn.Conv2d):
                out_idx[name] = in_idx[name] = idx
            else:
                norms[name] = idx
    for name, idx in norms.items():
        bn = _module(new, name)
        if not isinstance(bn, nn.BatchNorm2d):
            raise UserError(f"{name} is not a BatchNorm2d; cannot compact {type(model).__name__}")
        _set_module(new, name, _sliced_norm(bn, idx).train(bn.training))
    for name in dict.fromkeys([*out_idx, *in_idx]):
        old = _module(new, name)
        if isinstance(old, nn.Conv2d):
            o = out_idx.get(name, torch.arange(old.out_channels))
            i = in_idx.get(name, torch.arange(old.in_channels))
            replacement: nn.Module = _sliced_conv(old, o, i)
        elif isinstance(old, nn.Linear) and name not in out_idx:
            replacement = _sliced_linear(old, in_idx[name])
        else:
            raise UserError(f"cannot compact {name} ({type(old).__name__})")
        _set_module(new, name, replacement.train(old.training))
    return new


def count_parameters(model: nn.Module) -> int:
    """All parameters of ``model`` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def save_channels(path: str | Path, cmask: Mapping[str, torch.Tensor]) -> None:
    """Write a channel mask as a plain dict of bool tensors (atomically)."""
    from deepfake_lth.pruning.checkpoints import save_mask

    save_mask(path, cmask)


def load_channels(path: str | Path) -> ChannelMask:
    """A channel mask written by :func:`save_channels`."""
    from deepfake_lth.pruning.checkpoints import load_mask

    return load_mask(path)


def stray_channel_params(model: nn.Module, cmask: Mapping[str, torch.Tensor]) -> list[str]:
    """Channel groups whose pruned channels have a nonzero bias or BN parameter."""
    out = []
    for g in channel_groups(model):
        drop = ~cmask[g.name].to(next(model.parameters()).device)
        if any(bool(p.detach()[drop].any()) for p in _per_channel_params(model, g)):
            out.append(g.name)
    return out
