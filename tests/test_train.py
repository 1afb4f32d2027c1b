"""Device choice, seeding, the training loop (early stopping, best weights, masks) and metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fit_helpers import fit_with
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.store import FaceSplit
from deepfake_lth.pruning import masks
from deepfake_lth.training.device import resolve_device, seed_everything
from deepfake_lth.training.evaluate import evaluate
from deepfake_lth.training.scoring import video_accuracy

torch.set_num_threads(1)


def make_split(n_videos: int, frames: int, seed: int, size: int = 16) -> FaceSplit:
    """Half real, half fake videos; fakes carry a faint checkerboard (a blending artifact)."""
    rng = np.random.default_rng(seed)
    images, labels, vids = [], [], []
    checker = (np.indices((size, size)).sum(0) % 2)[..., None] * 60.0
    for v in range(n_videos):
        label = v % 2
        base = rng.uniform(60, 190)
        for _ in range(frames):
            img = base + rng.normal(0, 20, (size, size, 3)) + label * checker
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(label)
            vids.append(f"s{seed}v{v}")
    n = len(labels)
    return FaceSplit(np.stack(images), np.array(labels), np.array(vids), np.arange(n))


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.fc(self.drop(x))


def net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


TRAIN = make_split(12, 6, seed=1)
VAL = make_split(6, 4, seed=2)
KW = {
    "input_size": None,
    "lr": 1e-2,
    "batch_size": 16,
    "max_epochs": 4,
    "patience": 10,
    "amp": False,
    "device": "cpu",
    "seed": 0,
}


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(UserError, match="gpu"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_seed_everything_fixes_all_generators() -> None:
    seed_everything(5)
    a = (np.random.rand(), torch.rand(1).item(), __import__("random").random())
    seed_everything(5)
    assert (np.random.rand(), torch.rand(1).item(), __import__("random").random()) == a


def test_fit_is_deterministic_and_learns() -> None:
    runs = []
    for _ in range(2):
        model = net()
        result = fit_with(model, TRAIN, VAL, **KW)
        runs.append((result, model.state_dict()))
    (r1, s1), (r2, s2) = runs
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in r1.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in r2.history]
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert r1.history[-1]["train_loss"] < r1.history[0]["train_loss"]
    # another seed orders the batches differently
    other = fit_with(net(), TRAIN, VAL, **{**KW, "seed": 1})
    assert other.history[0]["train_loss"] != r1.history[0]["train_loss"]


def test_best_weights_are_restored_and_epochs_saved() -> None:
    model = net()
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit_with(model, TRAIN, VAL, **{**KW, "monitor": "val_loss"}, save_epochs=(0, 2))
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmin(losses))
    assert evaluate(model, VAL, None, "cpu")["loss"] == pytest.approx(min(losses), abs=1e-6)
    assert all(torch.equal(model.state_dict()[k], result.best_state[k]) for k in theta0)
    assert sorted(result.epoch_states) == [0, 2]
    assert all(torch.equal(result.epoch_states[0][k], theta0[k]) for k in theta0)
    assert not torch.equal(result.epoch_states[2]["conv.weight"], theta0["conv.weight"])


def test_early_stopping_with_patience() -> None:
    # lr 0: the validation loss never improves after epoch 1
    result = fit_with(
        net(), TRAIN, VAL, **{**KW, "lr": 0.0, "max_epochs": 10, "patience": 2}, save_epochs=(7,)
    )
    assert result.stopped_early and result.epochs == 3 and result.best_epoch == 1
    assert 7 in result.epoch_states  # stands in with the last weights


def test_fit_with_mask_keeps_zeros() -> None:
    model = net()
    mask = masks.prune_to_sparsity(model, 0.5, "local")
    fit_with(model, TRAIN, VAL, **{**KW, "weight_decay": 0.1, "max_train_samples": 40}, mask=mask)
    params = masks.prunable_parameters(model)
    for n, m in mask.items():
        assert torch.all(params[n][~m] == 0) and torch.all(params[n][m] != 0)


class Constant(nn.Module):
    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x), 1), self.logit) + self.dummy


def test_evaluate_metrics() -> None:
    out = evaluate(Constant(2.0), VAL, None, "cpu", batch_size=7)
    fake = float(np.mean(VAL.labels == 1))
    assert out["acc"] == pytest.approx(fake) and out["video_acc"] == pytest.approx(fake)
    assert out["auc"] == pytest.approx(0.5)
    p = 1 / (1 + np.exp(-2.0))
    expected = -np.mean(VAL.labels * np.log(p) + (1 - VAL.labels) * np.log(1 - p))
    assert out["loss"] == pytest.approx(expected)
    assert out["probs"].shape == (len(VAL),)
    one_class = FaceSplit(
        VAL.images[VAL.labels == 1],
        VAL.labels[VAL.labels == 1],
        VAL.video_ids[VAL.labels == 1],
        VAL.rows[VAL.labels == 1],
    )
    assert np.isnan(evaluate(Constant(2.0), one_class, None, "cpu")["auc"])


def test_video_accuracy_averages_frames() -> None:
    probs = np.array([0.9, 0.4, 0.4, 0.2, 0.7, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    vids = np.array(["a", "a", "a", "b", "b", "b"])
    # video a: mean 0.567 → fake (right); video b: mean 0.333 → real (right)
    assert video_accuracy(probs, labels, vids) == 1.0
    assert video_accuracy(probs, 1 - labels, vids) == 0.0
