"""What tickets forget: the test units whose prediction pruning changes.

After Hooker et al. 2019 ("What do compressed deep neural networks forget?"): a
*pruning-identified exemplar* (PIE) is a test unit where the modal prediction of the pruned
networks over seeds departs from the modal prediction of the dense networks over seeds.
Here a unit is a test video (on an image set, an image: its own video id), its prediction
the mean p(fake) of its faces at 0.5 (the video accuracy's rule, ``training/scoring.py``);
the modal prediction over seeds is the majority vote, a tie decided by the mean p(fake)
over the seeds. A PIE is *forgotten* when the dense networks' modal prediction is right and
the tickets' is wrong.

The comparison is made per dataset × model × method × level (a sparsity) and per
condition: ``clean`` (the run's own predictions.csv) and, with robustness, each
``{perturbation}/{level}`` (``robust/…/predictions.csv``, the dense networks scored on the
same perturbed faces). The shares of PIEs are given over every unit and per manipulation
(real units: ``real``). :func:`gallery` explains the most-forgotten faces with Grad-CAM
(:mod:`deepfake_lth.analysis.gradcam`) in the dense network and the ticket.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CLEAN = "clean"  # the condition of the unperturbed test split
REAL = "real"  # the manipulation of real units
ALL = "all"
KEYS = ["dataset", "model", "method", "level", "sparsity", "condition"]


def predictions_path(run_dir: str | Path, condition: str) -> Path:
    """The predictions.csv of a run folder under ``condition`` (clean or perturbation/level)."""
    from deepfake_lth.analysis.robustness import ROBUST

    run_dir = Path(run_dir)
    if condition == CLEAN:
        return run_dir / "predictions.csv"
    return run_dir / ROBUST / condition / "predictions.csv"


def read_units(path: str | Path):
    """The units of one predictions.csv: video_id, label, prob (mean p(fake) of its faces);
    None when it is missing or unreadable."""
    import pandas as pd

    from deepfake_lth.training.scoring import video_scores

    try:
        pred = pd.read_csv(path, dtype={"video_id": str})
    except (OSError, ValueError):
        return None
    ids, prob, label = video_scores(pred["prob"].to_numpy(), pred["label"].to_numpy(),
                                    pred["video_id"].to_numpy())
    return pd.DataFrame({"video_id": ids, "label": label.astype(int), "prob": prob})


def unit_table(records: Iterable[Mapping[str, Any]], conditions: Sequence[str]):
    """One row per run × condition × unit: ``records`` are runs (dataset, model, seed,
    method, level, sparsity, path: the run folder); a condition a run has no predictions
    for is left out."""
    import pandas as pd

    frames = []
    for r in records:
        for condition in [CLEAN, *conditions]:
            units = read_units(predictions_path(r["path"], condition))
            if units is None:
                continue
            frames.append(units.assign(**{k: r[k] for k in ("dataset", "model", "seed", "method",
                                                            "level", "sparsity")},
                                       condition=condition))
    columns = ["dataset", "model", "seed", *KEYS[2:], "video_id", "label", "prob"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def modal(units):
    """The modal prediction over seeds per network × condition × unit: ``fake_votes`` (share
    of seeds that call it fake), ``prob`` (mean over seeds), ``seeds``, ``predicted``."""
    grouped = units.assign(vote=(units["prob"] > 0.5).astype(float)).groupby(
        [*KEYS, "video_id"], sort=False)
    out = grouped.agg(label=("label", "max"), prob=("prob", "mean"),
                      fake_votes=("vote", "mean"), seeds=("seed", "nunique")).reset_index()
    tie = np.isclose(out["fake_votes"], 0.5)
    out["predicted"] = np.where(tie, out["prob"] > 0.5, out["fake_votes"] > 0.5).astype(int)
    return out


def pies(modal_table, manipulations: Mapping[tuple[str, str], str] | None = None):
    """Every non-dense network's units beside the dense networks' (same dataset, model,
    condition and unit): ``pie`` (the modal predictions differ), ``forgotten`` (the dense
    networks are right and the tickets wrong), and the unit's ``manipulation``."""
    dense = modal_table[modal_table["method"] == "dense"]
    tickets = modal_table[modal_table["method"] != "dense"]
    joined = tickets.merge(
        dense[["dataset", "model", "condition", "video_id", "predicted", "prob", "seeds"]],
        on=["dataset", "model", "condition", "video_id"], suffixes=("", "_dense"))
    joined["pie"] = joined["predicted"] != joined["predicted_dense"]
    joined["forgotten"] = joined["pie"] & (joined["predicted_dense"] == joined["label"])
    of = manipulations or {}
    joined["manipulation"] = [
        REAL if label == 0 else (of.get((d, v)) or "fake")
        for d, v, label in zip(joined["dataset"], joined["video_id"], joined["label"],
                               strict=True)]
    return joined


def shares(pie_table):
    """The share of PIEs and of forgotten units per network × condition, over all units
    (``manipulation`` ``all``) and per manipulation: columns units, pie, forgotten."""
    import pandas as pd

    if pie_table.empty:
        return pd.DataFrame(columns=[*KEYS, "manipulation", "units", "pie", "forgotten"])
    every = pie_table.assign(manipulation=ALL)
    both = pd.concat([every, pie_table], ignore_index=True)
    out = both.groupby([*KEYS, "manipulation"], sort=False).agg(
        units=("pie", "size"), pie=("pie", "mean"), forgotten=("forgotten", "mean"))
    return out.reset_index()


def most_forgotten(pie_table, k: int = 6, condition: str = CLEAN):
    """The ``k`` units forgotten at the most levels (of any non-dense method) under
    ``condition``, each with the lowest sparsity that forgets it (first forgotten) and the
    method and level there; ties: the larger fall of the right class's mean p(fake)."""
    part = pie_table[(pie_table["condition"] == condition) & pie_table["forgotten"]]
    if part.empty:
        return part.assign(times=[], fall=[])
    right = np.where(part["label"] == 1, 1.0, -1.0)
    part = part.assign(fall=right * (part["prob_dense"] - part["prob"]))
    first = part.sort_values(["sparsity", "fall"], ascending=[True, False])
    first = first.drop_duplicates(["dataset", "model", "video_id"])
    times = part.groupby(["dataset", "model", "video_id"]).size().rename("times")
    out = first.join(times, on=["dataset", "model", "video_id"])
    return out.sort_values(["times", "fall"], ascending=False).head(k).reset_index(drop=True)


# --------------------------------------------------------------------------- gallery


@dataclass
class GalleryFace:
    """One forgotten face: its pixels and the Grad-CAM maps of the dense network and the
    ticket (normalised to [0, 1]), with their p(fake)."""

    video_id: str
    label: int
    manipulation: str
    image: np.ndarray
    dense_map: np.ndarray
    ticket_map: np.ndarray
    dense_prob: float
    ticket_prob: float
    method: str
    sparsity: float
    seed: int


def worst_face(ticket_csv: str | Path, dense_csv: str | Path,
               video_id: str) -> tuple[int, int] | None:
    """(row, label) of the unit's face whose p(fake) moves furthest from its class between
    the dense network (``dense_csv``) and the ticket (``ticket_csv``), their predictions.csv."""
    import pandas as pd

    def faces(path):
        pred = pd.read_csv(path, dtype={"video_id": str})
        return pred[pred["video_id"] == str(video_id)].set_index("row")

    dense = faces(dense_csv)[["prob"]].rename(columns={"prob": "prob_dense"})
    part = faces(ticket_csv).join(dense, how="inner")
    if part.empty:
        return None
    right = np.where(part["label"] > 0.5, 1.0, -1.0)
    row = part.index[int(np.argmax(right * (part["prob_dense"] - part["prob"])))]
    return int(row), int(part.loc[row, "label"])


def _network(model_name: str, input_size: int | None, run_dir: Path):
    from deepfake_lth.stages.lowrank import load_network

    return load_network(run_dir, model_name, {"input_size": input_size}).eval()


def gallery(faces_dir: str | Path, model_name: str, input_size: int | None,
            picks: Sequence[Mapping[str, Any]]) -> list[GalleryFace]:
    """Grad-CAM of each pick's most-forgotten face (:func:`worst_face`) in its dense network
    and its ticket. A pick holds
    video_id, manipulation, method, sparsity, seed and the run folders ``dense`` and
    ``ticket`` of that seed; a pick whose files are missing is left out."""
    from deepfake_lth.analysis.gradcam import compute_maps, normalise
    from deepfake_lth.core.errors import UserError
    from deepfake_lth.data.store import read_rows, to_tensor
    from deepfake_lth.models.registry import get_spec

    faces = np.load(Path(faces_dir) / "faces.npy", mmap_mode="r")
    layer = get_spec(model_name).target_layer
    out = []
    for pick in picks:
        dense, ticket = Path(pick["dense"]), Path(pick["ticket"])
        try:
            found = worst_face(ticket / "predictions.csv", dense / "predictions.csv",
                               pick["video_id"])
            if found is None:
                continue
            row, label = found
            image = read_rows(faces, np.array([row]))
            x = to_tensor(image, size=input_size)
            networks = (_network(model_name, input_size, d) for d in (dense, ticket))
            raw, probs = compute_maps(networks, layer, x, np.array([label]))
        except (OSError, UserError) as exc:
            log.warning("forgetting gallery: %s left out (%s)", pick["video_id"], exc)
            continue
        maps = normalise(raw)
        out.append(GalleryFace(str(pick["video_id"]), label, str(pick["manipulation"]),
                               image[0], maps[0, 0], maps[1, 0], float(probs[0, 0]),
                               float(probs[1, 0]), str(pick["method"]),
                               float(pick["sparsity"]), int(pick["seed"])))
    return out
