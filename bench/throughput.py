"""Training and evaluation images/s of each model at the paper's input sizes: the per-job
costs `deepfake-lth plan-time` schedules (its default table, written by this script).

    python bench/throughput.py [--device cpu|cuda] [--steps 4] [--threads 1] [--write]

One step is ``training.fit.train_step`` (Adam, BCE on one logit, under fit's autocast on
CUDA) on a batch of 32 random faces already at the model's input size; evaluation is a
forward pass under ``torch.no_grad``. The first step of each is a warm-up and not timed.
``--write`` stores the table with this command, the device and the date as
``src/deepfake_lth/workflow/throughput.yaml`` (plan-time's default costs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TABLE = ROOT / "src" / "deepfake_lth" / "workflow" / "throughput.yaml"
PAPER_SIZES = {"mesonet": 128, "cnn5": 128, "resnet18": 224, "xception": 299}
BATCH = 32


def measure(name: str, size: int, device: str, steps: int) -> dict:
    import torch
    from torch import nn

    from deepfake_lth.models.build import build_model
    from deepfake_lth.training.device import amp_dtype
    from deepfake_lth.training.fit import train_step

    torch.manual_seed(0)
    model = build_model(name, size).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(BATCH, 3, size, size, device=device)
    y = torch.randint(0, 2, (BATCH,), device=device).float()
    dtype = amp_dtype(True, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    kw = {"amp": dtype is not None, "amp_dtype": dtype or torch.float16, "scaler": scaler}

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    model.train()
    train_step(model, opt, nn.BCEWithLogitsLoss(), x, y, **kw)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, nn.BCEWithLogitsLoss(), x, y, **kw)
    sync()
    train = steps * BATCH / (time.perf_counter() - t)
    model.eval()
    with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=dtype or torch.float16,
                                         enabled=dtype is not None):
        model(x)
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync()
    evaluate = steps * BATCH / (time.perf_counter() - t)
    return {"input_size": size, "train_images_per_s": round(train, 2),
            "eval_images_per_s": round(evaluate, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=list(PAPER_SIZES))
    parser.add_argument("--write", action="store_true", help=f"store the table as {TABLE}")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench/throughput.py --device cuda needs a CUDA GPU: skipped")
        return 0
    torch.set_num_threads(args.threads)
    table = {m: measure(m, PAPER_SIZES[m], args.device, args.steps) for m in args.models}
    print("| model | input | train images/s | eval images/s |\n|---|---:|---:|---:|")
    for m, r in table.items():
        print(f"| {m} | {r['input_size']} | {r['train_images_per_s']} | "
              f"{r['eval_images_per_s']} |")
    if args.write:
        device = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                  else f"CPU, {args.threads} thread(s) of {os.cpu_count()} cores")
        doc = {"command": "python bench/throughput.py " + shlex.join(sys.argv[1:]),
               "measured": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
               "device": device, "batch_size": BATCH, "throughput": table}
        TABLE.write_text("# plan-time's default per-job costs, written by bench/throughput.py\n"
                         + yaml.safe_dump(doc, sort_keys=False))
        print(f"wrote {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
