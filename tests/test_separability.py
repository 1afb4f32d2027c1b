"""Model separability: linear probe and silhouette on synthetic features, the feature hook,
and the stage on a tiny packed dataset."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deepfake_lth.analysis import separability as sep
from deepfake_lth.core.errors import UserError

torch.set_num_threads(1)


def blobs(distance: float, n: int = 80, d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, d))
    x[:, 0] += distance * labels
    return x, labels


def test_separable_versus_inseparable_features() -> None:
    x, y = blobs(distance=12.0)
    good = sep.separability(x, y, folds=5)
    assert good["probe_acc"] == 1.0 and good["probe_acc_std"] == 0.0 and good["folds"] == 5
    assert good["silhouette"] > 0.4
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(80, 6))
    labels = rng.permutation(np.repeat([0, 1], 40))
    bad = sep.separability(noise, labels, folds=5)
    assert bad["probe_acc"] < 0.75
    assert abs(bad["silhouette"]) < 0.1
    # the scores grow with the distance between the classes
    mid = sep.separability(*blobs(distance=2.0), folds=5)
    assert bad["probe_acc"] < mid["probe_acc"] <= good["probe_acc"]
    assert abs(bad["silhouette"]) < mid["silhouette"] < good["silhouette"]


def test_silhouette_by_hand() -> None:
    # 1-D clusters {0, 1} and {10, 11}: for 0, a = 1 and b = 10.5, s = 1 − 1/10.5; for 1,
    # a = 1 and b = 9.5; symmetric for the other class; a common scale changes nothing
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    y = np.array([0, 0, 1, 1])
    expected = np.mean([1 - 1 / 10.5, 1 - 1 / 9.5])
    assert sep.silhouette(x, y) == pytest.approx(expected)
    assert sep.silhouette(7 * x, y) == pytest.approx(expected)
    assert math.isnan(sep.silhouette(x, np.zeros(4, dtype=int)))  # one class
    assert math.isnan(sep.silhouette(np.ones((4, 3)), y))  # constant features


def test_probe_folds_follow_the_smaller_class() -> None:
    x, y = blobs(distance=8.0, n=40)
    y = y.copy()
    y[:37] = 0  # three fakes only
    acc, std, k = sep.linear_probe(x, y, folds=5)
    assert k == 3 and 0 <= acc <= 1 and std >= 0
    acc, _, k = sep.linear_probe(x, np.r_[np.zeros(39, int), 1], folds=5)
    assert k == 0 and math.isnan(acc)


def net_factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))


def test_extract_features_reads_the_penultimate_layer() -> None:
    from deepfake_lth.data.store import to_tensor

    model = net_factory()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    feats = sep.extract_features(model.train(), images, "5", None, "cpu", batch_size=2)
    assert feats.shape == (5, 3) and model.training  # mode restored
    with torch.no_grad():
        expected = model.eval()[:6](to_tensor(images)).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-6)
    assert not model[5]._forward_hooks  # the hook is removed
    with pytest.raises(UserError, match="feature_layer"):
        sep.extract_features(model, images, "head", None)


def write_faces(root, n_videos: int = 12, frames: int = 4):
    rng = np.random.default_rng(0)
    folder = root / "dsa" / "faces"
    folder.mkdir(parents=True)
    images, rows = [], []
    for v in range(n_videos):
        for f in range(frames):
            img = rng.uniform(60, 120, (32, 32, 3)) + 100 * (v % 2)
            rows.append({"index": len(images), "video_id": f"v{v}", "label": v % 2,
                         "split": "test" if v >= 4 else "train", "frame_index": f,
                         "source": f"v{v}.mp4"})
            images.append(np.clip(img, 0, 255).astype(np.uint8))
    np.save(folder / "faces.npy", np.stack(images))
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def test_stage_writes_one_row_per_level(tmp_path) -> None:
    from deepfake_lth.models import build_model
    from deepfake_lth.pruning import masks

    faces = write_faces(tmp_path)
    torch.manual_seed(0)
    model = build_model("mesonet", input_size=32)
    dense = tmp_path / "dense"
    dense.mkdir()
    torch.save(model.state_dict(), dense / "checkpoint.pt")
    mask = masks.prune_to_sparsity(model, 0.5, "global")
    masks.apply_mask(model, mask)
    ticket = tmp_path / "imp-global" / "round3"
    ticket.mkdir(parents=True)
    torch.save(model.state_dict(), ticket / "checkpoint.pt")  # no metrics.json: measured
    out = tmp_path / "separability" / "dsa" / "mesonet" / "seed0" / "imp-global.csv"
    levels = json.dumps([{"level": "dense", "path": str(dense)},
                         {"level": "round3", "path": str(ticket)}])
    parser = argparse.ArgumentParser()
    sep.add_arguments(parser)  # what cli.py calls for `separability`
    args = parser.parse_args(["--faces", str(faces), "--levels", levels, "--model", "mesonet",
                              "--method", "imp-global", "--out", str(out), "--spec",
                              json.dumps({"input_size": 32, "device": "cpu", "folds": 3,
                                          "max_samples": 24})])
    assert sep.run(args) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == sep.COLUMNS
    assert list(df["level"]) == ["dense", "round3"]
    assert df["sparsity"].tolist() == pytest.approx([0.0, 0.5], abs=1e-3)
    assert (df["n_samples"] == 24).all() and (df["feature_dim"] == 16).all()
    assert (df["folds"] == 3).all()
    assert df["probe_acc"].between(0, 1).all()
    assert df["silhouette"].between(-1, 1).all()
    assert not list(out.parent.glob(".*tmp"))
    with pytest.raises(UserError, match="unknown key"):
        sep.separability_stage(faces, levels, "mesonet", "imp-global", out, spec={"fold": 3})
    with pytest.raises(UserError, match="missing"):
        sep.separability_stage(faces, [str(tmp_path / "nowhere")], "mesonet", "x", out,
                               spec={"input_size": 32})


def test_stage_with_a_custom_model_separates_bright_fakes(tmp_path) -> None:
    faces = write_faces(tmp_path)
    net = net_factory()
    with torch.no_grad():  # a feature that is the mean brightness: fakes are 100 brighter
        net[0].weight.zero_()
        net[0].weight[:, :, 1, 1] = 1.0
        net[0].bias.zero_()
        net[4].weight.fill_(1.0)
        net[4].bias.fill_(2.0)
    torch.save(net.state_dict(), tmp_path / "checkpoint.pt")
    df = sep.separability_stage(faces, [str(tmp_path)], "tiny", "dense", tmp_path / "s.csv",
                                spec={"device": "cpu", "folds": 4}, model_factory=net_factory,
                                feature_layer="5")
    row = df.iloc[0]
    assert row["probe_acc"] == 1.0 and row["silhouette"] > 0.5 and row["n_samples"] == 32


def test_folds_grouped_by_video_do_not_leak() -> None:
    """Frames of one video share its look but the labels are random per video: a probe that
    sees a video's frames in training recognises them at test (frame folds leak); grouped
    folds keep every video on one side, and the probe falls to chance."""
    rng = np.random.default_rng(0)
    videos, frames, dim = 40, 10, 60
    looks = rng.normal(size=(videos, dim))
    video_labels = rng.permutation(np.repeat([0, 1], videos // 2))
    x = np.repeat(looks, frames, axis=0) + 0.05 * rng.normal(size=(videos * frames, dim))
    y = np.repeat(video_labels, frames)
    groups = np.repeat([f"v{i}" for i in range(videos)], frames)
    leaky = sep.separability(x, y, folds=5)
    grouped = sep.separability(x, y, folds=5, groups=groups)
    assert leaky["probe_acc"] > 0.95
    assert grouped["probe_acc"] < 0.75 and grouped["folds"] == 5
    # the folds follow the smaller class's videos, not its frames
    _, _, k = sep.linear_probe(x, np.where(np.isin(groups, ["v0", "v1", "v2"]), 1, 0), 5,
                               groups=groups)
    assert k == 3
