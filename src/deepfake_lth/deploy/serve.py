"""Which form of a model to serve: INT8 only where it measures faster than fp32.

Two ONNX models are timed side by side (:func:`deepfake_lth.deploy.runtime.time_round_robin`:
one forward of each in turn, the order rotated every round so that neither always runs
first), and every round gives
one paired ratio ``t_candidate / t_fp32``: load from other processes hits both forwards of a
round alike, so the ratio is steadier than either time. Its median, and a distribution-free
95 % interval of the median (order statistics of the binomial, :func:`median_interval`), say
whether the candidate is ``faster`` (the whole interval below 1), ``slower`` (above 1) or of
``no measurable difference`` (the interval holds 1): a difference within the timer's own
spread is not a finding.

:func:`decide` applies the rule the quantize stage and ``deepfake-lth export --int8`` serve
by: INT8 when it is faster at the deciding batch size (the smallest timed) and not slower at
any other; fp32 otherwise, with the measurement that says why. Which operators the INT8
candidate quantizes is itself measured (:func:`search_int8`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_lth.deploy.runtime import OnnxModule, time_sessions

FASTER, SLOWER, SAME = "faster", "slower", "no measurable difference"
CONFIDENCE = 0.95
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # the operators with weights


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE
                    ) -> tuple[float, float]:
    """A distribution-free interval of the median: the order statistics ``(k, n − k + 1)``
    with the largest ``k`` whose binomial coverage is at least ``confidence``; (−inf, inf)
    when ``n`` is too small for any (fewer than 6 values at 95 %)."""
    xs = sorted(float(v) for v in values)
    n = len(xs)
    best = 0
    for k in range(1, n // 2 + 1):
        # P(X_(k) <= median <= X_(n-k+1)) = 1 - 2 P(Binomial(n, 1/2) <= k - 1)
        tail = sum(math.comb(n, i) for i in range(k)) / 2**n
        if 1 - 2 * tail >= confidence:
            best = k
    if best == 0:
        return -math.inf, math.inf
    return xs[best - 1], xs[n - best]


def compare(reference: Sequence[float], candidate: Sequence[float]) -> dict[str, Any]:
    """The paired ratio candidate / reference of times taken in the same rounds: its median,
    95 % interval and verdict."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError("paired times need the same, nonzero number of rounds")
    ratios = [c / r for r, c in zip(reference, candidate, strict=True)]
    lo, hi = median_interval(ratios)
    verdict = FASTER if hi < 1.0 else SLOWER if lo > 1.0 else SAME
    return {"ratio": statistics.median(ratios), "ratio_low": lo, "ratio_high": hi,
            "verdict": verdict, "rounds": len(ratios),
            "reference_ms": 1e3 * statistics.median(reference),
            "candidate_ms": 1e3 * statistics.median(candidate)}


def ratio_text(c: Mapping[str, Any]) -> str:
    """E.g. ``0.62× fp32 (95 % interval 0.60–0.64): faster``."""
    if not math.isfinite(c["ratio_low"]):
        return (f"{c['ratio']:.2f}× fp32 ({c['rounds']} paired rounds, too few for a 95 % "
                f"interval): {c['verdict']}")
    return (f"{c['ratio']:.2f}× fp32 (95 % interval {c['ratio_low']:.2f}–{c['ratio_high']:.2f}, "
            f"{c['rounds']} paired rounds): {c['verdict']}")


def decide(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Serve INT8 or fp32 from latency rows (``batch`` and a :func:`compare` result each):
    INT8 when it is faster at the smallest batch and slower at none."""
    if not rows:
        return {"form": "fp32", "reason": "INT8 not timed"}
    rows = sorted(rows, key=lambda r: r["batch"])
    first = rows[0]
    slower = [r for r in rows if r["verdict"] == SLOWER]
    if first["verdict"] == FASTER and not slower:
        return {"form": "int8", "batch": first["batch"],
                "reason": f"INT8 at batch {first['batch']}: {ratio_text(first)}"}
    if first["verdict"] != FASTER:
        why = f"INT8 at batch {first['batch']}: {ratio_text(first)}"
    else:
        why = f"INT8 at batch {slower[0]['batch']}: {ratio_text(slower[0])}"
    return {"form": "fp32", "batch": first["batch"], "reason": why}


# --------------------------------------------------------------------------- timing


def latency_rows(fp32: str | Path, int8: str | Path, size: int, spec: Mapping[str, Any]
                 ) -> list[dict[str, Any]]:
    """Median ms of the fp32 and INT8 models at each batch size, timed side by side, and
    their paired ratio with its 95 % interval and verdict (:func:`serve.compare`)."""
    threads = int(spec["threads"])
    models = [OnnxModule(fp32, threads), OnnxModule(int8, threads)]
    real = models[0].session.get_session_options().intra_op_num_threads
    rng = np.random.default_rng(0)
    rows = []
    for batch in spec["batch_sizes"]:
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        t32, t8 = time_sessions(models, x, int(spec["warmup"]), int(spec["repeats"]))
        c = compare(t32, t8)
        rows.append({"batch": batch, "threads": real, "fp32_ms": c["reference_ms"],
                     "int8_ms": c["candidate_ms"], "speedup": 1.0 / c["ratio"],
                     **{k: c[k] for k in ("ratio", "ratio_low", "ratio_high", "verdict",
                                          "rounds")}})
    return rows


def _timed(paths: Mapping[str, Path], reference: Path, x: np.ndarray, spec: Mapping[str, Any]
           ) -> tuple[dict[str, dict[str, Any]], dict[str, list[float]]]:
    """Each of ``paths`` against ``reference``, all timed side by side on ``x``; and the
    times."""
    threads = int(spec["threads"])
    models = [OnnxModule(reference, threads)] + [OnnxModule(p, threads) for p in paths.values()]
    times = time_sessions(models, x, int(spec["warmup"]), int(spec["repeats"]))
    return ({k: compare(times[0], t) for k, t in zip(paths, times[1:], strict=True)},
            dict(zip(paths, times[1:], strict=True)))


def pick_fastest(times: Mapping[str, list[float]]) -> str:
    """The first candidate, replaced by each later one that is measurably faster than the
    current choice (in the same rounds): all operators quantized (the smallest file) unless
    fewer are faster."""
    best = next(iter(times))
    for k in times:
        if compare(times[best], times[k])["verdict"] == FASTER:
            best = k
    return best


def search_int8(q, fp32: Path, work: Path, size: int, spec: Mapping[str, Any]
                ) -> tuple[Path, dict[str, Any]]:
    """The fastest INT8 model of ``fp32`` on this CPU that ``q`` (a
    :class:`deepfake_lth.deploy.quantize.Quantizer`) writes, and how it was found. Candidates: every
    operator ONNX Runtime quantizes, the operators with weights only, then, for a model of at
    most ``search_nodes`` such operators, node by node: when the best candidate beats fp32,
    it without each operator in turn (dropped where that is measurably faster), else each
    operator alone (kept where that is measurably faster than fp32). Timed at the smallest
    batch size, side by side; a candidate that quantizes less is chosen only where it is
    measurably faster (:func:`pick_fastest`), and the choice is timed again by
    :func:`latency_rows` to decide what is served."""
    x = np.random.default_rng(1).standard_normal(
        (min(spec["batch_sizes"]), 3, size, size)).astype(np.float32)
    plans: dict[str, dict[str, Any]] = {"all": {}, "compute": {"op_types": COMPUTE_OPS}}
    paths = {k: q.write(work / f"candidate-{k}.onnx", **v) for k, v in plans.items()}
    timed, times = _timed(paths, fp32, x, spec)
    best = pick_fastest(times)
    record: dict[str, Any] = {"batch": len(x), "candidates": {
        k: {**plans[k], **timed[k]} for k in timed}}
    nodes = q.compute_nodes()
    if 1 < len(nodes) <= int(spec["search_nodes"]):
        base = plans[best]
        if timed[best]["verdict"] == FASTER:  # leave one operator out of the best
            trial = {n: q.write(work / f"without-{i}.onnx", **base, exclude=[n])
                     for i, n in enumerate(nodes)}
            per_node = _timed(trial, paths[best], x, spec)[0]
            drop = [n for n in nodes if per_node[n]["verdict"] == FASTER]
            plan = {**base, "exclude": drop} if drop else None
        else:  # each operator alone
            trial = {n: q.write(work / f"only-{i}.onnx", op_types=COMPUTE_OPS, nodes=[n])
                     for i, n in enumerate(nodes)}
            per_node = _timed(trial, fp32, x, spec)[0]
            keep = [n for n in nodes if per_node[n]["verdict"] == FASTER]
            plan = {"op_types": COMPUTE_OPS, "nodes": keep} if keep else None
        record["nodes"] = {n: {k: c[k] for k in ("ratio", "ratio_low", "ratio_high", "verdict")}
                           for n, c in per_node.items()}
        if plan:
            paths["nodes"] = q.write(work / "candidate-nodes.onnx", **plan)
            plans["nodes"] = plan
            timed, times = _timed(paths, fp32, x, spec)
            record["candidates"] = {k: {**plans[k], **timed[k]} for k in timed}
            best = pick_fastest(times)
    record["chosen"] = best
    return paths[best], json.loads(json.dumps(record))
