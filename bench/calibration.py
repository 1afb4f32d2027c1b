"""Calibration of the claims' statistics: each claim path simulated with a known truth.

    python bench/calibration.py [--quick] [--reps N]

Every path the claims take (analysis/stats.py, delong.py, tickets.py) is fed simulated
studies whose true difference is known: S seeds, each scoring the same V test units, with a
seed effect (between-seed SD of the difference: 1 point, or 1 AUC point) and unit effects
shared by every network and seed (a hard image is hard for all of them), at the demo's and the
paper preset's test sizes. The functions are the claims' own (two_way, spread_diff,
units_problem, judge, delong_contrast, seeds_delong, share_linearization); only the data are
simulated. Per path, size and number of seeds it reports:

* coverage: how often the 95 % interval holds the true difference (target 0.93–0.97);
* false "holds": how often a single comparison reads "holds" when the truth sits exactly
  on the margin (non-inferiority: −δ; superiority: 0); target ≤ 2.5 %;
* power: how often it reads "holds" at a true difference of 0 (non-inferiority, δ = 2
  points, or 5 AUC points) or +2 points (superiority, Grad-CAM).

The models. Accuracy: unit v's correctness for network m on seed s is
1{uᵥ + cₘ + bₛₘ + εₛᵥₘ > 0} (probit; uᵥ ~ N(0, 2²) the unit's ease, bₛₘ the seed effect,
ε ~ N(0, 1)), so the population accuracy is Φ(cₘ / √(1 + 2² + τ²)). Videos: 40 frames each,
ε per frame, plus a seed × video term N(0, 0.5²). AUC (DeLong): a unit's score is
yᵥ(μₘ + bₛₘ) + uᵥ + εₛᵥₘ, so the AUC is Φ(μₘ / √(2(1 + σᵤ²) + τ²)). Shares of dense
(delta method): the ratio of two accuracies. Grad-CAM: Gaussian per-face differences.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import main as cli_main  # noqa: E402

from deepfake_lth.analysis import stats  # noqa: E402
from deepfake_lth.analysis.delong import delong_contrast, seeds_delong  # noqa: E402
from deepfake_lth.analysis.tickets import share_linearization  # noqa: E402

SIGMA_U = 2.0  # the units' spread (probit): most units are easy or hard for every network
SEED_SD = 0.01  # between-seed SD of a difference: 1 point
MARGIN = 0.02  # claims.margin
AUC_MARGIN = 0.05  # claims.auc_margin
DENSE = 0.80  # the reference network's accuracy
COVERAGE = (0.93, 0.97)
FALSE_HOLDS = 0.025

# test units of the demo (demo-images: ~150 a class; demo-videos: ~5 a class; 4 Grad-CAM faces
# a class) and of the paper preset (OpenForensics ~11,000 test images; the FF++/Celeb-DF
# set's 60 test videos; 8 Grad-CAM faces a class)
SIZES = {"demo": {"images": 300, "videos": 10, "faces": 8},
         "paper": {"images": 11_000, "videos": 60, "faces": 16}}
FRAMES = 40


@dataclass(frozen=True)
class ClaimPath:
    """One claim path: ``draw(rng, size, seeds, truth)`` → a Diff of a simulated study whose
    true difference is ``truth``; ``margin``: δ (0: superiority); ``power_at``: the truth
    the power is measured at; ``unit``: what the size counts."""

    name: str
    unit: str
    margin: float
    power_at: float
    draw: Callable


def _probit_pair(rng, n_units: int, seeds: int, truth: float, extra=None):
    """Seeds × units correctness of A and B (B at DENSE), A − B = ``truth`` in the
    population; ``extra``: a per (seed, unit) term added to both (videos)."""
    s_tot = math.sqrt(1 + SIGMA_U**2)
    tau = SEED_SD * s_tot / (math.sqrt(2) * sps.norm.pdf(sps.norm.ppf(DENSE)))
    s_pop = math.sqrt(s_tot**2 + tau**2)
    c_b = sps.norm.ppf(DENSE) * s_pop
    c_a = sps.norm.ppf(DENSE + truth) * s_pop
    u = rng.normal(0, SIGMA_U, n_units)
    out = []
    for c in (c_a, c_b):
        latent = u[None, :] + c + rng.normal(0, tau, (seeds, 1))
        out.append(latent if extra is None else latent + extra(rng))
    return out


def accuracy_images(rng, n: int, seeds: int, truth: float):
    la, lb = _probit_pair(rng, n, seeds, truth)
    a = (la + rng.standard_normal(la.shape) > 0).astype(float)
    b = (lb + rng.standard_normal(lb.shape) > 0).astype(float)
    spread = stats.two_way([(a - b, np.ones(n))])
    return stats.spread_diff(spread, "", stats.units_problem(n / 2, n / 2, n, "images"))


def accuracy_videos(rng, n: int, seeds: int, truth: float):
    """Per-video accuracy over 40 frames, weighted by frames."""
    eta = 0.5  # seed × video term; the frame noise has variance 1 − η², so a frame's total
    # noise is N(0, 1) and the population accuracy stays Φ(c / √(1 + σᵤ² + τ²))
    la, lb = _probit_pair(rng, n, seeds, truth,
                          extra=lambda r: r.normal(0, eta, (seeds, n)))
    frame_sd = math.sqrt(1 - eta**2)
    a = (la[..., None] + frame_sd * rng.standard_normal((seeds, n, FRAMES)) > 0).mean(-1)
    b = (lb[..., None] + frame_sd * rng.standard_normal((seeds, n, FRAMES)) > 0).mean(-1)
    spread = stats.two_way([(a - b, np.full(n, FRAMES, dtype=float))])
    return stats.spread_diff(spread, "", stats.units_problem(n / 2, n / 2, n, "videos"))


def share_images(rng, n: int, seeds: int, truth: float):
    """The ticket's share of dense accuracy − 0.9 (truth: the shares' population value)."""
    target = 0.9 + truth  # the true share
    la, lb = _probit_pair(rng, n, seeds, DENSE * target - DENSE)
    a = (la + rng.standard_normal(la.shape) > 0).astype(float)
    b = (lb + rng.standard_normal(lb.shape) > 0).astype(float)
    r, z = share_linearization(a, b, np.ones(n))
    spread = stats.two_way([(z, np.ones(n))])
    return stats.spread_diff(stats.Spread(r - 0.9, spread.var, spread.df, seeds, n), "",
                             stats.units_problem(n / 2, n / 2, n, "images"))


def auc_delong(rng, n: int, seeds: int, truth: float):
    """AUC(A) − AUC(B), B at AUC 0.8; DeLong per seed, placements averaged over seeds."""
    sigma_u = 1.0
    s = math.sqrt(2 * (1 + sigma_u**2))
    tau = SEED_SD * s / (math.sqrt(2) * sps.norm.pdf(sps.norm.ppf(DENSE)))
    s_pop = math.sqrt(s**2 + tau**2)
    mu_b = sps.norm.ppf(DENSE) * s_pop
    mu_a = sps.norm.ppf(DENSE + truth) * s_pop
    y = (np.arange(n) % 2).astype(float)
    u = rng.normal(0, sigma_u, n)
    per_seed = []
    for _ in range(seeds):
        sa = y * (mu_a + rng.normal(0, tau)) + u + rng.standard_normal(n)
        sb = y * (mu_b + rng.normal(0, tau)) + u + rng.standard_normal(n)
        per_seed.append(delong_contrast(y, [sa, sb], [1.0, -1.0], ""))
    return seeds_delong(per_seed)


def gradcam_faces(rng, n: int, seeds: int, truth: float):
    """Concentration at the highest sparsity − dense, per face and seed (Gaussian)."""
    d = (truth + rng.normal(0, SEED_SD, (seeds, 1)) + rng.normal(0, 0.05, (1, n))
         + rng.normal(0, 0.03, (seeds, n)))
    problem = f"{n} faces" if n < stats.MIN_UNITS else ""
    return stats.spread_diff(stats.two_way([(d, np.ones(n))]), "", problem)


PATHS = [
    ClaimPath("accuracy, paired by image (estimate_diff)", "images", MARGIN, 0.0, accuracy_images),
    ClaimPath("accuracy, paired by video (estimate_diff; transfer)", "videos", MARGIN, 0.0,
          accuracy_videos),
    ClaimPath("share of dense accuracy (delta method)", "images", MARGIN, 0.0, share_images),
    ClaimPath("video AUC, DeLong over seeds (generalisation)", "videos", AUC_MARGIN, 0.0,
          auc_delong),
    ClaimPath("video AUC, DeLong over seeds, image target", "images", AUC_MARGIN, 0.0,
          auc_delong),
    ClaimPath("Grad-CAM concentration, paired by face", "faces", 0.0, 0.02, gradcam_faces),
]


def _verdict(diff, margin: float) -> str:
    comp = (stats.non_inferiority("", diff, margin) if margin > 0
            else stats.superiority("", diff))
    return stats.judge([comp])[0]


def cell(path: ClaimPath, n: int, seeds: int, reps: int, seed: int = 0) -> dict:
    """Coverage and false "holds" with the truth on the margin; power at ``power_at``."""
    rng = np.random.default_rng(seed)
    at_margin = -path.margin
    covered = holds_at_margin = holds_power = undecidable = 0
    for _ in range(reps):
        d = path.draw(rng, n, seeds, at_margin)
        covered += bool(np.isfinite(d.se) and d.low <= at_margin <= d.high)
        holds_at_margin += _verdict(d, path.margin) == stats.HOLDS
        undecidable += bool(d.problem)
        p = path.draw(rng, n, seeds, path.power_at)
        holds_power += _verdict(p, path.margin) == stats.HOLDS
    return {"path": path.name, "units": f"{n} {path.unit}", "seeds": seeds,
            "coverage": covered / reps, "false_holds": holds_at_margin / reps,
            "power": holds_power / reps, "margin": path.margin, "power_at": path.power_at,
            "reps": reps, "decides": undecidable < reps}


def mc_se(rate: float, reps: int) -> float:
    """The Monte Carlo standard error of a rate estimated from ``reps`` simulated studies."""
    return math.sqrt(max(rate * (1 - rate), 1e-12) / reps)


def check_targets(rows: list[dict]) -> list[dict]:
    """The targets over the cells that can decide (a cell below the minimum of test units
    shows an interval but never a verdict; its coverage is listed, not judged). A cell is
    outside a target when its estimate is beyond it by more than 2 Monte Carlo standard
    errors (the 22 cells' noise alone puts some estimates a standard error or two beyond a
    bound that holds exactly); the pooled false-"holds" rate of every deciding cell is
    judged the same way."""
    deciding = [r for r in rows if r["decides"]]
    cov = [r["coverage"] for r in deciding]
    outside_cov = [r for r in deciding if r["coverage"] + 2 * mc_se(r["coverage"], r["reps"])
                   < COVERAGE[0] or r["coverage"] - 2 * mc_se(r["coverage"], r["reps"])
                   > COVERAGE[1]]
    outside_fh = [r for r in deciding
                  if r["false_holds"] - 2 * mc_se(FALSE_HOLDS, r["reps"]) > FALSE_HOLDS]
    studies = sum(r["reps"] for r in deciding)
    pooled = sum(r["false_holds"] * r["reps"] for r in deciding) / max(studies, 1)
    return [
        {"target": "95 % coverage on every claim path (cells that can decide)",
         "goal": list(COVERAGE), "measured": [min(cov), max(cov)],
         "met": not outside_cov,
         "every_estimate_inside": COVERAGE[0] <= min(cov) and max(cov) <= COVERAGE[1],
         "outside_by_2_mc_se": [f"{r['path']} {r['units']} {r['seeds']} seeds" for r in
                                outside_cov]},
        {"target": "false holds at the margin (cells that can decide)", "goal": FALSE_HOLDS,
         "measured": max(r["false_holds"] for r in deciding),
         "pooled": pooled, "pooled_mc_se": mc_se(pooled, studies),
         "met": pooled - 2 * mc_se(pooled, studies) <= FALSE_HOLDS and not outside_fh,
         "outside_by_2_mc_se": [f"{r['path']} {r['units']} {r['seeds']} seeds" for r in
                                outside_fh]},
        {"target": "cells below the minimum of test units: never a verdict",
         "measured": [f"{r['path']} {r['units']}: holds at the margin {r['false_holds']:.3f}, "
                      f"at power {r['power']:.3f}" for r in rows if not r["decides"]],
         "met": all(r["false_holds"] == 0 and r["power"] == 0
                    for r in rows if not r["decides"])},
    ]


def seeds_for_power(path: ClaimPath, n: int, reps: int, goal: float = 0.8,
                    most: int = 12) -> tuple[int | None, dict[int, float]]:
    """The fewest seeds whose power reaches ``goal`` (None: not within ``most``)."""
    found: dict[int, float] = {}
    for seeds in range(2, most + 1):
        found[seeds] = cell(path, n, seeds, reps, seed=100 + seeds)["power"]
        if found[seeds] >= goal:
            return seeds, found
    return None, found


def run(quick: bool, reps: int | None = None) -> dict:
    reps = reps or (300 if quick else 2000)
    rows = []
    for path in PATHS:
        for size in ("demo", "paper"):
            n = SIZES[size][path.unit]
            if path.name.endswith("image target") and size == "demo":
                continue
            for seeds in (3, 5):
                rows.append({"size": size, **cell(path, n, seeds, reps)})
    needed, power = seeds_for_power(PATHS[0], SIZES["paper"]["images"], reps)
    targets = check_targets(rows) + [
        {"target": "seeds for power 0.8 (accuracy, paper test set, true difference 0)",
         "measured": needed, "power_by_seeds": power},
    ]
    return {"rows": rows, "reps": reps, "power_by_seeds": power, "seeds_needed": needed,
            "targets": targets}


def table(result: dict) -> str:
    lines = [f"{result['reps']} simulated studies per cell; between-seed SD of the difference "
             "1 point (1 AUC point); δ = 2 points (accuracy, share), 5 AUC points (AUC), 0 "
             "(Grad-CAM: superiority, power at +2 points).", "",
             "| path | size | test units | seeds | decides | 95 % coverage | false \"holds\" "
             "at the margin | power of \"holds\" |", "|---|---|---:|---:|:---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['path']} | {r['size']} | {r['units']} | {r['seeds']} | "
                     f"{'yes' if r['decides'] else 'no'} | {r['coverage']:.3f} | "
                     f"{100 * r['false_holds']:.1f} % | {100 * r['power']:.0f} % |")
    power = ", ".join(f"{s}: {100 * p:.0f} %" for s, p in result["power_by_seeds"].items())
    lines += ["", f"Power of \"holds\" by seeds (accuracy paired by image, 11,000 test images, "
              f"true difference 0, δ = 2 points): {power}; power 0.8 needs "
              f"{result['seeds_needed']} seeds."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=None,
                        help="simulated studies per cell (default 2000, --quick 300)")
    reps = parser.parse_known_args(argv)[0].reps
    return cli_main(__doc__, lambda quick: run(quick, reps), table,
                    "300 studies per cell instead of 2000", argv, parser)


if __name__ == "__main__":
    raise SystemExit(main())
