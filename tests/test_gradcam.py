"""Grad-CAM maps checked by hand, ΔL across sparsities, the shared evaluation faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deepfake_lth.analysis import gradcam
from deepfake_lth.core.errors import UserError

torch.set_num_threads(1)


def pointwise_net(inplace: bool, stride: int = 1) -> nn.Sequential:
    """conv (target, index 0) → ReLU → global mean → linear: α and L follow by hand."""
    k = stride
    return nn.Sequential(
        nn.Conv2d(3, 2, kernel_size=k, stride=stride),
        nn.ReLU(inplace=inplace),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 1),
    )


def set_weights(net: nn.Sequential, w, b, v, c) -> None:
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w, dtype=torch.float32).view_as(net[0].weight))
        net[0].bias.copy_(torch.tensor(b, dtype=torch.float32))
        net[4].weight.copy_(torch.tensor(v, dtype=torch.float32).view(1, 2))
        net[4].bias.copy_(torch.tensor([c], dtype=torch.float32))


W = np.array([[0.5, -1.0, 0.25], [-0.3, 0.8, 0.6]])
B = np.array([0.1, -0.2])
V = np.array([1.5, -0.7])
C = 0.3


def hand_cam(x: np.ndarray, sign: float):
    """Expected map and logit of pointwise_net for one image x (3, H, W)."""
    a = np.einsum("kc,chw->khw", W, x) + B[:, None, None]  # conv output, before the ReLU
    hw = a.shape[1] * a.shape[2]
    z = C + (V * np.maximum(a, 0).reshape(2, -1).mean(axis=1)).sum()
    # ∂z/∂A^k_ij = v_k / hw where A^k_ij > 0; α_k is its spatial mean
    alpha = sign * V * (a > 0).reshape(2, -1).mean(axis=1) / hw
    cam = np.maximum((alpha[:, None, None] * a).sum(axis=0), 0)
    return cam, z


@pytest.mark.parametrize("target,label", [("fake", 0), ("real", 1), ("label", 0), ("label", 1)])
def test_gradcam_matches_hand_computation(target, label):
    torch.manual_seed(0)
    net = pointwise_net(inplace=True)
    set_weights(net, W, B, V, C)
    x = torch.randn(2, 3, 5, 6)
    labels = np.array([label, label])
    with gradcam.GradCAM(net, "0", target=target) as cam:
        maps, z = cam(x, labels)
    sign = {"fake": 1.0, "real": -1.0}.get(target, 1.0 if label else -1.0)
    assert maps.shape == (2, 5, 6)
    for i in range(2):
        want, want_z = hand_cam(x[i].numpy().astype(np.float64), sign)
        assert want.max() > 0  # the check is not vacuous
        np.testing.assert_allclose(maps[i].numpy(), want, rtol=1e-5, atol=1e-7)
        assert z[i].item() == pytest.approx(want_z, rel=1e-5)


def test_capture_not_corrupted_by_inplace_relu():
    """The conv output feeds an in-place ReLU; the map must equal the out-of-place net's."""
    torch.manual_seed(1)
    x = torch.randn(3, 3, 6, 6)
    maps = {}
    for inplace in (True, False):
        net = pointwise_net(inplace=inplace)
        set_weights(net, W, B, V, C)
        with gradcam.GradCAM(net, "0", target="fake") as cam:
            maps[inplace] = cam(x)[0]
    # negative activations exist, so a capture overwritten by the ReLU would differ
    assert (net[0](x) < 0).any()
    torch.testing.assert_close(maps[True], maps[False], rtol=0, atol=0)
    want, _ = hand_cam(x[0].numpy().astype(np.float64), 1.0)
    np.testing.assert_allclose(maps[True][0].numpy(), want, rtol=1e-5, atol=1e-7)


def test_hook_removed_and_model_unchanged():
    net = pointwise_net(inplace=True)
    x = torch.randn(1, 3, 4, 4)
    before = net(x).detach()
    with gradcam.GradCAM(net, "0") as cam:
        cam(x, np.array([1]))
    assert not net[0]._forward_hooks
    assert all(p.grad is None for p in net.parameters())
    torch.testing.assert_close(net(x).detach(), before)


def test_upsampling_is_bilinear_to_input_size():
    torch.manual_seed(2)
    net = pointwise_net(inplace=False, stride=2)
    x = torch.randn(1, 3, 4, 4)
    with gradcam.GradCAM(net, "0", target="fake") as cam:
        maps, _ = cam(x)
    assert maps.shape == (1, 4, 4)
    # the 2×2 map by hand: α from the stride-2 conv's output, then ReLU(Σ α A)
    a = net[0](x)[0].detach().numpy()
    v = net[4].weight.detach().numpy()[0]
    alpha = v * (a > 0).reshape(2, -1).mean(axis=1) / 4
    low = np.maximum((alpha[:, None, None] * a).sum(axis=0), 0)
    m = maps[0].numpy()
    # align_corners=False from 2 to 4: corners copy the source cells, the mean is kept
    assert m[0, 0] == pytest.approx(low[0, 0], abs=1e-6)
    assert m[3, 3] == pytest.approx(low[1, 1], abs=1e-6)
    assert m[0, 3] == pytest.approx(low[0, 1], abs=1e-6)
    assert m.mean() == pytest.approx(low.mean(), abs=1e-6)


def test_normalise_concentration_delta():
    maps = np.zeros((3, 10, 10), dtype=np.float32)
    maps[0] = 2.0  # uniform: the hottest 10 % hold 10 %
    maps[1, 4, 4] = 5.0  # one hot pixel: everything
    norm = gradcam.normalise(maps)
    assert norm.max() == 1.0 and norm[2].max() == 0.0
    conc = gradcam.concentration(norm)
    assert conc[0] == pytest.approx(0.1)
    assert conc[1] == pytest.approx(1.0)
    assert np.isnan(conc[2])  # no heat, no share
    d = gradcam.delta_l(norm[0], norm)
    assert d[0] == 0.0
    assert d[1] == pytest.approx(np.sqrt(99.0))  # 99 pixels of 1 vs 0, one of 1 vs 1
    rng = np.random.default_rng(0)
    random_maps = rng.random((20, 8, 8)) ** 3
    c = gradcam.concentration(random_maps)
    assert ((c >= 0.1) & (c <= 1.0)).all()


def make_faces(tmp_path, n_videos=5, per_video=3, size=16, shuffle=False):
    rng = np.random.default_rng(0)
    rows = []
    for label in (0, 1):
        for v in range(n_videos):
            for f in range(per_video):
                split = "test" if v < n_videos - 1 else "train"
                rows.append((f"{'fr'[label]}{v}", label, split, f))
    n = len(rows)
    faces = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    faces[[r[1] == 1 for r in rows], :, : size // 2] //= 2  # fakes differ a little
    np.save(tmp_path / "faces.npy", faces)
    manifest = pd.DataFrame(rows, columns=["video_id", "label", "split", "frame_index"])
    manifest.insert(0, "index", np.arange(n))
    manifest["source"] = "synthetic"
    if shuffle:
        manifest = manifest.sample(frac=1.0, random_state=3)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path


def test_select_eval_set_is_fixed_and_spread_over_videos(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_faces(tmp_path / "a")
    b = make_faces(tmp_path / "b", shuffle=True)  # same faces, manifest rows shuffled
    rows = gradcam.select_eval_set(a, 3, seed=7)
    np.testing.assert_array_equal(rows, gradcam.select_eval_set(a, 3, seed=7))
    np.testing.assert_array_equal(rows, gradcam.select_eval_set(b, 3, seed=7))  # row order
    manifest = pd.read_csv(a / "manifest.csv").set_index("index")
    chosen = manifest.loc[rows]
    assert (chosen["split"] == "test").all()
    assert list(chosen["label"]) == [0, 0, 0, 1, 1, 1]
    assert chosen.groupby("label")["video_id"].nunique().tolist() == [3, 3]  # distinct videos
    # 4 test videos per class: 6 faces must reuse a video only after using all four
    six = manifest.loc[gradcam.select_eval_set(a, 6, seed=7)]
    assert six.groupby("label")["video_id"].nunique().tolist() == [4, 4]
    others = [tuple(gradcam.select_eval_set(a, 3, seed=s)) for s in range(5)]
    assert len(set(others)) > 1  # the seed matters


def tiny_detector() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, padding=1, stride=2),  # target: "2"
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 1),
    )


def save_levels(tmp_path, factory, seed=0):
    torch.manual_seed(seed)
    dense = factory()
    paths = [tmp_path / "dense.pt"]
    torch.save(dense.state_dict(), paths[0])
    levels = [(0.0, "dense", paths[0])]
    gen = torch.Generator().manual_seed(1)
    for sparsity in (0.5, 0.8):
        state = {k: v.clone() for k, v in dense.state_dict().items()}
        for k, v in state.items():
            if k.endswith("weight") and v.dim() == 4:  # conv weights; the head keeps its sign
                keep = torch.rand(v.shape, generator=gen) >= sparsity
                state[k] = (v + 0.05 * torch.randn(v.shape, generator=gen)) * keep
        path = tmp_path / f"p{int(sparsity * 100)}.pt"
        torch.save(state, path)
        levels.append((sparsity, "imp-global", path))
    return levels


def test_gradcam_stage_delta_zero_at_dense_and_positive_when_pruned(tmp_path):
    faces = make_faces(tmp_path)
    levels = save_levels(tmp_path, tiny_detector)
    out = gradcam.gradcam_stage(
        faces, levels[::-1], "tiny", input_size=16, n_per_class=3, seed=5, device="cpu",
        out_dir=tmp_path / "out", model_factory=tiny_detector, target_layer="2",
    )
    with np.load(out / "heatmaps.npz", allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    # the faces do not depend on the training seed (5): one set per dataset
    rows = gradcam.select_eval_set(faces, 3, seed=gradcam.EVAL_SET_SEED)
    np.testing.assert_array_equal(data["rows"], rows)
    np.testing.assert_array_equal(data["labels"], [0, 0, 0, 1, 1, 1])
    assert data["images"].dtype == np.uint8 and data["images"].shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(data["images"], np.load(faces / "faces.npy")[rows])
    np.testing.assert_allclose(data["sparsities"], [0.0, 0.5, 0.8])  # sorted, dense first
    assert data["raw"].shape == data["norm"].shape == (3, 6, 16, 16)
    assert data["probs"].shape == (3, 6)
    assert np.allclose(data["norm"].max(axis=(2, 3)), 1.0)

    delta = pd.read_csv(out / "delta.csv")
    assert len(delta) == 3 * 6
    per_level = delta.groupby("sparsity")["row"].apply(lambda s: tuple(sorted(s)))
    assert per_level.nunique() == 1  # the same faces at every level
    assert (delta.loc[delta["sparsity"] == 0, "delta_l"] == 0.0).all()
    assert (delta.loc[delta["sparsity"] > 0, "delta_l"] > 0).all()
    assert delta["concentration"].between(0.1, 1.0).all()
    assert delta["prob_fake"].between(0, 1).all()
    # ΔL is the Frobenius distance of the normalised maps
    i = 4
    want = np.linalg.norm(data["norm"][2, i] - data["norm"][0, i])
    got = delta[(delta["sparsity"] == 0.8) & (delta["row"] == rows[i])]["delta_l"].item()
    assert got == pytest.approx(want, rel=1e-5)
    # raw ΔL per pixel: divided by √(H·W) = 16
    at = delta[(delta["sparsity"] == 0.8) & (delta["row"] == rows[i])]
    assert at["delta_l_raw_per_pixel"].item() == pytest.approx(at["delta_l_raw"].item() / 16)

    summary = pd.read_csv(out / "delta_summary.csv")
    assert list(summary["sparsity"]) == [0.0, 0.5, 0.8]
    assert summary.loc[0, "delta_l_mean"] == 0.0
    assert summary.loc[2, "delta_l_mean"] == pytest.approx(
        delta[delta["sparsity"] == 0.8]["delta_l"].mean()
    )


def test_gradcam_stage_needs_dense_level(tmp_path):
    faces = make_faces(tmp_path)
    levels = save_levels(tmp_path, tiny_detector)[1:]
    with pytest.raises(UserError, match="sparsity 0"):
        gradcam.gradcam_stage(
            faces, levels, "tiny", 16, 2, 0, "cpu", tmp_path / "out",
            model_factory=tiny_detector, target_layer="2",
        )


def test_registry_mesonet_through_cli(tmp_path):
    from deepfake_lth.cli import main
    from deepfake_lth.models import build_model

    faces = make_faces(tmp_path, size=32)
    levels = save_levels(tmp_path, lambda: build_model("mesonet", input_size=32))
    arg = json.dumps([{"sparsity": s, "method": m, "checkpoint": str(p)} for s, m, p in levels])
    spec = json.dumps({"input_size": 32, "samples_per_class": 2, "device": "cpu", "threads": 1})
    rc = main(["gradcam", "--faces", str(faces), "--model", "mesonet", "--seed", "0",
               "--levels", arg, "--spec", spec, "--out", str(tmp_path / "out")])
    assert rc == 0
    delta = pd.read_csv(tmp_path / "out" / "delta.csv")
    assert len(delta) == 3 * 4
    assert (delta.loc[delta["sparsity"] == 0, "delta_l"] == 0).all()
    with np.load(tmp_path / "out" / "heatmaps.npz") as z:
        assert z["raw"].shape == (3, 4, 32, 32)
        assert np.isfinite(z["raw"]).all() and (z["raw"] >= 0).all()


def test_cli_rejects_bad_spec(tmp_path, capsys):
    from deepfake_lth.cli import main

    rc = main(["gradcam", "--faces", str(tmp_path), "--model", "mesonet", "--levels", "[]",
               "--spec", '{"sample_per_class": 2}', "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "sample_per_class" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_agree():
    torch.manual_seed(3)
    net = tiny_detector()
    x = torch.randn(4, 3, 16, 16)
    labels = np.array([0, 1, 0, 1])
    with gradcam.GradCAM(net, "2") as cam:
        cpu, _ = cam(x, labels)
    net = net.cuda()
    with gradcam.GradCAM(net, "2") as cam:
        gpu, _ = cam(x.cuda(), labels)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)


def test_noise_floor_is_delta_l_between_two_seeds_dense_maps():
    from deepfake_lth.report import gradcam_maps
    from deepfake_lth.report.collect import GradcamRun

    rng = np.random.default_rng(0)
    raw = {seed: rng.random((2, 3, 4, 4)) for seed in (0, 1)}  # 2 levels × 3 faces × 4×4

    def run(seed, rows):
        npz = {"rows": np.array(rows), "sparsities": np.array([0.0, 0.6]), "raw": raw[seed],
               "norm": raw[seed] / raw[seed].max(axis=(2, 3), keepdims=True)}
        return GradcamRun("ds", "m", seed, "imp-global", Path("."), npz, None)

    # seed 1 explains faces 11, 12, 13; seed 0 faces 10, 11, 12: two shared faces
    floor = gradcam_maps.noise_floor([run(0, [10, 11, 12]), run(1, [11, 12, 13])])
    want = np.mean([np.linalg.norm(raw[0][0, 1] - raw[1][0, 0]),
                    np.linalg.norm(raw[0][0, 2] - raw[1][0, 1])])
    assert floor["faces"] == 2 and floor["seeds"] == 2
    assert floor["raw"] == pytest.approx(want)
    assert floor["raw_per_pixel"] == pytest.approx(want / 4)
    assert gradcam_maps.noise_floor([run(0, [10, 11, 12])]) is None  # one seed: no floor
    assert "needs the dense networks of two or more seeds" in gradcam_maps.noise_floor_line(
        [run(0, [10, 11, 12])])
