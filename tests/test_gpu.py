"""The GPU feed and mixed precision: masks stay exactly zero under bf16 and fp16 autocast
(with a GradScaler), under torch.compile and through the pinned-memory loader.

What the CPU can run runs everywhere (autocast works on the CPU in bf16 and fp16, and so does
a GradScaler); the tests marked ``gpu`` need CUDA and run with ``make gpu-check``.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from fit_helpers import fit_with
from torch import nn

from deepfake_lth.data.store import FaceSplit
from deepfake_lth.pruning.masks import MaskEnforcer
from deepfake_lth.training.batches import prefetched
from deepfake_lth.training.device import amp_dtype
from deepfake_lth.training.evaluate import evaluate
from deepfake_lth.training.fit import build_optimizer, train_step

torch.set_num_threads(1)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.bn(self.conv1(x))))).mean((2, 3))
        return self.fc(x)


def make_split(n: int, seed: int, size: int = 16) -> FaceSplit:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 200, (n, size, size, 3)).astype(np.uint8)
    images[labels == 1, ::2, ::2] = 250  # a visible artifact: the net can learn something
    return FaceSplit(images, labels, np.array([f"v{i // 4}" for i in range(n)]), np.arange(n))


def random_mask(model: nn.Module, keep: float = 0.3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {name: torch.rand(p.shape, generator=gen) < keep
            for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1}


def assert_pruned_zero(model: nn.Module, mask: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, keep in mask.items():
        w = params[name].detach().cpu()
        assert torch.isfinite(w).all(), name
        assert int((w[~keep] != 0).sum()) == 0, f"{name}: pruned weights moved"
        assert (w[keep] != 0).any(), f"{name}: nothing trained"


def masked_steps(device: str, dtype: torch.dtype, scaler: bool, steps: int = 6) -> None:
    torch.manual_seed(0)
    model = Net().to(device).to(memory_format=torch.channels_last)
    mask = random_mask(model)
    enforcer = MaskEnforcer(model, mask)
    enforcer.mask_weights()
    optimizer = build_optimizer(model, lr=1e-2)
    grad_scaler = torch.amp.GradScaler(device, enabled=scaler)
    x = torch.randn(8, 3, 16, 16, device=device).contiguous(memory_format=torch.channels_last)
    y = (torch.arange(8, device=device) % 2).float()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(steps):
        train_step(model, optimizer, nn.BCEWithLogitsLoss(), x, y, scaler=grad_scaler if scaler
                   else None, enforcer=enforcer, amp=True, amp_dtype=dtype, mask_weights=False)
    assert_pruned_zero(model, mask)
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert "conv1.weight" in moved and "fc.weight" in moved
    for p, m in zip(enforcer.params, enforcer.masks, strict=True):  # Adam's moments too
        state = optimizer.state[p]
        assert not state["exp_avg"][m == 0].any() and not state["exp_avg_sq"][m == 0].any()


@pytest.mark.parametrize(("dtype", "scaler"), [(torch.bfloat16, False), (torch.float16, True)])
def test_masks_stay_zero_under_autocast_on_the_cpu(dtype: torch.dtype, scaler: bool) -> None:
    masked_steps("cpu", dtype, scaler)


def test_amp_dtype_per_device() -> None:
    assert amp_dtype(True, "cpu") is None and amp_dtype(False, "cpu") is None
    if torch.cuda.is_available():
        want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert amp_dtype(True, "cuda") == want and amp_dtype(False, "cuda") is None


def test_prefetched_keeps_order_and_reads_ahead() -> None:
    started: list[int] = []

    def load(i: int) -> int:
        started.append(i)
        return i * i

    it = prefetched(load, list(range(5)))
    assert next(it) == 0
    time.sleep(0.05)
    assert started[:2] == [0, 1]  # the next one is read while the caller works
    assert list(it) == [1, 4, 9, 16]
    assert list(prefetched(load, [3], enabled=True)) == [9]
    assert list(prefetched(load, [1, 2], enabled=False)) == [1, 4]


def test_prefetched_closes_early_and_raises_errors() -> None:
    threads = threading.active_count()
    it = prefetched(lambda i: i, list(range(10)))
    assert next(it) == 0
    it.close()  # waits for the read in flight, leaves no thread behind
    assert threading.active_count() == threads

    def fail(i: int) -> int:
        if i == 2:
            raise OSError("faces.npy: read error")
        return i

    with pytest.raises(OSError, match="read error"):
        list(prefetched(fail, list(range(4))))


@pytest.mark.slow
def test_compiled_fit_keeps_masks_zero_and_matches_eager() -> None:
    train, val = make_split(32, 0), make_split(8, 1)
    kw = {"input_size": None, "lr": 1e-2, "batch_size": 8, "max_epochs": 2, "amp": False,
          "device": "cpu", "seed": 0, "augment": False}
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = Net()
        mask = random_mask(model)
        fit_with(model, train, val, mask=mask, compile=compile, **kw)
        assert_pruned_zero(model, mask)
        results.append(evaluate(model, val, None, "cpu")["probs"])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("dtype", "scaler"), [(torch.bfloat16, False), (torch.float16, True)])
def test_masks_stay_zero_under_cuda_autocast(dtype: torch.dtype, scaler: bool) -> None:
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this CUDA device has no bf16")
    masked_steps("cuda", dtype, scaler)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("compile", [False, True])
def test_fit_on_cuda_keeps_masks_zero(monkeypatch, bf16: bool, compile: bool) -> None:
    """fit's own AMP choice (bf16 without a scaler; fp16 with one, forced by pretending the
    device has no bf16), through the pinned-memory loader, eager and compiled."""
    if bf16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this CUDA device has no bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert amp_dtype(True, "cuda") == (torch.bfloat16 if bf16 else torch.float16)
    torch.manual_seed(0)
    model = Net()
    mask = random_mask(model)
    result = fit_with(model, make_split(64, 0), make_split(16, 1), input_size=24, lr=1e-2,
                 batch_size=16, max_epochs=3, amp=True, device="cuda", seed=0, mask=mask,
                 compile=compile)
    assert result.epochs == 3 and torch.backends.cudnn.benchmark
    assert_pruned_zero(model, mask)


@pytest.mark.gpu
@needs_cuda
def test_pinned_streaming_feed_matches_the_plain_copy() -> None:
    torch.manual_seed(0)
    model = Net().cuda()
    split = make_split(40, 2)
    fed = evaluate(model, split, 24, "cuda", batch_size=16, prefetch=True)["probs"]
    plain = evaluate(model, split, 24, "cuda", batch_size=16, prefetch=False)["probs"]
    np.testing.assert_array_equal(fed, plain)
    cpu = evaluate(model.cpu(), split, 24, "cpu", batch_size=16)["probs"]
    np.testing.assert_allclose(fed, cpu, rtol=1e-3, atol=1e-4)
