"""Masks, magnitude pruning (global and local), mask enforcement, and masks from scores.

A mask is plain data: ``{parameter_name: bool tensor}`` for every prunable weight (the
Conv2d and Linear weights named by :func:`deepfake_lth.models.prunable_parameters`, keyed by
their ``state_dict`` names). ``True`` marks a surviving weight. Masks live on the CPU; the
:class:`MaskEnforcer` keeps a copy on the parameters' device.

Pruning follows Algorithm 1 of the paper: a round removes ``rate`` of the weights that are
still alive, by magnitude, with one threshold over the whole network (``global``) or one per
layer (``local``). Counts are exact (ties are broken by position), so after ``k`` rounds the
sparsity is 1 − (1 − rate)^k up to the rounding of each round's count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from deepfake_lth.core.errors import UserError

Mask = dict[str, torch.Tensor]
State = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- masks as data


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Prunable weights of ``model`` (Conv2d and Linear weights), by state_dict name."""
    from deepfake_lth.models import prunable_parameters as registry_prunable

    return registry_prunable(model)


def full_mask(model: nn.Module) -> Mask:
    """All-True mask (the dense network, round 0) for every prunable weight of ``model``."""
    return {
        name: torch.ones(p.shape, dtype=torch.bool)
        for name, p in prunable_parameters(model).items()
    }


def mask_counts(mask: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(surviving, total) prunable weights of ``mask``."""
    alive = sum(int(m.sum()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    return alive, total


def sparsity(mask: Mapping[str, torch.Tensor]) -> float:
    """Fraction of the masked (prunable) weights that are pruned (False)."""
    alive, total = mask_counts(mask)
    return 0.0 if total == 0 else 1.0 - alive / total


def layer_sparsity(mask: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Sparsity of each layer of ``mask``."""
    return {name: 1.0 - float(m.float().mean()) if m.numel() else 0.0 for name, m in mask.items()}


def state_sparsity(state: Mapping[str, torch.Tensor], names: Iterable[str]) -> float:
    """Fraction of the weights ``names`` of ``state`` that are exactly zero (measured sparsity)."""
    zeros = total = 0
    for name in names:
        w = state[name]
        zeros += int((w == 0).sum())
        total += w.numel()
    return 0.0 if total == 0 else zeros / total


def mask_from_state(state: Mapping[str, torch.Tensor], names: Iterable[str]) -> Mask:
    """Mask of the nonzero entries of the weights ``names`` of ``state``."""
    return {name: (state[name] != 0).cpu() for name in names}


def check_mask(mask: object, source: str = "mask") -> Mask:
    """``mask`` as a validated {name: bool tensor} dict; UserError naming ``source`` otherwise."""
    if not isinstance(mask, dict) or not mask:
        raise UserError(f"{source}: expected a non-empty dict of parameter name → bool tensor")
    for name, m in mask.items():
        if not isinstance(name, str) or not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            raise UserError(
                f"{source}: entry {name!r} is not a bool tensor; a mask maps every prunable "
                "weight name to a torch.bool tensor of the weight's shape"
            )
    return mask


def _weights(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    if isinstance(model_or_state, nn.Module):
        return model_or_state.state_dict()
    return model_or_state


def _scores(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> list:
    """|w| (float32, CPU) of every masked weight, in the mask's order; shapes checked."""
    out = []
    for name, m in mask.items():
        if name not in weights:
            raise UserError(
                f"the mask names weight {name!r}, which the weights do not have; the mask "
                "belongs to another architecture (rebuild it from this model's checkpoint)"
            )
        w = weights[name]
        if tuple(w.shape) != tuple(m.shape):
            raise UserError(
                f"weight {name!r} has shape {tuple(w.shape)} but its mask {tuple(m.shape)}; "
                "the mask belongs to another architecture"
            )
        out.append(w.detach().abs().float().cpu().flatten())
    return out


def _round_half_up(x: float) -> int:
    return int(x + 0.5)


def _remove_smallest(scores: list, alive: list, n_remove: int) -> list:
    """Flags of ``alive`` with the ``n_remove`` smallest surviving ``scores`` cleared.

    One ranking over all given layers; ties are broken by position (layer order, then flat
    index), so the result is deterministic and the count exact.
    """
    if n_remove <= 0:
        return [a.clone() for a in alive]
    idx = [a.nonzero().squeeze(1) for a in alive]
    flat = torch.cat([s[i] for s, i in zip(scores, idx)])
    n_remove = min(n_remove, flat.numel())
    order = torch.sort(flat, stable=True).indices[:n_remove]
    removed = torch.zeros(flat.numel(), dtype=torch.bool)
    removed[order] = True
    out, offset = [], 0
    for a, i in zip(alive, idx):
        new = a.clone()
        new[i[removed[offset : offset + i.numel()]]] = False
        offset += i.numel()
        out.append(new)
    return out


def _prune(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    criterion: str,
    n_remove: Callable[[int, int], int],
) -> Mask:
    """Shared core: ``n_remove(alive, total)`` weights go, over all layers or in each layer,
    ranked by the criterion's scores (:mod:`deepfake_lth.pruning.criteria`)."""
    from deepfake_lth.models.registry import resolve
    from deepfake_lth.pruning.criteria import get_criterion

    crit = get_criterion(criterion)
    scores = _scores(weights, mask)
    alive = [m.detach().cpu().flatten().clone() for m in mask.values()]
    if crit.scores is not None:
        scores = resolve(crit.scores)(scores, alive)
    if crit.scope == "global":
        n_alive = sum(int(a.sum()) for a in alive)
        n_total = sum(a.numel() for a in alive)
        new = _remove_smallest(scores, alive, n_remove(n_alive, n_total))
    else:
        new = [
            _remove_smallest([s], [a], n_remove(int(a.sum()), a.numel()))[0]
            for s, a in zip(scores, alive)
        ]
    return {name: n.view(m.shape) for (name, m), n in zip(mask.items(), new)}


def _check_fraction(value: float, what: str) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise UserError(f"{what} must be in [0, 1), got {value!r}")
    return float(value)


def magnitude_prune(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    rate: float,
    criterion: str,
) -> Mask:
    """New mask without ``rate`` of the surviving weights, the smallest by |w|.

    ``global``: one threshold over all surviving prunable weights; ``local``: the same
    fraction of the survivors of every layer. Pruned weights stay pruned.
    """
    rate = _check_fraction(rate, "prune.rate")
    return _prune(
        _weights(model_or_state), mask, criterion, lambda alive, _: _round_half_up(rate * alive)
    )


def prune_to_sparsity(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    target: float,
    criterion: str,
    mask: Mapping[str, torch.Tensor] | None = None,
) -> Mask:
    """One-shot pruning: the mask of sparsity ``target`` (over all prunable weights, or in
    every layer for ``local``) by |w|, starting from ``mask`` (default: dense)."""
    target = _check_fraction(target, "sparsity")
    weights = _weights(model_or_state)
    if mask is None:
        if isinstance(model_or_state, nn.Module):
            mask = full_mask(model_or_state)
        else:
            raise ValueError("prune_to_sparsity of a state dict needs a mask naming its weights")
    return _prune(
        weights,
        mask,
        criterion,
        lambda alive, total: _round_half_up(target * total) - (total - alive),
    )


def random_mask_like(mask: Mapping[str, torch.Tensor], seed: int) -> Mask:
    """Random mask with the same number of survivors in every layer as ``mask``."""
    gen = torch.Generator().manual_seed(int(seed))
    out: Mask = {}
    for name, m in mask.items():
        keep = int(m.sum())
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[torch.randperm(m.numel(), generator=gen)[:keep]] = True
        out[name] = flat.view(m.shape)
    return out


def fresh_init(build: Callable[[], nn.Module], seed: int) -> State:
    """Weights of a newly built model under ``seed`` (the model's own initializer), as a
    CPU state dict; the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build()
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- applying masks


def mask_state(state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> State:
    """Copy of ``state`` with the masked weights set to zero (θ ← m ⊙ θ)."""
    out = {k: v.detach().clone() for k, v in state.items()}
    for name, m in mask.items():
        if name not in out:
            raise UserError(
                f"the mask names weight {name!r}, which the state dict does not have; the "
                "mask belongs to another architecture"
            )
        out[name].mul_(m.to(device=out[name].device, dtype=out[name].dtype))
    return out


def apply_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights of ``model`` in place (w ← m ⊙ w)."""
    params = prunable_parameters(model)
    missing = sorted(set(mask) - set(params))
    if missing:
        raise UserError(
            f"the mask names weights the model does not have ({', '.join(missing[:3])}); the "
            "mask belongs to another architecture"
        )
    with torch.no_grad():
        for name, m in mask.items():
            p = params[name]
            p.mul_(m.to(device=p.device, dtype=p.dtype))


class MaskEnforcer:
    """Keeps pruned weights exactly zero during training.

    Call :meth:`mask_grads` after ``backward()`` and before ``optimizer.step()``: gradients and
    so Adam's moment estimates stay zero at pruned positions, and with zero weights Adam's
    update there (its L2 decay included) is exactly zero. :meth:`mask_weights` re-applies the
    mask to the weights; ``train.fit`` calls it once per epoch as a safety net (AdamW's decoupled
    decay of a zero weight is zero too). Masks are precomputed on the parameters' device and
    applied with one fused in-place multiply per call.
    """

    def __init__(self, model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
        params = prunable_parameters(model)
        missing = sorted(set(mask) - set(params))
        if missing:
            raise UserError(
                f"the mask names weights the model does not have ({', '.join(missing[:3])}); "
                "the mask belongs to another architecture"
            )
        # only layers with pruned weights need work; a dense layer's mask is all ones
        pairs = [(params[n], m) for n, m in mask.items() if not bool(m.all())]
        self.params = [p for p, _ in pairs]
        self.masks = [m.to(device=p.device, dtype=p.dtype) for p, m in pairs]

    def mask_weights(self) -> None:
        """w ← m ⊙ w for every pruned layer."""
        if self.params:
            with torch.no_grad():
                torch._foreach_mul_(self.params, self.masks)

    def mask_grads(self) -> None:
        """g ← m ⊙ g for every pruned layer with a gradient."""
        pairs = [(p.grad, m) for p, m in zip(self.params, self.masks) if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])




def mask_from_scores(
    scores: Mapping[str, torch.Tensor], sparsity: float, keep: str = "highest"
) -> Mask:
    """Mask of sparsity ``sparsity`` over all scored weights (one global ranking): the
    weights with the highest scores survive (``keep='highest'``, SNIP) or those with the
    lowest (``keep='lowest'``, GraSP removes the highest). Exactly round(sparsity · total)
    weights go; ties are broken by position (layer order, then flat index)."""
    sparsity = _check_fraction(sparsity, "sparsity")
    if keep not in ("highest", "lowest"):
        raise ValueError(f"keep must be 'highest' or 'lowest', not {keep!r}")
    flat = [s.detach().float().cpu().flatten() for s in scores.values()]
    if keep == "lowest":
        flat = [-f for f in flat]
    alive = [torch.ones(f.numel(), dtype=torch.bool) for f in flat]
    total = sum(f.numel() for f in flat)
    new = _remove_smallest(flat, alive, _round_half_up(sparsity * total))
    return {name: n.view(s.shape) for (name, s), n in zip(scores.items(), new)}


def collapsed_layers(mask: Mapping[str, torch.Tensor]) -> list[str]:
    """Layers of ``mask`` with no surviving weight (pruning at initialization can cut a
    layer entirely at high sparsity, which disconnects the network)."""
    return [name for name, m in mask.items() if m.numel() and not bool(m.any())]
