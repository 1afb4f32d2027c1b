"""The claims' decision rule: shared-unit variance, no certainty from nothing, reachable
verdicts (intersection–union for "holds", Holm for "does not hold"), and what each undecided
claim needs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from deepfake_lth.analysis import claims as claims_mod
from deepfake_lth.analysis import stats, tickets
from deepfake_lth.analysis.claims_beyond import seeds_auc_diff
from deepfake_lth.analysis.delong import paired_auc_diff
from deepfake_lth.stages import methods

WINNING = "Deepfake detectors contain winning tickets at substantial sparsity"
MATCHED = methods.MATCHED_CONTROL


def by_text(claims) -> dict:
    return {c.text.split(" (")[0]: c for c in claims}


def images(correct, fake=None) -> pd.DataFrame:
    correct = np.asarray(correct, dtype=int)
    fake = np.arange(len(correct)) % 2 if fake is None else fake
    return pd.DataFrame({"n": 1, "correct": correct, "fake": fake},
                        index=pd.Index([f"i{v:04d}" for v in range(len(correct))],
                                       name="video_id"))


def study(tables: dict[tuple[str, str, int], pd.DataFrame], sparsity=0.59) -> pd.DataFrame:
    """Rows of dsA × mesonet from (method, level, seed) → per-image table."""
    rows = []
    for (method, level, seed), t in tables.items():
        rows.append({"dataset": "dsA", "model": "mesonet", "seed": seed, "method": method,
                     "level": level, "sparsity": 0.0 if method == "dense" else sparsity,
                     "test_acc": t["correct"].mean(), "test_samples": len(t),
                     "per_video": t})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- two-way variance


def test_two_way_is_the_unbiased_anova_estimate() -> None:
    """Uniform weights: (MS_seeds + MS_units − MS_residual) / (S·V), the unbiased estimate of
    Var(mean) = σ²(seed)/S + σ²(unit)/V + σ²(residual)/(S·V)."""
    rng = np.random.default_rng(0)
    s, v = 3, 50
    d = (rng.normal(0, 2, (s, 1)) + rng.normal(0, 2, (1, v)) + rng.normal(0, 3, (s, v)))
    grand = d.mean()
    ms_s = v * ((d.mean(1) - grand) ** 2).sum() / (s - 1)
    ms_u = s * ((d.mean(0) - grand) ** 2).sum() / (v - 1)
    resid = d - d.mean(1, keepdims=True) - d.mean(0, keepdims=True) + grand
    ms_e = (resid**2).sum() / ((s - 1) * (v - 1))
    spread = stats.two_way([(d, np.ones(v))])
    assert min(ms_s, ms_u) > ms_e  # no term floored
    assert spread.mean == pytest.approx(grand)
    assert spread.var == pytest.approx((ms_s + ms_u - ms_e) / (s * v))
    # the quantile weighs each term by its own t (modified large-sample interval)
    q = [sps.t.ppf(0.975, k) for k in (s - 1, v - 1, (s - 1) * (v - 1))]
    half = math.sqrt((q[0] ** 2 * ms_s + q[1] ** 2 * ms_u - q[2] ** 2 * ms_e) / (s * v))
    assert sps.t.ppf(0.975, spread.df) * math.sqrt(spread.var) == pytest.approx(half)
    # the shared units' own term B − C negative (pure residual noise): taken as 0, the seeds'
    # term alone is left
    flat = rng.normal(0, 3, (s, 40))
    ms = 40 * ((flat.mean(1) - flat.mean()) ** 2).sum() / (s - 1)
    floored = stats.two_way([(flat, np.ones(40))])
    b = s * ((flat.mean(0) - flat.mean()) ** 2).sum() / 39 / (s * 40)
    r = flat - flat.mean(1, keepdims=True) - flat.mean(0, keepdims=True) + flat.mean()
    c = (r**2).sum() / ((s - 1) * 39) / (s * 40)
    expected = ms / (s * 40) + max(b - c, 0.0)
    assert floored.var == pytest.approx(expected)


def test_two_way_covers_the_truth_by_simulation() -> None:
    """A shared test set (unit effects drawn once per study) and seed effects: the 95 %
    interval covers the true mean about 95 % of the time (seeds alone would not)."""
    rng = np.random.default_rng(1)
    hits, seed_only = 0, 0
    reps = 400
    for _ in range(reps):
        d = rng.normal(0, 0.5, (3, 1)) + rng.normal(0, 6, (1, 40)) + rng.normal(0, 1, (3, 40))
        diff = stats.spread_diff(stats.two_way([(d, np.ones(40))]), "")
        hits += diff.low <= 0 <= diff.high
        m = d.mean(1)
        half = 4.303 * m.std(ddof=1) / math.sqrt(3)
        seed_only += abs(m.mean()) <= half
    assert 0.92 <= hits / reps <= 0.98
    assert seed_only / reps < 0.85


# --------------------------------------------------------------------------- no certainty


def test_se_zero_is_not_certainty() -> None:
    """Planted: 2 seeds, the ticket beats the control on the same one image of 2,000 on both
    seeds (+0.05 points, the same on every seed): without predictions the binomial term keeps
    the SE above 0; with them the unit term does; neither gives "holds"."""
    base = np.r_[np.ones(1600, dtype=int), np.zeros(400, dtype=int)]
    plus = base.copy()
    plus[1700] = 1
    tables = {}
    for seed in (0, 1):
        tables[("dense", "dense", seed)] = images(base)
        tables[("imp-global", "round4", seed)] = images(plus)
        tables[(f"control-{MATCHED}", "round4", seed)] = images(base)
    runs = study(tables)
    cfg = {"controls": [MATCHED]}
    claim = by_text(claims_mod.evaluate_claims(runs, None, None, cfg))[WINNING]
    assert claim.verdict != stats.HOLDS
    no_predictions = runs.drop(columns="per_video")
    claim = by_text(claims_mod.evaluate_claims(no_predictions, None, None, cfg))[WINNING]
    assert claim.verdict != stats.HOLDS
    vs = tickets.winning_tickets(no_predictions, "imp-global", [MATCHED])["vs_matched"][0]
    assert vs.se > 0 and vs.low < 0 < vs.high


def test_a_constant_network_decides_nothing() -> None:
    """Every network right on the same images on every seed: every difference is 0 with no
    variance, "not enough evidence" with the reason."""
    base = np.r_[np.ones(1500, dtype=int), np.zeros(500, dtype=int)]
    tables = {(m, lv, seed): images(base) for seed in (0, 1, 2)
              for m, lv in (("dense", "dense"), ("imp-global", "round4"),
                            (f"control-{MATCHED}", "round4"))}
    diff = stats.estimate_diff(study(tables), "dsA", "mesonet", "imp-global", "dense",
                               [("round4", "dense")], "images")
    assert diff.se == 0 and "no variance" in diff.problem
    assert np.isnan(diff.p_above(-0.02)) and diff.outcome == stats.TIE
    claim = by_text(claims_mod.evaluate_claims(study(tables), None, None,
                                               {"controls": [MATCHED]}))[WINNING]
    assert claim.verdict == stats.UNCLEAR and "no variance" in claim.why
    assert "needs" in claim.needs and "vary" in claim.needs


def test_delong_on_five_videos_never_holds() -> None:
    """Planted: 5 test videos, the ticket and dense both rank them perfectly (AUC 1) on every
    seed: DeLong's SE is 0 and 2 fakes are below the minimum per class."""
    labels = pd.Series([0, 0, 0, 1, 1], index=[f"v{i}" for i in range(5)])
    probs = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    per_seed = [paired_auc_diff(labels, probs, probs) for _ in range(3)]
    diff = seeds_auc_diff(per_seed)
    assert "fewer than 10 per class" in diff.problem
    verdict, why = stats.judge([stats.non_inferiority("x", diff, 0.05)])
    assert verdict == stats.UNCLEAR and "per class" in why


def test_too_few_units_of_a_class() -> None:
    fake = np.r_[np.ones(6, dtype=int), np.zeros(994, dtype=int)]
    rng = np.random.default_rng(0)
    tables = {}
    for seed in (0, 1, 2):
        tables[("dense", "dense", seed)] = images(rng.random(1000) < 0.7, fake)
        tables[("imp-global", "round4", seed)] = images(rng.random(1000) < 0.9, fake)
    diff = stats.estimate_diff(study(tables), "dsA", "mesonet", "imp-global", "dense",
                               [("round4", "dense")], "images")
    assert diff.problem == "6 fake test images (fewer than 10 per class)"


# --------------------------------------------------------------------------- the rule


def test_holds_is_an_intersection_union_test_and_fails_by_holm() -> None:
    """16 comparisons, each for the claim at p = 0.01 < 0.025: "holds" (Holm on the side
    where every comparison must pass would need p ≤ 0.025/16). One against at p = 0.01 with
    16 comparisons is not enough for Holm (0.01 > 0.025/16): no verdict against."""
    d = stats.Diff(0.03, 0.03 / 2.6, stats.Z, 3, "", math.inf)
    comps = [stats.superiority(str(i), d) for i in range(16)]
    assert all(c.p_for < 0.025 for c in comps)
    assert stats.judge(comps) == (stats.HOLDS, "")
    against = stats.Diff(-0.03, 0.03 / 2.6, stats.Z, 3, "", math.inf)
    mixed = comps[:15] + [stats.superiority("x", against)]
    assert stats.judge(mixed)[0] == stats.UNCLEAR
    strong = stats.Diff(-0.03, 0.003, stats.Z, 3, "", math.inf)
    assert stats.judge(comps[:15] + [stats.superiority("x", strong)])[0] == stats.FAILS
    assert "intersection–union" in stats.RULE and "Holm" in stats.RULE


def test_ratio_claim_uses_the_delta_method() -> None:
    """The share kept, R = ticket/dense on the same images: its SE by the delta method agrees
    with the spread of R over simulated test sets and seeds."""
    rng = np.random.default_rng(2)
    n = 800
    estimates, ses = [], []
    for _ in range(60):
        hard = rng.random(n)
        tables = {}
        for seed in (0, 1, 2):
            shift = rng.normal(0, 0.01)
            tables[("dense", "dense", seed)] = images(hard + 0.1 * rng.random(n) < 0.8 + shift)
            tables[("imp-global", "round7", seed)] = images(
                hard + 0.1 * rng.random(n) < 0.72 + shift + rng.normal(0, 0.01))
        runs = study(tables, sparsity=0.79)
        diff = tickets.share_diff(runs, {}, "dsA", "mesonet", "imp-global", "round7", 0.9)
        estimates.append(diff.mean + 0.9)
        ses.append(diff.se)
        assert "delta method over 800 test images and 3 seeds" in diff.how
    assert float(np.mean(ses)) == pytest.approx(float(np.std(estimates, ddof=1)), rel=0.35)
    claim = by_text(claims_mod.evaluate_claims(runs, None, None, {}))[
        "IMP tickets at 80 % sparsity keep about 90 % or more of the dense accuracy"]
    assert "δ = 0.02" in claim.rule and "delta method" in claim.rule


# --------------------------------------------------------------------------- needs


def test_each_undecided_claim_says_what_it_needs() -> None:
    rng = np.random.default_rng(3)
    tables = {}
    for seed in (0,):
        tables[("dense", "dense", seed)] = images(rng.random(400) < 0.8)
        tables[("imp-global", "round4", seed)] = images(rng.random(400) < 0.8)
    runs = study(tables)
    claims = claims_mod.evaluate_claims(runs, None, None, {"controls": []})
    winning = by_text(claims)[WINNING]
    assert winning.verdict == stats.NOT_RUN
    assert winning.needs.startswith(f"needs the matched control: controls: [{MATCHED}]")
    tables[(f"control-{MATCHED}", "round4", 0)] = images(rng.random(400) < 0.7)
    one = by_text(claims_mod.evaluate_claims(study(tables), None, None,
                                             {"controls": [MATCHED]}))[WINNING]
    assert (one.verdict, one.why) == (stats.UNCLEAR, stats.ONE_SEED)
    assert one.needs.startswith("needs ≥ 2 seeds") and "models.mesonet.seeds" in one.needs
    assert all(c.needs for c in claims if c.verdict not in (stats.HOLDS, stats.FAILS))
    assert "needs" in claims_mod.__doc__


def test_the_controls_and_the_claim_judge_the_same_ticket() -> None:
    """One control ticket method: the config's prune.criteria[0], as the control stage's."""
    from deepfake_lth.stages.control import control_ticket_method

    runs = pd.DataFrame({"method": ["imp-global", "imp-local", "dense"]})
    cfg = {"prune": {"criteria": ["local", "global"]}}
    assert tickets.ticket_method(runs, cfg) == control_ticket_method(cfg) == "imp-local"
    assert tickets.ticket_method(runs, {}) == "imp-global"  # no config: the registry's first


@pytest.mark.slow
def test_calibration_harness_covers_on_every_path() -> None:
    """bench/calibration.py at 300 studies a cell (make bench): every path's 95 % interval
    covers the truth about 95 % of the time, and "holds" at the margin stays rare."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import calibration

    result = calibration.run(quick=True)
    for row in result["rows"]:
        assert 0.90 <= row["coverage"] <= 0.995, row
        assert row["false_holds"] <= 0.05, row
        if not row["decides"]:  # below the minimum of test units: an interval, no verdict
            assert row["false_holds"] == 0 and row["power"] == 0, row
    deciding = {(r["path"], r["size"]) for r in result["rows"] if r["decides"]}
    assert ("accuracy, paired by image (estimate_diff)", "demo") in deciding
    assert ("accuracy, paired by video (estimate_diff; transfer)", "demo") not in deciding
    below = result["targets"][2]
    assert below["met"] and len(below["measured"]) == len(result["rows"]) - len(
        [r for r in result["rows"] if r["decides"]])
