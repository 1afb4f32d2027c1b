"""`deepfake-lth plan-time`: the expected wall time of a config's DAG on N GPUs, before it runs.

The DAG is Snakemake's own: a forced dry run of the config (in a scratch working directory,
so nothing of the study is touched) lists every job with its rule, wildcards, inputs,
outputs and resources; a job depends on the jobs that write its inputs. Each job gets a
duration:

- a training job (dense, IMP round, one-shot, control, SNIP/GraSP, structured, transfer):
  ``epochs × (train faces / train images/s + val faces / eval images/s) + test faces /
  eval images/s`` of its model, with the images/s measured by ``bench/throughput.py``
  (the table ``workflow/throughput.yaml`` holds, with its command and device) or given in
  ``--costs``; epochs: ``--epochs`` (expected epochs after early stopping), else the
  config's ``train.max_epochs`` (an upper bound; rounds from trained weights capped by
  ``prune.retrain_epochs``). The faces of a dataset: ``--faces NAME=N``, else its packed
  manifest;
- an extraction job: its shard's faces at ``extract_faces_per_s`` (BENCHMARKS.md §1);
- any other job: ``fixed_seconds`` of its rule (0 where not given).

The jobs are then list-scheduled (ready jobs longest-remaining-path first, each started as
soon as resources allow): on one node (``--mode node``) a GPU job holds its ``gpu_share``
of one GPU, so four MesoNet jobs share a GPU as the allocator lets them
(:mod:`deepfake_lth.core.gpus`); on a cluster (``--mode cluster``) every GPU job holds a
whole GPU, as SLURM gives it. CPU jobs take one of ``--cores``. Shared GPUs are assumed not to
slow each other down (the registry's shares are sized for that). The critical path (the
longest chain of durations) bounds every makespan from below.
"""

from __future__ import annotations

import argparse
import heapq
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deepfake_lth.core.errors import UserError
from deepfake_lth.workflow import config as study_config

TABLE = Path(__file__).with_name("throughput.yaml")
TRAINING_RULES = {"train_dense", "imp_round", "imp_round_rate", "oneshot", "control",
                  "prune_init", "structured_round", "transfer_ticket", "transfer_dense"}
FROM_SCRATCH = {"train_dense", "transfer_dense", "prune_init"}  # not capped by retrain_epochs
DEFAULT_COSTS: dict[str, Any] = {
    "extract_faces_per_s": 12.5,  # BENCHMARKS.md §1: one extract job, 1080p video, CPU MTCNN
    "fixed_seconds": {"acquire": 0, "pack_faces": 60, "report": 120, "gradcam": 120,
                      "separability": 300, "latency": 300},
}


@dataclass
class Job:
    id: int
    rule: str
    wildcards: dict[str, str]
    inputs: list[str]
    outputs: list[str]
    share: int = 0  # percent of one GPU; 0: a CPU job
    deps: set[int] = field(default_factory=set)
    seconds: float = 0.0

    def label(self) -> str:
        return f"{self.rule}({', '.join(f'{k}={v}' for k, v in self.wildcards.items())})"


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
                for k in ("input", "output", "wildcards", "resources")}
        text_of = {k: v.group(1) if v else "" for k, v in item.items()}
        wildcards = dict(p.split("=", 1) for p in _fields(text_of["wildcards"]) if "=" in p)
        resources = dict(p.split("=", 1) for p in _fields(text_of["resources"]) if "=" in p)
        share = int(resources.get("gpu_share", 0) or 0) if resources.get("gpu", "0") != "0" else 0
        jobs.append(Job(int(jobid.group(1)), m.group(1), wildcards, _fields(text_of["input"]),
                        _fields(text_of["output"]), share))
    writer = {out: job.id for job in jobs for out in job.outputs}
    for job in jobs:
        job.deps = {writer[i] for i in job.inputs if i in writer and writer[i] != job.id}
    return jobs


def dry_run(configfile: Path, snakefile: Path, targets: list[str]) -> str:
    """``snakemake -n --forceall`` of ``configfile`` in a scratch working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")}
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [src, env.get("PYTHONPATH", "")] if p)
    with tempfile.TemporaryDirectory(prefix="dlth-plan-") as scratch:
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile),
               "--workflow-profile", "none", "--forceall", "-n", "--directory", scratch,
               "--configfile", str(configfile.resolve()), *(["--", *targets] if targets else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                              timeout=600)
    if proc.returncode != 0:
        raise UserError(f"the dry run of {configfile} failed; run `snakemake -n --configfile "
                        f"{configfile}` to see why:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return proc.stdout + proc.stderr


def load_costs(path: Path | None) -> dict[str, Any]:
    """The measured table (``workflow/throughput.yaml``) with ``path``'s keys on top."""
    measured = yaml.safe_load(TABLE.read_text()) if TABLE.exists() else {"throughput": {}}
    costs = study_config.merge(DEFAULT_COSTS, measured)
    if path is not None:
        try:
            given = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"--costs {path}: cannot read it ({exc})") from None
        if not isinstance(given, dict):
            raise UserError(f"--costs {path}: expected a YAML mapping with keys throughput, "
                            "extract_faces_per_s, fixed_seconds")
        costs = study_config.merge(costs, given)
    return costs


def faces_of(config: dict, given: dict[str, int], workdir: Path) -> dict[str, int]:
    """Faces per dataset: ``--faces`` first, else the packed manifest's rows."""
    counts = {}
    for name in config["datasets"]:
        manifest = workdir / config["results"] / name / "faces" / "manifest.csv"
        if name in given:
            counts[name] = given[name]
        elif manifest.exists():
            counts[name] = max(0, sum(1 for _ in manifest.open()) - 1)
        else:
            raise UserError(f"the number of faces of dataset {name!r} is unknown (no {manifest}); "
                            f"pass --faces {name}=N (e.g. videos × faces.frames_per_video)")
    return counts


def _rate(costs: dict, model: str, key: str) -> float:
    row = costs["throughput"].get(model)
    if not row or not row.get(key):
        raise UserError(f"no {key} for model {model!r} in the costs: run bench/throughput.py "
                        f"--write or give throughput.{model}.{key} in --costs")
    return float(row[key])


def job_seconds(job: Job, config: dict, costs: dict, faces: dict[str, int],
                epochs: float | None) -> float:
    """The expected duration of one job (see the module's doc)."""
    if job.rule in TRAINING_RULES:
        dataset = job.wildcards.get("dst") or job.wildcards["dataset"]
        model = job.wildcards["model"]
        split = config["faces"]["split"]
        n = faces[dataset]
        if epochs is None:
            epochs = config["train"]["max_epochs"]
            cap = config["prune"].get("retrain_epochs")
            if cap and job.rule not in FROM_SCRATCH:
                epochs = min(epochs, cap)
        train, ev = (_rate(costs, model, "train_images_per_s"),
                     _rate(costs, model, "eval_images_per_s"))
        return epochs * (n * split["train"] / train + n * split["val"] / ev) + n * split["test"] / ev
    if job.rule == "extract_faces":
        ds = config["datasets"][job.wildcards["dataset"]]
        return faces[job.wildcards["dataset"]] / ds["shards"] / costs["extract_faces_per_s"]
    return float(costs["fixed_seconds"].get(job.rule, 0))


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
    """List scheduling (longest remaining path first): makespan and GPU busy fraction."""
    _, _, tail = critical_path(jobs)
    left = {j.id: len(j.deps) for j in jobs}
    users: dict[int, list[int]] = {j.id: [] for j in jobs}
    for j in jobs:
        for d in j.deps:
            users[d].append(j.id)
    by_id = {j.id: j for j in jobs}
    need = {j.id: (100 if mode == "cluster" else j.share) if j.share else 0 for j in jobs}
    if gpus < 1 and any(need.values()):
        raise UserError("--gpus must be ≥ 1 for a DAG with GPU jobs")
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
            if need[j.id]:
                fits = [g for g in range(gpus) if free_gpu[g] >= need[j.id]]
                if not fits:
                    waiting.append(item)
                    continue
                g = min(fits, key=lambda g: free_gpu[g])  # best fit: keep whole GPUs free
                free_gpu[g] -= need[j.id]
                busy += j.seconds * need[j.id] / 100
            elif free_cores > 0:
                g = -1
                free_cores -= 1
            else:
                waiting.append(item)
                continue
            heapq.heappush(running, (now + j.seconds, j.id, g))
        for item in waiting:
            heapq.heappush(ready, item)
        end, i, g = heapq.heappop(running)
        now = end
        if g >= 0:
            free_gpu[g] += need[i]
        else:
            free_cores += 1
        done += 1
        for u in users[i]:
            left[u] -= 1
            if left[u] == 0:
                heapq.heappush(ready, (-tail[u], u))
    return {"gpus": gpus, "mode": mode, "makespan": now,
            "gpu_busy": busy / (now * gpus) if now and gpus else 0.0}


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def plan(args: argparse.Namespace) -> tuple[list[Job], list[dict[str, Any]]]:
    configfile = Path(args.configfile)
    config = study_config.load(configfile)
    if args.dry_run_output:
        text = Path(args.dry_run_output).read_text()
    else:
        text = dry_run(configfile, Path(args.snakefile), args.targets)
    jobs = parse_dry_run(text)
    if not jobs:
        raise UserError(f"the dry run of {configfile} lists no jobs")
    costs = load_costs(Path(args.costs) if args.costs else None)
    faces = faces_of(config, parse_faces(args.faces), Path(args.directory))
    for j in jobs:
        j.seconds = job_seconds(j, config, costs, faces, args.epochs)
    return jobs, [schedule(jobs, n, args.mode, args.cores) for n in args.gpus]


def parse_faces(entries: list[str] | None) -> dict[str, int]:
    out = {}
    for e in entries or []:
        name, _, n = e.partition("=")
        if not n.strip().isdigit():
            raise UserError(f"--faces {e!r}: expected NAME=N, e.g. ffpp=16000")
        out[name.strip()] = int(n)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configfile", default="config.yaml", help="the study's config")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8],
                        help="GPU counts to plan for (default: 1 8)")
    parser.add_argument("--mode", choices=["node", "cluster"], default="node",
                        help="node: GPU jobs share GPUs by gpu_share; cluster: one GPU each")
    parser.add_argument("--cores", type=int, default=32, help="CPU jobs at once (default 32)")
    parser.add_argument("--faces", action="append", metavar="NAME=N",
                        help="faces of a dataset (default: its packed manifest)")
    parser.add_argument("--epochs", type=float, default=None,
                        help="expected epochs per training job (default: train.max_epochs)")
    parser.add_argument("--costs", default=None,
                        help="YAML of costs over the measured table: throughput.{model}."
                        "{train,eval}_images_per_s, extract_faces_per_s, fixed_seconds.{rule}")
    parser.add_argument("--snakefile", default="Snakefile", help="the workflow's Snakefile")
    parser.add_argument("--directory", default=".", help="where the results folder is")
    parser.add_argument("--targets", nargs="+", default=[],
                        help="the targets to plan (default: the study's report, rule all)")
    parser.add_argument("--dry-run-output", default=None,
                        help="saved `snakemake -n --forceall` output to plan instead")


def run(args: argparse.Namespace) -> int:
    jobs, results = plan(args)
    length, path, _ = critical_path(jobs)
    gpu_jobs = sum(1 for j in jobs if j.share)
    work = sum(j.seconds * j.share / 100 for j in jobs if j.share)
    print(f"plan-time {args.configfile}: {len(jobs)} jobs ({gpu_jobs} on a GPU), "
          f"{hours(work)} of GPU work at the jobs' shares; mode {args.mode}, "
          f"costs: {args.costs or TABLE.name}")
    base = results[0]["makespan"]
    print(f"{'GPUs':>5}  {'makespan':>10}  {'critical path':>13}  {'speed-up':>8}  GPU busy")
    for r in results:
        speed = base / r["makespan"] if r["makespan"] else 1.0
        print(f"{r['gpus']:>5}  {hours(r['makespan']):>10}  {hours(length):>13}  "
              f"{speed:>7.2f}x  {100 * r['gpu_busy']:.0f} %")
    print(f"critical path ({len(path)} jobs, {hours(length)}): "
          + " -> ".join(f"{j.label()} {hours(j.seconds)}" for j in path))
    return 0
