"""Scores of a detector's predictions: ROC AUC and accuracy with the video as the unit.

Plain numpy, so that a training job does not import scikit-learn (about a second per job).
"""

from __future__ import annotations

import numpy as np


def video_accuracy(probs: np.ndarray, labels: np.ndarray, video_ids: np.ndarray) -> float:
    """Accuracy of the mean fake probability per video, thresholded at 0.5."""
    if len(probs) == 0:
        return float("nan")
    _, inverse = np.unique(video_ids, return_inverse=True)
    n = inverse.max() + 1
    mean_prob = np.bincount(inverse, weights=probs, minlength=n) / np.bincount(inverse, minlength=n)
    video_label = np.bincount(inverse, weights=labels, minlength=n) / np.bincount(
        inverse, minlength=n
    )
    return float(np.mean((mean_prob > 0.5) == (video_label > 0.5)))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for binary ``labels`` (NaN with one class): the Mann-Whitney U
    statistic with ties counted one half, the value sklearn's ``roc_auc_score`` gives. Plain
    numpy, so that a training job does not import scikit-learn (about a second per job)."""
    labels = np.asarray(labels) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # average 1-based rank of ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def split_metrics(labels: np.ndarray, probs: np.ndarray, video_ids: np.ndarray) -> dict:
    """The scores of one split's predictions (p(fake) per face), every evaluation's: frame
    accuracy at 0.5, frame ROC AUC (NaN with one class) and video accuracy."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if len(labels) == 0:
        return {"acc": float("nan"), "auc": float("nan"), "video_acc": float("nan")}
    return {
        "acc": float(np.mean((probs > 0.5) == (labels > 0.5))),
        "auc": roc_auc(labels, probs),
        "video_acc": video_accuracy(probs, labels, np.asarray(video_ids)),
    }
