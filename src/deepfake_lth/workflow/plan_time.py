"""`deepfake-lth plan-time`: the expected wall time of a config's DAG on N GPUs, before it runs.

The DAG is Snakemake's own: a forced dry run of the config (in a scratch working directory,
so nothing of the study is touched; ``--config KEY=VALUE`` passed on as Snakemake takes it)
lists every job with its rule, wildcards, inputs, outputs, threads and resources; a job
depends on the jobs that write its inputs. Every rule of the DAG has a cost (a rule without
one is an error, never a silent 0): a job lasts

    start-up of its rule + its work

in **one CPU thread's seconds**. The start-up (Python, imports, reading the faces, writing
results) is measured per rule on a finished run (``startup_seconds`` of the table, from its
Snakemake benchmark files: ``bench/throughput.py --calibrate``). The work follows the job's
size, from the images/s ``bench/throughput.py`` measured (the table
``workflow/throughput.yaml``, with its command and device), interpolated at the model's
``input_size`` (a power law between measured sizes, pixels beyond them):

- training (dense, every method family's rule, transfer tickets, the fine-tuned dense
  network): ``epochs × (train faces / train images/s + val faces / eval images/s) + test
  faces / eval images/s``, a KD round also the teacher's forward passes; epochs:
  ``--epochs`` (expected epochs after early stopping), else the epoch cap in the job's own
  ``--spec`` (the dry run's shell command: ``prune.retrain_epochs`` where a job starts from
  trained weights, one-shot's matched budget), an upper bound;
- scoring (generalise, robustness, Grad-CAM, separability, quantize, latency): the runs it
  reads (checkpoints among its inputs) times the faces it scores (times perturbations and
  levels; latency: its timing loops, at least ``min_seconds`` each);
- extraction: the faces of its shard at ``extract_faces_per_s`` (1080p frames scanned at
  640 px) scaled by the pixels its frames are scanned at, with a face detector; else
  ``crop_faces_per_s``; acquire and pack_faces: the dataset's faces at
  ``data_faces_per_s``; transfer_dense, report: start-up only.

Every duration is then multiplied by ``cpu_scale``: CPU seconds measured on a loaded machine
are more than those of an idle one (caches and cores shared), so the table holds the ratio
of a run timed on an idle machine to its prediction from the measured costs
(``bench/throughput.py --reference``).

The faces of a dataset: ``--faces NAME=N``, else its packed manifest, else its acquired
``sources.csv`` (files × frames per video), else, for a synthetic source, what the config
generates.

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
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deepfake_lth.core.errors import UserError
from deepfake_lth.stages import methods
from deepfake_lth.workflow import config as study_config

TABLE = Path(__file__).with_name("throughput.yaml")
TRAINING = {"train_dense", "transfer_ticket", "transfer_finetuned",
            *(f.rule for f in methods.FAMILIES)}
SCORING = {"generalise", "robustness", "gradcam", "separability", "quantize", "latency"}
DATA = {"acquire", "pack_faces"}  # their work: the dataset's faces at data_faces_per_s
STARTUP_ONLY = {"transfer_dense", "report"}
TARGETS = {"all"}  # rules that run nothing
REFERENCE_PIXELS = 640 * 360  # extract_faces_per_s: a 1080p frame scanned at 640 px
DEFAULT_COSTS: dict[str, Any] = {
    # BENCHMARKS.md §1: one extract job (2 threads), 1080p long-GOP video, CPU MTCNN at
    # detect_max_side 640; a job's rate scales with the pixels it scans
    "extract_faces_per_s": 23.6,
    "crop_faces_per_s": 400.0,  # face-crop images without a detector: decode and resize
    "data_faces_per_s": {"acquire": 130.0, "pack_faces": 1900.0},
    "startup_seconds": {},
    "work_factor": {},  # per kind: measured CPU seconds per second of the table's work
    "cpu_scale": 1.0,  # seconds on an idle machine per CPU second measured (see the doc)
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
    threads: int = 1
    command: str = ""  # its shell command (the dry run's -p), with its --spec
    benchmark: str = ""  # its Snakemake benchmark file, where its rule keeps one

    def spec_number(self, key: str) -> float | None:
        """A number of the job's --spec (e.g. ``max_epochs``: the epoch cap the workflow
        computed for it), None where its command has none."""
        found = re.findall(rf'"{key}":\s*([0-9.]+)', self.command)
        return float(found[-1]) if found else None

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
                            "startup_seconds, extract_faces_per_s, crop_faces_per_s")
        costs = study_config.merge(costs, given)
    where = f"--costs {path}" if path is not None else str(TABLE)
    for key in ("extract_faces_per_s", "crop_faces_per_s", "cpu_scale"):
        _positive(costs.get(key), f"{where}: {key}")
    for rule, sec in (costs.get("startup_seconds") or {}).items():
        if not isinstance(sec, (int, float)) or isinstance(sec, bool) or sec < 0:
            raise UserError(f"{where}: startup_seconds.{rule} must be a number of seconds ≥ 0, "
                            f"got {sec!r}")
    return costs


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or math.isinf(value):
        raise UserError(f"{what} must be a number > 0, got {value!r}")
    return float(value)


def synthetic_faces(ds: dict) -> int | None:
    """The faces a synthetic source generates (None for other sources)."""
    src = ds.get("source") or {}
    if src.get("type") != "synthetic":
        return None
    if src.get("kind") == "videos":
        per = min(int(ds["faces"]["frames_per_video"]), int(src.get("frames", 1 << 30)))
        return 2 * int(src["videos_per_class"]) * per
    return 2 * int(src["images_per_class"])


def _sources_faces(path: Path, ds: dict) -> int:
    """Files of an acquired sources.csv times the faces each gives."""
    import csv

    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    per = int(ds["faces"]["frames_per_video"])
    return sum(1 if (r.get("kind") or "") == "image" else per for r in rows)


def faces_of(config: dict, given: dict[str, int], workdir: Path) -> dict[str, int]:
    """Faces per dataset: ``--faces`` first, else the packed manifest's rows, else the
    acquired sources, else a synthetic source's size."""
    counts = {}
    for name, ds in config["datasets"].items():
        manifest = workdir / config["results"] / name / "faces" / "manifest.csv"
        sources = workdir / config["resources"] / name / "sources.csv"
        if name in given:
            counts[name] = given[name]
        elif manifest.exists():
            counts[name] = max(0, sum(1 for _ in manifest.open()) - 1)
        elif sources.exists():
            counts[name] = _sources_faces(sources, ds)
        elif (n := synthetic_faces(ds)) is not None:
            counts[name] = n
        else:
            raise UserError(f"the number of faces of dataset {name!r} is unknown (no {manifest}"
                            f" nor {sources}); pass --faces {name}=N (e.g. videos × "
                            "faces.frames_per_video)")
    return counts



def rate(costs: dict, model: str, size: int, key: str) -> float:
    """images/s of ``model`` at input ``size``: a power law between the two measured sizes
    around it; beyond them, the nearest one scaled by pixels."""
    row = costs["throughput"].get(model)
    if not row:
        raise UserError(f"no throughput for model {model!r} in the costs: run bench/throughput"
                        f".py --models {model} --write, or give throughput.{model}.{key}")
    rows = sorted(([row, *row.get("other_sizes", [])]), key=lambda r: r["input_size"])
    points = [(int(r["input_size"]), _positive(r.get(key), f"throughput.{model}.{key}"))
              for r in rows]
    below = [p for p in points if p[0] <= size]
    above = [p for p in points if p[0] >= size]
    if below and above and below[-1][0] != above[0][0]:
        (s0, r0), (s1, r1) = below[-1], above[0]
        slope = math.log(r1 / r0) / math.log(s1 / s0)
        return r0 * (size / s0) ** slope
    s0, r0 = below[-1] if below else above[0]
    return r0 * (s0 / size) ** 2


def _epochs(job: Job, config: dict, epochs: float | None) -> float:
    """``--epochs``, else the epoch cap of the job's spec (as the workflow computed it: a
    round from trained weights capped by retrain_epochs, one-shot's matched budget of k
    rounds' epochs...), else ``train.max_epochs``."""
    if epochs is not None:
        return epochs
    cap = job.spec_number("max_epochs")
    return cap if cap is not None else float(config["train"]["max_epochs"])


def input_size(job: Job, config: dict) -> int:
    """The job's network input side: its spec's, else the config's model's."""
    size = job.spec_number("input_size")
    return int(size if size is not None else config["models"][job.wildcards["model"]]
               ["input_size"])


def _split(config: dict, dataset: str, faces: dict[str, int]) -> dict[str, float]:
    """Train/val/test faces of a dataset (a test-only dataset: all test)."""
    ds = config["datasets"][dataset]
    n = faces[dataset]
    if ds.get("role", "train") == "test":
        return {"train": 0.0, "val": 0.0, "test": float(n)}
    split = ds["faces"]["split"]
    train = n * split["train"]
    cap = config["train"].get("max_train_samples")
    return {"train": min(train, cap) if cap else train, "val": n * split["val"],
            "test": n * split["test"]}


def _datasets_read(job: Job, config: dict) -> list[str]:
    """The datasets whose faces a job reads (its faces.npy inputs)."""
    names = []
    for path in job.inputs:
        if path.endswith("/faces/faces.npy"):
            name = Path(path).parent.parent.name
            if name in config["datasets"]:
                names.append(name)
    return names or [job.wildcards.get("dst") or job.wildcards["dataset"]]


def training_work(job: Job, config: dict, costs: dict, faces: dict[str, int],
                  epochs: float | None) -> float:
    """Seconds of a training job's work (the module's doc)."""
    dataset = job.wildcards.get("dst") or job.wildcards["dataset"]
    model = job.wildcards["model"]
    size = input_size(job, config)
    train, ev = (rate(costs, model, size, "train_images_per_s"),
                 rate(costs, model, size, "eval_images_per_s"))
    n = _split(config, dataset, faces)
    e = _epochs(job, config, epochs)
    per_epoch = n["train"] / train + n["val"] / ev
    if job.rule == "kd_round":  # the teacher's forward passes
        per_epoch += n["train"] / ev
    return e * per_epoch + n["test"] / ev


def scoring_work(job: Job, config: dict, costs: dict, faces: dict[str, int]) -> float:
    """Seconds of a scoring job's work: runs read × images scored (the module's doc)."""
    model = job.wildcards["model"]
    ev = rate(costs, model, input_size(job, config), "eval_images_per_s")
    runs = max(1, sum(p.endswith("checkpoint.pt") for p in job.inputs))
    sets = _datasets_read(job, config)
    test = sum(_split(config, d, faces)["test"] for d in sets)
    if job.rule == "robustness":
        rb = config["robustness"]
        return runs * len(rb["perturbations"]) * len(rb["levels"]) * test / ev
    if job.rule == "gradcam":  # a forward and a backward pass per sample
        return runs * 3 * 2 * config["gradcam"]["samples_per_class"] / ev
    if job.rule == "separability":
        return runs * min(sum(faces[d] for d in sets),
                          config["separability"].get("max_samples") or math.inf) / ev
    if job.rule in ("latency", "quantize"):
        timing = config["latency" if job.rule == "latency" else "compression"]
        loops = [max(float(timing.get("min_seconds", 0)), timing["repeats"] * b / ev)
                 for b in timing["batch_sizes"]]
        passes = 1 if job.rule == "latency" else 2  # quantize: fp32 and INT8, each scored
        return runs * sum(loops) * passes + passes * test / ev
    return runs * test / ev  # generalise


def job_seconds(job: Job, config: dict, costs: dict, faces: dict[str, int],
                epochs: float | None) -> float:
    """The expected duration of one job in one CPU thread's seconds (the module's doc)."""
    kind, work = job_work(job, config, costs, faces, epochs)
    if job.rule in TARGETS:
        return 0.0
    startup = (costs.get("startup_seconds") or {}).get(job.rule)
    if startup is None:
        raise UserError(f"the costs have no start-up for rule {job.rule!r}: measure it on a "
                        "finished run (python bench/throughput.py --calibrate CONFIG:FOLDER) "
                        f"or give startup_seconds.{job.rule} in --costs")
    measured = startup + float((costs.get("work_factor") or {}).get(kind, 1.0)) * work
    return float(costs.get("cpu_scale", 1.0)) * measured


def detect_pixels(ds: dict) -> float:
    """Pixels MTCNN scans per frame: the frame (a synthetic source's size, else a 16:9
    frame larger than it) downscaled to ``detect_max_side``."""
    side = float(ds["faces"]["detect_max_side"])
    src = ds.get("source") or {}
    w, h = float(src.get("width") or 1920), float(src.get("height") or 1080)
    scale = min(1.0, side / max(w, h))
    return w * h * scale * scale


def job_work(job: Job, config: dict, costs: dict, faces: dict[str, int],
             epochs: float | None) -> tuple[str, float]:
    """A job's kind (training, scoring, detect or crop: an extraction with a face detector
    or without, data, startup) and the seconds of its work at the table's rates."""
    if job.rule in TRAINING:
        return "training", training_work(job, config, costs, faces, epochs)
    if job.rule in SCORING:
        return "scoring", scoring_work(job, config, costs, faces)
    if job.rule == "extract_faces":
        ds = config["datasets"][job.wildcards["dataset"]]
        kind = (ds.get("source") or {}).get("kind")
        detector = ds.get("detect_faces") is not False or kind == "videos"
        per_s = (costs["extract_faces_per_s"] * REFERENCE_PIXELS / detect_pixels(ds)
                 if detector else costs["crop_faces_per_s"])
        return "detect" if detector else "crop", faces[job.wildcards["dataset"]] / ds[
            "shards"] / per_s
    if job.rule in DATA:
        per_s = _positive((costs.get("data_faces_per_s") or {}).get(job.rule),
                          f"data_faces_per_s.{job.rule}")
        return "data", faces[job.wildcards["dataset"]] / per_s
    if job.rule in STARTUP_ONLY or job.rule in TARGETS:
        return "startup", 0.0
    raise UserError(f"plan-time has no cost for rule {job.rule!r}: add it to one of the "
                    "kinds of deepfake_lth.workflow.plan_time (TRAINING, SCORING, DATA, "
                    "STARTUP_ONLY) and measure its start-up (bench/throughput.py --calibrate)")


def measured_cpu_seconds(job: Job, folder: Path) -> float | None:
    """The CPU seconds a finished run's Snakemake benchmark file of ``job`` records (under
    ``folder``, the run's working directory; None without one)."""
    tsv = Path(folder) / job.benchmark if job.benchmark else None
    if tsv is None or not tsv.exists():
        return None
    header, values = tsv.read_text().splitlines()[:2]
    return float(dict(zip(header.split("\t"), values.split("\t")))["cpu_time"])


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
        _positive(args.epochs, "--epochs")


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
