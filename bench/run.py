"""Every benchmark of the project, side by side: each target's measured ratio next to its goal.

    python bench/run.py [--quick] [--only extraction masked_training latency ...] [--no-latency]

Runs bench/extraction.py, bench/masked_training.py, bench/data_loading.py, bench/workflow.py
(in-process, one after the other) and bench/latency.py (a subprocess), prints a table of
the targets, writes every figure to bench/out/results.json and regenerates BENCHMARKS.md
from them, with the machine, the date and the command (per benchmark: ``--only`` reruns some
and keeps the others' last figures). A benchmark that fails is reported as such and the
others still run; the exit status is 1 then, 0 otherwise (a missed target is a finding, not
an error).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
BENCHMARKS = ["extraction", "masked_training", "data_loading", "workflow"]
sys.path.insert(0, str(BENCH))


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run_one(name: str, quick: bool) -> dict:
    module = importlib.import_module(name)
    load_before = _load()
    t0 = time.perf_counter()
    try:
        result = module.run(quick)
        result["table"] = module.table(result)
    except Exception as exc:  # noqa: BLE001  (report it; the others still run)
        result = {"name": name, "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()[-4000:], "targets": []}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["load_before"] = load_before
    result["load_after"] = _load()
    return result


def run_latency(quick: bool) -> dict:
    """bench/latency.py as a subprocess: its markdown tables and JSON."""
    path = BENCH / "latency.py"
    if not path.exists():
        return {"name": "latency", "error": "bench/latency.py is missing", "targets": []}
    out = OUT / "latency.json"
    cmd = [sys.executable, str(path), "--out", str(out)] + (["--quick"] if quick else [])
    load_before = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    result: dict = {"name": "latency", "targets": [], "command": " ".join(cmd[1:]),
                    "seconds": round(time.perf_counter() - t0, 1), "load_before": load_before,
                    "load_after": _load(), "table": proc.stdout.strip()}
    if proc.returncode != 0:
        result["error"] = f"exit status {proc.returncode}: {proc.stderr[-2000:]}"
    elif out.exists():
        result["data"] = json.loads(out.read_text())
        result["targets"] = latency_targets(result["data"])
    return result


SIZE_GOAL = 0.3  # ticket file / dense checkpoint at 80 % sparsity
SPEEDUP_GOAL = 1.5  # structured 50 % channels vs dense, CPU, 1 thread
SPEEDUP_MODELS = ("cnn5", "resnet18")


def latency_targets(data: dict) -> list[dict]:
    """bench/latency.py's targets: ticket file size per model, structured speed-up."""
    targets = [
        {"id": f"ticket-size-{r['model']}{r['input_size']}",
         "title": f"ticket file / dense checkpoint at 80 % sparsity, {r['model']}@{r['input_size']}",
         "measured": round(r["ratio_fp32"], 3), "goal": SIZE_GOAL, "op": "<=", "unit": "x",
         "met": r["ratio_fp32"] <= SIZE_GOAL}
        for r in data.get("size", [])
    ]
    for r in data.get("latency", []):
        if (r["model"] in SPEEDUP_MODELS and r["threads"] == 1
                and abs(r["channel_sparsity"] - 0.5) < 0.02 and r["variant"].startswith("structured")):
            targets.append({
                "id": f"structured-speedup-{r['model']}-b{r['batch']}",
                "title": f"dense / structured (50 % channels) CPU latency, {r['model']}@"
                         f"{r['input_size']}, batch {r['batch']}, 1 thread",
                "measured": round(r["speedup_vs_dense"], 2), "goal": SPEEDUP_GOAL, "op": ">=",
                "unit": "x", "met": r["speedup_vs_dense"] >= SPEEDUP_GOAL})
    return targets


def _fmt(value, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "%":
        return f"{100 * value:.1f} %"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def summary_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        if r.get("error"):
            rows.append({"id": r["name"], "title": f"{r['name']}: FAILED ({r['error'][:120]})",
                         "measured": None, "goal": None, "op": "", "unit": "", "met": False})
        rows.extend(r.get("targets", []))
    return rows


def summary_table(rows: list[dict]) -> str:
    lines = ["| target | goal | measured | met |", "|---|---:|---:|:---:|"]
    for t in rows:
        goal = f"{t['op']} {_fmt(t['goal'], t['unit'])}" if t["goal"] is not None else ""
        lines.append(f"| {t['title']} | {goal} | {_fmt(t['measured'], t['unit'])} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- BENCHMARKS.md


def _markdown_only(text: str) -> str:
    """Headings, tables and 'not run' notes of a benchmark's output (no progress lines)."""
    keep = [line for line in text.splitlines()
            if not line.strip() or line.startswith(("#", "|", "not run"))]
    out = "\n".join(keep)
    while "\n\n\n" in out:
        out = out.replace("\n\n\n", "\n\n")
    return out.strip()


def _error_or_table(r: dict) -> str:
    if not r:
        return "_not run in this pass (see the command above)._"
    if r.get("error"):
        return f"**failed**: `{r['error'][:300]}`"
    return _markdown_only(r.get("table", ""))


def _loads(r: dict) -> str:
    if not r or not r.get("load_before"):
        return ""
    when = f" on {r['date']} (`{r['command']}`)" if r.get("date") else ""
    return (f"\n\n_Ran {r.get('seconds', 0):.0f} s{when}; load average (1, 5, 15 min) before "
            f"{r['load_before']}, after {r['load_after']}._")


def _workflow_notes(wf: dict) -> str:
    if not wf or wf.get("error"):
        return ""
    dry, noop, demo = wf["dry_run_paper"], wf.get("noop_demo"), wf.get("demo_overhead")
    smoke_noop = wf["noop_smoke"]
    sec = wf["startup"]["seconds"]
    lines = [f"- Dry run of config/paper.yaml ({dry['jobs']} jobs): {dry['seconds']:.2f} s."]
    lines.append(f"- No-op rerun (`snakemake -n`) of the smoke run: {smoke_noop['seconds']:.2f} s "
                 f"({smoke_noop['jobs_to_run']} jobs to run).")
    if noop:
        lines.append(f"- No-op rerun (`snakemake -n`) of the demo in the checkout: "
                     f"{noop['seconds']:.2f} s ({noop['jobs_to_run']} jobs to run"
                     f"{': ' + str(noop['rules_to_run']) if noop['rules_to_run'] else ''}).")
    else:
        lines.append("- No-op rerun of the demo: not measured, the demo had not finished "
                     "(results/report.html missing); the smoke run's stands in.")
    if demo:
        lines.append(f"- Demo run ({demo['jobs']} jobs, {demo['cores']} cores, log "
                     f"`{Path(demo['log']).name}`): wall {demo['wall_s']:.0f} s, compute "
                     f"{demo['compute_s']:.0f} s, overhead {100 * demo['overhead']:.0f} %.")
    else:
        lines.append("- Demo overhead: not measured, no finished demo run in the checkout.")
    lines.append(f"- Tiny train job: {100 * wf['startup']['tiny_job_startup_share']:.0f} % of "
                 "its wall time is start-up (interpreter, imports, model, data, files).")
    th = wf.get("threads") or {"rules": {}, "modules_setting_torch_threads": []}
    spec_rules = sorted(k for k, v in th["rules"].items() if v["passed_as"]
                        and v["passed_as"].startswith("spec"))
    flag_rules = sorted(k for k, v in th["rules"].items() if v["passed_as"]
                        and v["passed_as"].startswith("--threads"))
    busy = [r["max_job_cpu_per_wall"] for r in wf["scaling"] if r.get("max_job_cpu_per_wall")]
    lines.append(
        "- Threads: Snakemake's `{threads}` passed as `--threads`: "
        f"{', '.join(flag_rules) or 'none'}. `threads: config[\"threads\"]` with the same "
        f"value passed inside the JSON spec: {', '.join(spec_rules) or 'none'}. Modules that "
        f"call `torch.set_num_threads`: {', '.join(th['modules_setting_torch_threads'])}."
        + (f" With `threads: 1`, no smoke job kept more than {max(busy):.2f} cores busy "
           "(benchmark `cpu_time` / `s`)." if busy else ""))
    tv = sec["import torch, torchvision"] - sec["import torch"]
    sk = sec["import torch, sklearn.metrics"] - sec["import torch"]
    return "\n".join(lines) + f"""

Per-job start-up is dominated by `import torch`; `deepfake-lth <stage> --help` imports no
stage module and no torch. Training jobs no longer import scikit-learn for the AUC
(`train.roc_auc` gives the value of `roc_auc_score`; the import costs {sk:.2f} s here). The
model registry still imports torchvision when it is imported (for ResNet-18); that pulls in
torch._dynamo and costs {tv:.2f} s per job for every model: a lazy import in
`models/resnet.py` would remove it. Each training job loads its dataset once (three splits of
one memory-mapped file) and evaluates on the splits it holds. Two cores against one is limited
by the smoke DAG's critical path (acquire → extract → pack → dense → IMP rounds → transfer →
report, one job after the other), by the start-up that every job pays, and on a shared machine
by whatever else runs (the "cores busy" column: CPU seconds of all the run's processes per
wall second).

Passing `config["threads"]` inside the spec has two side effects: a change of `threads`
reruns every training job (the spec is a param), and when Snakemake scales a rule's threads
down to `--cores`, torch still starts `config["threads"]` threads. Passing `--threads
{{threads}}` beside the spec, as the extract rule does, would avoid both."""


def render_markdown(doc: dict) -> str:
    m = doc["machine"]
    res = {r["name"]: r for r in doc["results"]}
    ext, mt, dl, wf, lat = (res.get(n) or {} for n in
                            ("extraction", "masked_training", "data_loading", "workflow",
                             "latency"))
    sqrt = mt.get("sqrt_zeros_over_random")
    sqrt_text = f"{sqrt:.1f}×" if sqrt else "several times"
    tt = {r["input_size"]: r for r in dl.get("to_tensor", [])}
    tt_text = ", ".join(f"{r['speedup']:.1f}× at 64 → {k} px" for k, r in tt.items()) or "faster"
    gpu = ("Not measured: no GPU lent. The GPU paths (`device: auto`, AMP, batched MTCNN on "
           "CUDA) exist but have no figures here." if not m["gpu"] else
           f"GPU present ({m['gpu']}); no GPU benchmark is part of this pass.")
    return f"""# Benchmarks

Generated by `python bench/run.py` (`make bench` runs the slow tests, then this); do not edit
by hand. Every target is a ratio (or a time) measured side by side in one run on the machine
below; all figures are in `bench/out/results.json`. `python bench/run.py --quick` is a faster
pass with fewer repeats and inputs.

- **Command:** `{doc['command']}`{' (quick pass)' if doc['quick'] else ''}
- **Date:** {doc['date']}
- **Machine:** {m['cpu']}, {m['cores']} cores; Python {m['python']}; torch {m['torch']}
  ({m['torch_threads_default']} threads by default; each benchmark sets its own count, stated
  in its section); GPU: {m['gpu'] or 'none'}
- **Platform:** {m['platform']}
- The machine is shared: other processes ran during these measurements (load averages under
  each section). Interleaved ratios cancel most of that; absolute times do not.

## Targets

{summary_table(summary_rows(doc['results']))}

## 1. Face extraction

Frames per second of the extraction stage (`faces.extract_shard` with the real
`FaceDetector`, as one extract job runs it) against a naive baseline in the same script:
decode every frame with OpenCV, keep 40 evenly spaced, `MTCNN.detect` one frame at a time at
full resolution (torch on 1 or 2 threads, whichever a short probe finds faster; the clock
starts after the model loads). The stage runs on one process of 2 threads (torch and FFmpeg)
with the face-size-aware pyramid (`faces.adaptive_pyramid`, the default) and without it,
and over 2 shards in 2 worker processes of one thread. Demo input: the demo's synthetic
videos (192×160, 48 frames), config.yaml's demo-videos face settings. Real-like input
(`real_like_videos` in bench/extraction.py): 12 clips drawn to cost what real clips cost,
1920×1080 (one portrait clip stored with a display rotation), 300 frames, H.264 at 3.5 Mbit/s
with 3 B-frames and a keyframe every 250 frames (as DFDC's), a textured background the camera
pans across, sensor noise, talking faces 150–300 px tall (one clip of two people);
config/paper.yaml's `faces` (`detect_max_side` 640, `min_face_size` 20). Each variant runs
once, interleaved (`python bench/run.py`, or `python bench/extraction.py` for this section
alone).

{_error_or_table(ext)}{_loads(ext)}

The second table takes decoding and detection apart on the same clips (2 threads): one PyAV
decode of every frame, the 40 sampled frames read with `decode.read_video_frames`, and MTCNN
on those frames with the whole pyramid and with the adaptive one, in alternating order. The
adaptive pyramid searches the first 2 sampled frames of a clip whole, then drops the finest
levels down to about half the smallest face found (a level of the whole pyramid, so the
levels it keeps, and the boxes, are the whole pyramid's); a frame without a face there, or
whose face shrank, is searched whole again. The stage is also fast because it decodes each
video once, decodes the next video on a thread while MTCNN runs, detects on a copy downscaled
to `detect_max_side` (the IoU-vs-naive column compares those boxes with the baseline's
full-resolution ones), batches MTCNN over the frames of a video, and runs one process per
shard rather than a team of threads.

## 2. Masked training

Median time per training step (`train.train_step` with `train.build_optimizer`, exactly what
`train.fit` runs) of an 80 % sparse model (global magnitude mask, `pruning.MaskEnforcer`)
against the same model dense and against `torch.nn.utils.prune` forward pre-hooks; 64 px,
batch 16, one thread, the steps of all variants interleaved in a shuffled order.

{_error_or_table(mt)}{_loads(mt)}

torch's per-tensor Adam takes `sqrt` of the second moment, and on this CPU `torch.sqrt` is
{sqrt_text} slower on exact zeros than on other values; pruned weights leave exact zeros there
(last column: the masked step with that Adam). `fit` now uses the fused Adam kernel
(`build_optimizer`), which has no such slow path and is faster for dense models too. The
enforcer masks the gradients every step (Adam's moments stay zero) and the weights once per
epoch: with zero gradients, moments and weights, Adam's update (its L2 decay included) is
exactly zero, so a per-step weight pass is redundant; the benchmark counts the nonzero pruned
weights after training (must be 0).

## 3. Data loading

Share of a training epoch (fit's loop: order, flips, `train.load_batch`, `train.train_step`,
bookkeeping) spent outside the forward/backward/optimizer step, on the packed dataset (uint8
crops in memory, `data.to_tensor` per batch), with the demo's models and input sizes, batch
16, one thread; and the same batches read and decoded from JPEG files every epoch.

{_error_or_table(dl)}{_loads(dl)}

`data.to_tensor` now does its arithmetic on contiguous NCHW memory and hands the result back
in channels-last format: the same values and strides as before, {tt_text}. A per-channel
broadcast over an NHWC-strided tensor is slow on the CPU; the channels-last result is kept
because the CPU convolutions train faster on it than on a contiguous NCHW input.

## 4. Workflow overhead and 5. scaling

Smoke config (config/smoke.yaml) from scratch in temporary copies of the project, then with
rounds, models and seeds doubled, and on one core. Compute = Snakemake's benchmark files
(column `s`) plus, for the rules without a `benchmark:` (acquire, pack, transfer baseline,
report), their start and finish in the log (1 s resolution); overhead = wall / (compute /
cores) − 1.

{_error_or_table(wf)}{_loads(wf)}

{_workflow_notes(wf)}

## Deployable tickets: size and latency (bench/latency.py)

{_error_or_table(lat)}{_loads(lat)}

## 6. GPU

{gpu}
"""


# sections of benchmarks run on their own, appended in this order when present: the demo
# end to end (timed by hand), paper scale (bench/scale.py: writes GBs, minutes), the GPU
# feed (bench/gpu.py: needs CUDA, `make gpu-check`), INT8 quantization (bench/compression.py)
# and plan-time's costs (bench/throughput.py)
SECTIONS = ("demo.md", "scale.md", "gpu.md", "compression.md", "throughput.md")


def _with_demo(markdown: str) -> str:
    """``markdown`` followed by the SECTIONS files of bench/ that exist."""
    for name in SECTIONS:
        path = ROOT / "bench" / name
        if path.exists():
            markdown += "\n" + path.read_text()
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast pass: fewer repeats/inputs")
    parser.add_argument("--only", nargs="+", choices=[*BENCHMARKS, "latency"],
                        help="run only these; the others keep their figures from the last run")
    parser.add_argument("--no-latency", action="store_true", help="skip bench/latency.py")
    parser.add_argument("--no-markdown", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--markdown-only", action="store_true",
                        help="run nothing: regenerate BENCHMARKS.md from bench/out/results.json")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.markdown_only:
        (ROOT / "BENCHMARKS.md").write_text(_with_demo(render_markdown(
            json.loads((OUT / "results.json").read_text()))))
        print(f"wrote {ROOT / 'BENCHMARKS.md'} from {OUT / 'results.json'}")
        return 0
    command = "python bench/run.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    doc = {"command": command, "quick": args.quick,
           "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": machine(), "results": []}
    previous = {}
    if args.only and (OUT / "results.json").exists():  # keep the other benchmarks' figures
        old = json.loads((OUT / "results.json").read_text())
        previous = {r["name"]: r for r in old.get("results", [])}
    fresh = []
    for name in args.only or BENCHMARKS:
        if name == "latency":
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        fresh.append(run_one(name, args.quick))
    if "latency" in (args.only or []) or (not args.no_latency and not args.only):
        print("== latency", file=sys.stderr, flush=True)
        fresh.append(run_latency(args.quick))
    for r in fresh:
        r.update(date=doc["date"], command=command, quick=args.quick)
        previous[r["name"]] = r
    order = [*BENCHMARKS, "latency"]
    doc["results"] = sorted(previous.values(), key=lambda r: order.index(r["name"])
                            if r["name"] in order else len(order))
    (OUT / "results.json").write_text(json.dumps(doc, indent=2, default=str))
    for r in fresh:
        if r.get("table") and r["name"] != "latency":
            print(f"\n### {r['name']}\n\n{r['table']}")
    print("\n### Targets\n")
    print(summary_table(summary_rows(doc["results"])))
    if not args.no_markdown:
        (ROOT / "BENCHMARKS.md").write_text(_with_demo(render_markdown(doc)))
        print(f"\nwrote {ROOT / 'BENCHMARKS.md'} and {OUT / 'results.json'}")
    return 1 if any(r.get("error") for r in fresh) else 0


if __name__ == "__main__":
    raise SystemExit(main())
