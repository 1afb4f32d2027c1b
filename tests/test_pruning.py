"""Masks, global/local magnitude pruning, mask enforcement, controls and rewinding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning import checkpoints, masks, rewind

torch.set_num_threads(1)


class Tiny(nn.Module):
    """Layers of different sizes (216 … 2048 weights) so global and local pruning differ."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.adaptive_avg_pool2d(torch.relu(self.conv2(x)), 4).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    model = Tiny()
    with torch.no_grad():  # spread the scales of the layers so a global threshold is uneven
        model.conv1.weight.mul_(3.0)
        model.fc1.weight.mul_(0.3)
    return model


def test_full_mask_names_every_prunable_weight() -> None:
    model = tiny()
    mask = masks.full_mask(model)
    assert list(mask) == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    assert all(m.dtype == torch.bool and m.all() for m in mask.values())
    assert masks.sparsity(mask) == 0.0
    assert set(masks.layer_sparsity(mask).values()) == {0.0}


def _simulate_rounds(criterion: str, rounds: int = 8, rate: float = 0.2):
    """IMP without data: prune, then perturb the survivors as training would."""
    model = tiny()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    mask = masks.full_mask(model)
    gen = torch.Generator().manual_seed(1)
    out = []
    for k in range(1, rounds + 1):
        new = masks.magnitude_prune(state, mask, rate, criterion)
        out.append((k, mask, new, {n: state[n].clone() for n in mask}))
        state = masks.mask_state(state, new)
        for n in new:
            state[n] += 0.05 * torch.randn(state[n].shape, generator=gen) * new[n]
        mask = new
    return out


def test_global_rounds_reach_imp_sparsity_with_one_threshold() -> None:
    for k, old, new, weights in _simulate_rounds("global"):
        assert abs(masks.sparsity(new) - (1 - 0.8**k)) < 0.005
        for n in new:  # pruned weights stay pruned
            assert not (new[n] & ~old[n]).any()
        # exactly 20 % of the survivors went, and they are the smallest ones network-wide
        alive_before, _ = masks.mask_counts(old)
        alive_after, _ = masks.mask_counts(new)
        assert alive_before - alive_after == int(0.2 * alive_before + 0.5)
        removed = torch.cat([weights[n][old[n] & ~new[n]].abs() for n in new])
        kept = torch.cat([weights[n][new[n]].abs() for n in new])
        assert removed.max() <= kept.min()
    # the layers end up unevenly pruned: a global threshold, not a per-layer one
    per_layer = masks.layer_sparsity(new)
    assert max(per_layer.values()) - min(per_layer.values()) > 0.2


def test_local_rounds_prune_every_layer_alike() -> None:
    for k, old, new, weights in _simulate_rounds("local"):
        for n, s in masks.layer_sparsity(new).items():
            if new[n].numel() >= 200:
                assert abs(s - (1 - 0.8**k)) < 0.01, (n, k, s)
            removed = weights[n][old[n] & ~new[n]].abs()
            kept = weights[n][new[n]].abs()
            if removed.numel() and kept.numel():
                assert removed.max() <= kept.min()
        assert abs(masks.sparsity(new) - (1 - 0.8**k)) < 0.01


def test_ties_are_broken_deterministically_by_position() -> None:
    state = {"a": torch.ones(10), "b": torch.ones(10)}
    mask = {"a": torch.ones(10, dtype=torch.bool), "b": torch.ones(10, dtype=torch.bool)}
    m1 = masks.magnitude_prune(state, mask, 0.25, "global")
    m2 = masks.magnitude_prune(state, mask, 0.25, "global")
    assert all(torch.equal(m1[n], m2[n]) for n in mask)
    assert (~m1["a"]).sum() == 5 and m1["b"].all()  # first five positions of the first layer
    assert not m1["a"][:5].any()


def test_oneshot_reaches_target_sparsity() -> None:
    model = tiny()
    total = sum(p.numel() for p in masks.prunable_parameters(model).values())
    g = masks.prune_to_sparsity(model, 0.59, "global")
    assert masks.mask_counts(g)[1] - masks.mask_counts(g)[0] == int(0.59 * total + 0.5)
    weights = model.state_dict()
    removed = torch.cat([weights[n][~g[n]].abs() for n in g])
    kept = torch.cat([weights[n][g[n]].abs() for n in g])
    assert removed.max() <= kept.min()
    local = masks.prune_to_sparsity(model, 0.59, "local")
    for m in local.values():
        assert (~m).sum() == int(0.59 * m.numel() + 0.5)
    with pytest.raises(UserError, match="criterion"):
        masks.prune_to_sparsity(model, 0.5, "layerwise")


def _train_steps(model: nn.Module, opt: torch.optim.Optimizer, enforcer, steps: int = 5) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=gen)
        loss = model(x).pow(2).mean() + 1.0
        opt.zero_grad()
        loss.backward()
        if enforcer is not None:
            enforcer.mask_grads()
        opt.step()
        if enforcer is not None:
            enforcer.mask_weights()


@pytest.mark.parametrize("opt_name", ["adam", "adamw"])
def test_enforcer_keeps_pruned_weights_and_optimizer_state_zero(opt_name: str) -> None:
    model = tiny()
    mask = masks.prune_to_sparsity(model, 0.6, "global")
    masks.apply_mask(model, mask)
    make = torch.optim.Adam if opt_name == "adam" else torch.optim.AdamW
    opt = make(model.parameters(), lr=1e-2, weight_decay=0.1)
    enforcer = masks.MaskEnforcer(model, mask)
    _train_steps(model, opt, enforcer)
    params = masks.prunable_parameters(model)
    for n, m in mask.items():
        p = params[n]
        assert torch.all(p[~m] == 0), n
        assert torch.any(p[m] != 0), n  # survivors did train
        st = opt.state[p]
        assert torch.all(st["exp_avg"][~m] == 0) and torch.all(st["exp_avg_sq"][~m] == 0), n

    # without the enforcer the same training moves the pruned weights: the test bites
    model = tiny()
    masks.apply_mask(model, mask)
    opt = make(model.parameters(), lr=1e-2, weight_decay=0.1)
    _train_steps(model, opt, None)
    params = masks.prunable_parameters(model)
    assert any(torch.any(params[n][~m] != 0) for n, m in mask.items())


def test_random_mask_keeps_layer_counts_and_differs() -> None:
    model = tiny()
    imp = masks.prune_to_sparsity(model, 0.67, "local")
    rnd = masks.random_mask_like(imp, seed=1000)
    assert list(rnd) == list(imp)
    for n in imp:
        assert rnd[n].shape == imp[n].shape and rnd[n].dtype == torch.bool
        assert int(rnd[n].sum()) == int(imp[n].sum())
    changed = sum(int((rnd[n] != imp[n]).sum()) for n in imp)
    assert changed > 0.3 * masks.mask_counts(imp)[1]  # 2p(1 − p) ≈ 0.44 expected
    again = masks.random_mask_like(imp, seed=1000)
    other = masks.random_mask_like(imp, seed=1001)
    assert all(torch.equal(again[n], rnd[n]) for n in imp)
    assert any(not torch.equal(other[n], rnd[n]) for n in imp)


def test_fresh_init_differs_from_theta0_with_similar_scale() -> None:
    torch.manual_seed(0)
    theta0 = Tiny().state_dict()
    before = torch.random.get_rng_state()
    fresh = masks.fresh_init(Tiny, seed=1000)
    assert torch.equal(torch.random.get_rng_state(), before)  # global state untouched
    for n in masks.full_mask(Tiny()):
        assert not torch.equal(fresh[n], theta0[n])
        ratio = float(fresh[n].std() / theta0[n].std())
        assert 0.7 < ratio < 1.4, (n, ratio)
    assert torch.equal(masks.fresh_init(Tiny, 1000)["conv1.weight"], fresh["conv1.weight"])


def test_rewind_modes() -> None:
    init = {"w": torch.full((4,), 1.0), "b": torch.zeros(1)}
    trained = {"w": torch.full((4,), 3.0), "b": torch.ones(1)}
    epochs = {2: {"w": torch.full((4,), 2.0), "b": torch.full((1,), 0.5)}}
    assert torch.equal(rewind.rewind_weights("none", trained, init, epochs)["w"], trained["w"])
    assert torch.equal(rewind.rewind_weights("init", trained, init, epochs)["b"], init["b"])
    rewound = rewind.rewind_weights("epoch:2", trained, init, epochs)
    assert torch.equal(rewound["w"], epochs[2]["w"])
    rewound["w"] += 1  # a copy: the source is untouched
    assert torch.equal(epochs[2]["w"], torch.full((4,), 2.0))
    masked = masks.mask_state(rewound, {"w": torch.tensor([True, False, True, False])})
    assert masked["w"].tolist() == [3.0, 0.0, 3.0, 0.0]
    with pytest.raises(UserError, match="epoch:3"):
        rewind.rewind_weights("epoch:3", trained, init, epochs)
    with pytest.raises(UserError, match="rewind"):
        rewind.rewind_weights("late", trained, init, epochs)


def test_mask_files_round_trip(tmp_path) -> None:
    mask = masks.prune_to_sparsity(tiny(), 0.5, "local")
    path = tmp_path / "sub" / "mask.pt"
    checkpoints.save_mask(path, mask)
    loaded = checkpoints.load_mask(path)
    assert list(loaded) == list(mask) and all(torch.equal(loaded[n], mask[n]) for n in mask)
    assert sorted(p.name for p in path.parent.iterdir()) == ["mask.pt"]  # no temp files left
    torch.save({"w": torch.ones(3)}, tmp_path / "weights.pt")
    with pytest.raises(UserError, match="weights.pt"):
        checkpoints.load_mask(tmp_path / "weights.pt")
    with pytest.raises(UserError, match="missing"):
        checkpoints.load_mask(tmp_path / "none.pt")


def test_mask_of_another_architecture_is_a_user_error() -> None:
    mask = masks.full_mask(tiny())
    mask["conv9.weight"] = torch.ones(2, dtype=torch.bool)
    with pytest.raises(UserError, match="conv9.weight"):
        masks.magnitude_prune(tiny().state_dict(), mask, 0.2, "global")
    with pytest.raises(UserError, match="another architecture"):
        masks.MaskEnforcer(tiny(), mask)


def test_mesonet_rounds() -> None:
    from deepfake_lth.models import build_model, prunable_parameters

    torch.manual_seed(0)
    model = build_model("mesonet", input_size=32)
    mask = masks.full_mask(model)
    assert list(mask) == list(prunable_parameters(model))
    for k in (1, 2, 3):
        mask = masks.magnitude_prune(model, mask, 0.2, "global")
        masks.apply_mask(model, mask)
        assert abs(masks.sparsity(mask) - (1 - 0.8**k)) < 0.005
        measured = masks.state_sparsity(model.state_dict(), mask)
        assert measured == pytest.approx(masks.sparsity(mask))
