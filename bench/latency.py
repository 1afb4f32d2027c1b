"""Deployable tickets: file size, CPU latency and ONNX export of dense, unstructured and
structured (channel-pruned, compacted) networks.

    python bench/latency.py [--quick] [--out latency.json]

1. Size: the dense checkpoint (a state_dict) against the compact ticket file
   (deepfake_lth.deploy.export) at 80 % global magnitude sparsity, float32 and float16.
2. Latency: median CPU forward time (batch 1 and 32, after warm-up, at fixed thread
   counts) of the dense model, the 80 % unstructured ticket (masked dense weights: the same
   work as dense) and structured tickets at several channel sparsities, compacted to
   smaller dense models (deepfake_lth.pruning.structured). The variants of one setting are timed
   interleaved, round-robin, so that load from other processes hits all of them alike.
3. ONNX: every variant exported with torch.onnx and checked against onnxruntime
   (atol 1e-4); reported as not run when onnx/onnxruntime are not installed.

Weights are random (a fixed seed): size and speed do not depend on training. Results print
as markdown tables and are written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from deepfake_lth.analysis.latency import count_macs, time_models
from deepfake_lth.deploy import export
from deepfake_lth.models import build_model
from deepfake_lth.pruning import masks, structured

SIZE_MODELS = [("mesonet", 256), ("mesonet", 64), ("cnn5", 64), ("resnet18", 64), ("xception", 71)]
LATENCY_MODELS = [("mesonet", 64), ("cnn5", 64), ("resnet18", 64)]
UNSTRUCTURED_SPARSITY = 0.8
CHANNEL_SPARSITIES = (0.0, 0.5, 0.75)


def _randomise_norms(model: nn.Module, gen: torch.Generator) -> None:
    """BatchNorm statistics and affine parameters away from their identity defaults."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)


def make_model(name: str, size: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, input_size=size)
    _randomise_norms(model, torch.Generator().manual_seed(seed))
    return model.eval()


# --------------------------------------------------------------------------- size


def size_table(models: list[tuple[str, int]], workdir: Path) -> list[dict]:
    rows = []
    for name, size in models:
        model = make_model(name, size)
        mask = masks.prune_to_sparsity(model, UNSTRUCTURED_SPARSITY, "global")
        masks.apply_mask(model, mask)
        state = model.state_dict()
        dense_path = workdir / f"{name}{size}.pt"
        torch.save(state, dense_path)
        dense_bytes = dense_path.stat().st_size
        row = {
            "model": name,
            "input_size": size,
            "params": sum(p.numel() for p in model.parameters()),
            "sparsity": masks.sparsity(mask),
            "checkpoint_bytes": dense_bytes,
        }
        x = torch.randn(2, 3, size, size)
        with torch.inference_mode():
            ref = model(x)
        for fp16 in (False, True):
            tag = "fp16" if fp16 else "fp32"
            path = workdir / f"{name}{size}-{tag}.ticket.pt"
            n = export.save_ticket(path, export.pack_ticket(state, mask, name, size, fp16))
            with torch.inference_mode():
                diff = float((export.load_ticket(path)(x) - ref).abs().max())
            row[f"ticket_{tag}_bytes"] = n
            row[f"ratio_{tag}"] = n / dense_bytes
            row[f"max_diff_{tag}"] = diff
        rows.append(row)
        dense_path.unlink()
        print(f"  size: {name}@{size} done", file=sys.stderr)
    return rows


def print_size_table(rows: list[dict]) -> None:
    print(f"\n### Ticket file size at {UNSTRUCTURED_SPARSITY:.0%} sparsity (global magnitude)\n")
    print("| model | input | params | checkpoint.pt | ticket fp32 | ratio | ticket fp16 | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['input_size']} | {r['params']:,} | "
            f"{r['checkpoint_bytes'] / 1024:,.1f} KiB | {r['ticket_fp32_bytes'] / 1024:,.1f} KiB | "
            f"{r['ratio_fp32']:.3f} | {r['ticket_fp16_bytes'] / 1024:,.1f} KiB | "
            f"{r['ratio_fp16']:.3f} |"
        )


# --------------------------------------------------------------------------- latency


def variants(name: str, size: int) -> list[dict]:
    """The networks compared for one model: dense, unstructured, structured (compacted)."""
    dense = make_model(name, size)
    out = [{"variant": "dense", "model": dense, "channel_sparsity": 0.0, "sparsity": 0.0}]
    unstructured = make_model(name, size)
    mask = masks.prune_to_sparsity(unstructured, UNSTRUCTURED_SPARSITY, "global")
    masks.apply_mask(unstructured, mask)
    out.append(
        {
            "variant": f"unstructured {UNSTRUCTURED_SPARSITY:.0%}",
            "model": unstructured,
            "channel_sparsity": 0.0,
            "sparsity": masks.sparsity(mask),
        }
    )
    for cs in CHANNEL_SPARSITIES:
        masked = make_model(name, size)
        cmask = structured.channel_mask(masked, None, cs, "local")
        wmask = structured.apply_channel_mask(masked, cmask)
        compact = structured.compact_model(masked, cmask).eval()
        x = torch.randn(4, 3, size, size)
        with torch.inference_mode():
            diff = float((compact(x) - masked(x)).abs().max())
        if diff > 1e-4:
            raise RuntimeError(f"{name}: compact model differs from the masked one by {diff}")
        out.append(
            {
                "variant": f"structured {structured.channel_sparsity(cmask):.0%} channels",
                "model": compact,
                "channel_sparsity": structured.channel_sparsity(cmask),
                "sparsity": masks.sparsity(wmask),
            }
        )
    for v in out:
        v["params"] = sum(p.numel() for p in v["model"].parameters())
        v["macs"] = count_macs(v["model"], size)
    return out


def latency_table(
    models: list[tuple[str, int]],
    threads: list[int],
    batches: list[int],
    warmup: int,
    repeats: int,
) -> list[dict]:
    rows = []
    for name, size in models:
        vs = variants(name, size)
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for batch in batches:
                x = torch.randn(batch, 3, size, size)
                times = time_models([v["model"] for v in vs], x, warmup, repeats)
                medians = [statistics.median(t) for t in times]
                for v, t, med in zip(vs, times, medians, strict=True):
                    rows.append(
                        {
                            "model": name,
                            "input_size": size,
                            "variant": v["variant"],
                            "params": v["params"],
                            "macs": v["macs"],
                            "macs_ratio_vs_dense": vs[0]["macs"] / v["macs"],
                            "sparsity": v["sparsity"],
                            "channel_sparsity": v["channel_sparsity"],
                            "threads": n_threads,
                            "batch": batch,
                            "median_ms": med * 1e3,
                            "min_ms": min(t) * 1e3,
                            "speedup_vs_dense": medians[0] / med,
                        }
                    )
                print(f"  latency: {name} threads {n_threads} batch {batch} done", file=sys.stderr)
    return rows


def print_latency_table(rows: list[dict]) -> None:
    print("\n### CPU latency (median ms per forward; speed-up = dense / variant)\n")
    settings = sorted({(r["threads"], r["batch"]) for r in rows})
    head = " | ".join(f"{t} thr, batch {b}" for t, b in settings)
    print(f"| model | variant | params | weight sparsity | MMACs (dense/variant) | {head} |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(settings))
    keys = list(dict.fromkeys((r["model"], r["input_size"], r["variant"]) for r in rows))
    for model, size, variant in keys:
        sel = {
            (r["threads"], r["batch"]): r
            for r in rows
            if (r["model"], r["input_size"], r["variant"]) == (model, size, variant)
        }
        first = next(iter(sel.values()))
        cells = " | ".join(
            f"{sel[s]['median_ms']:.2f} ({sel[s]['speedup_vs_dense']:.2f}×)" for s in settings
        )
        print(
            f"| {model}@{size} | {variant} | {first['params']:,} | {first['sparsity']:.0%} | "
            f"{first['macs'] / 1e6:.1f} ({first['macs_ratio_vs_dense']:.2f}×) | {cells} |"
        )


# --------------------------------------------------------------------------- ONNX


def onnx_table(models: list[tuple[str, int]], workdir: Path) -> list[dict] | str:
    missing = export.onnx_missing()
    if missing:
        return missing
    rows = []
    for name, size in models:
        for v in variants(name, size):
            path = workdir / f"{name}-{v['variant'].replace(' ', '_').replace('%', '')}.onnx"
            row = {"model": name, "input_size": size, "variant": v["variant"]}
            try:
                export.to_onnx(v["model"], path, size)
                x = torch.randn(3, 3, size, size)  # another batch size than the export's
                row.update(ok=True, max_diff=export.check_onnx(v["model"], path, x, 1e-4))
                row["onnx_bytes"] = path.stat().st_size
            except Exception as exc:  # noqa: BLE001 - report every variant, whatever fails
                row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
            rows.append(row)
    return rows


def print_onnx_table(result: list[dict] | str) -> None:
    print("\n### ONNX export, checked with onnxruntime (atol 1e-4)\n")
    if isinstance(result, str):
        print(f"not run: {result} (pip install onnx onnxscript onnxruntime)")
        return
    print("| model | variant | ok | max abs diff | file |")
    print("|---|---|---|---:|---:|")
    for r in result:
        if r["ok"]:
            print(
                f"| {r['model']}@{r['input_size']} | {r['variant']} | yes | "
                f"{r['max_diff']:.1e} | {r['onnx_bytes'] / 1024:,.1f} KiB |"
            )
        else:
            print(f"| {r['model']}@{r['input_size']} | {r['variant']} | NO: {r['error']} | | |")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no xception")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts (default 1 2)")
    parser.add_argument("--repeats", type=int, help="timed passes per variant (default 30)")
    args = parser.parse_args(argv)

    torch.set_num_interop_threads(1)
    threads = args.threads or ([1] if args.quick else [1, 2])
    repeats = args.repeats or (5 if args.quick else 30)
    warmup = 2 if args.quick else 5
    size_models = [m for m in SIZE_MODELS if not (args.quick and m[0] == "xception")]
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads {threads}, {warmup} warm-up + {repeats} timed passes",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory() as tmp:
        sizes = size_table(size_models, Path(tmp))
        latency = latency_table(LATENCY_MODELS, threads, [1, 32], warmup, repeats)
        onnx = onnx_table(LATENCY_MODELS, Path(tmp))
    print_size_table(sizes)
    print_latency_table(latency)
    print_onnx_table(onnx)
    if args.out:
        result = {
            "torch": torch.__version__,
            "machine": platform.machine(),
            "threads": threads,
            "warmup": warmup,
            "repeats": repeats,
            "size": sizes,
            "latency": latency,
            "onnx": onnx if isinstance(onnx, list) else {"skipped": onnx},
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
