"""Model separability of the dense network and its tickets (after seed 002's "model
separability": how well a network's features separate real from fake faces).

For each trained network (the dense model and every ticket of one method) the penultimate
features of the test faces are read with a forward hook on the registry's ``feature_layer``
(the input of the final linear layer) and scored two ways:

* ``probe_acc``: accuracy of a linear probe (standardised features, scikit-learn
  ``LogisticRegression``) under stratified k-fold cross-validation (5 folds by default),
  grouped by video so that no video has frames in both the training and the test fold,
  with ``probe_acc_std`` its standard deviation over the folds;
* ``silhouette``: the silhouette score (scikit-learn, Euclidean) of the real/fake labels on
  the features as the network has them (the final linear layer reads them unscaled): near
  1 when the two classes form tight, distant clusters, near 0 when they overlap, negative
  when faces sit closer to the other class.

One CSV per dataset × model × seed × method, one row per level:
``results/separability/{dataset}/{model}/seed{seed}/{method}.csv`` with columns
``method, level, sparsity, probe_acc, probe_acc_std, silhouette, n_samples, feature_dim,
folds``.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.execution import add_execution_arguments, apply_execution
from deepfake_lth.core.files import write_csv
from deepfake_lth.pruning.plan import level_sparsity, parse_levels

log = logging.getLogger(__name__)

COLUMNS = ["method", "level", "sparsity", "probe_acc", "probe_acc_std", "silhouette",
           "n_samples", "feature_dim", "folds"]


# --------------------------------------------------------------------------- features


def extract_features(
    model,
    images: np.ndarray,
    feature_layer: str,
    input_size: int | None,
    device="cpu",
    batch_size: int = 256,
) -> np.ndarray:
    """Flattened output of ``model``'s module ``feature_layer`` for uint8 NHWC ``images``
    (eval mode, float32, CPU), as an (n, d) array."""
    import torch

    from deepfake_lth.data.store import to_tensor

    try:
        layer = model.get_submodule(feature_layer)
    except AttributeError:
        raise UserError(f"the model has no module {feature_layer!r} (feature_layer)") from None
    captured: list = []

    def hook(_module, _inputs, output):
        captured.append(output.detach().flatten(1).float().cpu())

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                model(to_tensor(images[start : start + batch_size], input_size, device))
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(captured).numpy()


# --------------------------------------------------------------------------- scores


def linear_probe(
    features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[float, float, int]:
    """(mean, std) accuracy of a logistic-regression probe on standardised ``features`` under
    stratified ``folds``-fold cross-validation, and the folds used (fewer when a class has
    fewer faces, or fewer videos, than ``folds``); NaN when a class has fewer than two.

    ``groups`` (a video id per face): the folds are grouped (``StratifiedGroupKFold``), so the
    frames of one video never sit in both the training and the test fold; without them every
    face is its own group (an image set)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    if len(labels) == 0 or len(np.unique(labels)) < 2:
        return math.nan, math.nan, 0
    if groups is not None:
        groups = np.asarray(groups)
        units = {(g, int(y)) for g, y in zip(groups, labels, strict=True)}
        counts = np.bincount([y for _, y in units], minlength=2)
    else:
        counts = np.bincount(labels.astype(int), minlength=2)
    k = int(min(folds, counts.min()))
    if k < 2:
        return math.nan, math.nan, 0
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    if groups is not None:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    scores = cross_val_score(probe, np.asarray(features, dtype=np.float64), labels, cv=cv,
                             scoring="accuracy", groups=groups)
    return float(scores.mean()), float(scores.std()), k


def silhouette(features: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette score of the labels on ``features`` as the network has them (Euclidean; the
    score does not change with a common scale, so networks of different activation sizes
    compare); NaN with one class, fewer than three faces, or identical features for all."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return math.nan
    x = np.asarray(features, dtype=np.float64)
    if not np.any(x - x[:1]):  # every face has the same features (e.g. dead units): undefined
        return math.nan
    return float(silhouette_score(x, labels, metric="euclidean"))


def separability(
    features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """``probe_acc``, ``probe_acc_std``, ``silhouette``, ``folds`` of one feature matrix;
    ``groups``: the video of each face (folds grouped by video)."""
    acc, std, k = linear_probe(features, labels, folds, seed, groups)
    return {"probe_acc": acc, "probe_acc_std": std, "silhouette": silhouette(features, labels),
            "folds": k}


# --------------------------------------------------------------------------- the stage


def job_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The config slice a separability job computes from (the rule's ``--spec``)."""
    s = config["separability"]
    return {"input_size": config["models"][model].get("input_size"), "folds": s["folds"],
            "max_samples": s["max_samples"]}


def parse_spec(spec: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """The stage spec (a dict or its JSON) with defaults filled in; unknown keys are errors."""
    from deepfake_lth.core.schema import stage_spec

    out = stage_spec(spec, "separability", {"input_size": None, "device": "auto", "threads": 1, "batch_size": 256})
    if not isinstance(out["folds"], int) or out["folds"] < 2:
        raise UserError(f"separability.folds must be an integer ≥ 2, got {out['folds']!r}")
    if out["max_samples"] is not None and (not isinstance(out["max_samples"], int)
                                           or out["max_samples"] < 4):
        raise UserError("separability.max_samples must be null or an integer ≥ 4, got "
                        f"{out['max_samples']!r}")
    return out


def _subset(n: int, max_samples: int | None, labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices of at most ``max_samples`` faces, stratified by label, seeded, sorted."""
    if not max_samples or n <= max_samples:
        return np.arange(n)
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(n), train_size=max_samples, stratify=labels,
                               random_state=seed)
    return np.sort(keep)


def separability_stage(
    faces_dir: str | Path,
    levels: str | Sequence[Any],
    model_name: str,
    method: str,
    out_csv: str | Path,
    seed: int = 0,
    spec: Mapping[str, Any] | str | None = None,
    model_factory=None,
    feature_layer: str | None = None,
):
    """Separability of every level (``checkpoint.pt`` folders; the dense one first) on the
    test split of ``faces_dir``; writes ``out_csv`` and returns its DataFrame.
    ``model_factory``/``feature_layer`` replace the registry (for tests)."""
    import pandas as pd
    import torch

    from deepfake_lth.data.store import load_split
    from deepfake_lth.pruning.checkpoints import load_state
    from deepfake_lth.pruning.masks import prunable_parameters
    from deepfake_lth.training.device import resolve_device

    spec = parse_spec(spec)
    levels = parse_levels(levels)
    torch.set_num_threads(int(spec["threads"]))
    device = resolve_device(spec["device"])
    if model_factory is None:
        from deepfake_lth.models import build_model, get_spec

        registry = get_spec(model_name)
        input_size = int(spec["input_size"] or registry.input_size)
        feature_layer = feature_layer or registry.feature_layer

        def model_factory():
            return build_model(model_name, input_size=input_size)
    else:
        input_size = spec["input_size"]
        if not feature_layer:
            raise ValueError("a model_factory needs its feature_layer")
    test = load_split(faces_dir, "test")
    if len(test) == 0:
        raise UserError(f"{faces_dir}: the test split is empty; separability is measured on it")
    keep = _subset(len(test), spec["max_samples"], test.labels, seed)
    images, labels = test.subset(keep).images, np.asarray(test.labels)[keep]
    videos = np.asarray(test.video_ids)[keep]
    # one face per video (an image set): plain stratified folds; frames of videos: grouped
    groups = videos if len(np.unique(videos)) < len(videos) else None
    rows = []
    for item in levels:
        ckpt = item["path"] / "checkpoint.pt"
        state = load_state(ckpt)
        model = model_factory()
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise UserError(f"{ckpt} does not fit {model_name} ({str(exc).splitlines()[0]})"
                            ) from None
        model.to(device)
        features = extract_features(model, images, feature_layer, input_size, device,
                                    int(spec["batch_size"]))
        scores = separability(features, labels, int(spec["folds"]), seed, groups)
        rows.append({"method": method, "level": item["level"],
                     "sparsity": level_sparsity(item["path"], state,
                                                list(prunable_parameters(model))),
                     **scores, "n_samples": len(labels), "feature_dim": features.shape[1]})
        log.info("%s %s: sparsity %.3f probe acc %.3f ± %.3f silhouette %.3f",
                 method, item["level"], rows[-1]["sparsity"], scores["probe_acc"],
                 scores["probe_acc_std"], scores["silhouette"])
    df = pd.DataFrame(rows, columns=COLUMNS).sort_values("sparsity", kind="stable")
    write_csv(df, out_csv)
    return df


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", required=True, help="packed dataset folder (test split)")
    parser.add_argument("--levels", required=True,
                        help='JSON list of {"level": name, "path": folder}, the dense one first')
    parser.add_argument("--model", required=True, help="registry model name")
    parser.add_argument("--method", required=True, help="the tickets' method, e.g. imp-global")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the probe's folds and of the subsample of test faces")
    parser.add_argument("--spec", default="{}",
                        help="JSON: input_size, device, threads, folds, max_samples, batch_size")
    parser.add_argument("--out", required=True, help="CSV to write")
    add_execution_arguments(parser)


def run(args: argparse.Namespace) -> int:
    args.spec = apply_execution(args.spec, args)
    separability_stage(args.faces, args.levels, args.model, args.method, args.out, args.seed,
                       args.spec)
    return 0
