"""Data loading: the share of a training epoch spent outside forward/backward on the packed
dataset, and the packed batch path against decoding JPEG crops every epoch.

    python bench/data_loading.py [--quick]

The epoch is ``train.fit``'s loop, step for step: a seeded order and flips, then per batch
``train.load_batch`` (uint8 rows of the in-memory split → ``to_tensor``: float, resize to the
model's input, normalise; flips) and ``train.train_step`` (forward, backward, Adam), plus the
loss and accuracy bookkeeping. Everything but ``train_step`` counts as outside
forward/backward. The faces are synthetic face crops at the demo's packed size (64 px), the
models and input sizes those of the demo (MesoNet at 64, CNN-5 at 48), batch 16, one thread
as a workflow job. The baseline reads and decodes the same crops from JPEG files (quality
95, as a folder-of-images loader would) for the same batch indices, interleaved with the
packed path; only its loading time is kept.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import _cli  # bench/_cli.py: the shared command line
import numpy as np

MODELS = [("mesonet", 64), ("cnn5", 48)]
SIZE = 64
BATCH = 16
GOAL = 0.10


def make_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic face crops (uint8, n×64×64×3, RGB), half real and half fake."""
    import cv2

    from deepfake_lth.data.acquire import synthetic as syn

    rng = np.random.default_rng(seed)
    idents = [syn.sample_identity(rng) for _ in range(12)]
    images, labels = [], []
    for i in range(n):
        label = i % 2
        t = int(rng.integers(len(idents)))
        donor = idents[(t + 1) % len(idents)] if label else None
        img = syn.render_image(idents[t], donor, 96, 96, np.random.default_rng([seed, i]), 0.5)
        img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64)


def write_jpegs(images: np.ndarray, folder: Path) -> list[str]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(str(path))
    return paths


def jpeg_batch(paths: list[str], labels, idx, flips, input_size: int, device):
    """The baseline: read and decode each crop of the batch from its JPEG file."""
    import cv2
    import torch

    from deepfake_lth.data.store import to_tensor

    imgs = [cv2.cvtColor(cv2.imread(paths[i]), cv2.COLOR_BGR2RGB) for i in idx.tolist()]
    x = to_tensor(np.stack(imgs), input_size, device)
    flip = flips.view(-1, 1, 1, 1)
    x = torch.where(flip, x.flip(3), x)
    return x, labels[idx]


def to_tensor_nhwc(images: np.ndarray, size: int | None = None):
    """``data.to_tensor`` as it was: the arithmetic on the permuted (NHWC-strided) tensor."""
    import torch
    import torch.nn.functional as F

    from deepfake_lth.data.store import MEAN, STD

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def to_tensor_reference(images: np.ndarray, sizes: list[int], repeats: int = 200) -> list[dict]:
    """``data.to_tensor`` against its previous form, batch 16, interleaved: time and equality."""
    import statistics

    import torch

    from deepfake_lth.data.store import to_tensor

    rows = []
    batch = images[:BATCH]
    for size in sizes:
        new, old = to_tensor(batch, size), to_tensor_nhwc(batch, size)
        same = torch.equal(new, old) and new.stride() == old.stride()
        t_new, t_old = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            to_tensor(batch, size)
            t1 = time.perf_counter()
            to_tensor_nhwc(batch, size)
            t_new.append(t1 - t0)
            t_old.append(time.perf_counter() - t1)
        rows.append({"input_size": size, "before_ms": statistics.median(t_old) * 1e3,
                     "now_ms": statistics.median(t_new) * 1e3,
                     "speedup": statistics.median(t_old) / statistics.median(t_new),
                     "identical": bool(same)})
    return rows


def bench_model(name: str, input_size: int, images: np.ndarray, labels: np.ndarray,
                paths: list[str], epochs: int, seed: int = 0) -> dict:
    import torch
    from torch import nn

    from deepfake_lth.models import build_model
    from deepfake_lth.training.batches import load_batch
    from deepfake_lth.training.fit import build_optimizer, train_step

    device = torch.device("cpu")
    torch.manual_seed(seed)
    model = build_model(name, input_size=input_size).train()
    optimizer = build_optimizer(model, lr=1e-3)
    criterion = nn.BCEWithLogitsLoss()
    labels_all = torch.from_numpy(labels.astype(np.float32))
    gen = torch.Generator().manual_seed(seed)
    n = len(labels)
    data_s = step_s = jpeg_s = 0.0
    batches = 0
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        data_s += time.perf_counter() - t0
        for start in range(0, n, BATCH):
            sl = slice(start, min(start + BATCH, n))
            idx = order[sl]
            ta = time.perf_counter()
            x, y = load_batch(images, labels_all, idx, flips[sl], input_size, device)
            tb = time.perf_counter()
            logits, loss = train_step(model, optimizer, criterion, x, y)
            tc = time.perf_counter()
            loss_sum += loss.detach() * len(idx)
            correct += ((logits.detach() > 0) == (y > 0.5)).sum()
            td = time.perf_counter()
            data_s += (tb - ta) + (td - tc)
            step_s += tc - tb
            te = time.perf_counter()
            xj, _ = jpeg_batch(paths, labels_all, idx, flips[sl], input_size, device)
            jpeg_s += time.perf_counter() - te
            batches += 1
    if not math.isclose(float(xj.float().mean()), float(x.float().mean()), abs_tol=1.0):
        raise RuntimeError("the JPEG and packed batches differ: the baseline reads other images")
    share = data_s / (data_s + step_s)
    return {
        "model": name,
        "input_size": input_size,
        "faces": n,
        "epochs": epochs,
        "batches": batches,
        "step_ms": step_s / batches * 1e3,
        "packed_load_ms": data_s / batches * 1e3,
        "jpeg_load_ms": jpeg_s / batches * 1e3,
        "share_outside_step": share,
        "jpeg_share_outside_step": jpeg_s / (jpeg_s + step_s),
        "jpeg_over_packed": jpeg_s / data_s,
    }


def run(quick: bool = False) -> dict:
    import torch

    torch.set_num_threads(1)
    n = 320 if quick else 640
    t0 = time.perf_counter()
    images, labels = make_faces(n)
    make_s = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-jpeg-") as tmp:
        paths = write_jpegs(images, Path(tmp))
        for name, size in MODELS:
            rows.append(bench_model(name, size, images, labels, paths, 1 if quick else 2))
    reference = to_tensor_reference(images, sorted({size for _, size in MODELS}, reverse=True))
    targets = [
        {"id": f"data-share-{r['model']}",
         "title": f"share of a training epoch outside forward/backward, packed, "
                  f"{r['model']}@{r['input_size']}",
         "measured": round(r["share_outside_step"], 4), "goal": GOAL, "op": "<=", "unit": "%",
         "met": r["share_outside_step"] <= GOAL}
        for r in rows
    ]
    return {"name": "data_loading", "rows": rows, "targets": targets, "to_tensor": reference,
            "settings": {"threads": 1, "batch": BATCH, "faces": n, "face_size": SIZE,
                         "make_seconds": round(make_s, 1)}}


def table(result: dict) -> str:
    lines = [
        ("| model | step ms | packed load ms/batch | JPEG load ms/batch | share outside step, "
         "packed | share, JPEG | JPEG / packed load |"),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']}@{r['input_size']} | {r['step_ms']:.2f} | {r['packed_load_ms']:.3f} | "
            f"{r['jpeg_load_ms']:.3f} | {100 * r['share_outside_step']:.1f} % | "
            f"{100 * r['jpeg_share_outside_step']:.1f} % | {r['jpeg_over_packed']:.1f}x |"
        )
    lines += ["", ("| `to_tensor`, batch 16 → input size | before ms | now ms | speed-up | "
                   "same values and strides |"), "|---|---:|---:|---:|:---:|"]
    for r in result.get("to_tensor", []):
        lines.append(f"| 64 → {r['input_size']} | {r['before_ms']:.3f} | {r['now_ms']:.3f} | "
                     f"{r['speedup']:.2f}x | {'yes' if r['identical'] else '**no**'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return _cli.main(__doc__, run, table, "fewer faces, one epoch", argv)


if __name__ == "__main__":
    raise SystemExit(main())
