"""Pruning at initialization: SNIP and GraSP saliency scores and the masks they give."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning.masks import Mask, mask_from_scores, prunable_parameters

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
