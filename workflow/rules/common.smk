# Paths, wildcard constraints, input functions and the JSON slices each stage depends on.
# Which methods a config runs, and their folders, come from the method registry
# (deepfake_lth.pruning.methods); docs/ARCHITECTURE.md has the map.
import json
import os
import re
from pathlib import Path

from deepfake_lth.pruning import methods, plan
from deepfake_lth.analysis import generalisation
from deepfake_lth.pruning.criteria import CRITERIA
from deepfake_lth.core.execution import prepare_jobs

RESULTS = config["results"]
RESOURCES = config["resources"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
REPORT = f"{RESULTS}/report.html"
# Code inputs relative to the working directory: a checkout copied or moved with its results
# stays cached (an absolute path would change, and Snakemake would rerun every job).
SRC = os.path.relpath(os.path.join(workflow.basedir, "src", "deepfake_lth"))
# Jobs run `python -m deepfake_lth` of the environment they run in, with src/ on PYTHONPATH;
# `device` reaches them as DLTH_DEVICE, outside the spec; their GPU claims lock in
# {results}/.gpus (deepfake_lth.core.execution.prepare_jobs, deepfake_lth.core.gpus).
CONDA_ENV = "../../environment.yml"
prepare_jobs(workflow.basedir, config["device"], RESULTS)
DATASETS = list(config["datasets"])
MODELS = list(config["models"])
SEEDS = [str(s) for s in config["seeds"]]
ROUNDS = config["prune"]["rounds"]


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    src=_alternatives(DATASETS),
    dst=_alternatives(DATASETS),
    model=_alternatives(MODELS),
    seed=r"\d+",
    criterion=_alternatives(CRITERIA),
    k=r"\d+",
    pct=r"\d+",
    shard=r"\d+",
    control=_alternatives(methods.CONTROLS),
    pai=_alternatives(methods.PAI_METHODS),
    rate=r"0\.\d+",


def code(*modules):
    """Source files of the modules a stage runs: editing one reruns that stage."""
    return [f"{SRC}/{m}" for m in modules]


# what every training job runs (the runner, training, masks, data, the registries' modules)
TRAIN_CODE = code(*methods.training_code())


def stage_code(stage):
    """TRAIN_CODE and the stage's own module (stages/{stage}.py)."""
    return code(*methods.training_code(), f"stages/{stage}.py")


def study_config():
    """The config without how jobs run (threads, device): what the report depends on."""
    return {k: v for k, v in config.items() if k not in ("threads", "device")}


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# ---- data ---------------------------------------------------------------------------
def dataset_cfg(w):
    return config["datasets"][w.dataset]


def faces_dir(dataset):
    return f"{RESULTS}/{dataset}/faces"


def shards_of(w):
    n = dataset_cfg(w)["shards"]
    return expand(
        f"{RESULTS}/{w.dataset}/faces/shards/shard{{i}}.{{ext}}",
        i=range(n),
        ext=["npy", "csv", "log.csv"],
    )


def crop_spec(w):
    """The face settings that decide the crops (the split is pack's)."""
    return {k: v for k, v in dataset_cfg(w)["faces"].items() if k not in ("split", "split_seed")}


def detect_flag(w):
    d = dataset_cfg(w).get("detect_faces")
    return {None: "auto", True: "yes", False: "no"}[d]


# ---- training -------------------------------------------------------------------------
def train_spec(w, dataset=None):
    """Everything a training job's result depends on, as JSON (a change reruns it, nothing
    else does); device and threads say how it runs and are passed outside it."""
    m = config["models"][w.model]
    return as_json(
        {
            "train": config["train"],
            "prune": {"rate": config["prune"]["rate"], "rewind": config["prune"]["rewind"]},
            "input_size": m.get("input_size"),
            "pretrained": m.get("pretrained"),
        }
    )


def retrain_spec(w):
    """train_spec for a job that starts from trained weights (an IMP, one-shot or structured
    round without rewinding, a transferred ticket with its trained weights): its epochs are
    capped at prune.retrain_epochs when set. Jobs that start from θ0 keep train.max_epochs."""
    epochs = config["prune"]["retrain_epochs"]
    starts_trained = config["prune"]["rewind"] == "none"
    if w.get("src") is not None:  # a transfer job
        starts_trained = config["transfer"]["weights"] == "trained"
    spec = json.loads(train_spec(w))
    if epochs and starts_trained:
        spec["train"]["max_epochs"] = min(epochs, spec["train"]["max_epochs"])
    return as_json(spec)


def run_dir(w, dataset=None):
    return f"{RESULTS}/{dataset or w.dataset}/{w.model}/seed{w.seed}"


def previous(w, method):
    """Round k-1 of a chain (round 0 is the dense model): its checkpoint, mask (and channels
    for structured rounds), from the method registry's levels."""
    levels = methods.method_levels(config, w.dataset, w.model, int(w.seed), method)
    k = int(w.k)
    if k < 1 or k >= len(levels):
        raise ValueError(f"round {k} is outside 1..{len(levels) - 1} of {method}")
    prev = levels[k - 1].path
    if k == 1:
        return {"checkpoint": f"{prev}/checkpoint.pt"}
    out = {"checkpoint": f"{prev}/checkpoint.pt", "mask": f"{prev}/mask.pt"}
    if methods.family_of(method).name == "structured":
        out["channels"] = f"{prev}/channels.pt"
    return out


def prev_round(w):
    return previous(w, f"imp-{w.criterion}")


def prev_structured(w):
    return previous(w, f"structured-{w.criterion}")


def prev_kd(w):
    return previous(w, f"kd-{w.criterion}")


def prev_round_rate(w):
    return previous(w, f"imp-{w.criterion}-rate{w.rate}")


def level_sparsity(method):
    """Input function: the sparsity of the sparsity{pct} level of ``method`` (a fraction)."""

    def sparsity(w):
        name = method.format(**dict(w.items()))
        for lv in methods.method_levels(config, w.dataset, w.model, int(w.seed), name)[1:]:
            if lv.path.name == f"sparsity{w.pct}":
                return lv.sparsity
        raise ValueError(f"sparsity{w.pct} is not a level of {name} in this config")

    return sparsity


def control_sources(w):
    """The run folders a control is built from (the method registry): the ticket, and for
    the controls of a chain, round k-1 of it (of the random chain itself for random-chain)."""
    return methods.control_sources(config, w.dataset, w.model, int(w.seed), w.control, int(w.k))


def control_ticket(w):
    return str(control_sources(w)["ticket"])


def control_inputs(w):
    """The ticket's mask and metrics, and round k-1's checkpoint (and mask) where it has one."""
    src = control_sources(w)
    out = {"ticket": f"{src['ticket']}/mask.pt", "ticket_metrics": f"{src['ticket']}/metrics.json"}
    if "prev" in src:
        out["prev_checkpoint"] = f"{src['prev']}/checkpoint.pt"
        out["prev_metrics"] = f"{src['prev']}/metrics.json"
        if int(w.k) > 1:
            out["prev_mask"] = f"{src['prev']}/mask.pt"
    return out


def control_prev(w):
    src = control_sources(w)
    return f"--prev {src['prev']}" if "prev" in src else ""


def control_spec(w):
    """The controls trained like the ticket retrain with the IMP round's schedule; the others
    train once from θ0 (or fresh weights)."""
    return retrain_spec(w) if w.control in methods.TRAINED_LIKE_TICKET else train_spec(w)


def with_epochs(spec, epochs):
    spec = json.loads(spec)
    spec["train"]["max_epochs"] = int(epochs)
    return as_json(spec)


def oneshot_spec(w):
    """retrain_spec with the one-shot budget (oneshot.budget; plan.oneshot_epochs)."""
    sparsity = level_sparsity("oneshot-{criterion}")(w)
    return with_epochs(retrain_spec(w), plan.oneshot_epochs(config, sparsity))


def pai_spec(w):
    """train_spec with the SNIP/GraSP budget (prune_at_init.budget; plan.pai_epochs)."""
    sparsity = level_sparsity("{pai}")(w)
    return with_epochs(train_spec(w), plan.pai_epochs(config, sparsity))


def kd_spec(w):
    """retrain_spec with the distillation temperature and weight."""
    spec = json.loads(retrain_spec(w))
    spec["distill"] = {k: config["distill"][k] for k in ("temperature", "weight")}
    return as_json(spec)


def rate_spec(w):
    """retrain_spec with the step size's own prune.rate (a change of prune.rate leaves it be)."""
    spec = json.loads(retrain_spec(w))
    spec["prune"]["rate"] = float(w.rate)
    return as_json(spec)


# ---- transfer and analysis --------------------------------------------------------------
def transfer_source(w):
    """Folder of A's ticket for a transfer method such as imp-global-sparsity59."""
    method, sparsity = methods.parse_transfer_method(config, w.method)
    return methods.level_for(config, w.src, w.model, int(w.seed), method, sparsity).path


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
        out += study_metrics(d)
    return (
        out
        + transfer_metrics()
        + gradcam_outputs()
        + separability_outputs()
        + latency_outputs()
        + compression_outputs()
        + cross_outputs()
    )


# ---- targets ----------------------------------------------------------------------------
def study_metrics(dataset):
    """Every metrics.json the study computes for one dataset (the registry's planned levels)."""
    out = []
    for model in MODELS:
        for seed in SEEDS:
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
        for d in DATASETS
        for m in MODELS
        for s in SEEDS
        for method in config["separability"]["methods"]
        if method_configured(method, m)
    ]


def latency_methods(model):
    """The configured latency methods this model runs."""
    return [m for m in config["latency"]["methods"] if method_configured(m, model)]


def latency_outputs():
    return [
        f"{RESULTS}/latency/{d}/{m}/seed{s}/latency.csv"
        for d in DATASETS
        for m in MODELS
        for s in SEEDS
        if latency_methods(m)
    ]


def transfer_metrics():
    out = []
    for pair in config["transfer"]["pairs"]:
        for model in MODELS:
            for seed in SEEDS:
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
        for s in SEEDS
    ]


def gradcam_outputs():
    return [
        f"{RESULTS}/gradcam/{d}/{m}/seed{s}/{method}/delta.csv"
        for d in DATASETS
        for m in MODELS
        for s in SEEDS
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
        for d in DATASETS
        for m in MODELS
        for s in SEEDS
        for level in compression_levels(d, m, int(s))
    ]


def quantize_spec(w):
    c = config["compression"]
    keys = (
        "calibration_samples",
        "per_channel",
        "reduce_range",
        "batch_sizes",
        "repeats",
        "warmup",
        "serve",
        "search_nodes",
    )
    return as_json(
        {"input_size": config["models"][w.model].get("input_size"), **{k: c[k] for k in keys}}
    )
