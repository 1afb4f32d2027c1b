"""What a ticket carries from its run: the decisions a deployed detector applies and says.

A ticket file (``deepfake-lth export``) and an ONNX file (``export -o model.onnx``, ``export
--int8``) record, beside the model and its input size:

- ``threshold``: the run's ``val_threshold``, the p(fake) threshold chosen on the validation
  split (``video_threshold``: ``val_video_threshold``, on a video's mean); ``detect`` applies
  it unless ``--threshold`` is given;
- ``scores``: the test scores of the model actually served (the run's for a ticket or an fp32
  file, the INT8 file's own for INT8), ``test_acc_val_threshold`` at that threshold;
- ``reduce_range`` (INT8: weights quantized to 7 bits) and ``int8``;
- ``faces``: the face settings the training crops were made with;
- ``training_faces``: the dataset and where its files came from (``synthetic``: the
  generated demo faces; ``detect`` and ``export`` then say so in one line).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepfake_lth.core.runfolder import RunFolder

SCORE_KEYS = ("test_acc", "test_auc", "test_eer", "test_ap", "video_acc", "video_auc",
              "test_acc_val_threshold", "video_acc_val_threshold", "test_samples", "test_videos")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def training_faces(run: RunFolder) -> dict[str, Any] | None:
    """Where a run's training faces came from: its dataset, and the dataset acquired, its
    source type and layout as ``deepfake-lth pack`` recorded them (``synthetic``: the
    generated demo faces, not footage)."""
    dataset = run.metrics.get("dataset")
    if not dataset and not run.source:
        return None
    source = run.source or {}
    return {"dataset": dataset, "acquired": source.get("dataset"), "type": source.get("type"),
            "layout": source.get("layout"), "synthetic": source.get("type") == "synthetic"}


def run_meta(run: RunFolder, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The decisions a ticket carries from its run folder: where it came from, the threshold
    chosen on validation (``threshold``: on faces, ``val_threshold``; ``video_threshold``: on
    a video's mean, ``val_video_threshold``), the test scores of that network
    (``scores``), where its training faces came from and the face settings."""
    m = run.metrics
    meta: dict[str, Any] = {"checkpoint": str(run.checkpoint),
                            "mask": str(run.mask) if run.mask else None}
    meta.update({k: m.get(k) for k in ("dataset", "method", "round", "seed", "test_acc")})
    meta["threshold"] = _number(m.get("val_threshold"))
    meta["video_threshold"] = _number(m.get("val_video_threshold"))
    meta["threshold_from"] = (f"{run.metrics_path}: val_threshold, chosen on the validation "
                              "split" if meta["threshold"] is not None else None)
    meta["scores"] = ({"model": "fp32", "from": str(run.metrics_path),
                       **{k: m.get(k) for k in SCORE_KEYS if k in m}}
                      if run.metrics_path else None)
    meta["training_faces"] = training_faces(run)
    if settings:
        meta["faces"] = dict(settings)
    return meta


def onnx_meta(ticket, **extra: Any) -> dict[str, Any]:
    """The metadata of a ticket's ONNX file (read back by ``deepfake-lth detect``)."""
    return {"model": ticket.model_name, "input_size": ticket.input_size, **ticket.meta,
            "faces": ticket.meta.get("faces"), "int8": False, "reduce_range": None, **extra}


def synthetic_notice(meta: Mapping[str, Any]) -> str | None:
    """One line when the ticket was trained on the synthetic demo faces, else None."""
    origin = meta.get("training_faces")
    if not isinstance(origin, Mapping) or not origin.get("synthetic"):
        return None
    return (f"note: this ticket was trained on the synthetic demo faces ({origin.get('dataset')}"
            "), not on real footage; its scores on real videos mean little")


def decisions_line(meta: Mapping[str, Any]) -> str:
    """The decisions a ticket carries, in one line: threshold, scores, training faces."""
    parts = []
    t = meta.get("threshold")
    parts.append(f"threshold {t:.4f} (chosen on validation)" if isinstance(t, (int, float))
                 else "no threshold (detect uses 0.5)")
    scores = meta.get("scores") or {}
    if isinstance(scores.get("test_auc"), (int, float)):
        acc = _number(scores.get("test_acc_val_threshold"))
        parts.append(f"test AUC {scores['test_auc']:.4f}, accuracy at the threshold "
                     f"{'n/a' if acc is None else format(acc, '.4f')} "
                     f"({scores.get('model', 'fp32')})")
    origin = meta.get("training_faces") or {}
    if origin:
        kind = ("synthetic demo faces" if origin.get("synthetic")
                else f"{origin.get('type') or 'unknown source'}"
                + (f", {origin['layout']} layout" if origin.get("layout") else ""))
        parts.append(f"trained on {origin.get('dataset')} ({kind})")
    return "recorded: " + "; ".join(parts)
