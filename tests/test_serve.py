"""Which form is served: paired ratios, their 95 % interval of the median, the verdict and
the rule (INT8 only where it is measurably faster)."""

from __future__ import annotations

import math

import pytest

from deepfake_lth.deploy import serve


def test_median_interval_by_hand():
    # n = 10: P(X_(2) <= median <= X_(9)) = 1 - 2 * 11/1024 = 0.979; k = 3 gives 0.891
    assert serve.median_interval(range(1, 11)) == (2.0, 9.0)
    # n = 20: k = 6 covers 0.959, k = 7 only 0.885
    assert serve.median_interval(range(1, 21)) == (6.0, 15.0)
    # n = 5 cannot reach 95 % (1 - 2/32 = 0.9375): no interval
    assert serve.median_interval([1, 2, 3, 4, 5]) == (-math.inf, math.inf)


def test_verdicts_account_for_the_spread():
    ref = [1.0, 1.2, 0.9, 1.1, 1.0, 1.3, 0.95, 1.05, 1.0, 1.1]
    faster = serve.compare(ref, [t * 0.6 for t in ref])
    assert faster["verdict"] == serve.FASTER and faster["ratio"] == pytest.approx(0.6)
    assert serve.compare(ref, [t * 1.5 for t in ref])["verdict"] == serve.SLOWER
    # ratios scattered around 1: within the timer's spread, no finding
    noisy = serve.compare(ref, [t * f for t, f in zip(ref, [0.9, 1.1] * 5, strict=True)])
    assert noisy["verdict"] == serve.SAME and noisy["ratio_low"] < 1 < noisy["ratio_high"]
    assert serve.compare(ref[:4], [t * 0.5 for t in ref[:4]])["verdict"] == serve.SAME
    assert "too few" in serve.ratio_text(serve.compare(ref[:4], ref[:4]))
    with pytest.raises(ValueError):
        serve.compare(ref, ref[:3])


def _row(batch, verdict, ratio=1.0):
    return {"batch": batch, "verdict": verdict, "ratio": ratio, "ratio_low": ratio - 0.05,
            "ratio_high": ratio + 0.05, "rounds": 20}


def test_int8_is_served_only_where_it_is_faster():
    assert serve.decide([_row(1, serve.FASTER, 0.5), _row(32, serve.SAME)])["form"] == "int8"
    # slower at a larger batch: not served, and the reason names that batch
    d = serve.decide([_row(32, serve.SLOWER, 1.2), _row(1, serve.FASTER, 0.5)])
    assert d["form"] == "fp32" and "batch 32" in d["reason"] and "slower" in d["reason"]
    d = serve.decide([_row(1, serve.SAME), _row(32, serve.FASTER, 0.5)])
    assert d["form"] == "fp32" and "no measurable difference" in d["reason"]
    assert serve.decide([])["form"] == "fp32"


def test_fastest_keeps_the_first_candidate_unless_another_is_measurably_faster():
    base = [1.0, 1.1, 0.9, 1.0, 1.2, 1.0, 1.05, 0.95, 1.0, 1.1]
    times = {"all": base, "compute": [t * 1.01 for t in base], "nodes": [t * 0.7 for t in base]}
    assert serve.pick_fastest(times) == "nodes"
    times["nodes"] = [t * f for t, f in zip(base, [0.9, 1.1] * 5, strict=True)]
    assert serve.pick_fastest(times) == "all"
