"""INT8 post-training static quantization (ONNX Runtime): file size, CPU latency, agreement.

    python bench/compression.py [--quick] [--out compression.json]

For each model (random weights with BatchNorm statistics away from identity: size and speed do
not depend on training) the dense network and a structured ticket (50 % of the channels of
every conv removed by local L1 norm, compacted) are written as fp32 ONNX and quantized with
:func:`deepfake_lth.deploy.quantize.quantize_onnx` (QDQ, per-channel, reduce_range on CPUs
without VNNI), calibrated on 64 synthetic images. All variants of one model are timed
side by side, round-robin, with onnxruntime on one intra-op thread (batch 1 and 32), and the
fp32 torch model with one torch thread beside them. Agreement: the share of 256 inputs whose
sign of the logit is the same in INT8 as in fp32 (random weights: a sanity check, not an
accuracy; the demo's test AUCs are in the report's Compression section).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import main as cli_main  # noqa: E402
from latency import make_model  # noqa: E402

from deepfake_lth.deploy import export, quantize  # noqa: E402
from deepfake_lth.pruning import structured  # noqa: E402

MODELS = [("resnet18", 224), ("mesonet", 64), ("cnn5", 48)]


def _time(fns, x, warmup: int, repeats: int) -> list[float]:
    times = [[] for _ in fns]
    for _ in range(warmup):
        for f in fns:
            f(x)
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f(x)
            times[i].append(time.perf_counter() - t0)
    return [1e3 * statistics.median(t) for t in times]


def bench_model(name: str, size: int, work: Path, quick: bool) -> dict:
    torch.set_num_threads(1)
    dense = make_model(name, size)
    masked = make_model(name, size)
    cmask = structured.channel_mask(masked, None, 0.5, "local")
    structured.apply_channel_mask(masked, cmask)
    compact = structured.compact_model(masked, cmask).eval()
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16 if quick else 64, 3, size, size)).astype(np.float32)
    rr = quantize.resolve_reduce_range("auto")
    files, sessions = {}, {}
    for variant, model in (("dense", dense), ("structured50", compact)):
        fp32 = export.to_onnx(model, work / f"{name}-{variant}.onnx", size)
        quantize.set_metadata(fp32, {"model": name})
        int8 = quantize.quantize_onnx(fp32, work / f"{name}-{variant}.int8.onnx", calib, True, rr)
        quantize.set_metadata(int8, {"model": name})
        ckpt = work / f"{name}-{variant}.pt"
        torch.save(model.state_dict(), ckpt)
        files[variant] = {"checkpoint": ckpt.stat().st_size, "onnx_fp32": fp32.stat().st_size,
                          "onnx_int8": int8.stat().st_size}
        sessions[f"{variant} fp32"] = quantize.OnnxModule(fp32, 1).logits
        sessions[f"{variant} int8"] = quantize.OnnxModule(int8, 1).logits
    x = rng.standard_normal((256 if not quick else 64, 3, size, size)).astype(np.float32)
    agree = float(np.mean((sessions["dense fp32"](x) > 0) == (sessions["dense int8"](x) > 0)))

    def torch_fp32(a):
        with torch.inference_mode():
            return dense(torch.from_numpy(a))

    names = ["torch fp32 (dense)", *sessions]
    fns = [torch_fp32, *sessions.values()]
    latency = {}
    for batch in (1, 32):
        xb = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        heavy = name == "resnet18" and batch == 32
        reps = (3 if heavy else 10) if quick else (8 if heavy else 40)
        latency[batch] = dict(zip(names, _time(fns, xb, 2, reps), strict=True))
    return {"model": name, "size": size, "files": files, "latency_ms": latency,
            "agreement": agree, "reduce_range": rr}


def run(quick: bool) -> dict:
    flags = quantize.cpu_flags()
    import onnxruntime

    out = {"cpu_vnni": quantize.has_vnni(flags),
           "cpu_flags": sorted(f for f in flags if "vnni" in f or f.startswith(("avx512", "amx"))
                               or f in ("avx2", "fma")),
           "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in MODELS[:1] + (MODELS[1:] if not quick else []):
            out["models"].append(bench_model(name, size, Path(tmp), quick))
    targets = []
    for m in out["models"]:
        f, lat = m["files"]["dense"], m["latency_ms"]
        tag = f"{m['model']}@{m['size']}"
        targets.append({"title": f"INT8 / fp32 ONNX file, dense {tag}", "goal": "<= 0.30x",
                        "measured": f["onnx_int8"] / f["onnx_fp32"],
                        "met": f["onnx_int8"] / f["onnx_fp32"] <= 0.30})
        if m["model"] == "resnet18":
            s1 = lat[1]["dense fp32"] / lat[1]["dense int8"]
            s3 = lat[1]["dense fp32"] / lat[1]["structured50 int8"]
            targets.append({"title": f"fp32 / INT8 latency (onnxruntime), {tag}, batch 1, 1 "
                            "thread", "goal": ">= 1.80x", "measured": s1, "met": s1 >= 1.8})
            targets.append({"title": f"dense fp32 / structured 50 % + INT8 latency, {tag}, "
                            "batch 1, 1 thread", "goal": ">= 3.00x", "measured": s3,
                            "met": s3 >= 3.0})
    out["targets"] = targets
    return out


def table(result: dict) -> str:
    lines = [f"CPU VNNI: {result['cpu_vnni']} (flags: {' '.join(result['cpu_flags'])}); "
             f"onnxruntime {result['onnxruntime']}, torch {result['torch']}", ""]
    for m in result["models"]:
        lines += [f"### {m['model']}@{m['size']} (reduce_range {m['reduce_range']}, INT8/fp32 "
                  f"sign agreement {m['agreement']:.3f})", "",
                  "| variant | checkpoint kB | fp32 ONNX kB | INT8 ONNX kB |", "|---|---:|---:|---:|"]
        for v, f in m["files"].items():
            lines.append(f"| {v} | {f['checkpoint'] / 1e3:,.0f} | {f['onnx_fp32'] / 1e3:,.0f} | "
                         f"{f['onnx_int8'] / 1e3:,.0f} |")
        lines += ["", "| runtime / variant | batch 1 ms | batch 32 ms |", "|---|---:|---:|"]
        for name in m["latency_ms"][1]:
            lines.append(f"| {name} | {m['latency_ms'][1][name]:.2f} | "
                         f"{m['latency_ms'][32][name]:.1f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli_main(__doc__, run, table, "ResNet-18 only, fewer repeats"))
