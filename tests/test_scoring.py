"""The scores of a split (training/scoring.py) against scikit-learn, ties included."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from deepfake_lth.training.scoring import (
    METRIC_KEYS,
    average_precision,
    equal_error_rate,
    roc_auc,
    split_metrics,
    video_scores,
)


def sklearn_eer(labels, scores) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    return brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0, xtol=1e-12)


def fixtures():
    rng = np.random.default_rng(0)
    for n in (2, 5, 17, 200):
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        yield labels, rng.random(n)  # no ties
        yield labels, np.round(rng.random(n), 1)  # many ties
        yield labels, labels * 0.3 + rng.random(n) * 0.8  # separable-ish
    yield np.array([0, 0, 1, 1]), np.array([0.5, 0.5, 0.5, 0.5])  # all tied
    yield np.array([0, 1, 0, 1]), np.array([0.9, 0.1, 0.8, 0.2])  # perfectly wrong


@pytest.mark.parametrize("case", range(14))
def test_scores_match_sklearn(case: int) -> None:
    labels, scores = list(fixtures())[case]
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels, scores))
    assert equal_error_rate(labels, scores) == pytest.approx(sklearn_eer(labels, scores), abs=1e-9)


def test_eer_of_known_curves() -> None:
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert equal_error_rate([0, 1, 0, 1], [0.9, 0.1, 0.8, 0.2]) == 1.0
    assert equal_error_rate([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)


def test_video_scores_average_faces() -> None:
    probs = np.array([0.9, 0.3, 0.2, 0.4, 0.6, 0.8])
    labels = np.array([1, 1, 0, 0, 1, 1])
    vids = np.array(["b", "b", "a", "a", "c", "c"])
    ids, prob, label = video_scores(probs, labels, vids)
    assert ids.tolist() == ["a", "b", "c"]
    assert prob == pytest.approx([0.3, 0.6, 0.7])
    assert label.tolist() == [0, 1, 1]
    m = split_metrics(labels, probs, vids)
    assert set(m) == set(METRIC_KEYS)
    assert m["video_auc"] == pytest.approx(roc_auc_score(label, prob)) == 1.0
    assert m["video_ap"] == pytest.approx(average_precision_score(label, prob))
    assert m["video_acc"] == 1.0
    assert m["auc"] == pytest.approx(roc_auc_score(labels, probs))
    assert m["acc"] == pytest.approx(5 / 6)  # only 0.3 of video b is wrong


def test_one_class_is_nan_with_a_message(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        m = split_metrics(np.ones(4), np.array([0.2, 0.4, 0.6, 0.8]), np.array(list("aabb")))
    for key in ("auc", "eer", "ap", "video_auc", "video_eer", "video_ap"):
        assert np.isnan(m[key]), key
    assert m["acc"] == 0.5 and m["video_acc"] == 0.5
    assert "all fake" in caplog.text
    empty = split_metrics(np.zeros(0), np.zeros(0), np.zeros(0))
    assert all(np.isnan(v) for v in empty.values())
