"""Zero-shot generalisation: a trained network (dense, an IMP round, one-shot, a control, ...)
scored, without training, on test sets it has never seen.

``generalisation: [{from: A, to: [B, C], manipulations: true}]`` scores every planned run of
dataset A (and every ticket transferred to A and trained on it) on the test split of B and of C; with ``manipulations`` also on each manipulation of
A's, B's and C's test splits on its own (its fakes and every real face of that split: the
cross-manipulation protocol of FaceForensics++, with ``datasets.A.train_manipulations`` the
leave-one-manipulation-out one). One job per dataset × model × seed reads each test split once
and predicts it once per run folder (a Python process with torch costs seconds of CPU, scoring
a run on the demo's test splits a fraction of one: a job per run folder would add about 20 % to
the demo); a manipulation's scores are a subset of its split's predictions. The job also writes
one CSV of every run × test set, ``results/generalisation/{dataset}/{model}/seed{seed}.csv``.

Each test set gets a folder under the run folder, ``cross/{dataset}/`` (the whole test split)
or ``cross/{dataset}/{manipulation}/``, with ``metrics.json`` (the scores of
:func:`~deepfake_lth.training.scoring.split_metrics`, and the accuracy of faces and videos at
the thresholds chosen on A's validation split, applied unchanged: ``val_threshold`` of the
run's metrics.json to faces, ``val_video_threshold`` (chosen on validation video means) to a
video's mean p(fake)) and ``predictions.csv`` (row, video_id, label, prob, as the run's).

The planning functions import neither torch nor pandas: the Snakefile reads them.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.execution import add_execution_arguments, apply_execution
from deepfake_lth.core.files import read_metrics, write_csv, write_metrics
from deepfake_lth.stages import methods

log = logging.getLogger(__name__)

CROSS = "cross"  # the folder of a run's zero-shot evaluations
# what a cross metrics.json takes from its run's metrics.json
RUN_KEYS = ("model", "seed", "method", "criterion", "round", "sparsity", "target_sparsity",
            "val_threshold", "val_video_threshold")


# --------------------------------------------------------------------------- planning


def targets(config: Mapping[str, Any], dataset: str) -> list[str]:
    """The datasets whose test split the runs of ``dataset`` are scored on (config order)."""
    out: list[str] = []
    for entry in config.get("generalisation", []):
        if entry["from"] == dataset:
            out += [t for t in entry.get("to", []) if t not in out]
    return out


def by_manipulation(config: Mapping[str, Any], dataset: str) -> bool:
    """Whether the runs of ``dataset`` are also scored per manipulation."""
    return any(e["from"] == dataset and e.get("manipulations", False)
               for e in config.get("generalisation", []))


def cross_levels(config: Mapping[str, Any], dataset: str, model: str,
                 seed: int) -> list[methods.Level]:
    """The run folders one generalise job scores: every planned run of ``dataset`` (dense
    first), then the transferred tickets trained on it (``transfer.pairs`` with ``to`` it;
    their ``dense`` folder is a copy of the dense run's metrics and is left out; the source's
    dense network fine-tuned on it is scored like them)."""
    out = methods.planned_levels(config, dataset, model, seed)
    for pair in config.get("transfer", {}).get("pairs", []):
        if pair["to"] != dataset:
            continue
        base = (Path(config["results"]) / "transfer" / f"{pair['from']}-to-{dataset}" / model
                / f"seed{seed}")
        for name in methods.transfer_methods(config)[1:]:
            sparsity = methods.parse_transfer_method(config, name)[1]
            out.append(methods.Level(name, sparsity, base / name, 0))
    return out


def sources(config: Mapping[str, Any]) -> list[str]:
    """The datasets whose runs are scored zero-shot (config order)."""
    return list(dict.fromkeys(e["from"] for e in config.get("generalisation", [])))


def faces_needed(config: Mapping[str, Any], dataset: str) -> list[str]:
    """The datasets whose packed faces a run of ``dataset`` is scored on."""
    own = [dataset] if by_manipulation(config, dataset) else []
    return own + targets(config, dataset)


def folder_name(manipulation: str) -> str:
    """A manipulation's name as a folder name (characters other than A-Z a-z 0-9 _ . - → _)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", manipulation) or "_"


# --------------------------------------------------------------------------- test sets


def test_sets(manifest, dataset: str, whole: bool, manipulations: bool) -> list[tuple[str, str, Any]]:
    """``(folder, manipulation, positions)`` of the test sets of one packed dataset: its whole
    test split (``whole``) and, with ``manipulations`` and at least two of them in the split,
    each manipulation's fakes with every real face. Positions index the test split."""
    import numpy as np

    test = manifest[manifest["split"] == "test"]
    labels = test["label"].to_numpy()
    methods = test["manipulation"].fillna("").astype(str).to_numpy()
    out = []
    if whole:
        out.append((dataset, "", np.arange(len(test))))
    names = sorted(set(methods[labels == 1]) - {""})
    if manipulations and len(names) >= 2:
        for m in names:
            out.append((f"{dataset}/{folder_name(m)}", m,
                        np.flatnonzero((labels == 0) | (methods == m))))
    elif manipulations and not whole:
        log.warning("%s: its test split holds %s manipulation(s) %s; nothing to score per "
                    "manipulation", dataset, len(names), names)
    return out


def thresholds_of(run: Mapping[str, Any]) -> tuple[float, float]:
    """A run's decision thresholds from its metrics.json: on faces (``val_threshold``) and on
    a video's mean p(fake) (``val_video_threshold``, chosen on validation video means); 0.5
    where the run has none, the face threshold for videos where it predates the video one."""
    face = run.get("val_threshold")
    face = float(face) if face is not None else 0.5
    video = run.get("val_video_threshold")
    return face, float(video) if video is not None else face


def score(labels, probs, video_ids, threshold: float,
          video_threshold: float | None = None) -> dict[str, Any]:
    """split_metrics of one test set, with the accuracy of faces at ``threshold`` and of
    videos (their mean p(fake)) at ``video_threshold`` (``threshold`` when None)."""
    import numpy as np

    from deepfake_lth.training.scoring import split_metrics, video_scores

    labels, probs = np.asarray(labels, np.float64), np.asarray(probs, np.float64)
    out = split_metrics(labels, probs, video_ids)
    if len(labels):
        _, vprob, vlabel = video_scores(probs, labels, video_ids)
        out["acc_val_threshold"] = float(np.mean((probs > threshold) == (labels > 0.5)))
        at = threshold if video_threshold is None else video_threshold
        out["video_acc_val_threshold"] = float(np.mean((vprob > at) == (vlabel > 0.5)))
        out["videos"] = len(vlabel)
        out["real_videos"], out["fake_videos"] = int((vlabel == 0).sum()), int(vlabel.sum())
    out["samples"] = len(labels)
    return out


# --------------------------------------------------------------------------- the stage


class _TestSplits:
    """The test splits of the target datasets, each read (lazily) and described once."""

    def __init__(self, faces: Mapping[str, str | Path], source: str, manipulations: bool):
        from deepfake_lth.data.store import load_manifest, load_splits

        self.sets, self.splits, self.trained_on = {}, {}, {}
        for dataset, folder in faces.items():
            summary = Path(folder) / "summary.json"
            if dataset == source and summary.is_file():  # the manipulations trained on
                self.trained_on = set(json.loads(summary.read_text())
                                      .get("train_manipulations") or [])
            sets = test_sets(load_manifest(folder), dataset, whole=dataset != source,
                             manipulations=manipulations)
            if sets:
                (self.splits[dataset],) = load_splits(folder, ("test",))
                self.sets[dataset] = sets
                if len(self.splits[dataset]) == 0:
                    raise UserError(f"{folder}/manifest.csv: the test split of {dataset} is "
                                    "empty; it cannot be scored")


def score_run(run_dir: Path, model_name: str, tests: _TestSplits, source: str,
              spec, device) -> list[dict[str, Any]]:
    """One run's checkpoint scored on every test set; writes ``run_dir/cross/{test set}/``."""
    import numpy as np
    import pandas as pd

    from deepfake_lth.stages.lowrank import load_network
    from deepfake_lth.stages.spec import input_size_of
    from deepfake_lth.training.evaluate import evaluate

    run = read_metrics(run_dir)
    threshold, video_threshold = thresholds_of(run)
    model = load_network(run_dir, model_name, spec)
    input_size = input_size_of(model_name, spec)
    batch = spec.train.eval_batch_size
    written = []
    for dataset, sets in tests.sets.items():
        split = tests.splits[dataset]
        start = time.perf_counter()
        probs = evaluate(model, split, input_size, device, batch, spec.train.amp)["probs"]
        seconds = time.perf_counter() - start
        for name, manipulation, pos in sets:
            labels, vids = np.asarray(split.labels)[pos], np.asarray(split.video_ids)[pos]
            metrics = {"dataset": run.get("dataset", source), **{k: run.get(k) for k in RUN_KEYS},
                       "test_set": name, "target": dataset, "manipulation": manipulation,
                       "zero_shot": dataset != source,
                       "held_out": bool(dataset == source and manipulation
                                        and tests.trained_on
                                        and manipulation not in tests.trained_on),
                       **score(labels, probs[pos], vids, threshold, video_threshold),
                       "seconds": seconds, "device": str(device), "run": str(run_dir)}
            folder_out = run_dir / CROSS / name
            write_csv(pd.DataFrame({"row": np.asarray(split.rows)[pos], "video_id": vids,
                                    "label": labels, "prob": probs[pos]}),
                      folder_out / "predictions.csv")
            write_metrics(folder_out / "metrics.json", metrics)
            log.info("%s on %s: auc %.4f video auc %.4f eer %.4f acc@val %.4f", run_dir, name,
                     metrics["auc"], metrics["video_auc"], metrics["eer"],
                     metrics.get("acc_val_threshold", float("nan")))
            written.append(metrics)
    return written


def generalise(runs, model_name: str, faces: Mapping[str, str | Path], source: str,
               manipulations: bool, out_csv: str | Path | None,
               spec) -> list[dict[str, Any]]:
    """Score the checkpoints of ``runs`` (run folders of one model) on the test sets of
    ``faces`` ({dataset: faces folder}; ``source``'s own only per manipulation): each run
    folder gets ``cross/{test set}/``; ``out_csv`` (when given) one row per run × test set."""
    import shutil

    import pandas as pd

    from deepfake_lth.stages.runner import setup
    from deepfake_lth.stages.spec import parse_spec

    spec = parse_spec(spec)
    device = setup(spec, 0)
    tests = _TestSplits(faces, source, manipulations)
    rows = []
    for run_dir in map(Path, runs):
        shutil.rmtree(run_dir / CROSS, ignore_errors=True)  # no test set of an earlier config
        rows += score_run(run_dir, model_name, tests, source, spec, device)
    if out_csv is not None:
        keep = ("history", "train", "layer_sparsity")
        table = pd.DataFrame([{k: v for k, v in r.items() if k not in keep} for r in rows])
        write_csv(table, out_csv)
    return rows


def read_cross(run_dir: str | Path) -> list[dict[str, Any]]:
    """The cross metrics.json files of a run folder (none: an empty list)."""
    base = Path(run_dir) / CROSS
    out = []
    for path in sorted(base.glob("*/metrics.json")) + sorted(base.glob("*/*/metrics.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable (%s); left out", path, exc)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", required=True,
                        help="run folders of one model (checkpoint.pt, metrics.json)")
    parser.add_argument("--model", required=True, help="registry model name")
    parser.add_argument("--source", required=True, help="the dataset the run was trained on")
    parser.add_argument("--faces", nargs="+", default=[], metavar="DATASET=FOLDER",
                        help="packed datasets to score on (results/{dataset}/faces)")
    parser.add_argument("--manipulations", action="store_true",
                        help="also score each manipulation of each test split on its own")
    parser.add_argument("--spec", default="{}", help="the run's stage spec (JSON)")
    parser.add_argument("--out", default=None,
                        help="CSV of every run × test set (each run folder gets its cross/)")
    add_execution_arguments(parser)


def job_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The config slice a generalise job computes from (the rule's ``--spec``): the model's
    input size and whether it scores in mixed precision."""
    return {"input_size": config["models"][model].get("input_size"),
            "train": {"amp": config["train"]["amp"]}}


def run(args: argparse.Namespace) -> int:
    from deepfake_lth.core.schema import read_spec
    from deepfake_lth.stages.spec import parse_spec

    faces = {}
    for item in args.faces:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise UserError(f"--faces {item!r}: expected DATASET=FOLDER, e.g. "
                            "celebdf=results/celebdf/faces")
        faces[name] = folder
    spec = parse_spec(apply_execution(read_spec(args.spec), args))
    generalise(args.runs, args.model, faces, args.source, args.manipulations, args.out, spec)
    return 0
