"""GPU feed: training images/s per model at the paper's input sizes, through the real loader
from a packed uint8 memory map vs the same model fed from a tensor already on the GPU.

    python bench/gpu.py [--steps 60] [--models mesonet cnn5 resnet18 xception] [--device cuda]

The real loader is what ``train.fit`` runs per step: the batch's rows read from the
memory-mapped ``faces.npy`` (299 px, as config/paper.yaml packs them) into pinned memory one
batch ahead on a background thread (``train.prefetched``/``train.read_batch``), a
``non_blocking`` copy, conversion, resize and normalisation on the device plus flips
(``train.load_batch``), then ``train.train_step`` under fit's autocast (bf16 where the device
has it, else fp16 with a GradScaler) with ``cudnn.benchmark`` on. The upper bound runs the
same ``train_step`` on normalised batches already on the device at the model's input size.
Target: loader ≥ 0.9× the upper bound for every model. Without CUDA it says so and exits 0
(``--device cpu`` runs the same code on the CPU, to check the script itself).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
PAPER_SIZES = {"mesonet": 128, "cnn5": 128, "resnet18": 224, "xception": 299}
FACE_SIZE = 299
BATCH = 32
GOAL = 0.9


def write_faces(folder: Path, n: int, size: int = FACE_SIZE) -> np.ndarray:
    """A packed uint8 faces.npy of ``n`` random faces, returned memory-mapped read-only."""
    path = folder / "faces.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    rng = np.random.default_rng(0)
    for start in range(0, n, 256):
        stop = min(start + 256, n)
        out[start:stop] = rng.integers(0, 256, (stop - start, size, size, 3), dtype=np.uint8)
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(name: str, input_size: int, faces: np.ndarray, steps: int, warmup: int,
                device) -> dict:
    import torch
    from torch import nn

    from deepfake_lth.data.store import FaceImages, to_tensor
    from deepfake_lth.models import build_model
    from deepfake_lth.training.batches import load_batch, prefetched, read_batch
    from deepfake_lth.training.device import amp_dtype
    from deepfake_lth.training.fit import build_optimizer, train_step

    torch.backends.cudnn.benchmark = device.type == "cuda"
    dtype = amp_dtype(True, device)
    images = FaceImages(faces, np.arange(len(faces)))
    labels = torch.from_numpy((np.arange(len(faces)) % 2).astype(np.float32))
    gen = torch.Generator().manual_seed(0)
    pin = device.type == "cuda"

    def fresh():
        torch.manual_seed(0)
        model = build_model(name, input_size=input_size).to(device).train()
        optimizer = build_optimizer(model, lr=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        return model, optimizer, scaler

    criterion = nn.BCEWithLogitsLoss()
    kw = {"amp": dtype is not None, "amp_dtype": dtype or torch.float16}

    # the real loader, as fit runs it
    model, optimizer, scaler = fresh()
    total = warmup + steps
    order = torch.randperm(len(faces), generator=gen)
    while len(order) < total * BATCH:
        order = torch.cat([order, torch.randperm(len(faces), generator=gen)])
    flips = torch.rand(len(order), generator=gen) < 0.5
    slices = [slice(i * BATCH, (i + 1) * BATCH) for i in range(total)]
    order_np = order.numpy()
    t0 = None
    batches = prefetched(lambda sl: read_batch(images, order_np[sl], pin), slices)
    for i, (sl, raw) in enumerate(zip(slices, batches, strict=True)):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        x, y = load_batch(images, labels, order[sl], flips[sl], input_size, device, raw=raw)
        train_step(model, optimizer, criterion, x, y, scaler=scaler, mask_weights=False, **kw)
    _sync(device)
    loader_s = time.perf_counter() - t0

    # the upper bound: normalised batches already on the device
    model, optimizer, scaler = fresh()
    resident = [to_tensor(faces[i * BATCH:(i + 1) * BATCH], input_size, device)
                for i in range(max(1, min(4, len(faces) // BATCH)))]
    y = labels[:BATCH].to(device)
    for i in range(total):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        train_step(model, optimizer, criterion, resident[i % len(resident)], y, scaler=scaler,
                   mask_weights=False, **kw)
    _sync(device)
    upper_s = time.perf_counter() - t0
    loader, upper = steps * BATCH / loader_s, steps * BATCH / upper_s
    return {"model": name, "input_size": input_size, "batch": BATCH, "steps": steps,
            "amp": str(dtype).replace("torch.", "") if dtype else "none",
            "loader_images_s": loader, "on_device_images_s": upper, "ratio": loader / upper}


def run(steps: int = 60, models: tuple[str, ...] = tuple(PAPER_SIZES), device: str = "cuda",
        faces: int = 2048) -> dict:
    import torch

    dev = torch.device(device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        packed = write_faces(Path(tmp), faces)
        for name in models:
            print(f"== {name}@{PAPER_SIZES[name]}", file=sys.stderr, flush=True)
            rows.append(bench_model(name, PAPER_SIZES[name], packed, steps,
                                    max(3, steps // 6), dev))
        del packed
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "none (CPU run)"
    targets = [{"id": f"gpu-feed-{r['model']}", "title": f"real loader / on-device upper bound, "
                f"{r['model']}@{r['input_size']}", "measured": r["ratio"], "goal": GOAL,
                "op": ">=", "unit": "x", "met": r["ratio"] >= GOAL} for r in rows]
    return {"name": "gpu", "device": gpu, "torch": torch.__version__, "faces": faces,
            "rows": rows, "targets": targets}


def table(result: dict) -> str:
    lines = ["| model@input | autocast | loader images/s | on-device images/s | ratio |",
             "|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']}@{r['input_size']} | {r['amp']} | "
                     f"{r['loader_images_s']:.0f} | {r['on_device_images_s']:.0f} | "
                     f"{r['ratio']:.2f}x{'' if r['ratio'] >= GOAL else ' (**below 0.9**)'} |")
    return "\n".join(lines)


def markdown(result: dict, command: str) -> str:
    return f"""## GPU feed (bench/gpu.py)

Generated by `{command}` on {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}, device
{result['device']}, torch {result['torch']}. Training images/s (batch {BATCH}) through the real
loader (memory-mapped 299 px uint8 faces → pinned memory one batch ahead → `non_blocking`
copy → resize and normalisation on the device) vs the same model fed normalised batches
already on the device; goal ≥ {GOAL}×.

{table(result)}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per model")
    parser.add_argument("--models", nargs="+", default=list(PAPER_SIZES),
                        choices=list(PAPER_SIZES))
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--faces", type=int, default=2048, help="faces in the packed set")
    parser.add_argument("--no-markdown", action="store_true", help="leave bench/gpu.md alone")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False): skipped")
        return 0
    result = run(args.steps, tuple(args.models), args.device, args.faces)
    command = "python bench/gpu.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu.json").write_text(json.dumps({**result, "command": command}, indent=2))
    print(table(result))
    print(json.dumps(result["targets"], indent=2))
    if not args.no_markdown and args.device.startswith("cuda"):  # CPU runs check the script
        (BENCH / "gpu.md").write_text(markdown(result, command))
        print(f"wrote {BENCH / 'gpu.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
