"""The lottery-ticket stages: dense training, IMP rounds, one-shot pruning, controls, transfer.

Each stage is a plain function writing one folder of the path scheme in DESIGN.md
(``checkpoint.pt``, ``mask.pt``, ``metrics.json``; ``init.pt`` for dense), plus a CLI
wrapper (``deepfake-lth train|imp-round|oneshot|control|transfer``). The config slice a
stage depends on comes as one JSON ``spec``::

    {"train": {lr, weight_decay, batch_size, max_epochs, patience, monitor, augment,
               max_train_samples, amp},
     "prune": {rate, rewind},
     "input_size": int | null, "pretrained": path | null, "device": "auto", "threads": 1}

Missing keys take the schema's defaults; unknown keys are an error. Every file is written
under a temporary name and renamed, ``metrics.json`` last.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.errors import UserError

log = logging.getLogger(__name__)

TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 1.0e-4,
    "weight_decay": 0.0,
    "batch_size": 32,
    "max_epochs": 100,
    "patience": 10,
    "monitor": "val_loss",
    "augment": True,
    "max_train_samples": None,
    "amp": True,
}
PRUNE_DEFAULTS: dict[str, Any] = {"rate": 0.2, "rewind": "none"}
SPEC_DEFAULTS: dict[str, Any] = {
    "train": TRAIN_DEFAULTS,
    "prune": PRUNE_DEFAULTS,
    "input_size": None,
    "pretrained": None,
    "device": "auto",
    "threads": 1,
}
CONTROLS = ("reinit", "random-mask")
CONTROL_SEED_OFFSET = 1000  # fresh weights / random masks of the controls: seed + 1000
PAI_METHODS = ("snip", "grasp")  # pruning at initialization
PAI_BATCHES = 4  # training batches SNIP and GraSP score θ0 on
GRASP_TEMPERATURE = 200.0  # Wang et al. 2020
STEP_SIZE_RE = re.compile(r"imp-(global|local)-rate(0?\.\d+)")


# --------------------------------------------------------------------------- spec


def parse_spec(spec: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """The stage spec (a dict or its JSON) with defaults filled in and keys checked."""
    if spec is None:
        spec = {}
    if isinstance(spec, str):
        text = spec
        if text.startswith("@"):
            path = Path(text[1:])
            if not path.is_file():
                raise UserError(f"--spec {text}: file {path} does not exist")
            text = path.read_text()
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"--spec is not valid JSON ({exc}); pass e.g. '{{\"train\": {{}}}}'")
    if not isinstance(spec, Mapping):
        raise UserError("--spec must be a JSON object")
    out = copy.deepcopy(SPEC_DEFAULTS)
    for key, value in spec.items():
        if key not in SPEC_DEFAULTS:
            raise UserError(f"spec: unknown key {key!r}; allowed keys: {', '.join(SPEC_DEFAULTS)}")
        if key in ("train", "prune"):
            if not isinstance(value, Mapping):
                raise UserError(f"spec.{key} must be an object")
            unknown = sorted(set(value) - set(SPEC_DEFAULTS[key]))
            if unknown:
                raise UserError(
                    f"spec.{key}: unknown key(s) {', '.join(unknown)}; allowed keys: "
                    f"{', '.join(SPEC_DEFAULTS[key])}"
                )
            out[key].update(value)
        else:
            out[key] = value
    from deepfake_lth.pruning import parse_rewind

    parse_rewind(out["prune"]["rewind"])
    rate = out["prune"]["rate"]
    if not isinstance(rate, (int, float)) or not 0 < rate < 1:
        raise UserError(f"spec.prune.rate must be in (0, 1), got {rate!r}")
    return out


# --------------------------------------------------------------------------- helpers


def _json_safe(value: Any) -> Any:
    """NaN/inf → null (strict JSON); numpy scalars → python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> None:
    """metrics.json, atomically, as strict JSON (NaN written as null)."""
    from deepfake_lth.files import write_text

    write_text(path, json.dumps(_json_safe(dict(metrics)), indent=2) + "\n")


def read_metrics(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise UserError(f"{path} is missing: run the stage that writes {Path(folder)} first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); delete it and rerun its stage")


def dataset_name(faces_dir: str | Path) -> str:
    """``results/{dataset}/faces`` → ``dataset``."""
    path = Path(faces_dir).absolute()
    return path.parent.name if path.name == "faces" else path.name


def _setup(spec: dict[str, Any], seed: int):
    import torch

    from deepfake_lth.train import resolve_device, seed_everything

    torch.set_num_threads(int(spec["threads"]))
    device = resolve_device(spec["device"])
    seed_everything(seed, device)
    return device


def _input_size(model_name: str, spec: dict[str, Any]) -> int:
    from deepfake_lth.models import get_spec

    return int(spec["input_size"] or get_spec(model_name).input_size)


def build(model_name: str, spec: dict[str, Any], pretrained: bool = False):
    """The registry model of ``model_name`` at the spec's input size (random weights from the
    global generator; ImageNet weights only when ``pretrained`` and the spec names a file)."""
    from deepfake_lth.models import build_model

    return build_model(
        model_name,
        input_size=_input_size(model_name, spec),
        pretrained=spec["pretrained"] if pretrained else None,
    )


def _load_into(model, state: Mapping, source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(
            f"{source} does not fit this model ({str(exc).splitlines()[0]}); was it trained "
            "with another model or input_size?"
        ) from None


def _load_splits(faces_dir: str | Path):
    from deepfake_lth.data import load_split

    return tuple(load_split(faces_dir, s) for s in ("train", "val", "test"))


def _count(model) -> dict[str, int]:
    from deepfake_lth.pruning import prunable_parameters

    params = list(model.parameters())
    prunable = list(prunable_parameters(model).values())
    return {
        "params_total": sum(p.numel() for p in params),
        "params_nonzero": sum(int(p.count_nonzero()) for p in params),
        "prunable_total": sum(p.numel() for p in prunable),
        "prunable_nonzero": sum(int(p.count_nonzero()) for p in prunable),
    }


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _train_and_write(
    *,
    faces_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    spec: dict[str, Any],
    device,
    model,
    mask: Mapping | None,
    meta: dict[str, Any],
    save_epochs: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Train ``model`` (weights already set) on ``faces_dir`` with ``mask`` enforced, evaluate
    on the test split, write checkpoint.pt (+ mask.pt, epoch{E}.pt) and metrics.json."""
    from deepfake_lth.pruning import (
        atomic_torch_save,
        layer_sparsity,
        prunable_parameters,
        save_mask,
        sparsity,
        state_sparsity,
    )
    from deepfake_lth.train import evaluate, fit

    out_dir = Path(out_dir)
    train_split, val_split, test_split = _load_splits(faces_dir)
    input_size = _input_size(model_name, spec)
    t = spec["train"]
    if mask is not None:
        log.info(
            "mask sparsity %.4f; per layer: %s",
            sparsity(mask),
            ", ".join(f"{k} {v:.3f}" for k, v in layer_sparsity(mask).items()),
        )
    result = fit(
        model,
        train_split,
        val_split,
        input_size=input_size,
        lr=t["lr"],
        weight_decay=t["weight_decay"],
        batch_size=t["batch_size"],
        max_epochs=t["max_epochs"],
        patience=t["patience"],
        monitor=t["monitor"],
        augment=t["augment"],
        max_train_samples=t["max_train_samples"],
        amp=t["amp"],
        device=device,
        seed=seed,
        mask=mask,
        save_epochs=save_epochs,
    )
    eval_bs = max(int(t["batch_size"]), 256)
    test = evaluate(model, test_split, input_size, device, eval_bs, t["amp"])
    val = evaluate(model, val_split, input_size, device, eval_bs, t["amp"])
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    names = list(prunable_parameters(model))
    if mask is not None:
        stray = sum(int(((state[n] != 0) & ~mask[n]).sum()) for n in mask)
        if stray:  # the enforcer guarantees this; a failure here is a bug, not bad input
            raise RuntimeError(f"{stray} pruned weights are nonzero after training")

    for epoch, epoch_state in result.epoch_states.items():
        atomic_torch_save(epoch_state, out_dir / f"epoch{epoch}.pt")
    atomic_torch_save(state, out_dir / "checkpoint.pt")
    if mask is not None:
        save_mask(out_dir / "mask.pt", mask)
    metrics: dict[str, Any] = {
        "dataset": dataset_name(faces_dir),
        "model": model_name,
        "seed": seed,
        "method": None,
        "criterion": None,
        "round": 0,
        "sparsity": state_sparsity(state, names),
        "target_sparsity": 0.0 if mask is None else sparsity(mask),
        **_count(model),
        "test_acc": test["acc"],
        "test_auc": test["auc"],
        "test_loss": test["loss"],
        "video_acc": test["video_acc"],
        "test_samples": test["n"],
        "val_acc": val["acc"],
        "val_loss": val["loss"],
        "val_auc": val["auc"],
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds": result.train_seconds,
        "device": _device_name(device),
        "rewind": spec["prune"]["rewind"],
        "input_size": input_size,
        "train": t,
        "layer_sparsity": {n: state_sparsity(state, [n]) for n in names},
        "history": result.history,
    }
    metrics.update(meta)
    write_metrics(out_dir / "metrics.json", metrics)
    log.info(
        "%s %s seed %d %s: sparsity %.4f, test acc %.4f auc %.4f video acc %.4f (%d epochs)",
        metrics["dataset"],
        model_name,
        seed,
        metrics["method"],
        metrics["sparsity"],
        test["acc"],
        test["auc"],
        test["video_acc"],
        result.epochs,
    )
    return metrics


def _rewound_start(mode: str, prev_state, dense_dir: Path, mask):
    """Masked weights a pruned network starts from under rewind ``mode``."""
    from deepfake_lth.pruning import load_state, mask_state, parse_rewind, rewind_weights

    kind, epoch = parse_rewind(mode)
    init_state = load_state(dense_dir / "init.pt") if kind == "init" else None
    epoch_states = None
    if kind == "epoch":
        path = dense_dir / f"epoch{epoch}.pt"
        if not path.is_file():
            raise UserError(
                f"{path} is missing: rewind {mode} needs the dense run to save epoch {epoch}; "
                "rerun the dense stage with this prune.rewind"
            )
        epoch_states = {epoch: load_state(path)}
    state = rewind_weights(mode, prev_state, init_state, epoch_states)
    return mask_state(state, mask)


def _rewind_epochs(spec: dict[str, Any]) -> tuple[int, ...]:
    from deepfake_lth.pruning import parse_rewind

    kind, epoch = parse_rewind(spec["prune"]["rewind"])
    return (epoch,) if kind == "epoch" else ()


def _nearest_round(rate: float, sparsity: float) -> int:
    """IMP round whose sparsity 1 − (1 − rate)^k is nearest ``sparsity`` (k ≥ 1)."""
    from deepfake_lth.plan import imp_sparsity

    return min(range(1, 200), key=lambda k: (abs(imp_sparsity(rate, k) - sparsity), k))


# --------------------------------------------------------------------------- stages


def train_dense(
    faces_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    spec: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """Round 0: θ0 → ``init.pt``, the trained dense network → ``checkpoint.pt``, metrics;
    ``epoch{E}.pt`` too when the rewind mode is ``epoch:E``."""
    from deepfake_lth.pruning import atomic_torch_save

    spec = parse_spec(spec)
    device = _setup(spec, seed)
    model = build(model_name, spec, pretrained=True)
    init = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_torch_save(init, Path(out_dir) / "init.pt")
    return _train_and_write(
        faces_dir=faces_dir,
        out_dir=out_dir,
        model_name=model_name,
        seed=seed,
        spec=spec,
        device=device,
        model=model,
        mask=None,
        meta={"method": "dense", "criterion": None, "round": 0, "target_sparsity": 0.0},
        save_epochs=_rewind_epochs(spec),
    )


def imp_round(
    faces_dir: str | Path,
    prev_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    k: int,
    criterion: str,
    spec: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """IMP round ``k``: prune ``rate`` of the surviving weights of round k−1 (``prev_dir``;
    round 0 is ``dense_dir``) by magnitude, rewind, retrain with the mask enforced."""
    return _imp_round(
        faces_dir, prev_dir, dense_dir, out_dir, model_name, seed, k, criterion, parse_spec(spec)
    )


def _imp_round(
    faces_dir: str | Path,
    prev_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    k: int,
    criterion: str,
    spec: dict[str, Any],
    method: str | None = None,
) -> dict[str, Any]:
    """Body of :func:`imp_round`; ``method`` names a step-size variant (default imp-{criterion})."""
    from deepfake_lth.plan import imp_sparsity
    from deepfake_lth.pruning import full_mask, load_mask, load_state, magnitude_prune

    if k < 1:
        raise UserError(f"IMP round must be ≥ 1, got {k}")
    prev_dir, dense_dir = Path(prev_dir), Path(dense_dir)
    prev_metrics = read_metrics(prev_dir)
    if prev_metrics.get("round") is not None and int(prev_metrics["round"]) != k - 1:
        raise UserError(
            f"{prev_dir}/metrics.json is round {prev_metrics['round']}, but round {k} needs "
            f"round {k - 1}; pass the previous round's folder as --prev"
        )
    rate = spec["prune"]["rate"]
    prev_rate = prev_metrics.get("prune_rate") if method is not None and k > 1 else None
    if prev_rate is not None and not math.isclose(float(prev_rate), rate, rel_tol=1e-9):
        raise UserError(
            f"{prev_dir}/metrics.json was pruned at rate {prev_rate}, but {method} prunes at "
            f"rate {rate}; pass round {k - 1} of {method} as --prev"
        )
    device = _setup(spec, seed)
    model = build(model_name, spec)
    prev_state = load_state(prev_dir / "checkpoint.pt")
    _load_into(model, prev_state, str(prev_dir / "checkpoint.pt"))
    if k == 1:
        prev_mask = full_mask(model)
    else:
        prev_mask = load_mask(prev_dir / "mask.pt")
    mask = magnitude_prune(prev_state, prev_mask, rate, criterion)
    start = _rewound_start(spec["prune"]["rewind"], prev_state, dense_dir, mask)
    _load_into(model, start, "the rewound weights")
    return _train_and_write(
        faces_dir=faces_dir,
        out_dir=out_dir,
        model_name=model_name,
        seed=seed,
        spec=spec,
        device=device,
        model=model,
        mask=mask,
        meta={
            "method": method or f"imp-{criterion}",
            "criterion": criterion,
            "round": k,
            "target_sparsity": imp_sparsity(rate, k),
            "prune_rate": rate,
        },
    )


def oneshot(
    faces_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    sparsity: float,
    criterion: str,
    spec: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """Prune the trained dense network once, straight to ``sparsity``, rewind and retrain."""
    from deepfake_lth.pruning import full_mask, load_state, prune_to_sparsity

    spec = parse_spec(spec)
    if not 0 < sparsity < 1:
        raise UserError(f"one-shot sparsity must be in (0, 1), got {sparsity!r}")
    dense_dir = Path(dense_dir)
    device = _setup(spec, seed)
    model = build(model_name, spec)
    dense_state = load_state(dense_dir / "checkpoint.pt")
    _load_into(model, dense_state, str(dense_dir / "checkpoint.pt"))
    mask = prune_to_sparsity(dense_state, sparsity, criterion, mask=full_mask(model))
    start = _rewound_start(spec["prune"]["rewind"], dense_state, dense_dir, mask)
    _load_into(model, start, "the rewound weights")
    return _train_and_write(
        faces_dir=faces_dir,
        out_dir=out_dir,
        model_name=model_name,
        seed=seed,
        spec=spec,
        device=device,
        model=model,
        mask=mask,
        meta={
            "method": f"oneshot-{criterion}",
            "criterion": criterion,
            # the IMP round this level matches (as plan.Level does); one pruning step
            "round": _nearest_round(spec["prune"]["rate"], sparsity),
            "target_sparsity": float(sparsity),
        },
    )


def control(
    faces_dir: str | Path,
    imp_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    name: str,
    spec: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """Control baselines at an IMP round's sparsity: ``reinit`` (the IMP mask, fresh random
    weights drawn with seed + 1000) and ``random-mask`` (a random mask with the IMP mask's
    per-layer counts, trained from θ0)."""
    from deepfake_lth.pruning import (
        fresh_init,
        load_mask,
        load_state,
        mask_state,
        random_mask_like,
    )

    spec = parse_spec(spec)
    if name not in CONTROLS:
        raise UserError(f"control {name!r} is not one of {', '.join(CONTROLS)}")
    imp_dir, dense_dir = Path(imp_dir), Path(dense_dir)
    imp_metrics = read_metrics(imp_dir)
    imp_mask = load_mask(imp_dir / "mask.pt")
    device = _setup(spec, seed)
    model = build(model_name, spec)
    other_seed = seed + CONTROL_SEED_OFFSET
    if name == "reinit":
        mask = imp_mask
        # fresh weights from the architecture's own initializer (no pretrained file)
        start = fresh_init(lambda: build(model_name, spec), other_seed)
        rewind = "reinit"
    else:
        mask = random_mask_like(imp_mask, other_seed)
        start = load_state(dense_dir / "init.pt")
        rewind = "init"
    _load_into(model, mask_state(start, mask), f"the {name} start weights")
    return _train_and_write(
        faces_dir=faces_dir,
        out_dir=out_dir,
        model_name=model_name,
        seed=seed,
        spec=spec,
        device=device,
        model=model,
        mask=mask,
        meta={
            "method": f"control-{name}",
            "criterion": imp_metrics.get("criterion"),
            "round": imp_metrics.get("round"),
            "target_sparsity": imp_metrics.get("target_sparsity"),
            "rewind": rewind,
            "control_of": imp_metrics.get("method"),
            "control_seed": other_seed,
        },
    )


def transfer(
    faces_dir: str | Path,
    ticket_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    weights: str = "trained",
    spec: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """Train dataset A's ticket (``ticket_dir``: mask and weights) on dataset B
    (``faces_dir``) with the mask fixed. ``weights``: ``trained`` (θ2 = m1 ⊙ θ1, A's ticket
    checkpoint) or ``init`` (A's θ0 from ``dense_dir`` under A's mask)."""
    from deepfake_lth.pruning import load_mask, load_state, mask_state

    spec = parse_spec(spec)
    if weights not in ("trained", "init"):
        raise UserError(f"transfer.weights: {weights!r} is not one of trained, init")
    ticket_dir, dense_dir = Path(ticket_dir), Path(dense_dir)
    source = read_metrics(ticket_dir)
    mask = load_mask(ticket_dir / "mask.pt")
    device = _setup(spec, seed)
    model = build(model_name, spec)
    if weights == "trained":
        start = load_state(ticket_dir / "checkpoint.pt")
    else:
        start = load_state(dense_dir / "init.pt")
    _load_into(model, mask_state(start, mask), f"the {weights} weights of {ticket_dir}")
    return _train_and_write(
        faces_dir=faces_dir,
        out_dir=out_dir,
        model_name=model_name,
        seed=seed,
        spec=spec,
        device=device,
        model=model,
        mask=mask,
        meta={
            "method": source.get("method"),
            "criterion": source.get("criterion"),
            "round": source.get("round"),
            "target_sparsity": source.get("sparsity"),
            "source_dataset": source.get("dataset"),
            "source_test_acc": source.get("test_acc"),
            "ticket": str(ticket_dir),
            "weights": weights,
            "rewind": "none" if weights == "trained" else "init",
        },
    )


def transfer_dense(
    dense_dir: str | Path, out_dir: str | Path, source_dataset: str | None = None
) -> dict[str, Any]:
    """The dense baseline of a transfer pair: dataset B's own dense metrics (and checkpoint),
    copied with method ``dense`` and the source dataset noted."""
    dense_dir, out_dir = Path(dense_dir), Path(out_dir)
    metrics = read_metrics(dense_dir)
    metrics.update({"method": "dense", "source_dataset": source_dataset, "weights": None})
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = dense_dir / "checkpoint.pt"
    if ckpt.is_file():  # a copy, not a link: a fresh mtime keeps Snakemake's view consistent
        from deepfake_lth.files import atomic_write

        with ckpt.open("rb") as src:
            atomic_write(out_dir / "checkpoint.pt", lambda fh: shutil.copyfileobj(src, fh),
                         binary=True)
    write_metrics(out_dir / "metrics.json", metrics)
    return metrics


# --------------------------------------------------------------------------- step size


def rate_tag(rate: float) -> str:
    """A pruning rate as written in folder names: 0.05 → ``0.05``, 0.1 → ``0.1``."""
    return f"{float(rate):g}"


def step_size_method(criterion: str, rate: float) -> str:
    """Name (and folder) of IMP at another step size: ``imp-global-rate0.05``. The config's
    own ``prune.rate`` keeps the plain name ``imp-{criterion}``."""
    return f"imp-{criterion}-rate{rate_tag(rate)}"


def parse_step_size_method(name: str) -> tuple[str, float] | None:
    """``imp-global-rate0.05`` → (``global``, 0.05); None for any other method name."""
    m = STEP_SIZE_RE.fullmatch(str(name))
    return (m.group(1), float(m.group(2))) if m else None


def rounds_to_reach(rate: float, sparsity: float) -> int:
    """IMP rounds at ``rate`` needed to reach ``sparsity``: ceil(log(1 − s) / log(1 − rate))."""
    if not 0 < rate < 1 or not 0 <= sparsity < 1:
        raise UserError(
            f"rounds_to_reach: rate {rate!r} and sparsity {sparsity!r} must be in (0, 1)"
        )
    if sparsity == 0:
        return 0
    # the tolerance keeps 1 − 0.8^8 at exactly 8 rounds of 0.2 despite rounding
    return max(1, math.ceil(math.log1p(-sparsity) / math.log1p(-rate) - 1e-9))


def imp_round_at_rate(
    faces_dir: str | Path,
    prev_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    k: int,
    criterion: str,
    rate: float,
    spec: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """IMP round ``k`` at step size ``rate`` (overriding the spec's ``prune.rate``), written as
    method ``imp-{criterion}-rate{rate}``; ``prev_dir`` is round k−1 of the same method."""
    spec = parse_spec(spec)
    if not isinstance(rate, (int, float)) or not 0 < rate < 1:
        raise UserError(f"--rate must be in (0, 1), got {rate!r}")
    spec["prune"]["rate"] = float(rate)
    method = step_size_method(criterion, rate)
    return _imp_round(
        faces_dir, prev_dir, dense_dir, out_dir, model_name, seed, k, criterion, spec, method
    )


# --------------------------------------------------------------------------- pruning at init


def score_batches(split, n_batches: int, batch_size: int, input_size: int, device, seed: int):
    """``n_batches`` training batches (x, y) for pruning at initialization: a seeded random
    draw of the split, without augmentation, on ``device``."""
    import numpy as np
    import torch

    from deepfake_lth.data import to_tensor

    if len(split) == 0:
        raise UserError("the train split is empty: pruning at initialization scores on it")
    if n_batches < 1 or batch_size < 1:
        raise UserError(f"score batches: need ≥ 1 batch of ≥ 1 face, got {n_batches}×{batch_size}")
    order = np.random.default_rng(seed).permutation(len(split))[: n_batches * batch_size]
    out = []
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start : start + batch_size])
        x = to_tensor(split.images[idx], input_size, device)
        y = torch.as_tensor(np.asarray(split.labels)[idx], dtype=torch.float32, device=device)
        out.append((x, y))
    return out


def prune_at_init(
    faces_dir: str | Path,
    dense_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    seed: int,
    method: str,
    sparsity: float,
    spec: Mapping[str, Any] | str | None = None,
    *,
    batches: int = PAI_BATCHES,
    temperature: float = GRASP_TEMPERATURE,
) -> dict[str, Any]:
    """Pruning at initialization: score θ0 (``dense_dir/init.pt``) with SNIP or GraSP on
    ``batches`` training batches, keep the mask of ``sparsity``, train m ⊙ θ0 once."""
    from deepfake_lth.data import load_split
    from deepfake_lth.pruning import (
        collapsed_layers,
        grasp_mask,
        load_state,
        mask_state,
        snip_mask,
    )

    spec = parse_spec(spec)
    if method not in PAI_METHODS:
        raise UserError(
            f"pruning at initialization: {method!r} is not one of {', '.join(PAI_METHODS)}"
        )
    if not 0 < sparsity < 1:
        raise UserError(f"{method} sparsity must be in (0, 1), got {sparsity!r}")
    dense_dir = Path(dense_dir)
    device = _setup(spec, seed)
    model = build(model_name, spec)
    init = load_state(dense_dir / "init.pt")
    _load_into(model, init, str(dense_dir / "init.pt"))
    model.to(device)
    train_split = load_split(faces_dir, "train")
    data = score_batches(
        train_split,
        int(batches),
        int(spec["train"]["batch_size"]),
        _input_size(model_name, spec),
        device,
        seed,
    )
    if method == "snip":
        mask = snip_mask(model, data, sparsity)
    else:
        mask = grasp_mask(model, data, sparsity, temperature=temperature)
    del data
    collapsed = collapsed_layers(mask)
    if collapsed:
        log.warning("%s removed every weight of %s", method, ", ".join(collapsed))
    _load_into(model, mask_state(init, mask), "θ0 under the mask")
    meta: dict[str, Any] = {
        "method": method,
        "criterion": "global",
        # the IMP round this level matches (as plan.Level does); one pruning step, at θ0
        "round": _nearest_round(spec["prune"]["rate"], sparsity),
        "target_sparsity": float(sparsity),
        "rewind": "init",
        "score_batches": int(batches),
        "score_samples": min(int(batches) * int(spec["train"]["batch_size"]), len(train_split)),
        "collapsed_layers": collapsed,
    }
    if method == "grasp":
        meta["temperature"] = float(temperature)
    return _train_and_write(
        faces_dir=faces_dir,
        out_dir=out_dir,
        model_name=model_name,
        seed=seed,
        spec=spec,
        device=device,
        model=model,
        mask=mask,
        meta=meta,
    )


# --------------------------------------------------------------------------- CLI


def _common(parser: argparse.ArgumentParser, faces_required: bool = True) -> None:
    parser.add_argument(
        "--faces", required=faces_required, help="packed dataset folder (results/{dataset}/faces)"
    )
    parser.add_argument("--out", required=True, help="output folder of this stage")
    parser.add_argument("--model", required=True, help="registry model name, e.g. mesonet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spec", default="{}", help="JSON config slice (or @file.json)")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)


def run_train(args: argparse.Namespace) -> int:
    train_dense(args.faces, args.out, args.model, args.seed, args.spec)
    return 0


def add_imp_round_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--prev", required=True, help="folder of round k−1 (dense/ for k = 1)")
    parser.add_argument("--dense", required=True, help="dense/ folder (θ0 for rewinding)")
    parser.add_argument("--round", type=int, required=True, help="round k (≥ 1)")
    parser.add_argument("--criterion", required=True, choices=["global", "local"])
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="step size: prune this fraction per round, written as method "
        "imp-{criterion}-rate{rate} (default: the spec's prune.rate, method imp-{criterion})",
    )


def run_imp_round(args: argparse.Namespace) -> int:
    if getattr(args, "rate", None) is not None:
        imp_round_at_rate(
            args.faces,
            args.prev,
            args.dense,
            args.out,
            args.model,
            args.seed,
            args.round,
            args.criterion,
            args.rate,
            args.spec,
        )
        return 0
    imp_round(
        args.faces,
        args.prev,
        args.dense,
        args.out,
        args.model,
        args.seed,
        args.round,
        args.criterion,
        args.spec,
    )
    return 0


def add_oneshot_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--dense", required=True, help="dense/ folder")
    parser.add_argument("--sparsity", type=float, required=True, help="target, e.g. 0.59")
    parser.add_argument("--criterion", required=True, choices=["global", "local"])


def run_oneshot(args: argparse.Namespace) -> int:
    oneshot(
        args.faces,
        args.dense,
        args.out,
        args.model,
        args.seed,
        args.sparsity,
        args.criterion,
        args.spec,
    )
    return 0


def add_control_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--imp", required=True, help="the IMP round folder controlled for")
    parser.add_argument("--dense", required=True, help="dense/ folder (θ0)")
    parser.add_argument("--name", required=True, choices=list(CONTROLS))


def run_control(args: argparse.Namespace) -> int:
    control(args.faces, args.imp, args.dense, args.out, args.model, args.seed, args.name, args.spec)
    return 0


def add_transfer_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, faces_required=False)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--ticket", help="dataset A's ticket folder (mask.pt, checkpoint.pt)")
    group.add_argument(
        "--baseline",
        help="dataset B's own dense/ folder: copy its metrics as the transfer's dense baseline",
    )
    parser.add_argument("--dense", help="dataset A's dense/ folder (θ0, for --weights init)")
    parser.add_argument("--weights", default="trained", choices=["trained", "init"])
    parser.add_argument("--source-dataset", help="dataset A's name (for --baseline)")


def run_transfer(args: argparse.Namespace) -> int:
    if args.baseline:
        transfer_dense(args.baseline, args.out, args.source_dataset)
        return 0
    if not args.faces:
        raise UserError("transfer --ticket needs --faces (dataset B's packed faces folder)")
    if args.weights == "init" and not args.dense:
        raise UserError("transfer --weights init needs --dense (dataset A's dense/ folder)")
    transfer(
        args.faces,
        args.ticket,
        args.dense or "",
        args.out,
        args.model,
        args.seed,
        args.weights,
        args.spec,
    )
    return 0


def add_prune_init_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--dense", required=True, help="dense/ folder (θ0 = init.pt)")
    parser.add_argument("--method", required=True, choices=list(PAI_METHODS))
    parser.add_argument("--sparsity", type=float, required=True, help="target, e.g. 0.59")
    parser.add_argument(
        "--batches", type=int, default=PAI_BATCHES, help="training batches the scores use"
    )
    parser.add_argument(
        "--temperature", type=float, default=GRASP_TEMPERATURE, help="GraSP temperature"
    )


def run_prune_init(args: argparse.Namespace) -> int:
    prune_at_init(
        args.faces,
        args.dense,
        args.out,
        args.model,
        args.seed,
        args.method,
        args.sparsity,
        args.spec,
        batches=args.batches,
        temperature=args.temperature,
    )
    return 0
