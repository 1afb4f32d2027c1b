"""Low-rank factorization (truncated SVD): exact at full rank, the parameter budget met, a
model that loads, trains, exports to ONNX and compacts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.models import build_model
from deepfake_lth.pruning import lowrank, masks

torch.set_num_threads(1)


def _model(name: str, size: int = 32, seed: int = 0) -> nn.Module:
    from test_export import trained_like

    return trained_like(name, size, seed)


@pytest.mark.parametrize("name", ["cnn5", "mesonet", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_full_rank_reconstructs_the_model(name):
    model = _model(name)
    layers = lowrank.factorizable(model)
    full = {n: lowrank.full_rank(m) for n, m in layers.items()}
    fact = lowrank.factorize(model, full).eval()
    assert lowrank.ranks_of(fact) == full
    for n, layer in layers.items():
        f = fact.get_submodule(n)
        product = f.up.weight.reshape(f.up.weight.shape[0], -1) @ f.down.weight.reshape(
            f.rank, -1)
        assert torch.allclose(product, layer.weight.reshape(layer.weight.shape[0], -1),
                              atol=1e-5), n
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert (fact(x) - model(x)).abs().max() < 1e-4


@pytest.mark.parametrize("allocation", lowrank.ALLOCATIONS)
@pytest.mark.parametrize(("name", "budget"), [("cnn5", 0.25), ("cnn5", 0.5), ("mesonet", 0.4),
                                              pytest.param("resnet18", 0.4,
                                                           marks=pytest.mark.slow)])
def test_parameter_count_meets_the_budget(name, budget, allocation):
    model = build_model(name, input_size=64)
    total = lowrank.count_parameters(model)
    ranks = lowrank.plan_ranks(model, budget, allocation)
    fact = lowrank.factorize(model, ranks)
    got = lowrank.count_parameters(fact)
    # at most the budget, and short of it by less than one rank of the largest layer each
    assert got <= budget * total
    widest = max(lowrank.rank_cost(m) for m in lowrank.factorizable(model).values())
    slack = widest * (len(ranks) if allocation == "uniform" else 1)
    assert got > budget * total - slack
    assert got > 0.9 * budget * total
    assert fact(torch.randn(2, 3, 64, 64)).shape == (2, 1)


def test_budget_at_sparsity_counts_what_a_ticket_keeps():
    model = _model("cnn5")
    mask = masks.prune_to_sparsity(model, 0.5904, "global")
    masks.apply_mask(model, mask)
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    budget = lowrank.budget_at_sparsity(model, 0.5904)
    assert budget * lowrank.count_parameters(model) == pytest.approx(nonzero, rel=1e-3)


def test_uniform_cuts_every_layer_alike_and_energy_keeps_more_energy():
    model = _model("cnn5")
    uniform = lowrank.plan_ranks(model, 0.4, "uniform")
    energy = lowrank.plan_ranks(model, 0.4, "energy")
    layers = lowrank.factorizable(model)
    shares = [r * lowrank.rank_cost(layers[n]) / layers[n].weight.numel()
              for n, r in uniform.items()]
    assert max(shares) - min(shares) < 0.1

    @torch.no_grad()
    def error(ranks):
        fact = lowrank.factorize(model, ranks)
        return sum(float((fact.get_submodule(n).up.weight.reshape(-1, r)
                          @ fact.get_submodule(n).down.weight.reshape(r, -1)
                          - layers[n].weight.reshape(layers[n].weight.shape[0], -1)).square().sum()
                         / layers[n].weight.square().sum()) for n, r in ranks.items())

    assert set(energy) <= set(layers)
    assert error(energy) <= error(uniform) + 1e-6 * len(layers)


def test_a_factorized_state_dict_loads_trains_and_exports(tmp_path):
    pytest.importorskip("onnxruntime")
    from deepfake_lth.deploy.export import check_onnx, to_onnx

    model = _model("cnn5")
    ranks = lowrank.plan_ranks(model, 0.4)
    fact = lowrank.factorize(model, ranks)
    skeleton = lowrank.lowrank_like(build_model("cnn5", input_size=32), ranks)
    skeleton.load_state_dict(fact.state_dict())
    x = torch.randn(4, 3, 32, 32)
    fact.eval()
    skeleton.eval()
    with torch.inference_mode():
        assert torch.equal(skeleton(x), fact(x))
    # fine-tuning: gradients reach both factors and a step lowers the loss on the batch
    skeleton.train()
    opt = torch.optim.Adam(skeleton.parameters(), lr=1e-2)
    y = torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(skeleton(x), y)
        loss.backward()
        losses.append(float(loss.detach()))
        opt.step()
    some = next(iter(ranks))
    assert skeleton.get_submodule(some).down.weight.grad.abs().sum() > 0
    assert losses[-1] < losses[0]
    path = to_onnx(skeleton.eval(), tmp_path / "lowrank.onnx", 32)
    assert check_onnx(skeleton, path, torch.randn(2, 3, 32, 32)) < 1e-4


def test_pruned_factors_compact_to_the_same_function():
    model = _model("cnn5")
    fact = lowrank.factorize(model, lowrank.plan_ranks(model, 0.5)).eval()
    name, layer = next((n, m) for n, m in fact.named_modules()
                       if isinstance(m, lowrank.LowRankConv2d))
    with torch.no_grad():  # prune rank channels 0 and 2 (masks on the factors)
        layer.down.weight[[0, 2]] = 0
        layer.up.weight[:, 1] = 0
    compact = lowrank.compact_ranks(fact).eval()
    assert lowrank.ranks_of(compact)[name] == layer.rank - 3
    assert lowrank.count_parameters(compact) < lowrank.count_parameters(fact)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert (compact(x) - fact(x)).abs().max() < 1e-5
    # the factors are ordinary Conv2d/Linear weights: the mask machinery covers them
    assert f"{name}.down.weight" in masks.prunable_parameters(fact)


def test_a_ticket_factorizes_with_dense_factors():
    model = _model("cnn5")
    masks.apply_mask(model, masks.prune_to_sparsity(model, 0.6, "global"))
    full = {n: lowrank.full_rank(m) for n, m in lowrank.factorizable(model).items()}
    fact = lowrank.factorize(model, full).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert (fact(x) - model.eval()(x)).abs().max() < 1e-4
    some = fact.get_submodule(next(iter(full)))
    assert float((some.down.weight == 0).float().mean()) < 0.05  # the mask is not kept


def test_bad_budgets_and_ranks_name_the_fix():
    model = _model("cnn5")
    for budget in (0, 1.0, 1.5):
        with pytest.raises(UserError, match="budget"):
            lowrank.plan_ranks(model, budget)
    with pytest.raises(UserError, match="raise the budget"):
        lowrank.plan_ranks(model, 0.001)
    with pytest.raises(UserError, match="allocation"):
        lowrank.plan_ranks(model, 0.5, "random")
    with pytest.raises(UserError, match="another model"):
        lowrank.lowrank_like(model, {"layer1.0.conv1": 3})
    with pytest.raises(UserError, match="outside"):
        lowrank.lowrank_like(model, {"features.block1.conv": 10_000})


def test_a_factorized_checkpoint_exports_as_a_ticket_with_its_ranks(tmp_path):
    import json

    from deepfake_lth.deploy import export

    model = _model("cnn5")
    ranks = lowrank.plan_ranks(model, 0.4)
    fact = lowrank.factorize(model, ranks).eval()
    torch.save(fact.state_dict(), tmp_path / "checkpoint.pt")
    (tmp_path / export.RANKS_FILE).write_text(json.dumps(ranks))
    info = export.export_ticket(tmp_path / "checkpoint.pt", None, tmp_path / "t.pt", "cnn5", 32)
    assert info["ranks"] == ranks and info["sparsity"] == 0.0
    ticket = export.read_ticket(tmp_path / "t.pt")
    assert ticket.ranks == ranks
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(ticket.build()(x), fact(x))
    (tmp_path / export.RANKS_FILE).write_text('{"features.block1.conv": 0}')
    with pytest.raises(UserError, match="not a ranks file"):
        export.export_ticket(tmp_path / "checkpoint.pt", None, tmp_path / "u.pt", "cnn5", 32)
