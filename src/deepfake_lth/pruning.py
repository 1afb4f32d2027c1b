"""Masks, magnitude pruning (global and local), rewinding and mask enforcement.

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

import pickle
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from deepfake_lth.errors import UserError

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
    ranked by the criterion's scores (:mod:`deepfake_lth.criteria`)."""
    from deepfake_lth.criteria import get_criterion
    from deepfake_lth.models.registry import resolve

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


# --------------------------------------------------------------------------- rewinding


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


# --------------------------------------------------------------------------- files


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """torch.save to a temporary name next to ``path``, then rename (no half files)."""
    from deepfake_lth.files import atomic_write

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


# ------------------------------------------------------------------------ pruning at init
#
# SNIP (Lee et al., ICLR 2019) and GraSP (Wang et al., ICLR 2020) score every prunable weight
# of the untrained network θ0 from a few training batches and prune once, before training.
# Both rank over all prunable weights at once (one global threshold). The scores are taken on
# a copy of the model with batch norm in training mode (batch statistics, as during training)
# and dropout off, so they are a deterministic function of θ0 and the batches; the model
# passed in is left untouched.

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GRASP_TEMPERATURE = 200.0


def binary_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of the single fake logit, the loss the detectors train with."""
    z = logits.reshape(len(labels), -1)[:, 0]
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    return nn.functional.binary_cross_entropy_with_logits(z, labels.to(z.dtype))


def _scoring_copy(model: nn.Module) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    """A copy of ``model`` for scoring: batch norm in training mode, dropout off."""
    import copy

    net = copy.deepcopy(model)
    net.train()
    for module in net.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()
    params = prunable_parameters(net)
    for p in params.values():
        p.requires_grad_(True)
    return net, params


def _mean_grad(
    net: nn.Module,
    weights: list[nn.Parameter],
    batches: list[Batch],
    loss_fn: LossFn,
    temperature: float = 1.0,
) -> list[torch.Tensor]:
    """Gradient of the loss (logits divided by ``temperature``) w.r.t. ``weights``, averaged
    over ``batches``."""
    total = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        loss = loss_fn(net(x) / temperature, y)
        for t, g in zip(total, torch.autograd.grad(loss, weights, allow_unused=True)):
            if g is not None:
                t.add_(g)
    return [t / len(batches) for t in total]


def _batch_list(batches: Iterable[Batch], method: str) -> list[Batch]:
    out = list(batches)
    if not out:
        raise UserError(f"{method} needs at least one training batch to score the weights")
    return out


def _finite(scores: Mask, method: str) -> Mask:
    bad = [name for name, s in scores.items() if not torch.isfinite(s).all()]
    if bad:
        raise UserError(
            f"{method} scores of {', '.join(bad[:3])} are not finite (NaN or inf): the loss at "
            "θ0 overflowed; check the training images (NaN pixels?) and the model's input_size"
        )
    return scores


def snip_scores(model: nn.Module, batches: Iterable[Batch], loss_fn: LossFn | None = None) -> Mask:
    """SNIP connection sensitivity |g ⊙ w| of every prunable weight at the model's current
    weights (θ0); g is the gradient of the loss averaged over ``batches`` of (x, y)."""
    batches = _batch_list(batches, "SNIP")
    net, params = _scoring_copy(model)
    weights = list(params.values())
    grads = _mean_grad(net, weights, batches, loss_fn or binary_loss)
    return _finite(
        {n: (g * w.detach()).abs().float().cpu() for n, w, g in zip(params, weights, grads)},
        "SNIP",
    )


def grasp_scores(
    model: nn.Module,
    batches: Iterable[Batch],
    temperature: float = GRASP_TEMPERATURE,
    loss_fn: LossFn | None = None,
) -> Mask:
    """GraSP score −θ ⊙ Hg of every prunable weight at θ0.

    g is the gradient of the loss of the logits divided by ``temperature`` (averaged over the
    batches); Hg, the Hessian of that loss times g, is the gradient of gᵀ∇L with g held fixed
    (double backpropagation), also averaged over the batches. The Hessian is that of the
    prunable weights, as in the authors' code. High scores are removed first: removing them
    reduces the gradient flow the least (or increases it).
    """
    if not float(temperature) > 0:
        raise UserError(f"GraSP temperature must be positive, got {temperature!r}")
    batches = _batch_list(batches, "GraSP")
    loss_fn = loss_fn or binary_loss
    net, params = _scoring_copy(model)
    weights = list(params.values())
    g = [t.detach() for t in _mean_grad(net, weights, batches, loss_fn, float(temperature))]
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        loss = loss_fn(net(x) / float(temperature), y)
        grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
        z = sum((gi * gr).sum() for gi, gr in zip(g, grads) if gr is not None)
        if not isinstance(z, torch.Tensor) or not z.requires_grad:
            continue  # the loss is linear in the weights on this batch: Hg = 0
        for t, h in zip(hg, torch.autograd.grad(z, weights, allow_unused=True)):
            if h is not None:
                t.add_(h)
    return _finite(
        {n: (-w.detach() * h / len(batches)).float().cpu() for n, w, h in zip(params, weights, hg)},
        "GraSP",
    )


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


def snip_mask(
    model: nn.Module,
    batches: Iterable[Batch],
    sparsity: float,
    loss_fn: LossFn | None = None,
) -> Mask:
    """SNIP at θ0: keep the (1 − sparsity) share of weights with the largest |g ⊙ w|."""
    return mask_from_scores(snip_scores(model, batches, loss_fn), sparsity, keep="highest")


def grasp_mask(
    model: nn.Module,
    batches: Iterable[Batch],
    sparsity: float,
    temperature: float = GRASP_TEMPERATURE,
    loss_fn: LossFn | None = None,
) -> Mask:
    """GraSP at θ0: remove the ``sparsity`` share of weights with the highest −θ ⊙ Hg."""
    scores = grasp_scores(model, batches, temperature, loss_fn)
    return mask_from_scores(scores, sparsity, keep="lowest")


def collapsed_layers(mask: Mapping[str, torch.Tensor]) -> list[str]:
    """Layers of ``mask`` with no surviving weight (pruning at initialization can cut a
    layer entirely at high sparsity, which disconnects the network)."""
    return [name for name, m in mask.items() if m.numel() and not bool(m.any())]
