"""Masked training: time per training step of an 80 % sparse model against the same model
dense, and against ``torch.nn.utils.prune`` hooks.

    python bench/masked_training.py [--quick]

A step is ``train.train_step`` with the optimizer of ``train.build_optimizer``, exactly
what ``train.fit`` runs: the masked model gets ``MaskEnforcer.mask_grads`` after
``backward()``; ``fit`` re-applies ``mask_weights`` once per epoch (Adam leaves zero weights
with zero gradients and moments at exactly zero; the benchmark counts stray nonzeros). The
well-known alternative, ``torch.nn.utils.prune.custom_from_mask``, recomputes
``weight = weight_orig * mask`` in a forward pre-hook and backpropagates through that
product. For reference, the dense and masked steps are also timed with torch's per-tensor
("for-loop") Adam, which ``fit`` used before: its ``sqrt`` is slow on exact zeros, which
pruned weights leave in Adam's second moment. Inputs come through ``data.to_tensor``, as in
``fit``. All variants start from the same weights and see the same batches; their steps are
interleaved in a shuffled order every round so that drift and load from other processes hit
them alike; each variant's time is the median over its steps. The target is the median of
the per-round ratios masked / dense (the two steps of a round ran close together, so load
from other processes cancels). One thread, as a workflow job runs.
"""

from __future__ import annotations

import copy
import random
import statistics
import time

import _cli  # bench/_cli.py: the shared command line
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from deepfake_lth.data.store import to_tensor
from deepfake_lth.models import build_model
from deepfake_lth.pruning import masks
from deepfake_lth.training.fit import build_optimizer, train_step

MODELS = [("mesonet", 64), ("cnn5", 64), ("resnet18", 64)]
BATCH = 16
SPARSITY = 0.8
GOAL = 1.05  # masked / dense step time, at most


def _hooked(model: nn.Module, mask: dict[str, torch.Tensor]) -> nn.Module:
    """``model`` with torch.nn.utils.prune masks (forward pre-hooks) on every prunable weight."""
    for name, m in mask.items():
        module = model.get_submodule(name.rsplit(".", 1)[0])
        torch_prune.custom_from_mask(module, "weight", m)
    return model


def bench_model(name: str, size: int, steps: int, warmup: int, seed: int = 0) -> dict:
    """Median step seconds of the dense, masked (MaskEnforcer) and prune-hook variants."""
    torch.manual_seed(seed)
    base = build_model(name, input_size=size)
    mask = masks.prune_to_sparsity(base, SPARSITY, "global")
    dense = copy.deepcopy(base).train()
    masked = copy.deepcopy(base).train()
    masks.apply_mask(masked, mask)
    hooked = _hooked(copy.deepcopy(base), mask).train()
    variants = {}
    for key, model in (("dense", dense), ("masked", masked), ("prune_hooks", hooked),
                       ("dense_loop_adam", copy.deepcopy(dense)),
                       ("masked_loop_adam", copy.deepcopy(masked))):
        enforcer = masks.MaskEnforcer(model, mask) if key.startswith("masked") else None
        if key.endswith("loop_adam"):
            opt = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=False)
        else:
            opt = build_optimizer(model, lr=1e-4)
        variants[key] = (model, opt, enforcer)
    criterion = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    # inputs as fit gets them: uint8 faces through data.to_tensor (channels-last memory)
    batches = [
        (to_tensor(torch.randint(0, 256, (BATCH, size, size, 3), dtype=torch.uint8,
                                 generator=gen).numpy(), size),
         (torch.rand(BATCH, generator=gen) < 0.5).float())
        for _ in range(8)
    ]
    times: dict[str, list[float]] = {k: [] for k in variants}
    enforce: list[float] = []
    order = list(variants)
    rng = random.Random(seed)
    for i in range(warmup + steps):
        x, y = batches[i % len(batches)]
        rng.shuffle(order)
        for key in order:
            model, opt, enforcer = variants[key]
            t0 = time.perf_counter()
            train_step(model, opt, criterion, x, y, enforcer=enforcer, mask_weights=False)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[key].append(dt)
        if i >= warmup:  # the enforcer's per-step cost (mask_grads), on the current grads
            enf = variants["masked"][2]
            t0 = time.perf_counter()
            enf.mask_grads()
            enforce.append(time.perf_counter() - t0)
    # masked weights stayed zero (the check train.fit relies on)
    stray = sum(int((p[~mask[n]] != 0).sum())
                for n, p in masks.prunable_parameters(masked).items())
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = statistics.median(m / d for m, d in zip(times["masked"], times["dense"]))
    return {
        "model": name,
        "input_size": size,
        "batch": BATCH,
        "sparsity": round(masks.sparsity(mask), 4),
        "prunable_weights": masks.mask_counts(mask)[1],
        "steps": steps,
        "dense_ms": med["dense"] * 1e3,
        "masked_ms": med["masked"] * 1e3,
        "prune_hooks_ms": med["prune_hooks"] * 1e3,
        "enforcer_ms": statistics.median(enforce) * 1e3,
        "masked_over_dense": med["masked"] / med["dense"],
        "masked_over_dense_paired": paired,
        "hooks_over_dense": med["prune_hooks"] / med["dense"],
        "masked_over_hooks": med["masked"] / med["prune_hooks"],
        "dense_loop_adam_ms": med["dense_loop_adam"] * 1e3,
        "masked_loop_adam_ms": med["masked_loop_adam"] * 1e3,
        "loop_adam_masked_over_dense": med["masked_loop_adam"] / med["dense_loop_adam"],
        "stray_nonzero": stray,
    }


def sqrt_on_zeros(n: int = 1 << 21, repeats: int = 20) -> float:
    """Time of ``torch.sqrt`` on zeros / on random positive values (one thread)."""
    out = {}
    for key, t in (("zeros", torch.zeros(n)), ("random", torch.rand(n) + 0.1)):
        dst = torch.empty_like(t)
        torch.sqrt(t, out=dst)
        t0 = time.perf_counter()
        for _ in range(repeats):
            torch.sqrt(t, out=dst)
        out[key] = time.perf_counter() - t0
    return out["zeros"] / out["random"]


def run(quick: bool = False) -> dict:
    """Every model of MODELS; one target per model (masked / dense ≤ GOAL)."""
    torch.set_num_threads(1)
    rows = []
    for name, size in MODELS:
        heavy = name == "resnet18"
        steps = (12 if heavy else 60) if quick else (30 if heavy else 150)
        rows.append(bench_model(name, size, steps, warmup=3 if quick else 10))
    targets = [
        {
            "id": f"masked-step-{r['model']}",
            "title": f"masked (80 %) / dense step time, {r['model']}@{r['input_size']}, batch {BATCH}",
            "measured": round(r["masked_over_dense_paired"], 3),
            "goal": GOAL,
            "op": "<=",
            "unit": "x",
            "met": r["masked_over_dense_paired"] <= GOAL and r["stray_nonzero"] == 0,
        }
        for r in rows
    ]
    return {"name": "masked_training", "rows": rows, "targets": targets,
            "sqrt_zeros_over_random": sqrt_on_zeros(),
            "settings": {"threads": 1, "batch": BATCH, "sparsity": SPARSITY}}


def table(result: dict) -> str:
    lines = [
        ("| model | dense ms/step | masked ms/step | prune hooks ms/step | enforcer ms | "
         "masked / dense (paired) | masked / dense (medians) | prune hooks / dense | "
         "masked / prune hooks | per-tensor Adam: masked / dense |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']}@{r['input_size']} | {r['dense_ms']:.2f} | {r['masked_ms']:.2f} | "
            f"{r['prune_hooks_ms']:.2f} | {r['enforcer_ms']:.3f} | "
            f"{r['masked_over_dense_paired']:.3f} | "
            f"{r['masked_over_dense']:.3f} | {r['hooks_over_dense']:.3f} | "
            f"{r['masked_over_hooks']:.3f} | {r['loop_adam_masked_over_dense']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return _cli.main(__doc__, run, table, "fewer steps", argv)


if __name__ == "__main__":
    raise SystemExit(main())
