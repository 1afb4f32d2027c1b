"""The duration plan-time gives a job of the DAG (:mod:`deepfake_lth.workflow.plan_time`).

Every rule of the DAG has a cost (a rule without one is an error, never a silent 0): a job
lasts

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

"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deepfake_lth.core.errors import UserError
from deepfake_lth.stages import methods
from deepfake_lth.workflow import config as study_config

TABLE = Path(__file__).with_name("throughput.yaml")


FAMILY_RULES = {f.rule for f in methods.FAMILIES}


TRAINING = {"train_dense", "transfer_ticket", "transfer_finetuned", *FAMILY_RULES}


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
        positive(costs.get(key), f"{where}: {key}")
    for rule, sec in (costs.get("startup_seconds") or {}).items():
        if not isinstance(sec, (int, float)) or isinstance(sec, bool) or sec < 0:
            raise UserError(f"{where}: startup_seconds.{rule} must be a number of seconds ≥ 0, "
                            f"got {sec!r}")
    return costs


def positive(value: Any, what: str) -> float:
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
    points = [(int(r["input_size"]), positive(r.get(key), f"throughput.{model}.{key}"))
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
    startups = costs.get("startup_seconds") or {}
    startup = startups.get(job.rule)
    if startup is None and job.rule in FAMILY_RULES:
        # a method family not measured yet (control, lowrank, ...) runs the runner IMP does
        startup = startups.get("imp_round")
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
        per_s = positive((costs.get("data_faces_per_s") or {}).get(job.rule),
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

