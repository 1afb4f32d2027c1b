"""Reading the results tree: metrics, predictions, Grad-CAM files and per-run CSVs.

Only what the config plans is read (the method registry's levels per dataset, model and
seed; the configured transfer pairs, Grad-CAM, separability and latency methods); every run
folder left out is counted, with the reason, in a :class:`LeftOut` for the provenance.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_lth.pruning import plan
from deepfake_lth.stages import methods

log = logging.getLogger(__name__)


class LeftOut(Counter):
    """Run folders found under results/ but left out of the report: reason → count."""

    def sentences(self) -> list[str]:
        return [f"{n} {'run' if n == 1 else 'runs'}: {why}" for why, n in sorted(self.items())]


def planned(config: dict) -> bool:
    """Whether ``config`` is a validated study config (the registry can plan from it)."""
    return all(k in config for k in ("prune", "oneshot", "controls", "structured"))


def planned_folders(config: dict, dataset: str, model: str, seed: int) -> set[tuple[str, str]]:
    """(method, level folder) of every network the config plans for one dataset × model × seed."""
    return {(lv.method, "dense" if lv.method == "dense" else lv.path.name)
            for lv in methods.planned_levels(config, dataset, model, seed)}


def read_predictions(folder: Path) -> Any:
    """The run's predictions.csv as frames and correct frames per test video (threshold 0.5),
    or None (an older run folder without it)."""
    import pandas as pd

    path = folder / "predictions.csv"
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path, dtype={"video_id": str})
        correct = ((df["prob"] > 0.5).astype(int) == df["label"].astype(int)).astype(int)
        table = pd.DataFrame({"video_id": df["video_id"], "correct": correct,
                              "fake": df["label"].astype(int), "prob": df["prob"]})
        return table.groupby("video_id").agg(n=("correct", "size"), correct=("correct", "sum"),
                                            fake=("fake", "max"))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
    if not isinstance(data, dict):
        log.warning("skipping %s: not a JSON object", path)
        return None
    return data


def num(value: Any) -> float:
    """A metric as float; NaN for missing / null / non-numeric."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def seed_of(part: str) -> int | None:
    m = re.fullmatch(r"seed(\d+)", part)
    return int(m.group(1)) if m else None


def split_pair(name: str, config: dict) -> tuple[str, str] | None:
    for pair in (config.get("transfer") or {}).get("pairs", []) or []:
        if name == f"{pair['from']}-to-{pair['to']}":
            return pair["from"], pair["to"]
    if "-to-" in name:
        a, _, b = name.partition("-to-")
        return a, b
    return None


def metric_record(data: dict) -> dict[str, Any]:
    return {
        "sparsity": num(data.get("sparsity")),
        "params_total": num(data.get("params_total")),
        "params_nonzero": num(data.get("params_nonzero")),
        "test_acc": num(data.get("test_acc")),
        "test_auc": num(data.get("test_auc")),
        "video_acc": num(data.get("video_acc")),
        "video_auc": num(data.get("video_auc")),
        "test_eer": num(data.get("test_eer")),
        "video_eer": num(data.get("video_eer")),
        "test_ap": num(data.get("test_ap")),
        "video_ap": num(data.get("video_ap")),
        "val_acc": num(data.get("val_acc")),
        "epochs": num(data.get("epochs")),
        "cumulative_epochs": num(data.get("cumulative_epochs")),  # training since θ0
        "train_seconds": num(data.get("train_seconds")),
        "device": data.get("device"),
        "test_samples": num(data.get("test_samples")),
        "test_videos": num(data.get("test_videos")),
        "val_threshold": num(data.get("val_threshold")),
        "test_acc_val_threshold": num(data.get("test_acc_val_threshold")),
        "control_of": data.get("control_of"),
        "layer_sparsity": data.get("layer_sparsity") if isinstance(
            data.get("layer_sparsity"), dict) else None,
    }


def wanted(config: dict) -> tuple[set | None, set | None, dict | None]:
    """The datasets, models and each model's seeds a config names (None: any); the seeds
    of ``claims.winning_ticket`` are named for its dataset and model, keyed (dataset, model)."""
    datasets = set(config["datasets"]) if isinstance(config.get("datasets"), dict) else None
    models = set(config["models"]) if isinstance(config.get("models"), dict) else None
    seeds = None
    if isinstance(config.get("seeds"), list):
        own = {m: (spec or {}).get("seeds") for m, spec in (config.get("models") or {}).items()
               if isinstance(spec, dict)}
        seeds = {m: set(own.get(m) or config["seeds"]) for m in (models or [])}
        seeds[None] = set(config["seeds"])  # a model the config does not name
        if target := plan.verdict_target(config):
            seeds[target[:2]] = set(target[2])
    return datasets, models, seeds


def names_run(wanted_: tuple, dataset: str, model: str, seed: int) -> bool:
    """Whether a run folder of ``dataset`` × ``model`` × ``seed`` is one the config names
    (``wanted_``: what :func:`wanted` returned for it)."""
    datasets, models, seeds = wanted_
    if (datasets and dataset not in datasets) or (models and model not in models):
        return False
    return (seeds is None or seed in seeds.get(model, seeds[None])
            or seed in seeds.get((dataset, model), ()))


class _Collector:
    """What :func:`collect_metrics` keeps of the metrics.json files it walks: the runs and
    transfers the config names (and, validated, plans), the rest counted in ``left_out``."""

    def __init__(self, config: dict, left_out: LeftOut):
        self.config, self.left_out = config, left_out
        self.datasets, self.models, self.seeds = wanted(config)
        self.by_plan = planned(config)
        self.plans: dict[tuple[str, str, int], set] = {}
        self.transfer_names = set(methods.transfer_methods(config)) if self.by_plan else None
        self.pairs = ({f"{p['from']}-to-{p['to']}" for p in config["transfer"]["pairs"]}
                      if self.by_plan else None)
        self.runs: list[dict] = []
        self.transfers: list[dict] = []

    def model_seed_ok(self, model: str, seed: int, dataset: str = "") -> bool:
        return names_run((None, self.models, self.seeds), dataset, model, seed)

    def skip(self, reason: str) -> None:
        self.left_out[reason] += 1

    def transfer(self, parts: tuple[str, ...], path: Path) -> None:
        if len(parts) != 5 or seed_of(parts[3]) is None:
            log.debug("not a transfer path: %s", path)
            return
        pair = split_pair(parts[1], self.config)
        rec = {"pair": parts[1], "source": pair[0] if pair else "",
               "target": pair[1] if pair else "", "model": parts[2],
               "seed": seed_of(parts[3]), "method": parts[4]}
        if pair is None or (self.datasets and not set(pair) <= self.datasets) or (
                self.pairs is not None and parts[1] not in self.pairs):
            return self.skip("transfer pair not in the config")
        if not self.model_seed_ok(rec["model"], rec["seed"]):
            return self.skip("model or seed not in the config")
        if self.transfer_names is not None and rec["method"] not in self.transfer_names:
            return self.skip("transfer ticket not planned by the config")
        data = read_json(path)
        if data is not None:
            self.transfers.append(rec | metric_record(data)
                                  | {"per_video": read_predictions(path.parent)})

    def run(self, parts: tuple[str, ...], path: Path) -> None:
        if len(parts) == 4 and parts[3] == "dense":
            method, level = "dense", "dense"
        elif len(parts) == 5 and parts[3] != "dense":
            method, level = parts[3], parts[4]
        else:  # a run folder's own subfolders (int8/, cross/, robust/) are not runs
            log.debug("not a run path: %s", path)
            return
        seed = seed_of(parts[2])
        if seed is None:
            return
        rec = {"dataset": parts[0], "model": parts[1], "seed": seed, "method": method,
               "level": level}
        if self.datasets and rec["dataset"] not in self.datasets:
            return self.skip("dataset not in the config")
        if not self.model_seed_ok(rec["model"], seed, rec["dataset"]):
            return self.skip("model or seed not in the config")
        if self.by_plan:
            key = (rec["dataset"], rec["model"], seed)
            if key not in self.plans:
                self.plans[key] = planned_folders(self.config, *key)
            if (method, level) not in self.plans[key]:
                return self.skip("method or level the config does not plan")
        data = read_json(path)
        if data is not None:
            self.runs.append(rec | metric_record(data)
                             | {"per_video": read_predictions(path.parent)})


def collect_metrics(results_dir: str | Path, config: dict | None = None,
                    left_out: LeftOut | None = None):
    """Two DataFrames from the metrics.json files under ``results_dir``: the pruning runs
    (dataset, model, seed, method, level, …, ``per_video`` from predictions.csv) and the
    transfer runs (pair, source, target, …).

    With a ``config``, only what it names is read (stale results of an earlier config stay
    out); with a validated config, only the levels it plans. ``left_out`` counts the rest.
    """
    import pandas as pd

    results_dir = Path(results_dir)
    found = _Collector(config or {}, left_out if left_out is not None else LeftOut())
    for path in sorted(results_dir.rglob("metrics.json")):
        parts = path.relative_to(results_dir).parts[:-1]
        if parts and parts[0] == "gradcam":
            continue
        if parts and parts[0] == "transfer":
            found.transfer(parts, path)
        else:
            found.run(parts, path)
    run_cols = ["dataset", "model", "seed", "method", "level"]
    tr_cols = ["pair", "source", "target", "model", "seed", "method"]
    rest = list(metric_record({}))
    return (
        pd.DataFrame.from_records(found.runs, columns=run_cols + rest + ["per_video"]),
        pd.DataFrame.from_records(found.transfers, columns=tr_cols + rest + ["per_video"]),
    )


def fill_test_videos(runs, results_dir: str | Path) -> None:
    """Older runs without ``test_videos``: the count of test videos in the faces' manifest."""
    import pandas as pd

    for dataset in runs["dataset"].unique():
        mask = (runs["dataset"] == dataset) & runs["test_videos"].isna()
        if not mask.any():
            continue
        manifest = Path(results_dir) / dataset / "faces" / "manifest.csv"
        try:
            m = pd.read_csv(manifest, dtype={"video_id": str})
            runs.loc[mask, "test_videos"] = float(m[m["split"] == "test"]["video_id"].nunique())
        except (OSError, ValueError, KeyError):
            continue


def face_warnings(results_dir: str | Path, datasets: list[str]) -> list[str]:
    """Sentences about tiny splits from results/{dataset}/faces/summary.json (``warnings``)."""
    out = []
    for dataset in datasets:
        data = read_json(Path(results_dir) / dataset / "faces" / "summary.json") \
            if (Path(results_dir) / dataset / "faces" / "summary.json").is_file() else None
        for line in (data or {}).get("warnings") or []:
            out.append(f"{dataset}: {line}")
    return out


@dataclass
class GradcamRun:
    dataset: str
    model: str
    seed: int
    method: str
    folder: Path
    npz: dict | None
    delta: Any  # DataFrame or None


def collect_gradcam(results_dir: str | Path, config: dict | None = None) -> list[GradcamRun]:
    """Every results/gradcam/{dataset}/{model}/seed{s}/{method}/ with its files."""
    import pandas as pd

    config = config or {}
    chosen = wanted(config)
    base = Path(results_dir) / "gradcam"
    out = []
    for folder in sorted(p for p in base.glob("*/*/seed*/*") if p.is_dir()):
        dataset, model, seed_dir, method = folder.relative_to(base).parts
        seed = seed_of(seed_dir)
        if seed is None or not names_run(chosen, dataset, model, seed):
            continue
        if planned(config) and method not in (config.get("gradcam") or {}).get("methods", []):
            continue
        npz = None
        if (folder / "heatmaps.npz").is_file():
            try:
                with np.load(folder / "heatmaps.npz", allow_pickle=False) as z:
                    npz = {k: z[k] for k in z.files}
            except (OSError, ValueError) as exc:
                log.warning("skipping %s: %s", folder / "heatmaps.npz", exc)
        delta = None
        if (folder / "delta.csv").is_file():
            try:
                delta = pd.read_csv(folder / "delta.csv")
            except (OSError, ValueError) as exc:
                log.warning("skipping %s: %s", folder / "delta.csv", exc)
        if npz is not None or delta is not None:
            out.append(GradcamRun(dataset, model, seed, method, folder, npz, delta))
    return out


def collect_csvs(results_dir: str | Path, config: dict | None, kind: str, pattern: str,
                 required: set[str], columns: list[str]):
    """Every results/{kind}/{dataset}/{model}/seed{s}/… CSV matching ``pattern`` that the
    config asks for, as one DataFrame with dataset, model, seed and group (the file's stem);
    an unreadable file or one without the ``required`` columns is skipped with a warning."""
    import pandas as pd

    chosen = wanted(config or {})
    frames = []
    base = Path(results_dir) / kind
    for path in sorted(base.glob(pattern)):
        dataset, model, seed_dir, _ = path.relative_to(base).parts
        seed = seed_of(seed_dir)
        if seed is None or not names_run(chosen, dataset, model, seed):
            continue
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        if not required <= set(df.columns):
            log.warning("skipping %s: not a %s table", path, kind)
            continue
        frames.append(df.assign(dataset=dataset, model=model, seed=seed, group=path.stem))
    if not frames:
        return pd.DataFrame(columns=["dataset", "model", "seed", "group", *columns])
    return pd.concat(frames, ignore_index=True)


def collect_separability(results_dir: str | Path, config: dict | None = None):
    """Every results/separability/{dataset}/{model}/seed{s}/{method}.csv as one DataFrame."""
    columns = ["level", "sparsity", "probe_acc", "probe_acc_std", "silhouette"]
    data = collect_csvs(results_dir, config, "separability", "*/*/seed*/*.csv",
                        {"sparsity", "probe_acc", "silhouette"}, columns)
    if config and planned(config):
        data = data[data["group"].isin(config["separability"]["methods"])]
    return data


def collect_latency(results_dir: str | Path, config: dict | None = None):
    """Every results/latency/{dataset}/{model}/seed{s}/latency.csv as one DataFrame."""
    from deepfake_lth.analysis.latency import COLUMNS

    data = collect_csvs(results_dir, config, "latency", "*/*/seed*/latency.csv",
                        set(COLUMNS) - {"median_sd_ms", "median_low_ms", "median_high_ms",
                                        "speedup_low", "speedup_high"}, COLUMNS)
    if config and planned(config):
        data = data[data["method"].isin(["dense", *config["latency"]["methods"]])]
    return data


def test_counts(results_dir: str | Path, dataset: str, kind: str | None):
    """The dataset's test split per class, faces and videos, from its faces' manifest.csv;
    None without one."""
    import pandas as pd

    from deepfake_lth.report.common import TestCounts

    manifest = Path(results_dir) / dataset / "faces" / "manifest.csv"
    try:
        m = pd.read_csv(manifest, dtype={"video_id": str}, usecols=["split", "label",
                                                                     "video_id"])
    except (OSError, ValueError, KeyError):
        return None
    test = m[m["split"] == "test"]
    if test.empty:
        return None
    videos = test.groupby("video_id")["label"].max()
    return TestCounts(kind, (int((test["label"] == 0).sum()), int((test["label"] == 1).sum())),
                      (int((videos == 0).sum()), int((videos == 1).sum())))

