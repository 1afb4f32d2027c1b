"""Robustness: trained networks (the dense one and the tickets of ``robustness.methods``)
scored on their own test split under perturbations (:mod:`deepfake_lth.data.perturbations`:
DeeperForensics-1.0's seven distortions, JPEG, down-up resizing) at several levels.

``robustness: {perturbations: [...], levels: [...], methods: [...]}`` scores, for every
dataset, model (``robustness.models``; null: all) and seed, the dense network and every level
of each listed method. One job per dataset × model × seed, as ``generalise``: it perturbs
each test face once per perturbation × level (into a temporary file, so memory does not grow
with the split) and scores every run folder on those faces; the job's networks are built
once and stay in memory (the dense network and one per level: for Xception, ~90 MB each). The perturbed faces depend on
``robustness.seed`` and the face's row only, so every network, training seed and rerun sees
the same ones, and a perturbation is applied to real and fake faces alike.

Each run folder gets ``robust/{perturbation}/{level}/`` with ``metrics.json`` (the scores of
:func:`deepfake_lth.analysis.generalisation.score`, those of ``cross/``: frame and video
AUC, EER, AP, accuracy at 0.5 and at the run's validation threshold; and the drop of frame
and video AUC from the run's own clean test scores) and ``predictions.csv`` (row, video_id,
label, prob). The job also writes one CSV of every run × perturbation × level,
``results/robustness/{dataset}/{model}/seed{seed}.csv``.

The planning functions import neither torch nor pandas: the Snakefile reads them.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepfake_lth.analysis.generalisation import RUN_KEYS, score, thresholds_of
from deepfake_lth.core.errors import UserError
from deepfake_lth.core.execution import add_execution_arguments, apply_execution
from deepfake_lth.core.files import read_metrics, write_csv, write_metrics
from deepfake_lth.data import perturbations
from deepfake_lth.pruning import plan
from deepfake_lth.stages import methods

log = logging.getLogger(__name__)

ROBUST = "robust"  # the folder of a run's perturbed evaluations
CHUNK = 512  # faces perturbed at a time (whole videos)


# --------------------------------------------------------------------------- planning


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config's ``robustness`` section (empty: off)."""
    return dict(config.get("robustness") or {})


def covered_methods(config: Mapping[str, Any], model: str) -> list[str]:
    """The methods of ``robustness.methods`` the config runs for ``model``."""
    s = settings(config)
    models = s.get("models")
    if models is not None and model not in models:
        return []
    planned = set(methods.planned_methods(config, model))
    return [m for m in s.get("methods") or []
            if m in planned and methods.family_of(m).levels(config, m)]


def robust_levels(config: Mapping[str, Any], dataset: str, model: str,
                  seed: int) -> list[methods.Level]:
    """The run folders one robustness job scores: the dense network, then every level of each
    covered method (none: no job)."""
    out: list[methods.Level] = []
    for method in covered_methods(config, model):
        levels = methods.method_levels(config, dataset, model, seed, method)
        out += levels[1:] if out else levels
    return out


def conditions(config: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(perturbation, level) pairs a job scores, in config order."""
    s = settings(config)
    return [(p, int(level)) for p in s.get("perturbations") or [] for level in s.get("levels") or []]


def jobs(config: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(dataset, model, seed) of every robustness job the config plans."""
    if not conditions(config):
        return []
    return [(d, m, s) for d in plan.trained_datasets(config) for m in config["models"]
            for s in plan.seeds_of(config, m) if robust_levels(config, d, m, s)]


# --------------------------------------------------------------------------- the stage


def perturbed_split(split, name: str, level: int, seed: int, folder: Path):
    """``split`` (a FaceSplit) under ``name`` at ``level``: its faces written, a few videos
    at a time, to ``folder/{name}-{level}.npy`` and read back lazily as a FaceSplit of the
    same rows, labels and videos."""
    import numpy as np

    from deepfake_lth.data.store import FaceImages, FaceSplit

    path = folder / f"{name}-{level}.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=split.images.shape)
    for positions in video_chunks(split.video_ids, CHUNK):
        out[positions] = perturbations.perturb(name, level, split.images[positions],
                                               split.rows[positions],
                                               split.video_ids[positions], seed)
    out.flush()
    del out
    images = np.load(path, mmap_mode="r")
    return FaceSplit(FaceImages(images, np.arange(len(images))), split.labels,
                     split.video_ids, split.rows)


def video_chunks(video_ids, size: int):
    """Position arrays of whole videos, about ``size`` faces each (a video is never split)."""
    import numpy as np

    ids = np.asarray(video_ids)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    chunk: list = []
    for v in np.argsort(first, kind="stable"):
        chunk.append(np.flatnonzero(inverse == v))
        if sum(map(len, chunk)) >= size:
            yield np.concatenate(chunk)
            chunk = []
    if chunk:
        yield np.concatenate(chunk)


class _Run:
    """A run folder's network (built once) and what its metrics.json says."""

    def __init__(self, run_dir: Path, model_name: str, spec: Mapping[str, Any], device):
        from deepfake_lth.stages.lowrank import load_network

        self.dir = Path(run_dir)
        self.metrics = read_metrics(self.dir)
        self.model = load_network(self.dir, model_name, spec)
        self.model.to(device).eval()
        self.threshold, self.video_threshold = thresholds_of(self.metrics)


def score_condition(run: _Run, split, name: str, level: int, source: str, input_size: int,
                    spec: Mapping[str, Any], device) -> dict[str, Any]:
    """One run scored on one perturbed split; writes ``robust/{name}/{level}/``."""
    import numpy as np
    import pandas as pd

    from deepfake_lth.training.evaluate import evaluate

    start = time.perf_counter()
    probs = evaluate(run.model, split, input_size, device, spec.train.eval_batch_size,
                     spec.train.amp)["probs"]
    p = perturbations.get(name)
    m = run.metrics
    metrics = {"dataset": m.get("dataset", source), **{k: m.get(k) for k in RUN_KEYS},
               "perturbation": name, "level": level, "parameter": p.parameter(level),
               "unit": p.unit, **score(split.labels, probs, split.video_ids, run.threshold,
                                   run.video_threshold)}
    for key, clean in (("auc", "test_auc"), ("video_auc", "video_auc")):
        base = m.get(clean)
        metrics[f"clean_{key}"] = base
        metrics[f"{key}_drop"] = None if base is None else float(base) - metrics[key]
    metrics |= {"seconds": time.perf_counter() - start, "device": str(device),
                "run": str(run.dir)}
    folder = run.dir / ROBUST / name / str(level)
    write_csv(pd.DataFrame({"row": np.asarray(split.rows), "video_id": split.video_ids,
                            "label": split.labels, "prob": probs}),
              folder / "predictions.csv")
    write_metrics(folder / "metrics.json", metrics)
    drop = metrics["auc_drop"]
    log.info("%s under %s %d: auc %.4f (drop %+.4f) video auc %.4f", run.dir, name, level,
             metrics["auc"], float("nan") if drop is None else drop, metrics["video_auc"])
    return metrics


def robustness(runs: Sequence[str | Path], model_name: str, faces: str | Path, source: str,
               pairs: Sequence[tuple[str, int]], seed: int, out_csv: str | Path | None,
               spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Score the checkpoints of ``runs`` (run folders of one model trained on ``source``) on
    the test split of ``faces`` under each (perturbation, level) of ``pairs``; each run folder
    gets ``robust/{perturbation}/{level}/``, ``out_csv`` (when given) one row per run × pair."""
    import shutil
    import tempfile

    import pandas as pd

    from deepfake_lth.data.store import load_split
    from deepfake_lth.stages.runner import setup
    from deepfake_lth.stages.spec import input_size_of, parse_spec

    for name, level in pairs:
        perturbations.check_level(name, level)
    spec = parse_spec(spec)
    device = setup(spec, 0)
    size = input_size_of(model_name, spec)
    split = load_split(faces, "test")
    if len(split) == 0:
        raise UserError(f"{Path(faces) / 'manifest.csv'}: the test split is empty; it cannot "
                        "be scored")
    loaded = []
    for run_dir in map(Path, runs):
        shutil.rmtree(run_dir / ROBUST, ignore_errors=True)  # no pair of an earlier config
        loaded.append(_Run(run_dir, model_name, spec, device))
    rows = []
    with tempfile.TemporaryDirectory(prefix="dlth-robust-") as tmp:
        for name, level in pairs:
            start = time.perf_counter()
            perturbed = perturbed_split(split, name, level, seed, Path(tmp))
            log.info("%s level %d: %d faces perturbed in %.1f s", name, level, len(split),
                     time.perf_counter() - start)
            rows += [score_condition(run, perturbed, name, level, source, size, spec, device)
                     for run in loaded]
            Path(perturbed.images.array.filename).unlink()
    if out_csv is not None:
        write_csv(pd.DataFrame(rows), out_csv)
    return rows


def read_robust(run_dir: str | Path) -> list[dict[str, Any]]:
    """The robust metrics.json files of a run folder (none: an empty list)."""
    out = []
    for path in sorted((Path(run_dir) / ROBUST).glob("*/*/metrics.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable (%s); left out", path, exc)
    return out


# --------------------------------------------------------------------------- the claim


def auc_contrast(labels, scorings: Sequence, weights: Sequence[float], how: str):
    """Σ wᵢ·AUC(scoringᵢ) of scorings of the same test units, with DeLong's standard error
    (DeLong et al. 1988): each unit's placement values (the share of the other class it
    outranks, ties one half) combined with the weights, SE² = var(fakes')/m + var(reals')/n.
    A :class:`~deepfake_lth.analysis.stats.Diff` of one seed; None with fewer than two units
    of a class."""
    from deepfake_lth.analysis.delong import delong_contrast

    return delong_contrast(labels, scorings, weights, how)


def drop_difference(table, labels, ticket: tuple[str, str], name: str, levels: Sequence[int]):
    """The dense network's AUC drop under perturbation ``name`` (mean over ``levels``) minus
    the ticket's, on one seed's units: ``table`` has one column per (method, level,
    condition) of unit p(fake), ``labels`` the units' labels in its order."""
    dense, cols = ("dense", "dense"), [f"{name}/{level}" for level in levels]
    k = len(cols)
    scorings = [table[(*ticket, "clean")], *(table[(*ticket, c)] for c in cols),
                table[(*dense, "clean")], *(table[(*dense, c)] for c in cols)]
    weights = [-1.0, *[1.0 / k] * k, 1.0, *[-1.0 / k] * k]
    return auc_contrast(labels, scorings, weights,
                        f"DeLong, paired by unit over {len(table)} test units")


def _claim_diffs(units, max_sparsity: float) -> tuple[dict, dict]:
    """Per (dataset, model, method, level, perturbation): the per-seed Diffs of dense drop −
    ticket drop, and the level's sparsity."""
    from deepfake_lth.analysis.stats import LEVEL_TOLERANCE

    found: dict[tuple, list] = {}
    sparsity: dict[tuple, float] = {}
    tickets = set(methods.with_role(units["method"].unique(), methods.TICKET))
    for (dataset, model, _seed), part in units.groupby(["dataset", "model", "seed"], sort=True):
        table = part.pivot_table(index="video_id", columns=["method", "level", "condition"],
                                 values="prob")
        table = table.dropna()
        labels = part.groupby("video_id")["label"].max().reindex(table.index)
        have = set(table.columns)
        keys = part[part["method"].isin(tickets)
                    & (part["sparsity"] <= max_sparsity + LEVEL_TOLERANCE)]
        for (method, level, s), _ in keys.groupby(["method", "level", "sparsity"], sort=True):
            by_name: dict[str, list[int]] = {}
            for c in sorted(set(part["condition"]) - {"clean"}):
                name, _, lv = c.partition("/")
                if {(method, level, c), ("dense", "dense", c)} <= have:
                    by_name.setdefault(name, []).append(int(lv))
            for name, levels in by_name.items():
                if {(method, level, "clean"), ("dense", "dense", "clean")} <= have:
                    d = drop_difference(table, labels, (method, level), name, sorted(levels))
                    if d is not None:
                        key = (dataset, model, method, level, name)
                        found.setdefault(key, []).append(d)
                        sparsity[key] = float(s)
    return found, sparsity


def claim_robustness(units, margin: float, max_sparsity: float):
    """IMP tickets keep the dense network's robustness: per dataset, model, IMP level up to
    ``max_sparsity`` and perturbation, the ticket's video AUC drop (clean − perturbed, the
    mean over the levels scored) exceeds the dense network's by less than ``margin``.
    ``units``: :func:`deepfake_lth.analysis.forgetting.unit_table` (per seed)."""
    from deepfake_lth.analysis.claims_beyond import seeds_auc_diff
    from deepfake_lth.analysis.evidence import make_claim
    from deepfake_lth.analysis.stats import non_inferiority

    found, sparsity = ({}, {}) if units is None or units.empty else \
        _claim_diffs(units, max_sparsity)
    comparisons = []
    for key in sorted(found, key=lambda k: (*k[:3], sparsity[k], k[4])):
        dataset, model, method, _, name = key
        diff = seeds_auc_diff(found[key])
        comparisons.append(non_inferiority(
            f"{model} on {dataset}, {methods.label(method)} at {100 * sparsity[key]:.0f} %, "
            f"{perturbations.get(name).label}: dense drop − ticket drop of video AUC = "
            f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] ({diff.how})", diff, margin))
    return make_claim(
        f"IMP tickets keep the dense network's robustness up to {100 * max_sparsity:.0f} % "
        f"sparsity: under each perturbation a ticket's AUC drops by less than {100 * margin:.0f} "
        "points more than the dense network's",
        "robustness (DeeperForensics-1.0; Diffenderfer et al. 2021)",
        "Per dataset, model, IMP level up to that sparsity and perturbation: the dense "
        "network's drop of video AUC (clean − perturbed, mean over the levels scored; a "
        "video's score is the mean p(fake) of its faces, an image set's unit the image) minus "
        "the ticket's, on the same perturbed faces; DeLong's interval, paired by unit within "
        "a seed, combined over "
        f"seeds; for the claim when the interval lies above −{margin:.2f} (δ = "
        f"{100 * margin:.0f} AUC points, robustness.margin), against it when it lies below.",
        comparisons,
        [] if comparisons else ["No IMP ticket and dense network scored under a perturbation "
                                "(robustness.methods)."])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", required=True,
                        help="run folders of one model (checkpoint.pt, metrics.json)")
    parser.add_argument("--model", required=True, help="registry model name")
    parser.add_argument("--source", required=True, help="the dataset the runs were trained on")
    parser.add_argument("--faces", required=True, help="its packed faces (results/{dataset}/faces)")
    parser.add_argument("--perturbations", nargs="+", required=True,
                        help=f"perturbations: {', '.join(perturbations.PERTURBATIONS)}")
    parser.add_argument("--levels", nargs="+", type=int, required=True,
                        help="levels of each (1 = mildest)")
    parser.add_argument("--perturbation-seed", type=int, default=0,
                        help="seed of the perturbations' random draws (noise, block positions)")
    parser.add_argument("--spec", default="{}", help="the runs' stage spec (JSON)")
    parser.add_argument("--out", default=None,
                        help="CSV of every run × perturbation × level (each run folder gets "
                        "its robust/)")
    add_execution_arguments(parser)


def job_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The config slice a robustness job computes from (the rule's ``--spec``): the model's
    input size and whether it scores in mixed precision."""
    return {"input_size": config["models"][model].get("input_size"),
            "train": {"amp": config["train"]["amp"]}}


def run(args: argparse.Namespace) -> int:
    from deepfake_lth.core.schema import read_spec
    from deepfake_lth.stages.spec import parse_spec

    pairs = [(p, level) for p in args.perturbations for level in args.levels]
    spec = parse_spec(apply_execution(read_spec(args.spec), args))
    robustness(args.runs, args.model, args.faces, args.source, pairs, args.perturbation_seed,
               args.out, spec)
    return 0
