"""Structured (channel) tickets: channel masks, compaction, masked training, the round stage."""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.models import build_model
from deepfake_lth.pruning import checkpoints, masks, structured
from deepfake_lth.stages import structured as structured_stage
from deepfake_lth.stages.dense import train_dense

torch.set_num_threads(1)


def randomised(name: str, size: int, seed: int = 0) -> nn.Module:
    """A registry model with BatchNorm statistics and shifts away from their defaults, so a
    channel that is not exactly zero would show in the output."""
    torch.manual_seed(seed)
    model = build_model(name, input_size=size)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def expected_local_counts(n: int, rate: float, rounds: int) -> int:
    for _ in range(rounds):
        n -= min(int(rate * n + 0.5), n - 1)
    return n


def test_local_counts_after_k_rounds_and_nesting():
    model = randomised("cnn5", 32)
    cmask, prev = None, structured.full_channel_mask(model)
    for k in range(1, 4):
        cmask = structured.channel_mask(model, prev, 0.2, "local")
        for name, m in cmask.items():
            n0 = prev[name].numel()
            assert int(m.sum()) == expected_local_counts(n0, 0.2, k), (name, k)
            assert not bool((m & ~prev[name]).any())  # pruned channels stay pruned
        prev = cmask
    counts = structured.channel_counts(cmask)
    assert counts["features.block1.conv"] == 8  # 16 → 13 → 10 → 8
    assert counts["features.block5.conv"] == 90  # 176 → 141 → 113 → 90
    assert structured.channel_sparsity(cmask) == pytest.approx(
        1 - sum(counts.values()) / (16 + 32 + 64 + 128 + 176)
    )


def test_local_prunes_the_smallest_filters():
    model = randomised("cnn5", 32)
    cmask = structured.channel_mask(model, None, 0.5, "local")
    norms = structured.filter_norms(model)
    for name, m in cmask.items():
        assert float(norms[name][~m].max()) <= float(norms[name][m].min()), name


def test_global_removes_rate_of_all_channels_keeping_one_per_layer():
    model = randomised("resnet18", 32)
    # make one layer's filters tiny: normalised by layer, it is not wiped out
    with torch.no_grad():
        model.layer1[0].conv1.weight.mul_(1e-3)
    total = sum(m.numel() for m in structured.full_channel_mask(model).values())
    cmask = structured.channel_mask(model, None, 0.5, "global")
    alive = sum(int(m.sum()) for m in cmask.values())
    assert alive == total - int(0.5 * total + 0.5)
    assert all(int(m.sum()) >= 1 for m in cmask.values())
    assert 0 < int(cmask["layer1.0.conv1"].sum()) < 64
    # at a rate near 1 every layer still keeps one channel
    tiny = structured.channel_mask(model, None, 0.99, "global")
    assert min(structured.channel_counts(tiny).values()) == 1


@pytest.mark.parametrize(("name", "size"), [("cnn5", 32), ("resnet18", 32), ("mesonet", 64),
                                           pytest.param("xception", 71, marks=pytest.mark.slow)])
def test_compact_model_equals_channel_masked_model(name, size):
    model = randomised(name, size)
    cmask = None
    for _ in range(2):
        cmask = structured.channel_mask(model, cmask, 0.4, "global")
    masked = copy.deepcopy(model)
    wmask = structured.apply_channel_mask(masked, cmask)
    compact = structured.compact_model(masked, cmask)
    assert not compact.training
    assert sum(p.numel() for p in compact.parameters()) < sum(p.numel() for p in model.parameters())
    for g in structured.channel_groups(model):
        for conv_name, norm_name in g.writers:
            conv = compact.get_submodule(conv_name)
            assert conv.out_channels == int(cmask[g.name].sum())
            assert compact.get_submodule(norm_name).num_features == conv.out_channels
        for name_ in g.passthrough:  # depthwise convs keep the group's channels, in and out
            dw = compact.get_submodule(name_)
            assert dw.out_channels == dw.in_channels == dw.groups == int(cmask[g.name].sum())
    # the masked model's zeros are exactly the weight mask's
    state = masked.state_dict()
    for k, m in wmask.items():
        assert not bool(state[k][~m].any()), k
    x = torch.randn(3, 3, size, size)
    with torch.inference_mode():
        a, b, dense = masked(x), compact(x), model(x)
    assert b.shape == a.shape == (3, 1)
    assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert not torch.allclose(a, dense, atol=1e-3)  # pruning did change the function
    assert masks.sparsity(wmask) > 0


def test_compact_keeps_the_original_untouched_and_full_mask_is_identity():
    model = randomised("cnn5", 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    same = structured.compact_model(model, structured.full_channel_mask(model))
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(same(x), model(x), atol=1e-6, rtol=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    ("name", "group", "bn"),
    [
        ("cnn5", "features.block1.conv", "features.block1.bn"),
        ("mesonet", "block1.conv", "block1.bn"),
        ("resnet18", "layer2", "layer2.1.bn2"),  # a residual stream: written by three convs
        ("resnet18", "layer1", "bn1"),  # the stem writes the first stream
    ],
)
def test_masked_training_keeps_pruned_channels_at_zero(name, group, bn):
    # only the weight mask is enforced: biases and BN of pruned channels get no gradient
    model = randomised(name, 32)
    cmask = structured.channel_mask(model, None, 0.5, "local")
    wmask = structured.apply_channel_mask(model, cmask)
    enforcer = masks.MaskEnforcer(model, wmask)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(4, 3, 32, 32, generator=gen)
        y = torch.randint(0, 2, (4,), generator=gen).float()
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        loss.backward()
        enforcer.mask_grads()
        opt.step()
        enforcer.mask_weights()
    model.eval()
    norm = model.get_submodule(bn)
    drop = ~cmask[group]
    assert bool(drop.any())
    assert not bool(norm.bias[drop].any()) and not bool(norm.weight[drop].any())
    assert bool(norm.bias[~drop].ne(0).any())  # the rest did train
    assert structured.stray_channel_params(model, cmask) == []
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        compact = structured.compact_model(model, cmask)
        assert torch.allclose(compact(x), model(x), atol=1e-5, rtol=0)


def test_resnet_residual_streams_are_pruned_in_all_their_writers():
    model = randomised("resnet18", 32)
    groups = {g.name: g for g in structured.channel_groups(model)}
    assert len(groups) == 8 + 4  # the inner conv of each BasicBlock, a stream per stage
    assert groups["layer1"].writers == (
        ("conv1", "bn1"),
        ("layer1.0.conv2", "layer1.0.bn2"),
        ("layer1.1.conv2", "layer1.1.bn2"),
    )
    assert ("layer2.0.downsample.0", "layer2.0.downsample.1") in groups["layer2"].writers
    assert ("layer2.0.downsample.0", 1) in groups["layer1"].consumers
    assert groups["layer4"].consumers[-1] == ("fc", 1)
    total = sum(m.numel() for m in structured.full_channel_mask(model).values())
    assert total == (64 + 64 + 128 + 128 + 256 + 256 + 512 + 512) + (64 + 128 + 256 + 512)
    cmask = structured.channel_mask(model, None, 0.5, "local")
    assert int(cmask["layer3"].sum()) == 128
    compact = structured.compact_model(model, cmask)
    assert compact.conv1.out_channels == 32 and compact.fc.in_features == 256
    assert compact.layer3[1].conv1.in_channels == 128
    assert compact.layer3[0].conv1.in_channels == 64  # reads the layer2 stream
    # half of every width: about a quarter of the conv weights remain
    ratio = structured.count_parameters(compact) / structured.count_parameters(model)
    assert 0.2 < ratio < 0.3


def test_the_traced_groups_are_those_once_written_by_hand():
    """The channel groups CNN-5 and MesoNet had in their registry entries before they were
    traced (ResNet-18's: test_resnet_residual_streams_are_pruned_in_all_their_writers)."""
    cnn5 = [g for g in structured.channel_groups(randomised("cnn5", 32))]
    blocks = [f"features.block{i}" for i in range(1, 6)]
    assert [(g.name, g.writers, g.consumers, g.passthrough) for g in cnn5] == [
        (f"{b}.conv", ((f"{b}.conv", f"{b}.bn"),),
         ((f"{blocks[i + 1]}.conv" if i < 4 else "fc", 1),), ())
        for i, b in enumerate(blocks)]
    meso = structured.channel_groups(randomised("mesonet", 128))
    assert [g.name for g in meso] == ["block1.conv", "block2.conv", "block3.conv", "block4.conv"]
    assert meso[1].writers == (("block2.conv", "block2.bn"),)  # BN after the ReLU
    assert meso[-1].consumers == (("classifier.fc1", 16),)  # 16 channels × 4 × 4 = 256 inputs


def test_xception_is_traced_with_its_depthwise_convs():
    groups = {g.name: g for g in structured.channel_groups(build_model("xception",
                                                                       input_size=71))}
    assert len(groups) == 28
    middle = groups["block11"]  # the middle flow: one residual stream of 728 channels
    assert len(middle.writers) == 10 and ("block3.skip", "block3.skipbn") in middle.writers
    assert "block7.rep.1.conv1" in middle.passthrough  # the depthwise conv it passes through
    assert ("block7.rep.1.pointwise", 1) in middle.consumers


def test_bad_input():
    with pytest.raises(UserError, match="no convolution"):
        structured.channel_groups(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1)))
    with pytest.raises(UserError, match="runs on none"):
        structured.channel_groups(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(),
                                                nn.Linear(4 * 5 * 5, 1)))
    model = randomised("cnn5", 32)
    resnet_mask = structured.full_channel_mask(randomised("resnet18", 32))
    with pytest.raises(UserError, match="another architecture"):
        structured.compact_model(model, resnet_mask)
    with pytest.raises(UserError, match="criterion"):
        structured.channel_mask(model, None, 0.2, "random")
    with pytest.raises(UserError, match="rate"):
        structured.channel_mask(model, None, 1.0, "local")
    empty = structured.full_channel_mask(model)
    empty["features.block2.conv"][:] = False
    with pytest.raises(UserError, match="keeps no channel"):
        structured.check_channel_mask(model, empty)


# --------------------------------------------------------------------------- the stage

SPEC = {
    "train": {"lr": 1e-3, "batch_size": 16, "max_epochs": 1, "patience": 1, "amp": False},
    "prune": {"rate": 0.5, "rewind": "init"},
    "input_size": 32,
    "device": "cpu",
    "threads": 1,
}


def write_faces(root, videos: int = 8, frames: int = 3):
    """A tiny packed dataset per data.py: faces.npy (N×32×32×3 uint8) + manifest.csv."""
    rng = np.random.default_rng(0)
    folder = root / "tiny" / "faces"
    folder.mkdir(parents=True)
    splits = ["train"] * (videos - 4) + ["val", "val", "test", "test"]
    images, rows = [], []
    for v in range(videos):
        for f in range(frames):
            img = rng.uniform(60, 190) + rng.normal(0, 20, (32, 32, 3))
            rows.append(
                {
                    "index": len(images),
                    "video_id": f"v{v}",
                    "label": v % 2,
                    "split": splits[v],
                    "frame_index": f,
                    "source": f"v{v}.mp4",
                }
            )
            images.append(np.clip(img, 0, 255).astype(np.uint8))
    np.save(folder / "faces.npy", np.stack(images))
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def test_structured_rounds_write_the_files(tmp_path):
    faces = write_faces(tmp_path)
    run = tmp_path / "run"
    train_dense(faces, run / "dense", "cnn5", 0, SPEC)
    r1 = structured_stage.structured_round(
        faces, run / "dense", run / "dense", run / "r1", "cnn5", 0, 1, "local", SPEC
    )
    parser = argparse.ArgumentParser()
    structured_stage.add_arguments(parser)
    args = parser.parse_args(
        ["--faces", str(faces), "--out", str(run / "r2"), "--model", "cnn5", "--prev",
         str(run / "r1"), "--dense", str(run / "dense"), "--round", "2", "--criterion", "local",
         "--spec", json.dumps(SPEC)]
    )  # fmt: skip
    assert structured_stage.run(args) == 0

    r2 = json.loads((run / "r2" / "metrics.json").read_text())
    for r, k in ((r1, 1), (r2, 2)):
        assert r["method"] == "structured-local" and r["round"] == k
        assert r["target_channel_sparsity"] == pytest.approx(1 - 0.5**k)
    c1 = structured.load_channels(run / "r1" / "channels.pt")
    c2 = structured.load_channels(run / "r2" / "channels.pt")
    assert structured.channel_counts(c1)["features.block1.conv"] == 8
    assert structured.channel_counts(c2)["features.block1.conv"] == 4
    assert r2["channel_sparsity"] == pytest.approx(structured.channel_sparsity(c2))
    assert r2["channels"] == structured.channel_counts(c2)
    assert all(not bool((b & ~a).any()) for a, b in zip(c1.values(), c2.values(), strict=True))

    # the checkpoint is a full-shape state dict whose zeros match the weight mask
    state = checkpoints.load_state(run / "r2" / "checkpoint.pt")
    mask = checkpoints.load_mask(run / "r2" / "mask.pt")
    model = build_model("cnn5", input_size=32)
    model.load_state_dict(state)
    assert torch.equal(
        mask["features.block1.conv.weight"],
        structured.channel_weight_mask(model, c2)["features.block1.conv.weight"],
    )
    assert r2["sparsity"] == pytest.approx(masks.sparsity(mask))
    drop = ~c2["features.block1.conv"]
    assert not bool(state["features.block1.bn.bias"][drop].any())
    assert not bool(state["features.block1.conv.bias"][drop].any())
    model.eval()
    compact = structured.compact_model(model, c2)
    assert r2["compact_params"] == sum(p.numel() for p in compact.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(compact(x), model(x), atol=1e-5, rtol=0)

    # round 3 needs round 2 as its previous folder
    with pytest.raises(UserError, match="round 1, but round 3"):
        structured_stage.structured_round(
            faces, run / "r1", run / "dense", run / "r3", "cnn5", 0, 3, "local", SPEC
        )
