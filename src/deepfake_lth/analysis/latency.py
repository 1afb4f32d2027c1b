"""CPU inference latency of the dense network and the tickets of one run, side by side.

An unstructured ticket (a mask over a dense state_dict) does the same work as the dense model;
a structured ticket (``channels.pt``, :mod:`deepfake_lth.pruning.structured`) is compacted into a
physically smaller dense model first, as it would be deployed. Every network of the run is
timed in one process on CPU with a fixed number of torch threads, round-robin (one forward of
each in turn, ``repeats`` times after ``warmup`` passes), so that load from anything else
running on the machine falls on all of them alike; the table reports the median, the
speed-up over the dense network's median at the same batch size, and the spread of that
speed-up over the rounds (the 2.5th–97.5th percentiles of the per-round ratios).

``deepfake-lth latency --levels '[{"method", "level", "path"}, ...]' --model M --out CSV``
(the dense level first) writes one row per level and batch size (``COLUMNS``).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.execution import add_execution_arguments, apply_execution

if TYPE_CHECKING:  # torch is imported where it runs: the report reads COLUMNS without it
    import torch
    from torch import nn

log = logging.getLogger(__name__)

COLUMNS = [
    "method",
    "level",
    "sparsity",
    "channel_sparsity",
    "params",
    "macs",
    "batch",
    "threads",
    "median_ms",
    "min_ms",
    "speedup_vs_dense",
    "speedup_low",  # 2.5th percentile of the per-round ratios dense / this network
    "speedup_high",  # 97.5th percentile: a speed-up with 1 inside [low, high] is no difference
]


def ratio_spread(dense: Sequence[float], times: Sequence[float]) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the per-round ratios dense time / this time (the
    two timed in the same round-robin round, so shared load cancels)."""
    ratios = sorted(d / t for d, t in zip(dense, times, strict=False) if t > 0)
    if not ratios:
        return float("nan"), float("nan")
    if len(ratios) == 1:
        return ratios[0], ratios[0]
    q = statistics.quantiles(ratios, n=40, method="inclusive")
    return q[0], q[-1]


def count_macs(model: nn.Module, size: int) -> int:
    """Multiply-accumulates of one forward pass of a single ``size``² image (convs, linears)."""
    import torch
    from torch import nn

    total = 0

    def hook(m: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += out.numel() * (m.in_channels // m.groups) * k
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total


def time_models(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    warmup: int,
    repeats: int,
    min_seconds: float = 0.0,
) -> list[list[float]]:
    """Seconds per forward of every model on ``x``, timed round-robin after ``warmup``
    passes of each (models in eval mode, no autograd): ``repeats`` rounds, and more (up to
    10 × ``repeats``) while the rounds so far took less than ``min_seconds``, so that fast
    forwards get enough samples for a stable median."""
    import torch

    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for _ in range(warmup):
            for m in models:
                m(x)
        start = time.perf_counter()
        rounds = 0
        while rounds < repeats or (
            rounds < 10 * repeats and time.perf_counter() - start < min_seconds
        ):
            for i, m in enumerate(models):
                t0 = time.perf_counter()
                m(x)
                times[i].append(time.perf_counter() - t0)
            rounds += 1
    return times


# --------------------------------------------------------------------------- stage


def job_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The config slice a latency job computes from (the rule's ``--spec``)."""
    s = config["latency"]
    return {"input_size": config["models"][model].get("input_size"),
            **{k: s[k] for k in ("batch_sizes", "repeats", "warmup", "min_seconds")}}


def parse_spec(spec: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """The stage spec (a dict or its JSON) with defaults filled in; unknown keys are errors."""
    from deepfake_lth.core.schema import stage_spec

    out = stage_spec(spec, "latency")
    batches = out["batch_sizes"]
    if not batches or not all(isinstance(b, int) and b >= 1 for b in batches):
        raise UserError(f"latency.batch_sizes must be integers ≥ 1, got {batches!r}")
    for key, least in (("threads", 1), ("warmup", 0), ("repeats", 1)):
        if not isinstance(out[key], int) or out[key] < least:
            raise UserError(f"latency.{key} must be an integer ≥ {least}, got {out[key]!r}")
    if not isinstance(out["min_seconds"], (int, float)) or out["min_seconds"] < 0:
        raise UserError(f"latency.min_seconds must be a number ≥ 0, got {out['min_seconds']!r}")
    return out


def load_level(model_name: str, input_size: int, folder: Path) -> tuple[nn.Module, dict]:
    """The network of a level folder on CPU in eval mode, compacted when the folder holds a
    structured ticket (``channels.pt``), and its sparsities (from ``metrics.json``, else
    counted)."""
    from deepfake_lth.models import build_model
    from deepfake_lth.pruning.checkpoints import load_state
    from deepfake_lth.pruning.masks import prunable_parameters
    from deepfake_lth.pruning.plan import level_sparsity

    ckpt = folder / "checkpoint.pt"
    state = load_state(ckpt)
    model = build_model(model_name, input_size=input_size)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{ckpt} does not fit {model_name} ({str(exc).splitlines()[0]})") from None
    sparsity = level_sparsity(folder, state, list(prunable_parameters(model)))
    info = {"sparsity": sparsity, "channel_sparsity": 0.0}
    channels = folder / "channels.pt"
    if channels.is_file():
        from deepfake_lth.pruning.structured import (
            channel_sparsity,
            check_channel_mask,
            compact_model,
            load_channels,
        )

        cmask = check_channel_mask(model, load_channels(channels), str(channels))
        model = compact_model(model, cmask)
        info["channel_sparsity"] = channel_sparsity(cmask)
    return model.eval(), info


def latency_stage(
    levels: str | Sequence[Any],
    model_name: str,
    out_csv: str | Path,
    spec: Mapping[str, Any] | str | None = None,
):
    """Time every level (the dense one first) side by side; writes ``out_csv`` (``COLUMNS``)
    and returns its DataFrame."""
    import pandas as pd
    import torch

    from deepfake_lth.core.files import write_csv
    from deepfake_lth.models import get_spec
    from deepfake_lth.pruning.plan import parse_levels

    spec = parse_spec(spec)
    levels = parse_levels(levels)
    input_size = int(spec["input_size"] or get_spec(model_name).input_size)
    torch.set_num_threads(int(spec["threads"]))
    models, infos = [], []
    for item in levels:
        model, info = load_level(model_name, input_size, item["path"])
        info |= {
            "method": item["method"],
            "level": item["level"],
            "params": sum(p.numel() for p in model.parameters()),
            "macs": count_macs(model, input_size),
        }
        models.append(model)
        infos.append(info)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for batch in spec["batch_sizes"]:
        x = torch.rand(batch, 3, input_size, input_size, generator=gen)
        times = time_models(
            models, x, int(spec["warmup"]), int(spec["repeats"]), float(spec["min_seconds"])
        )
        medians = [statistics.median(t) for t in times]
        for info, t, med in zip(infos, times, medians, strict=True):
            low, high = ratio_spread(times[0], t)
            rows.append(
                {
                    **info,
                    "batch": batch,
                    "threads": int(spec["threads"]),
                    "median_ms": med * 1e3,
                    "min_ms": min(t) * 1e3,
                    "speedup_vs_dense": medians[0] / med,
                    "speedup_low": low,
                    "speedup_high": high,
                }
            )
            log.info(
                "%s %s batch %d: %.3f ms (%.2f× dense)",
                info["method"],
                info["level"],
                batch,
                med * 1e3,
                medians[0] / med,
            )
    df = pd.DataFrame(rows, columns=COLUMNS)
    write_csv(df, out_csv)
    return df


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--levels",
        required=True,
        help='JSON list of {"method", "level", "path"} (folders with checkpoint.pt), dense first',
    )
    parser.add_argument("--model", required=True, help="registry model name")
    parser.add_argument(
        "--spec",
        default="{}",
        help="JSON: input_size, batch_sizes, threads, warmup, repeats, min_seconds",
    )
    parser.add_argument("--out", required=True, help="CSV to write")
    add_execution_arguments(parser, ("threads",))


def run(args: argparse.Namespace) -> int:
    args.spec = apply_execution(args.spec, args, ("threads",))
    latency_stage(args.levels, args.model, args.out, args.spec)
    return 0
