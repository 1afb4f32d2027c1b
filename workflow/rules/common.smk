# Paths, wildcard constraints, input functions of the rules and their targets. What a job
# reads, writes and is passed is computed in src/ (deepfake_lth.workflow.jobs, each stage's
# module); which methods a config runs, and their folders, come from the method registry
# (deepfake_lth.stages.methods); docs/ARCHITECTURE.md has the map.
import re
from pathlib import Path

from deepfake_lth.pruning import plan
from deepfake_lth.stages import methods
from deepfake_lth.workflow import jobs
from deepfake_lth.analysis import generalisation, robustness
from deepfake_lth.core.execution import prepare_jobs

RESULTS = config["results"]
RESOURCES = config["resources"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
REPORT = f"{RESULTS}/report.html"
# Jobs run `python -m deepfake_lth` of the environment they run in, with src/ on PYTHONPATH;
# `device` reaches them as DLTH_DEVICE, outside the spec; their GPU claims lock in a folder
# local to the host (deepfake_lth.core.execution.prepare_jobs, deepfake_lth.core.gpus).
# Code inputs are relative to the working directory (jobs.stage_code): a checkout copied or
# moved with its results stays cached.
CONDA_ENV = "../../environment.yml"
prepare_jobs(workflow.basedir, config["device"])
DATASETS = list(config["datasets"])
# the datasets networks are trained on (role test: scored only)
TRAINED = plan.trained_datasets(config)
MODELS = list(config["models"])


def seeds_of(model):
    """The seeds a model is trained with (models.{model}.seeds, else seeds)."""
    return [str(s) for s in plan.seeds_of(config, model)]


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    src=_alternatives(DATASETS),
    dst=_alternatives(DATASETS),
    model=_alternatives(MODELS),
    seed=r"\d+",
    shard=r"\d+",


def study_config():
    """The config without how jobs run (threads, device): what the report depends on."""
    return {k: v for k, v in config.items() if k not in ("threads", "device")}


as_json = jobs.as_json


# ---- data ---------------------------------------------------------------------------
def run_dir(w, dataset=None):
    return f"{RESULTS}/{dataset or w.dataset}/{w.model}/seed{w.seed}"


def dataset_cfg(w):
    return config["datasets"][w.dataset]


def faces_dir(dataset):
    return f"{RESULTS}/{dataset}/faces"


def faces_origin(dataset):
    """The dataset whose acquired files and extracted shards ``dataset`` packs: itself, or the
    one its ``faces_from`` names (no acquisition or extraction of its own)."""
    return config["datasets"][dataset].get("faces_from") or dataset


def shard_dir(w):
    return f"{RESULTS}/{faces_origin(w.dataset)}/faces/shards"


def shards_of(w):
    n = dataset_cfg(w)["shards"]
    return expand(
        f"{shard_dir(w)}/shard{{i}}.{{ext}}",
        i=range(n),
        ext=["npy", "csv", "log.csv"],
    )


def crop_spec(w):
    """The face settings that decide the crops (the split is pack's)."""
    return {k: v for k, v in dataset_cfg(w)["faces"].items() if k not in ("split", "split_seed")}


def detect_flag(w):
    d = dataset_cfg(w).get("detect_faces")
    return {None: "auto", True: "yes", False: "no"}[d]


# ---- transfer and analysis --------------------------------------------------------------
def transfer_source(w):
    """Folder of A's ticket for a transfer method such as imp-global-sparsity59."""
    return jobs.transfer_source(config, w.src, w.model, int(w.seed), w.method)


def gradcam_levels(w):
    """The trained networks Grad-CAM compares: nearest level of the method to each sparsity."""
    levels = []
    for s in config["gradcam"]["sparsities"]:
        level = methods.level_for(config, w.dataset, w.model, int(w.seed), w.method, s)
        levels.append(
            {
                "sparsity": level.sparsity,
                "method": level.method,
                "checkpoint": str(level.path / "checkpoint.pt"),
            }
        )
    unique = {lv["checkpoint"]: lv for lv in levels}
    return list(unique.values())


def separability_levels(w):
    """The dense network and every ticket of the method, as the stage's --levels."""
    levels = methods.method_levels(config, w.dataset, w.model, int(w.seed), w.method)
    return [{"level": lv.path.name, "path": str(lv.path)} for lv in levels]


def latency_levels(w):
    """The dense network, then every ticket of each configured latency method."""
    out = []
    for method in latency_methods(w.model):
        for lv in methods.method_levels(config, w.dataset, w.model, int(w.seed), method):
            if lv.method == "dense" and out:
                continue
            out.append({"method": lv.method, "level": lv.path.name, "path": str(lv.path)})
    return out


def report_inputs(w):
    out = []
    for d in DATASETS:
        out += [f"{RESULTS}/{d}/faces/extraction_log.csv", f"{RESULTS}/{d}/faces/summary.json"]
    for d in TRAINED:
        out += study_metrics(d)
    return (
        out
        + transfer_metrics()
        + gradcam_outputs()
        + separability_outputs()
        + latency_outputs()
        + compression_outputs()
        + cross_outputs()
        + robust_outputs()
    )


# ---- targets ----------------------------------------------------------------------------
def study_metrics(dataset):
    """Every metrics.json the study computes for one dataset (the registry's planned levels)."""
    out = []
    for model in MODELS:
        for seed in plan.planned_seeds(config, dataset, model):
            out += [
                f"{lv.path}/metrics.json"
                for lv in methods.planned_levels(config, dataset, model, int(seed))
            ]
    return out


def method_configured(method, model=None):
    """Whether the config runs ``method`` (for ``model``)."""
    planned = method in methods.planned_methods(config, model)
    return planned and bool(methods.family_of(method).levels(config, method))


def separability_outputs():
    return [
        f"{RESULTS}/separability/{d}/{m}/seed{s}/{method}.csv"
        for d in TRAINED
        for m in MODELS
        for s in seeds_of(m)
        for method in config["separability"]["methods"]
        if method_configured(method, m)
    ]


def latency_methods(model):
    """The configured latency methods this model runs."""
    return [m for m in config["latency"]["methods"] if method_configured(m, model)]


def latency_outputs():
    return [
        f"{RESULTS}/latency/{d}/{m}/seed{s}/latency.csv"
        for d in TRAINED
        for m in MODELS
        for s in seeds_of(m)
        if latency_methods(m)
    ]


def transfer_metrics():
    out = []
    for pair in config["transfer"]["pairs"]:
        for model in MODELS:
            for seed in seeds_of(model):
                for method in methods.transfer_methods(config):
                    out.append(
                        f"{RESULTS}/transfer/{pair['from']}-to-{pair['to']}/{model}/"
                        f"seed{seed}/{method}/metrics.json"
                    )
    return out


def cross_faces(w):
    """The packed faces a run of w.dataset is scored on zero-shot (and per manipulation)."""
    return [
        f"{faces_dir(d)}/{f}"
        for d in generalisation.faces_needed(config, w.dataset)
        for f in ("faces.npy", "manifest.csv", "summary.json")
    ]


def cross_levels(w):
    """The run folders of one generalise job: every planned run of w.dataset × model × seed."""
    return generalisation.cross_levels(config, w.dataset, w.model, int(w.seed))


def cross_outputs():
    """One generalise table per generalisation source × model × seed."""
    return [
        f"{RESULTS}/generalisation/{d}/{m}/seed{s}.csv"
        for d in generalisation.sources(config)
        for m in MODELS
        for s in seeds_of(m)
    ]


def robust_levels(w):
    """The run folders of one robustness job: the dense network and robustness.methods' levels."""
    return robustness.robust_levels(config, w.dataset, w.model, int(w.seed))


def robust_outputs():
    """One robustness table per dataset × model × seed the robustness section covers."""
    return [f"{RESULTS}/robustness/{d}/{m}/seed{s}.csv" for d, m, s in robustness.jobs(config)]


def gradcam_outputs():
    return [
        f"{RESULTS}/gradcam/{d}/{m}/seed{s}/{method}/delta.csv"
        for d in TRAINED
        for m in MODELS
        for s in seeds_of(m)
        for method in config["gradcam"]["methods"]
        if method_configured(method, m)
    ]


# ---- compression -------------------------------------------------------------------------
# a level folder below seed{seed}/: dense, or {method}/round{k} | {method}/sparsity{pct}
COMPRESSION_LEVEL = rf"dense|(?:{methods.method_pattern()})/(?:round|sparsity)\d+"


def compression_levels(dataset, model, seed):
    """The level folders the config quantizes for one run: dense and the configured tickets."""
    if model not in config["compression"]["models"]:
        return []
    out = [Path(f"{RESULTS}/{dataset}/{model}/seed{seed}/dense")]
    for t in config["compression"]["tickets"]:
        if method_configured(t["method"], model):
            lv = methods.level_for(config, dataset, model, seed, t["method"], t["sparsity"])
            out.append(lv.path)
    return list(dict.fromkeys(out))


def compression_outputs():
    return [
        f"{level}/int8/metrics.json"
        for d in TRAINED
        for m in MODELS
        for s in seeds_of(m)
        for level in compression_levels(d, m, int(s))
    ]


def quantize_spec(w):
    from deepfake_lth.deploy.quantize import job_spec

    return as_json(job_spec(config, w.model))
