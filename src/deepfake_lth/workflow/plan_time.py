"""`deepfake-lth plan-time`: the expected wall time of a config's DAG on N GPUs, before it runs.

The DAG is Snakemake's own: a forced dry run of the config (in a scratch working directory,
so nothing of the study is touched; ``--config KEY=VALUE`` passed on as Snakemake takes it)
lists every job with its rule, wildcards, inputs, outputs, threads and resources; a job
depends on the jobs that write its inputs. Every rule of the DAG has a cost (a rule without
one is an error, never a silent 0): :mod:`deepfake_lth.workflow.job_costs`.

The jobs are then list-scheduled (ready jobs longest-remaining-path first, each started as
soon as resources allow): a job holds its threads of ``--cores``; on one node (``--mode
node``) a GPU job also holds its ``gpu_share`` of one GPU, so four MesoNet jobs share a GPU
as the allocator lets them (:mod:`deepfake_lth.core.gpus`); on a cluster (``--mode
cluster``) every GPU job holds a whole GPU, as SLURM gives it. ``--gpus 0``: CPU only, every
job on the cores. A GPU job lasts as long as the table says (measured on a GPU only where
its ``device`` says so); shared GPUs are assumed not to slow each other down. Speed-ups are
against one GPU. The critical path (the longest chain of durations) bounds every makespan
from below.
"""

from __future__ import annotations

import argparse
import heapq
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.workflow import config as study_config
from deepfake_lth.workflow.job_costs import (  # noqa: F401 (plan-time's costs, re-exported)
    DEFAULT_COSTS,
    TABLE,
    Job,
    faces_of,
    input_size,
    job_seconds,
    job_work,
    load_costs,
    measured_cpu_seconds,
    positive,
    rate,
    synthetic_faces,
)


def _fields(line: str) -> list[str]:
    return [p.strip() for p in line.split(",") if p.strip()]


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of ``snakemake -n`` output, each with the jobs that write its inputs."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        m = re.match(r"(?:local)?rule (\w+):", block)
        jobid = re.search(r"^\s+jobid: (\d+)", block, re.M)
        if not m or not jobid:
            continue
        item = {k: re.search(rf"^\s+{k}: (.*)$", block, re.M)
                for k in ("input", "output", "wildcards", "resources", "threads", "benchmark")}
        command = re.search(r"^Shell command: (.*)$", block, re.M)
        text_of = {k: v.group(1) if v else "" for k, v in item.items()}
        wildcards = dict(p.split("=", 1) for p in _fields(text_of["wildcards"]) if "=" in p)
        resources = dict(p.split("=", 1) for p in _fields(text_of["resources"]) if "=" in p)
        share = int(resources.get("gpu_share", 0) or 0)
        jobs.append(Job(int(jobid.group(1)), m.group(1), wildcards, _fields(text_of["input"]),
                        _fields(text_of["output"]), share,
                        threads=int(text_of["threads"] or 1),
                        command=command.group(1) if command else "",
                        benchmark=text_of["benchmark"]))
    writer = {out: job.id for job in jobs for out in job.outputs}
    for job in jobs:
        job.deps = {writer[i] for i in job.inputs if i in writer and writer[i] != job.id}
    return jobs


def dry_run(configfile: Path, snakefile: Path, targets: list[str],
            overrides: list[str] | None = None, cores: int = 1) -> str:
    """``snakemake -n -p --forceall`` of ``configfile`` in a scratch working directory, on
    ``cores`` (Snakemake scales a job's threads down to them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")}
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [src, env.get("PYTHONPATH", "")] if p)
    with tempfile.TemporaryDirectory(prefix="dlth-plan-") as scratch:
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile),
               "--workflow-profile", "none", "--forceall", "-n", "-p", "--cores", str(cores),
               "--directory", scratch,
               *(["--config", *overrides] if overrides else []),
               "--configfile", str(configfile.resolve()), *(["--", *targets] if targets else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                              timeout=600)
    if proc.returncode != 0:
        raise UserError(f"the dry run of {configfile} failed; run `snakemake -n --configfile "
                        f"{configfile}` to see why:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return proc.stdout + proc.stderr


def critical_path(jobs: list[Job]) -> tuple[float, list[Job], dict[int, float]]:
    """The longest chain of durations, its jobs, and each job's longest path to the end."""
    by_id = {j.id: j for j in jobs}
    users: dict[int, list[int]] = {j.id: [] for j in jobs}
    for j in jobs:
        for d in j.deps:
            users[d].append(j.id)
    tail: dict[int, float] = {}
    for j in reversed(_topological(jobs)):
        tail[j.id] = j.seconds + max((tail[u] for u in users[j.id]), default=0.0)
    start = max(jobs, key=lambda j: tail[j.id])
    path = [start]
    while users[path[-1].id]:
        path.append(by_id[max(users[path[-1].id], key=lambda u: tail[u])])
    return tail[start.id], path, tail


def _topological(jobs: list[Job]) -> list[Job]:
    by_id = {j.id: j for j in jobs}
    left = {j.id: len(j.deps) for j in jobs}
    users: dict[int, list[int]] = {j.id: [] for j in jobs}
    for j in jobs:
        for d in j.deps:
            users[d].append(j.id)
    ready = [i for i, n in left.items() if n == 0]
    order = []
    while ready:
        i = ready.pop()
        order.append(by_id[i])
        for u in users[i]:
            left[u] -= 1
            if left[u] == 0:
                ready.append(u)
    if len(order) != len(jobs):
        raise UserError("the dry run's jobs form a cycle; cannot plan them")
    return order


def schedule(jobs: list[Job], gpus: int, mode: str = "node", cores: int = 32) -> dict[str, Any]:
    """List scheduling (longest remaining path first): makespan and GPU busy fraction. A job
    holds its threads of ``cores`` (at most all of them) and, with ``gpus`` ≥ 1, its share of
    one GPU (a whole one in ``cluster`` mode); with 0 GPUs every job runs on the cores."""
    _, _, tail = critical_path(jobs)
    left = {j.id: len(j.deps) for j in jobs}
    users: dict[int, list[int]] = {j.id: [] for j in jobs}
    for j in jobs:
        for d in j.deps:
            users[d].append(j.id)
    by_id = {j.id: j for j in jobs}
    need = {j.id: (100 if mode == "cluster" else j.share) if j.share and gpus else 0
            for j in jobs}
    threads = {j.id: max(1, min(j.threads, cores)) for j in jobs}
    free_gpu, free_cores = [100] * gpus, cores
    ready = [(-tail[j.id], j.id) for j in jobs if left[j.id] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int, int]] = []  # (end, job, gpu or -1)
    now, busy, done = 0.0, 0.0, 0
    while done < len(jobs):
        waiting = []
        while ready:
            item = heapq.heappop(ready)
            j = by_id[item[1]]
            fits = [g for g in range(gpus) if free_gpu[g] >= need[j.id]] if need[j.id] else [-1]
            if not fits or free_cores < threads[j.id]:
                waiting.append(item)
                continue
            g = min(fits, key=lambda g: free_gpu[g] if g >= 0 else 0)  # best fit
            if g >= 0:
                free_gpu[g] -= need[j.id]
                busy += j.seconds * need[j.id] / 100
            free_cores -= threads[j.id]
            heapq.heappush(running, (now + j.seconds, j.id, g))
        for item in waiting:
            heapq.heappush(ready, item)
        end, i, g = heapq.heappop(running)
        now = end
        if g >= 0:
            free_gpu[g] += need[i]
        free_cores += threads[i]
        done += 1
        for u in users[i]:
            left[u] -= 1
            if left[u] == 0:
                heapq.heappush(ready, (-tail[u], u))
    return {"gpus": gpus, "mode": mode, "cores": cores, "makespan": now,
            "gpu_busy": busy / (now * gpus) if now and gpus else 0.0}


def hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def study(args: argparse.Namespace) -> dict:
    """The config the dry run sees: the file with ``--config`` overrides, validated."""
    configfile = Path(args.configfile)
    if not configfile.is_file():
        raise UserError(f"--configfile {configfile}: no such file")
    overrides = study_config.parse_overrides(args.config)
    raw = study_config.merge_files([configfile], overrides)
    try:
        return study_config.validate(raw)
    except study_config.ConfigError as exc:
        raise UserError(f"{configfile}: {exc}") from None


def check_arguments(args: argparse.Namespace) -> None:
    """Clear errors for counts that cannot be planned."""
    if not args.gpus or any(n < 0 for n in args.gpus):
        raise UserError(f"--gpus takes GPU counts ≥ 0 (0: CPU only), got {args.gpus}")
    if args.cores < 1:
        raise UserError(f"--cores must be ≥ 1, got {args.cores}")
    if args.epochs is not None:
        positive(args.epochs, "--epochs")


def plan(args: argparse.Namespace) -> tuple[list[Job], list[dict[str, Any]]]:
    """The DAG's jobs with their durations, and one schedule per ``--gpus`` (and one on one
    GPU, the speed-ups' base, where GPUs are planned)."""
    check_arguments(args)
    config = study(args)
    configfile = Path(args.configfile)
    if args.dry_run_output:
        text = Path(args.dry_run_output).read_text()
    else:
        text = dry_run(configfile, Path(args.snakefile), args.targets, args.config, args.cores)
    jobs = parse_dry_run(text)
    if not jobs:
        raise UserError(f"the dry run of {configfile} lists no jobs")
    costs = load_costs(Path(args.costs) if args.costs else None)
    faces = faces_of(config, parse_faces(args.faces), Path(args.directory))
    for j in jobs:
        j.seconds = job_seconds(j, config, costs, faces, args.epochs)
    counts = list(dict.fromkeys(args.gpus))
    if any(counts) and 1 not in counts:
        counts.append(1)
    return jobs, [schedule(jobs, n, args.mode, args.cores) for n in counts]


def parse_faces(entries: list[str] | None) -> dict[str, int]:
    out = {}
    for e in entries or []:
        name, _, n = e.partition("=")
        if not name.strip() or not n.strip().isdigit() or int(n) < 1:
            raise UserError(f"--faces {e!r}: expected NAME=N with N ≥ 1, e.g. ffpp=16000")
        out[name.strip()] = int(n)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configfile", default="config.yaml", help="the study's config")
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides, as `snakemake --config` takes them (seeds=[0,1])")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8],
                        help="GPU counts to plan for; 0: CPU only (default: 1 8)")
    parser.add_argument("--mode", choices=["node", "cluster"], default="node",
                        help="node: GPU jobs share GPUs by gpu_share; cluster: one GPU each")
    parser.add_argument("--cores", type=int, default=32,
                        help="cores of the run (snakemake --cores; default 32)")
    parser.add_argument("--faces", action="append", metavar="NAME=N",
                        help="faces of a dataset (default: its manifest, its sources, or what "
                        "a synthetic source generates)")
    parser.add_argument("--epochs", type=float, default=None,
                        help="expected epochs per training job (default: each job's epoch cap)")
    parser.add_argument("--costs", default=None,
                        help="YAML of costs over the measured table: throughput.{model}."
                        "{train,eval}_images_per_s, startup_seconds.{rule}, "
                        "extract_faces_per_s, crop_faces_per_s")
    parser.add_argument("--snakefile", default="Snakefile", help="the workflow's Snakefile")
    parser.add_argument("--directory", default=".", help="where the results folder is")
    parser.add_argument("--targets", nargs="+", default=[],
                        help="the targets to plan (default: the study's report, rule all)")
    parser.add_argument("--dry-run-output", default=None,
                        help="saved `snakemake -n -p --forceall` output to plan instead")


def run(args: argparse.Namespace) -> int:
    jobs, results = plan(args)
    costs = load_costs(Path(args.costs) if args.costs else None)
    length, path, _ = critical_path(jobs)
    gpu_jobs = sum(1 for j in jobs if j.share)
    work = sum(j.seconds for j in jobs)
    print(f"plan-time {args.configfile}: {len(jobs)} jobs ({gpu_jobs} with a GPU share), "
          f"{hours(work)} of work in all; mode {args.mode}, {args.cores} cores")
    print(f"costs: one CPU thread's seconds per job, from {args.costs or TABLE.name}:\n"
          f"  images/s measured on {costs.get('device', 'an unnamed device')} "
          f"({costs.get('measured', '?')}, `{costs.get('command', '?')}`)\n"
          f"  start-up per rule from {costs.get('startup_from', 'no measured run')}\n"
          f"  x cpu_scale {costs.get('cpu_scale', 1.0)} (an idle machine: "
          f"{costs.get('cpu_scale_from', 'not calibrated')})")
    one = next((r["makespan"] for r in results if r["gpus"] == 1), None)
    print(f"{'GPUs':>5}  {'makespan':>10}  {'critical path':>13}  {'vs 1 GPU':>8}  GPU busy")
    for r in (r for r in results if r["gpus"] in args.gpus):
        speed = f"{one / r['makespan']:.2f}x" if r["gpus"] and one and r["makespan"] else "-"
        busy = f"{100 * r['gpu_busy']:.0f} %" if r["gpus"] else "CPU only"
        print(f"{r['gpus']:>5}  {hours(r['makespan']):>10}  {hours(length):>13}  {speed:>8}  "
              f"{busy}")
    by_rule: dict[str, list[float]] = {}
    for j in jobs:
        by_rule.setdefault(j.rule, []).append(j.seconds)
    print("per rule: " + ", ".join(f"{r} {len(v)} × {hours(statistics.median(v))}"
                                   for r, v in sorted(by_rule.items(), key=lambda kv: -sum(kv[1]))))
    print(f"critical path ({len(path)} jobs, {hours(length)}): "
          + " -> ".join(f"{j.label()} {hours(j.seconds)}" for j in path))
    return 0
