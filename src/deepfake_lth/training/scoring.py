"""Scores of a detector's predictions, DeepfakeBench's set: frame and video ROC AUC, equal error
rate, average precision, frame and video accuracy (the video's score is the mean p(fake) of its
faces).

Plain numpy, so that a training job does not import scikit-learn (about a second per job); the
tests check every score against scikit-learn, ties included.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

#: the keys :func:`split_metrics` returns
METRIC_KEYS = ("acc", "auc", "eer", "ap", "video_acc", "video_auc", "video_eer", "video_ap")


def video_scores(
    probs: np.ndarray, labels: np.ndarray, video_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per video (sorted ids): the id, the mean p(fake) of its faces and its label (1 when most
    of its faces are labelled fake; a video has one label)."""
    ids, inverse = np.unique(np.asarray(video_ids), return_inverse=True)
    n = len(ids)
    counts = np.bincount(inverse, minlength=n)
    mean_prob = np.bincount(inverse, weights=np.asarray(probs, np.float64), minlength=n) / counts
    mean_label = np.bincount(inverse, weights=np.asarray(labels, np.float64), minlength=n) / counts
    return ids, mean_prob, (mean_label > 0.5).astype(np.float64)


def video_accuracy(probs: np.ndarray, labels: np.ndarray, video_ids: np.ndarray) -> float:
    """Accuracy of the mean fake probability per video, thresholded at 0.5."""
    if len(probs) == 0:
        return float("nan")
    _, mean_prob, video_label = video_scores(probs, labels, video_ids)
    return float(np.mean((mean_prob > 0.5) == (video_label > 0.5)))


def _two_classes(labels: np.ndarray) -> bool:
    n_pos = int(labels.sum())
    return 0 < n_pos < len(labels)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for binary ``labels`` (NaN with one class): the Mann-Whitney U
    statistic with ties counted one half, the value sklearn's ``roc_auc_score`` gives."""
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


def _cumulative_counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when everything scoring at least each distinct score (highest
    first) is called fake: sklearn's ``_binary_clf_curve``."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tie group
    tps = np.cumsum(y)[last]
    return tps, (last + 1) - tps


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: the false positive rate where it equals the false negative rate, on the
    ROC curve linearly interpolated between its points (NaN with one class)."""
    labels = (np.asarray(labels) > 0.5).astype(np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if not _two_classes(labels):
        return float("nan")
    tps, fps = _cumulative_counts(labels, scores)
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    gap = fpr + tpr - 1.0  # FPR − FNR: nondecreasing along the curve, −1 at its start, 1 at its end
    i = int(np.flatnonzero(gap >= 0)[0])  # first point at or past the crossing (i ≥ 1)
    step = gap[i] - gap[i - 1]
    t = 1.0 if step == 0 else -gap[i - 1] / step
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision, Σ (Rₙ − Rₙ₋₁)·Pₙ over the distinct scores (sklearn's
    ``average_precision_score``; NaN with one class)."""
    labels = (np.asarray(labels) > 0.5).astype(np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if not _two_classes(labels):
        return float("nan")
    tps, fps = _cumulative_counts(labels, scores)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def split_metrics(labels: np.ndarray, probs: np.ndarray, video_ids: np.ndarray) -> dict:
    """The scores of one split's predictions (p(fake) per face), every evaluation's: frame
    accuracy at 0.5, frame ROC AUC, EER and AP, and the same of the videos (mean p(fake) of
    their faces). With one class (or no faces) the threshold-free scores are NaN, logged."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if len(labels) == 0:
        log.warning("no faces to score: every metric is NaN")
        return dict.fromkeys(METRIC_KEYS, float("nan"))
    if not _two_classes(labels > 0.5):
        log.warning("the scored faces are all %s: AUC, EER and AP are NaN (they need real and "
                    "fake faces)", "fake" if labels[0] > 0.5 else "real")
    _, video_prob, video_label = video_scores(probs, labels, np.asarray(video_ids))
    return {
        "acc": float(np.mean((probs > 0.5) == (labels > 0.5))),
        "auc": roc_auc(labels, probs),
        "eer": equal_error_rate(labels, probs),
        "ap": average_precision(labels, probs),
        "video_acc": float(np.mean((video_prob > 0.5) == (video_label > 0.5))),
        "video_auc": roc_auc(video_label, video_prob),
        "video_eer": equal_error_rate(video_label, video_prob),
        "video_ap": average_precision(video_label, video_prob),
    }


def val_threshold(probs, labels) -> float:
    """The decision threshold on p(fake) that maximises accuracy on the validation split
    (midpoint between neighbouring scores; 0.5 when the split is empty or one-class)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels) > 0.5
    if len(probs) == 0 or labels.all() or not labels.any():
        return 0.5
    order = np.argsort(probs, kind="mergesort")
    p, y = probs[order], labels[order]
    # threshold between p[i-1] and p[i]: predicted fake from i on; correct = reals below + fakes from i
    reals_below = np.concatenate([[0], np.cumsum(~y)])
    fakes_from = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    correct = reals_below + fakes_from
    distinct = np.concatenate([[True], p[1:] > p[:-1], [True]])  # cut only between distinct scores
    correct = np.where(distinct, correct, -1)
    best = int(np.argmax(correct))
    if best == 0:
        return float(p[0]) / 2
    if best == len(p):
        return (float(p[-1]) + 1.0) / 2
    return (float(p[best - 1]) + float(p[best])) / 2


def thresholded_scores(val: tuple, test: tuple) -> dict[str, float]:
    """Accuracies at thresholds chosen on the validation split, each at its own unit: the
    frame threshold on validation faces, the video threshold on validation video means (the
    mean p(fake) of a video's faces). ``val`` and ``test`` are (probs, labels, video_ids)."""
    v_probs, v_labels, v_ids = (np.asarray(a) for a in val)
    t_probs, t_labels, t_ids = (np.asarray(a) for a in test)
    frame = val_threshold(v_probs, v_labels)
    video = 0.5
    if len(v_probs):
        _, v_mean, v_label = video_scores(v_probs, v_labels, v_ids)
        video = val_threshold(v_mean, v_label)
    out = {"val_threshold": frame, "val_video_threshold": video,
           "test_acc_val_threshold": float("nan"), "video_acc_val_threshold": float("nan")}
    if len(t_probs):
        out["test_acc_val_threshold"] = float(np.mean((t_probs > frame) == (t_labels > 0.5)))
        _, t_mean, t_label = video_scores(t_probs, t_labels, t_ids)
        out["video_acc_val_threshold"] = float(np.mean((t_mean > video) == (t_label > 0.5)))
    return out
