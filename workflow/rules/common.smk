# Paths, wildcard constraints, input functions and the JSON slices each stage depends on.
import json
import re
import sys

RESULTS = config["results"]
RESOURCES = config["resources"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
REPORT = f"{RESULTS}/report.html"
SRC = f"{workflow.basedir}/src/deepfake_lth"  # absolute: runs with --directory elsewhere work
# the stages run with the Python that runs Snakemake (the project's .venv), on any PATH
DLTH = f"{sys.executable} -m deepfake_lth"
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
    criterion="global|local",
    k=r"\d+",
    pct=r"\d+",
    shard=r"\d+",
    control="reinit|random-mask",
    pai="snip|grasp",
    rate=r"0\.\d+",


def code(*modules):
    """Source files of the modules a stage runs: editing one reruns that stage."""
    return [f"{SRC}/{m}" for m in modules]


TRAIN_CODE = code("stages.py", "train.py", "pruning.py", "data.py", "models/__init__.py",
                  "models/mesonet.py", "models/cnn5.py", "models/resnet.py", "models/xception.py")


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# ---- data ---------------------------------------------------------------------------
def dataset_cfg(w):
    return config["datasets"][w.dataset]


def faces_dir(dataset):
    return f"{RESULTS}/{dataset}/faces"


def shards_of(w):
    n = dataset_cfg(w)["shards"]
    return expand(f"{RESULTS}/{w.dataset}/faces/shards/shard{{i}}.{{ext}}", i=range(n),
                  ext=["npy", "csv", "log.csv"])


def detect_flag(w):
    d = dataset_cfg(w).get("detect_faces")
    return {None: "auto", True: "yes", False: "no"}[d]


# ---- training -------------------------------------------------------------------------
def train_spec(w, dataset=None):
    """Everything a training job depends on, as JSON (a change reruns it, nothing else does)."""
    m = config["models"][w.model]
    return as_json({
        "train": config["train"],
        "prune": {"rate": config["prune"]["rate"], "rewind": config["prune"]["rewind"]},
        "input_size": m.get("input_size"),
        "pretrained": m.get("pretrained"),
        "device": config["device"],
        "threads": config["threads"],
    })


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


def prev_round(w):
    """Round k-1 of the chain (round 0 is the dense model)."""
    k = int(w.k)
    if k < 1 or k > ROUNDS:
        raise ValueError(f"round {k} is outside 1..prune.rounds ({ROUNDS})")
    base = run_dir(w)
    if k == 1:
        return {"checkpoint": f"{base}/dense/checkpoint.pt"}
    prev = f"{base}/imp-{w.criterion}/round{k - 1}"
    return {"checkpoint": f"{prev}/checkpoint.pt", "mask": f"{prev}/mask.pt"}


def prev_structured(w):
    """Structured round k-1 (round 0 is the dense model)."""
    k = int(w.k)
    if k < 1 or k > config["structured"]["rounds"]:
        raise ValueError(f"round {k} is outside 1..structured.rounds")
    base = run_dir(w)
    if k == 1:
        return {"checkpoint": f"{base}/dense/checkpoint.pt"}
    prev = f"{base}/structured-{w.criterion}/round{k - 1}"
    return {"checkpoint": f"{prev}/checkpoint.pt", "mask": f"{prev}/mask.pt",
            "channels": f"{prev}/channels.pt"}


def structured_models():
    return [m for m in MODELS if m in config["structured"]["models"]]


def oneshot_fraction(w):
    for s in plan.oneshot_sparsities(config):
        if plan.pct(s) == int(w.pct):
            return s
    raise ValueError(f"sparsity{w.pct} is not a one-shot level of this config")


CONTROL_CRITERION = config["prune"]["criteria"][0] if config["prune"]["criteria"] else "global"


def pai_fraction(w):
    for s in plan.pai_sparsities(config):
        if plan.pct(s) == int(w.pct):
            return s
    raise ValueError(f"sparsity{w.pct} is not a prune_at_init level of this config")


def rate_spec(w):
    """retrain_spec with the step size's own prune.rate (a change of prune.rate leaves it be)."""
    spec = json.loads(retrain_spec(w))
    spec["prune"]["rate"] = float(w.rate)
    return as_json(spec)


def prev_round_rate(w):
    """Round k-1 of a step-size chain imp-{criterion}-rate{rate} (round 0: the dense model)."""
    k = int(w.k)
    method = plan.step_size_method(w.criterion, float(w.rate))
    _, rounds = plan.step_size_rate(config, method)
    if k < 1 or k > rounds:
        raise ValueError(f"round {k} is outside 1..{rounds} of {method}")
    base = run_dir(w)
    if k == 1:
        return {"checkpoint": f"{base}/dense/checkpoint.pt"}
    prev = f"{base}/{method}/round{k - 1}"
    return {"checkpoint": f"{prev}/checkpoint.pt", "mask": f"{prev}/mask.pt"}


# ---- targets ----------------------------------------------------------------------------
def study_metrics(dataset):
    """Every metrics.json the study computes for one dataset."""
    out = []
    for model in MODELS:
        for seed in SEEDS:
            base = f"{RESULTS}/{dataset}/{model}/seed{seed}"
            out.append(f"{base}/dense/metrics.json")
            for c in config["prune"]["criteria"]:
                out += [f"{base}/imp-{c}/round{k}/metrics.json" for k in range(1, ROUNDS + 1)]
            for c in config["oneshot"]["criteria"]:
                out += [f"{base}/oneshot-{c}/sparsity{plan.pct(s)}/metrics.json"
                        for s in plan.oneshot_sparsities(config)]
            if model in structured_models():
                for c in config["structured"]["criteria"]:
                    out += [f"{base}/structured-{c}/round{k}/metrics.json"
                            for k in range(1, config["structured"]["rounds"] + 1)]
            if config["prune"]["criteria"]:
                for name in config["controls"]:
                    out += [f"{base}/control-{name}/round{k}/metrics.json" for k in range(1, ROUNDS + 1)]
            for m in config["prune_at_init"]["methods"]:
                out += [f"{base}/{m}/sparsity{plan.pct(s)}/metrics.json"
                        for s in plan.pai_sparsities(config)]
            for method, _, _, rounds in plan.step_sizes(config):
                out += [f"{base}/{method}/round{k}/metrics.json" for k in range(1, rounds + 1)]
    return out


def separability_outputs():
    return [f"{RESULTS}/separability/{d}/{m}/seed{s}/{method}.csv"
            for d in DATASETS for m in MODELS for s in SEEDS
            for method in config["separability"]["methods"] if _separability_configured(method)]


def _separability_configured(method):
    return method in plan.methods(config) and (ROUNDS > 0 or not method.startswith(("imp-", "control-")))


def latency_methods(model):
    """The configured latency methods this model runs."""
    out = []
    for method in config["latency"]["methods"]:
        kind, _, criterion = method.partition("-")
        if kind == "structured":
            ok = model in structured_models() and criterion in config["structured"]["criteria"]
        else:
            ok = _separability_configured(method)
        if ok:
            out.append(method)
    return out


def latency_outputs():
    return [f"{RESULTS}/latency/{d}/{m}/seed{s}/latency.csv"
            for d in DATASETS for m in MODELS for s in SEEDS if latency_methods(m)]


def transfer_metrics():
    out = []
    for pair in config["transfer"]["pairs"]:
        for model in MODELS:
            for seed in SEEDS:
                for method in plan.transfer_methods(config):
                    out.append(f"{RESULTS}/transfer/{pair['from']}-to-{pair['to']}/{model}/"
                               f"seed{seed}/{method}/metrics.json")
    return out


def gradcam_outputs():
    return [f"{RESULTS}/gradcam/{d}/{m}/seed{s}/{method}/delta.csv"
            for d in DATASETS for m in MODELS for s in SEEDS for method in config["gradcam"]["methods"]
            if _method_configured(method)]


def _method_configured(method):
    kind, _, criterion = method.partition("-")
    key = {"imp": ("prune", "criteria"), "oneshot": ("oneshot", "criteria")}[kind]
    return criterion in config[key[0]][key[1]] and (kind != "imp" or ROUNDS > 0)
