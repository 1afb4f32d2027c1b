"""Structured (channel-level) tickets: prune whole conv filters and remove them physically.

A channel-level variant of IMP in the spirit of Chen et al. 2022 ("structurally sparse
lottery tickets"): every round removes ``rate`` of the remaining output channels (filters) of
the prunable convolutions, ranked by the L1 norm of their filters, in every layer
(``local``) or over the whole network with each filter's norm divided by the mean norm of its
layer's surviving filters (``global``). Every layer keeps at least one channel.

A channel mask is plain data like a weight mask: ``{group name: bool tensor (C,)}``, ``True``
for a surviving channel, for every group of channels that can be pruned. A group is a set of
channels written by one or more convs (each with its BatchNorm) and read by the next layers;
the groups are fixed per architecture (:func:`channel_groups`) and named by their conv:

- ``cnn5``: the five block convs (BN and the next conv's inputs, or the linear head, follow);
- ``mesonet``: the four block convs (the last one feeds ``classifier.fc1`` through a flatten,
  so each channel owns ``side × side`` of its inputs);
- ``resnet18`` (any torchvision ResNet): the inner conv of every residual block (``conv1`` of
  a BasicBlock; ``conv1`` and ``conv2`` of a Bottleneck), and the residual stream of every
  stage, named ``layer1`` … ``layer4``: its channels are written by the stem (stage 1), the
  stage's downsampling conv and the last conv of every block, all added together, and read
  by every block's first conv, the next stage's downsampling conv and the linear head. A
  stream channel is pruned in all of its writers at once, so the additions stay aligned.

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
    """Channels pruned together: the convs that write them and the layers that read them."""

    name: str  # key of the group in a channel mask
    writers: tuple[tuple[str, str], ...]  # (conv, BatchNorm2d) module names writing the channels
    consumers: tuple[tuple[str, int], ...]  # (module name, inputs per channel) of the readers

    @classmethod
    def single(cls, conv: str, norm: str, consumers: tuple[tuple[str, int], ...]) -> ChannelGroup:
        """The output channels of one conv, named by it."""
        return cls(conv, ((conv, norm),), consumers)


# --------------------------------------------------------------------------- architecture


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The prunable channel groups of ``model``: the function its registry entry names
    (``ModelSpec.channel_groups``) that recognises it."""
    from deepfake_lth.models.registry import MODELS, resolve

    for spec in MODELS.values():
        if spec.channel_groups:
            groups = resolve(spec.channel_groups)(model)
            if groups is not None:
                return groups
    supported = ", ".join(n for n, s in MODELS.items() if s.channel_groups)
    raise UserError(
        f"structured pruning supports {supported}, not {type(model).__name__}; use "
        "unstructured IMP (imp-round) for this model"
    )


def cnn5_groups(model: nn.Module) -> list[ChannelGroup] | None:
    """CNN-5: each block's conv output, read by the next block (the last by ``fc``)."""
    from deepfake_lth.models.cnn5 import CNN5

    if not isinstance(model, CNN5):
        return None
    names = [n for n, _ in model.features.named_children()]
    groups = []
    for i, name in enumerate(names):
        nxt = (f"features.{names[i + 1]}.conv", 1) if i + 1 < len(names) else ("fc", 1)
        groups.append(ChannelGroup.single(f"features.{name}.conv", f"features.{name}.bn", (nxt,)))
    return groups


def mesonet_groups(model: nn.Module) -> list[ChannelGroup] | None:
    """Meso-4: each block's conv output; block 4's is read by ``classifier.fc1``."""
    from deepfake_lth.models.mesonet import Meso4

    if not isinstance(model, Meso4):
        return None
    blocks = ["block1", "block2", "block3", "block4"]
    per_channel = model.classifier.fc1.in_features // model.block4.conv.out_channels
    groups = []
    for i, name in enumerate(blocks):
        nxt = (f"{blocks[i + 1]}.conv", 1) if i + 1 < len(blocks) else ("classifier.fc1", per_channel)
        groups.append(ChannelGroup.single(f"{name}.conv", f"{name}.bn", (nxt,)))
    return groups


def resnet_groups(model: nn.Module) -> list[ChannelGroup] | None:
    """torchvision ResNets: see :func:`_resnet_groups`."""
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    if not isinstance(model, ResNet):
        return None
    return _resnet_groups(model, BasicBlock, Bottleneck)


def _resnet_groups(model: nn.Module, basic: type, bottleneck: type) -> list[ChannelGroup]:
    """Inner groups of every block, then the residual stream of every stage."""
    inner: list[ChannelGroup] = []
    streams: list[ChannelGroup] = []
    name, writers, readers = "layer1", [("conv1", "bn1")], []
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        for idx, block in getattr(model, layer).named_children():
            p = f"{layer}.{idx}"
            if isinstance(block, bottleneck):
                inner.append(ChannelGroup.single(f"{p}.conv1", f"{p}.bn1", ((f"{p}.conv2", 1),)))
                inner.append(ChannelGroup.single(f"{p}.conv2", f"{p}.bn2", ((f"{p}.conv3", 1),)))
                last = (f"{p}.conv3", f"{p}.bn3")
            elif isinstance(block, basic):
                inner.append(ChannelGroup.single(f"{p}.conv1", f"{p}.bn1", ((f"{p}.conv2", 1),)))
                last = (f"{p}.conv2", f"{p}.bn2")
            else:
                raise UserError(f"structured pruning does not know the ResNet block {p}")
            readers.append((f"{p}.conv1", 1))
            down = block.downsample
            if down is not None:  # the block starts a new stream from the current one
                if not (
                    isinstance(down, nn.Sequential)
                    and len(down) == 2
                    and isinstance(down[0], nn.Conv2d)
                    and isinstance(down[1], nn.BatchNorm2d)
                ):
                    raise UserError(f"structured pruning needs {p}.downsample to be conv + BN")
                readers.append((f"{p}.downsample.0", 1))
                streams.append(ChannelGroup(name, tuple(writers), tuple(readers)))
                name, writers, readers = layer, [(f"{p}.downsample.0", f"{p}.downsample.1")], []
            writers.append(last)
    readers.append(("fc", 1))
    streams.append(ChannelGroup(name, tuple(writers), tuple(readers)))
    return inner + streams


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
    return mask


def _per_channel_params(model: nn.Module, g: ChannelGroup) -> list[torch.Tensor]:
    """The non-prunable parameters of a channel group: conv biases, BN scales and shifts."""
    out = []
    for conv_name, norm_name in g.writers:
        conv, norm = _module(model, conv_name), _module(model, norm_name)
        out += [p for p in (conv.bias, norm.weight, norm.bias) if p is not None]
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
    if conv.groups != 1:
        raise UserError(f"cannot compact a grouped convolution ({conv})")
    w = conv.weight
    new = nn.Conv2d(
        len(in_idx),
        len(out_idx),
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=w.device,
        dtype=w.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(w[out_idx][:, in_idx])
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
        for conv, norm in g.writers:
            out_idx[conv] = norms[norm] = keep.nonzero().squeeze(1)
        for name, per in g.consumers:
            in_idx[name] = (keep.repeat_interleave(per)).nonzero().squeeze(1)
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
