"""fit with a resume state: stopped by a signal (mid-epoch or after an epoch) or killed, and
run again, it ends bit-identical to a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from fit_helpers import fit_with
from torch import nn

from deepfake_lth.data.store import FaceSplit
from deepfake_lth.training.fit import FitResult
from deepfake_lth.training.resume import ResumeState, StopRequested, StopSignals

torch.set_num_threads(1)


def make_split(n_videos: int, frames: int, seed: int, size: int = 12) -> FaceSplit:
    rng = np.random.default_rng(seed)
    checker = (np.indices((size, size)).sum(0) % 2)[..., None] * 60.0
    images, labels, vids = [], [], []
    for v in range(n_videos):
        base = rng.uniform(60, 190)
        for _ in range(frames):
            img = base + rng.normal(0, 20, (size, size, 3)) + (v % 2) * checker
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(v % 2)
            vids.append(f"s{seed}v{v}")
    return FaceSplit(np.stack(images), np.array(labels), np.array(vids), np.arange(len(labels)))


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.3)  # draws from the global generator: its state must resume
        self.fc = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.fc(self.drop(x))


TRAIN = make_split(10, 5, seed=1)  # 50 faces: 7 batches of 8, the last of 2
VAL = make_split(4, 4, seed=2)
STEPS = 7
KW = {"input_size": None, "lr": 1e-2, "batch_size": 8, "max_epochs": 5, "patience": 10,
      "amp": False, "device": "cpu", "seed": 0, "save_epochs": (0, 2)}


def mask_of(model: nn.Module) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return {name: torch.rand(p.shape, generator=gen) > 0.5
            for name, p in model.named_parameters() if name in ("conv.weight", "fc.weight")}


def new_model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def run(hook=None, **kw) -> tuple[TinyNet, FitResult]:
    """fit a fresh model (the same initial weights every time); ``hook(model, training)``
    runs before every forward."""
    model = new_model()
    if hook is not None:
        model.register_forward_pre_hook(lambda m, args: hook(m.training))
    return model, fit_with(model, TRAIN, VAL, **{**KW, "mask": mask_of(model), **kw})


def assert_same(got: tuple[TinyNet, FitResult], want: tuple[TinyNet, FitResult]) -> None:
    (model, result), (ref_model, ref) = got, want
    for k, v in ref_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in ref.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in result.history] == strip
    assert (result.best_epoch, result.epochs, result.stopped_early) == (
        ref.best_epoch, ref.epochs, ref.stopped_early)
    assert result.epoch_states.keys() == ref.epoch_states.keys()
    for e, state in ref.epoch_states.items():
        assert all(torch.equal(result.epoch_states[e][k], v) for k, v in state.items()), e
    for name, keep in mask_of(model).items():  # pruned weights stayed exactly zero
        assert not model.state_dict()[name][~keep].any()


@pytest.fixture(scope="module")
def reference() -> tuple[TinyNet, FitResult]:
    model, result = run()
    assert result.epochs == 5 and not result.resumed_from
    assert result.history[0]["train_loss"] != result.history[-1]["train_loss"]
    return model, result


def signal_at(n: int, *, training: bool):
    """A hook that sends this process SIGTERM at the n-th forward in that mode."""
    calls = {"n": 0}

    def hook(is_training: bool) -> None:
        if is_training == training:
            calls["n"] += 1
            if calls["n"] == n:
                os.kill(os.getpid(), signal.SIGTERM)

    return hook


def test_sigterm_mid_epoch_keeps_the_last_epoch_and_resumes_identically(
    tmp_path: Path, reference
) -> None:
    state = ResumeState(tmp_path / "state.pt", "key")
    with StopSignals() as stop, pytest.raises(StopRequested) as info:
        run(signal_at(2 * STEPS + 3, training=True), resume=state, stop=stop)  # in epoch 3
    assert stop.requested and info.value.epoch == 2 and info.value.signum == signal.SIGTERM
    assert info.value.exit_code == 143 and state.path.is_file()
    resumed = run(resume=ResumeState(tmp_path / "state.pt", "key"))
    assert resumed[1].resumed_from == [2]
    assert_same(resumed, reference)


def test_sigterm_during_validation_saves_that_epoch(tmp_path: Path, reference) -> None:
    state = ResumeState(tmp_path / "state.pt", "key")
    with StopSignals() as stop, pytest.raises(StopRequested) as info:
        run(signal_at(4, training=False), resume=state, stop=stop)  # validation of epoch 4
    assert info.value.epoch == 4 and state.saved_epoch == 4
    first = run(resume=state)
    assert first[1].resumed_from == [4]
    assert_same(first, reference)


def test_killed_twice_then_resumed_identically(tmp_path: Path, reference) -> None:
    class Killed(Exception):
        pass

    def kill_at(n: int):
        calls = {"n": 0}

        def hook(training: bool) -> None:
            calls["n"] += training
            if calls["n"] == n:
                raise Killed

        return hook

    path = tmp_path / "state.pt"
    threads = threading.active_count()
    with pytest.raises(Killed):  # in epoch 2: the state of epoch 1 stands
        run(kill_at(STEPS + 4), resume=ResumeState(path, "key"))
    assert threading.active_count() == threads  # the read-ahead thread ended with it
    with pytest.raises(Killed):  # resumed after epoch 1, killed in epoch 4
        run(kill_at(2 * STEPS + 1), resume=ResumeState(path, "key"))
    resumed = run(resume=ResumeState(path, "key"))
    assert resumed[1].resumed_from == [1, 3]
    assert_same(resumed, reference)
    assert resumed[1].train_seconds > 0


def test_a_state_of_another_key_is_not_used(tmp_path: Path, reference) -> None:
    path = tmp_path / "state.pt"
    with StopSignals() as stop, pytest.raises(StopRequested):
        run(signal_at(1, training=False), resume=ResumeState(path, "old"), stop=stop)
    fresh = run(resume=ResumeState(path, "new"))
    assert fresh[1].resumed_from == []
    assert_same(fresh, reference)


def test_early_stopping_state_resumes(tmp_path: Path) -> None:
    kw = {"patience": 1, "monitor": "val_acc", "max_epochs": 8}
    want = run(**kw)
    assert want[1].stopped_early and want[1].epochs < 8
    path = tmp_path / "state.pt"
    last_eval = want[1].epochs  # stop in the validation that triggers early stopping
    with StopSignals() as stop, pytest.raises(StopRequested):
        run(signal_at(last_eval, training=False), resume=ResumeState(path, "k"), stop=stop,
            **kw)
    got = run(resume=ResumeState(path, "k"), **kw)
    assert got[1].resumed_from == [last_eval]
    assert_same(got, want)
