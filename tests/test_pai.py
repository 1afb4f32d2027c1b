"""Pruning at initialization (SNIP, GraSP) on hand-checkable models, the prune-init stage,
and IMP at other step sizes."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deepfake_lth import cli
from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning import checkpoints, masks, plan, saliency
from deepfake_lth.stages import prune_init as pai
from deepfake_lth.stages.dense import train_dense
from deepfake_lth.stages.imp import imp_round
from deepfake_lth.stages.prune_init import prune_at_init, score_batches

torch.set_num_threads(1)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def linear(weights) -> nn.Linear:
    """y = w·x: one layer, no bias, its weight the only prunable parameter (named ``weight``)."""
    layer = nn.Linear(len(weights), 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(np.asarray([weights], dtype=np.float64)))
    return layer.double()


# --------------------------------------------------------------------------- SNIP


def test_snip_ranks_by_gradient_times_weight_on_a_linear_model() -> None:
    w = np.array([1.0, -2.0, 3.0, 0.5])
    batches_np = [
        (np.array([[1.0, 0.0, 0.0, 10.0]]), np.array([0.0])),
        (np.array([[0.0, 1.0, 0.0, 0.0]]), np.array([1.0])),
    ]
    # by hand: BCE of z = w·x has dL/dz = σ(z) − y, so g = mean over batches of (σ(z) − y) x
    g = np.mean([((sigmoid(x @ w) - y)[:, None] * x).mean(0) for x, y in batches_np], axis=0)
    expected = np.abs(g * w)  # [σ(6)/2, (1 − σ(−2))/2, 0, 5σ(6)/2]
    model = linear(w)
    batches = [(torch.tensor(x), torch.tensor(y)) for x, y in batches_np]
    scores = saliency.snip_scores(model, batches)
    assert list(scores) == ["weight"]
    np.testing.assert_allclose(scores["weight"].numpy()[0], expected, rtol=1e-5)

    mask = saliency.snip_mask(model, batches, 0.5)["weight"][0]
    assert mask.tolist() == [False, True, False, True]  # the two largest |g ⊙ w|
    # magnitude pruning would keep w = −2 and 3 instead: SNIP is not |w|
    magnitude = masks.prune_to_sparsity(model, 0.5, "global")["weight"][0]
    assert magnitude.tolist() == [False, True, True, False]
    # the model scored is left as it was: weights, mode and no gradients
    assert model.weight.grad is None
    assert torch.equal(model.weight.detach()[0], torch.tensor(w))


# --------------------------------------------------------------------------- GraSP


def test_grasp_hessian_gradient_product_on_a_quadratic() -> None:
    w = np.array([1.0, -1.0, 2.0])
    T = 2.0
    batches_np = [
        (np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]]), np.array([1.0, 0.0])),
        (np.array([[2.0, 0.0, 1.0]]), np.array([0.0])),
    ]

    def quadratic(out, y):  # L = ½ mean (z − y)², z the temperature-scaled output
        return 0.5 * ((out[:, 0] - y) ** 2).mean()

    # by hand, per batch b: r = Xw/T − y, g_b = Xᵀr / (n T), H_b = XᵀX / (n T²)
    g = np.mean([x.T @ (x @ w / T - y) / (len(y) * T) for x, y in batches_np], axis=0)
    H = np.mean([x.T @ x / (len(y) * T**2) for x, y in batches_np], axis=0)
    expected = -w * (H @ g)

    model = linear(w)
    batches = [(torch.tensor(x), torch.tensor(y)) for x, y in batches_np]
    scores = saliency.grasp_scores(model, batches, temperature=T, loss_fn=quadratic)
    np.testing.assert_allclose(scores["weight"].numpy()[0], expected, rtol=1e-6)
    # GraSP removes the highest score first
    mask = saliency.grasp_mask(model, batches, 1 / 3, temperature=T, loss_fn=quadratic)["weight"]
    assert mask[0].tolist() == [i != int(np.argmax(expected)) for i in range(3)]
    two = saliency.grasp_mask(model, batches, 2 / 3, temperature=T, loss_fn=quadratic)["weight"]
    assert two[0].tolist() == [i == int(np.argmin(expected)) for i in range(3)]
    # the temperature enters g and H: another one gives other scores
    other = saliency.grasp_scores(model, batches, temperature=1.0, loss_fn=quadratic)["weight"]
    assert not np.allclose(other.numpy()[0], expected)


def test_grasp_matches_the_full_hessian_of_a_small_network() -> None:
    """Double backprop through a nonlinear net with the detectors' BCE loss equals H·g
    from torch's dense Hessian of the prunable weights."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    gen = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1.0]))
        for _ in range(2)
    ]
    T = 3.0
    names = ["0.weight", "2.weight"]
    params = dict(net.named_parameters())
    shapes = [params[n].shape for n in names]
    flat0 = torch.cat([params[n].detach().flatten() for n in names])

    def loss(flat):
        parts = torch.split(flat, [s.numel() for s in shapes])
        override = {n: p.view(s) for n, p, s in zip(names, parts, shapes)}
        values = []
        for x, y in batches:
            z = torch.func.functional_call(net, {**params, **override}, (x,))[:, 0] / T
            values.append(nn.functional.binary_cross_entropy_with_logits(z, y))
        return torch.stack(values).mean()

    g = torch.autograd.functional.jacobian(loss, flat0)
    H = torch.autograd.functional.hessian(loss, flat0)
    expected = -flat0 * (H @ g)
    scores = saliency.grasp_scores(net, batches, temperature=T)
    got = torch.cat([scores[n].flatten() for n in names]).double()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-12)
    assert list(scores) == names


# --------------------------------------------------------------------------- masks


def test_mask_from_scores_counts_and_ties() -> None:
    scores = {"a": torch.tensor([[3.0, 1.0], [1.0, 5.0]]), "b": torch.tensor([1.0, 0.0, 2.0])}
    high = masks.mask_from_scores(scores, 3 / 7, keep="highest")
    # removed: 0.0, then the first two 1.0s by position (a[0,1], a[1,0]); b's 1.0 survives
    assert high["a"].tolist() == [[True, False], [False, True]]
    assert high["b"].tolist() == [True, False, True]
    low = masks.mask_from_scores(scores, 2 / 7, keep="lowest")  # removes 5 and 3
    assert low["a"].tolist() == [[False, True], [True, False]] and low["b"].all()
    assert masks.sparsity(masks.mask_from_scores(scores, 0.0)) == 0.0
    with pytest.raises(UserError, match="sparsity"):
        masks.mask_from_scores(scores, 1.0)
    assert masks.collapsed_layers(high) == []
    assert masks.collapsed_layers({"c": torch.zeros(2, dtype=torch.bool)}) == ["c"]


class TinyBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.fc(self.drop(x))


def test_scores_leave_the_model_alone_and_are_deterministic() -> None:
    torch.manual_seed(0)
    model = TinyBN().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 3, 8, 8, generator=gen), torch.tensor([0.0, 1.0] * 3))]
    for fn in (saliency.snip_scores, saliency.grasp_scores):
        first = fn(model, batches)
        again = fn(model, batches)  # dropout is off while scoring: same scores
        assert all(torch.equal(first[n], again[n]) for n in first)
        assert set(first) == {"conv.weight", "fc.weight"}
        assert any(bool((s != 0).any()) for s in first.values())
    assert not model.training  # mode kept
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats too
    assert all(p.grad is None for p in model.parameters())
    mask = saliency.snip_mask(model, batches, 0.6)
    alive, total = masks.mask_counts(mask)
    assert total - alive == round(0.6 * total)
    with pytest.raises(UserError, match="at least one"):
        saliency.snip_mask(model, [], 0.5)
    bad = [(torch.full((2, 3, 8, 8), math.nan), torch.tensor([0.0, 1.0]))]
    with pytest.raises(UserError, match="not finite"):
        saliency.snip_scores(model, bad)


# --------------------------------------------------------------------------- step size


def test_step_size_names_and_rounds() -> None:
    assert plan.step_size_method("global", 0.05) == "imp-global-rate0.05"
    assert plan.step_size_method("local", 0.1) == "imp-local-rate0.1"
    assert plan.parse_step_size_method("imp-global-rate0.05") == ("global", 0.05)
    assert plan.parse_step_size_method("imp-global") is None
    final = 1 - 0.8**8
    assert plan.rounds_to_reach(0.2, final) == 8  # not 9 from rounding
    assert plan.rounds_to_reach(0.1, final) == 17
    assert plan.rounds_to_reach(0.05, final) == 35
    for rate in (0.05, 0.1, 0.2):
        k = plan.rounds_to_reach(rate, final)
        assert 1 - (1 - rate) ** k >= final - 1e-12 > 1 - (1 - rate) ** (k - 1)


# --------------------------------------------------------------------------- stages

SPEC = {
    "train": {"lr": 1e-3, "batch_size": 8, "max_epochs": 1, "patience": 1, "amp": False},
    "prune": {"rate": 0.2, "rewind": "none"},
    "input_size": 32,
    "device": "cpu",
    "threads": 1,
}


def write_faces(root, videos: int = 8, frames: int = 4):
    rng = np.random.default_rng(0)
    folder = root / "dsa" / "faces"
    folder.mkdir(parents=True)
    images, rows = [], []
    splits = ["train"] * (videos - 4) + ["val", "val", "test", "test"]
    for v in range(videos):
        for f in range(frames):
            img = rng.uniform(70, 180) + rng.normal(0, 15, (32, 32, 3)) + 40 * (v % 2)
            rows.append({"index": len(images), "video_id": f"v{v}", "label": v % 2,
                         "split": splits[v], "frame_index": f, "source": f"v{v}.mp4"})
            images.append(np.clip(img, 0, 255).astype(np.uint8))
    np.save(folder / "faces.npy", np.stack(images))
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    faces = write_faces(root)
    run = root / "dsa" / "mesonet" / "seed0"
    train_dense(faces, run / "dense", "mesonet", 0, SPEC)
    return faces, run


def check_ticket(folder, sparsity: float) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    mask = checkpoints.load_mask(folder / "mask.pt")
    for name, m in mask.items():
        assert torch.equal(state[name] == 0, ~m), name
    assert metrics["sparsity"] == pytest.approx(masks.sparsity(mask))
    assert abs(metrics["sparsity"] - sparsity) < 0.005
    return metrics


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_prune_at_init_stage(dense, method: str) -> None:
    faces, run = dense
    out = run / method / "sparsity59"
    m = prune_at_init(faces, run / "dense", out, "mesonet", 0, method, 0.59, SPEC,
                             batches=2)
    metrics = check_ticket(out, 0.59)
    assert m["method"] == metrics["method"] == method and metrics["criterion"] == "global"
    assert metrics["round"] == 4 and metrics["rewind"] == "init"
    assert metrics["score_batches"] == 2 and metrics["score_samples"] == 16
    assert ("temperature" in metrics) == (method == "grasp")
    # the mask is the method's mask of θ0 on the stage's score batches
    from deepfake_lth.data.store import load_split
    from deepfake_lth.models import build_model

    model = build_model("mesonet", input_size=32)
    model.load_state_dict(torch.load(run / "dense" / "init.pt", weights_only=True))
    batches = score_batches(load_split(faces, "train"), 2, 8, 32, "cpu", 0)
    fn = saliency.snip_mask if method == "snip" else saliency.grasp_mask
    expected = fn(model, batches, 0.59)
    got = checkpoints.load_mask(out / "mask.pt")
    assert all(torch.equal(got[n], expected[n]) for n in expected)
    # and it is not the one-shot magnitude mask of the trained network
    trained = torch.load(run / "dense" / "checkpoint.pt", weights_only=True)
    magnitude = masks.prune_to_sparsity(trained, 0.59, "global", mask=masks.full_mask(model))
    assert any(not torch.equal(got[n], magnitude[n]) for n in got)


def test_prune_init_cli_and_bad_input(dense, tmp_path) -> None:
    faces, run = dense
    out = tmp_path / "snip" / "sparsity36"
    argv = ["--faces", str(faces), "--dense", str(run / "dense"), "--out", str(out),
            "--model", "mesonet", "--seed", "0", "--method", "snip", "--sparsity", "0.36",
            "--batches", "1", "--spec", json.dumps(SPEC)]
    parser = argparse.ArgumentParser()
    pai.add_arguments(parser)  # what cli.py calls for `prune-init`
    rc = pai.run(parser.parse_args(argv))
    assert rc == 0
    assert check_ticket(out, 0.36)["score_batches"] == 1
    with pytest.raises(UserError, match="snip, grasp"):
        prune_at_init(faces, run / "dense", tmp_path / "x", "mesonet", 0, "synflow", 0.5,
                             SPEC)
    with pytest.raises(UserError, match="init.pt is missing"):
        prune_at_init(faces, tmp_path, tmp_path / "x", "mesonet", 0, "snip", 0.5, SPEC)


def test_imp_at_another_step_size(dense, tmp_path) -> None:
    faces, run = dense
    method = "imp-global-rate0.1"
    prev = run / "dense"
    for k in (1, 2):
        out = run / method / f"round{k}"
        m = imp_round(faces, prev, run / "dense", out, "mesonet", 0, k, "global", SPEC,
                      rate=0.1)
        assert m["method"] == method and m["prune_rate"] == 0.1 and m["round"] == k
        assert m["target_sparsity"] == pytest.approx(1 - 0.9**k)
        check_ticket(out, 1 - 0.9**k)
        prev = out
    # round 2 of rate 0.1 must follow round 1 of rate 0.1, not the default chain
    plain = run / "imp-global" / "round1"
    imp_round(faces, run / "dense", run / "dense", plain, "mesonet", 0, 1, "global", SPEC)
    assert json.loads((plain / "metrics.json").read_text())["method"] == "imp-global"
    with pytest.raises(UserError, match="rate 0.2"):
        imp_round(faces, plain, run / "dense", tmp_path / "x", "mesonet", 0, 2, "global",
                  SPEC, rate=0.1)
    # the imp-round subcommand takes --rate
    out = tmp_path / "imp-local-rate0.05" / "round1"
    rc = cli.main(["imp-round", "--faces", str(faces), "--prev", str(run / "dense"), "--dense",
                   str(run / "dense"), "--out", str(out), "--model", "mesonet", "--round", "1",
                   "--criterion", "local", "--rate", "0.05", "--spec", json.dumps(SPEC)])
    assert rc == 0
    metrics = check_ticket(out, 0.05)
    assert metrics["method"] == "imp-local-rate0.05" and metrics["prune_rate"] == 0.05
