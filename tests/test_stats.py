"""Confidence intervals, paired tests, winning tickets and the claims' verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from deepfake_lth.analysis import claims as claims_mod
from deepfake_lth.analysis import stats, tickets
from deepfake_lth.stages import methods
from deepfake_lth.workflow import config as study_config

COLUMNS = ["dataset", "model", "seed", "method", "level", "sparsity", "test_acc",
           "test_samples"]
IMP = [("round1", 0.2), ("round2", 0.36), ("round4", 0.59), ("round7", 0.79)]


def runs_frame(rows) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=COLUMNS)


def study(dense, curves: dict[str, list[float]], seeds=(0, 1, 2), dataset="dsA",
          model="mesonet", n_test=1_000_000, jitter=(0.0, 0.004, -0.003)):
    """Rows of one dataset × model: the dense network and methods at IMP's levels."""
    rows = []
    for i, seed in enumerate(seeds):
        j = jitter[i % len(jitter)]
        rows.append((dataset, model, seed, "dense", "dense", 0.0, dense + j, n_test))
        for method, accs in curves.items():
            for (level, s), acc in zip(IMP, accs, strict=True):
                if method.startswith("oneshot") or method in ("snip", "grasp"):
                    level = f"sparsity{round(100 * s)}"
                # a per-method wobble so differences are not the same on every seed
                wobble = 0.002 * ((seed + len(method)) % 3 - 1)
                rows.append((dataset, model, seed, method, level, s, acc + j + wobble, n_test))
    return rows


# --------------------------------------------------------------------------- intervals


def test_mean_ci_matches_scipy_t_interval() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10):
        v = rng.normal(0.6, 0.05, n)
        ci = stats.mean_ci(v)
        low, high = sps.t.interval(0.95, n - 1, loc=v.mean(), scale=sps.sem(v))
        assert ci.n == n and ci.mean == pytest.approx(v.mean())
        assert (ci.low, ci.high) == pytest.approx((low, high))
        assert ci.sd == pytest.approx(v.std(ddof=1))
        assert stats.ci_bounds(v) == pytest.approx((low, high))
    ci90 = stats.mean_ci([0.5, 0.6, 0.7], confidence=0.9)
    assert ci90.half_width == pytest.approx(sps.t.ppf(0.95, 2) * 0.1 / math.sqrt(3))
    one = stats.mean_ci([0.7, math.nan, None])
    assert one.n == 1 and one.mean == 0.7 and math.isnan(one.low) and math.isnan(one.high)
    assert stats.mean_ci([]).n == 0 and math.isnan(stats.mean_ci([]).mean)
    same = stats.mean_ci([0.5, 0.5, 0.5])
    assert (same.low, same.high, same.sd) == (0.5, 0.5, 0.0)


def test_binomial_standard_error() -> None:
    assert stats.binomial_se(0.5, 100) == pytest.approx(0.05)
    assert stats.binomial_se(0.9, 400) == pytest.approx(math.sqrt(0.9 * 0.1 / 400))
    assert math.isnan(stats.binomial_se(0.5, 0)) and math.isnan(stats.binomial_se(math.nan, 9))


def test_paired_test_matches_scipy_ttest_rel() -> None:
    a = {0: 0.61, 1: 0.64, 2: 0.60, 3: 0.66, 9: 0.5}
    b = {0: 0.58, 1: 0.63, 2: 0.59, 3: 0.61, 4: 0.7}
    res = stats.paired_test(a, b)
    x, y = [a[k] for k in (0, 1, 2, 3)], [b[k] for k in (0, 1, 2, 3)]
    ref = sps.ttest_rel(x, y)
    assert res.n_pairs == 4 and res.note == ""
    assert res.t == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    assert res.mean_diff == pytest.approx(np.mean(np.subtract(x, y)))
    ci = stats.mean_ci(np.subtract(x, y))
    assert (res.low, res.high) == pytest.approx((ci.low, ci.high))
    assert res.significant == (ref.pvalue < 0.05)
    # fewer than two pairs: no test
    few = stats.paired_test({0: 0.6, 1: math.nan}, {0: 0.5, 1: 0.4})
    assert few.n_pairs == 1 and few.note == stats.NOT_ENOUGH_SEEDS
    assert few.mean_diff == pytest.approx(0.1) and math.isnan(few.p) and not few.significant
    none = stats.paired_test({}, {0: 0.5})
    assert none.n_pairs == 0 and none.note == stats.NOT_ENOUGH_SEEDS
    flat = stats.paired_test({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.6})
    assert math.isnan(flat.p) and "same difference" in flat.note


# --------------------------------------------------------------------------- tables


def test_summarize_and_paired_comparisons() -> None:
    runs = runs_frame(study(0.62, {"imp-global": [0.63, 0.62, 0.61, 0.58],
                                   "oneshot-global": [0.62, 0.60, 0.58, 0.54]}))
    summary = stats.summarize(runs)
    row = summary[(summary["method"] == "imp-global") & (summary["level"] == "round7")].iloc[0]
    values = runs[(runs["method"] == "imp-global") & (runs["level"] == "round7")]["test_acc"]
    ci = stats.mean_ci(values)
    assert row["n"] == 3 and row["sparsity"] == pytest.approx(0.79)
    assert (row["mean"], row["low"], row["high"]) == pytest.approx((ci.mean, ci.low, ci.high))

    comp = stats.paired_comparisons(runs, "imp-global", "oneshot-global")
    assert list(comp["level_b"]) == ["sparsity20", "sparsity36", "sparsity59", "sparsity79"]
    last = comp.iloc[-1]
    a = runs[(runs["method"] == "imp-global") & (runs["level"] == "round7")]
    b = runs[(runs["method"] == "oneshot-global") & (runs["level"] == "sparsity79")]
    ref = sps.ttest_rel(a.sort_values("seed")["test_acc"], b.sort_values("seed")["test_acc"])
    assert last["n_pairs"] == 3 and last["p"] == pytest.approx(ref.pvalue)
    assert last["mean_diff"] == pytest.approx(0.04, abs=0.005)
    # levels further apart than the tolerance are not compared
    shifted = runs.assign(sparsity=np.where(runs["method"] == "oneshot-global",
                                            runs["sparsity"] + 0.03, runs["sparsity"]))
    assert stats.paired_comparisons(shifted, "imp-global", "oneshot-global").empty


# --------------------------------------------------------------------------- winning tickets


def test_winning_tickets_with_seeds_and_with_one_seed() -> None:
    curves = {"imp-global": [0.625, 0.62, 0.60, 0.55],
              "control-reinit": [0.60, 0.63, 0.55, 0.50],
              "control-random-mask": [0.58, 0.57, 0.54, 0.50]}
    runs = runs_frame(study(0.62, curves))
    table = tickets.winning_tickets(runs, "imp-global", ["reinit", "random-mask"])
    by_level = table.set_index("level")
    # the SE is that of the paired ticket − dense difference over seeds
    d = [by_seed - dense for by_seed, dense in zip(
        runs[(runs["method"] == "imp-global") & (runs["level"] == "round2")]["test_acc"],
        runs[runs["method"] == "dense"]["test_acc"], strict=True)]
    # plus, without predictions.csv, the binomial SE over the 10⁶ test images
    binomial = stats.se_diff(0.62, 0.62, 1_000_000)
    assert by_level.loc["round2", "se"] == pytest.approx(
        math.sqrt(np.var(d, ddof=1) / 3 + binomial**2), rel=0.01)
    # the interval's t has Welch–Satterthwaite degrees of freedom, near the 3 seeds' 2
    vs = by_level.loc["round2", "vs_dense"]
    assert 2 <= vs.df < 5 and vs.q == pytest.approx(sps.t.ppf(0.975, vs.df))
    assert set(table["basis"]) == {"controls with other training"}
    assert bool(by_level.loc["round1", "paper"]) and bool(by_level.loc["round1", "above_controls"])
    # round2: within the 2-point margin of dense but below the re-init control
    assert bool(by_level.loc["round2", "within_margin"])
    assert not by_level.loc["round2", "above_controls"]
    # round4 is 2 points below dense: its interval reaches below −δ
    assert not bool(by_level.loc["round4", "within_margin"])
    # a verdict needs the matched control: without it no round is judged a winning ticket
    assert set(table["verdict"]) == {stats.NOT_RUN} and not table["winning"].any()
    assert tickets.winning_up_to(table) == {("dsA", "mesonet"): None}
    # a wider margin admits round4
    wide = tickets.winning_tickets(runs, "imp-global", [], margin=0.05).set_index("level")
    assert bool(wide.loc["round4", "within_margin"])

    # one seed on an image set: the binomial SE of the difference on n_test images
    one = runs_frame(study(0.62, curves, seeds=(0,), n_test=400))
    t0 = tickets.winning_tickets(one, "imp-global", [])
    assert t0["se"].iloc[0] == pytest.approx(math.hypot(math.sqrt(0.625 * 0.375 / 400),
                                                        math.sqrt(0.62 * 0.38 / 400)), rel=0.05)
    assert set(t0["basis"]) == {"no control"}
    # one seed: the binomial interval over 400 images (± 6.6 points) reaches below −δ
    assert not t0["within_margin"].any()
    assert tickets.winning_up_to(t0)[("dsA", "mesonet")] is None


def test_d5_ticket_must_beat_the_matched_control() -> None:
    """D5: the controls from θ0 have had one training, the ticket k more; a ticket above them
    but level with the matched control (trained as the ticket, pruned at random) is not a
    winning ticket. The claim is judged at the first round of 50 % or more (round4, 59 %)."""
    matched = methods.MATCHED_CONTROL
    curves = {"imp-global": [0.63, 0.625, 0.62, 0.60],
              "control-reinit": [0.55, 0.54, 0.53, 0.50],
              "control-random-mask": [0.55, 0.54, 0.53, 0.50],
              f"control-{matched}": [0.629, 0.624, 0.619, 0.599]}
    runs = runs_frame(study(0.62, curves))
    is_matched = runs["method"] == f"control-{matched}"
    runs.loc[is_matched, "test_acc"] += runs.loc[is_matched, "seed"].map({0: 0.01, 1: -0.01,
                                                                           2: 0.0})
    controls = ["reinit", "random-mask", matched]
    table = tickets.winning_tickets(runs, "imp-global", controls, matched=matched)
    assert set(table["basis"]) == {"matched control"}
    assert bool(table["above_controls"].all())  # above the θ0 controls by their means
    assert set(table["matched_outcome"]) == {stats.TIE}  # level with the matched control
    assert not table["winning"].any()
    assert bool(table.set_index("level").loc["round1", "paper"])  # a′ ≥ a, shown beside
    cfg = {"controls": controls}
    claim = claims_by_text(claims_mod.evaluate_claims(runs, None, None, cfg))[
        "Deepfake detectors contain winning tickets at substantial sparsity"]
    assert claim.verdict == stats.UNCLEAR and claim.why == ""
    assert "round4 (59 %)" in claim.evidence[0] and "a′ ≥ a" in claim.rule
    assert len(claim.evidence) == 2  # ticket − dense (margin) and ticket − matched control
    # a ticket clearly above the matched control wins
    better = runs.assign(test_acc=np.where(is_matched, runs["test_acc"] - 0.05,
                                           runs["test_acc"]))
    table = tickets.winning_tickets(better, "imp-global", controls, matched=matched)
    assert set(table["matched_outcome"]) == {stats.GREATER}
    assert list(table["winning"])[:3] == [True, True, True]
    claim = claims_by_text(claims_mod.evaluate_claims(better, None, None, cfg))[
        "Deepfake detectors contain winning tickets at substantial sparsity"]
    assert claim.verdict == stats.HOLDS
    # without the matched control the claim is not judged at all
    claim = claims_by_text(claims_mod.evaluate_claims(
        better[~is_matched], None, None, {"controls": ["reinit", "random-mask"]}))[
        "Deepfake detectors contain winning tickets at substantial sparsity"]
    assert claim.verdict == stats.NOT_RUN and "did not run" in claim.evidence[0]


DIFFICULTY = np.random.default_rng(0).random(2000)  # the shared test images' difficulty


def image_table(acc: float, key: int, n: int = 2000, noise: float = 0.02) -> pd.DataFrame:
    """Per-image results of a network of accuracy ``acc`` on the shared test images: the
    easiest ``acc`` · n by the shared difficulty plus this run's noise (``key``) are right;
    even rows real, odd rows fake."""
    u = DIFFICULTY[:n] + noise * np.random.default_rng(key).standard_normal(n)
    right = np.zeros(n, dtype=int)
    right[np.argsort(u)[: round(acc * n)]] = 1
    return pd.DataFrame({"n": 1, "correct": right, "fake": np.arange(n) % 2},
                        index=pd.Index([f"i{v:04d}" for v in range(n)], name="video_id"))


def with_units(runs: pd.DataFrame, n: int = 2000) -> pd.DataFrame:
    """``runs`` with per-image tables (predictions.csv) of each row's accuracy."""
    tables = [image_table(acc, 7919 * i + 1, n) for i, acc in enumerate(runs["test_acc"])]
    return runs.assign(per_video=tables,
                       test_acc=[t["correct"].mean() for t in tables], test_samples=n)


def planted_ticket(gap: float, seeds=(0, 1, 2)) -> pd.DataFrame:
    """A planted study on 2,000 shared test images: the ticket ``gap`` below dense at every
    round (seed jitter ±0.3 points), the matched control 10 points below the ticket."""
    matched = methods.MATCHED_CONTROL
    rows = []
    for seed, j in zip(seeds, (0.0, 0.003, -0.003), strict=False):
        rows.append(("dsA", "mesonet", seed, "dense", "dense", 0.0, 0.80 + j, 2000))
        for (level, s), w in zip(IMP, (0.001, -0.001, 0.002, 0.0), strict=True):
            ticket = 0.80 - gap + j + w * (seed - 1)
            rows.append(("dsA", "mesonet", seed, "imp-global", level, s, ticket, 2000))
            rows.append(("dsA", "mesonet", seed, f"control-{matched}", level, s,
                         ticket - 0.10, 2000))
    return with_units(runs_frame(rows))


@pytest.mark.parametrize(("gap", "expected"), [(0.01, stats.HOLDS), (0.05, stats.FAILS),
                                               (0.02, stats.UNCLEAR)])
def test_a_ticket_is_judged_against_a_fixed_margin(gap, expected) -> None:
    """δ = 2 points: 1 point below dense over three seeds keeps dense accuracy, 5 points below
    does not, exactly 2 below cannot be told apart from the margin."""
    cfg = {"controls": [methods.MATCHED_CONTROL], "claims": {"margin": 0.02}}
    claim = claims_by_text(claims_mod.evaluate_claims(planted_ticket(gap), None, None, cfg))[
        "Deepfake detectors contain winning tickets at substantial sparsity"]
    assert claim.verdict == expected, claim.evidence
    assert "δ = 2 points" in claim.rule and "95 % interval" in claim.rule
    assert "Holm" in claim.rule


def test_one_seed_is_not_enough_evidence() -> None:
    cfg = {"controls": [methods.MATCHED_CONTROL]}
    claims = claims_mod.evaluate_claims(planted_ticket(0.05, seeds=(0,)), None, None, cfg)
    winning = claims_by_text(claims)[
        "Deepfake detectors contain winning tickets at substantial sparsity"]
    assert (winning.verdict, winning.why) == (stats.UNCLEAR, stats.ONE_SEED)
    assert "from one seed" in winning.evidence[0]
    assert not [c for c in claims if c.verdict in (stats.HOLDS, stats.FAILS)]


def test_holm_and_judge() -> None:
    assert stats.holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]  # 0.03 > 0.05/2
    assert stats.holm([0.01, 0.02, 0.04], 0.05) == [True, True, True]  # .01≤.05/3, .02≤.05/2
    assert stats.holm([math.nan, 0.001], 0.05) == [False, True]
    d = stats.Diff(0.03, 0.01, sps.t.ppf(0.975, 4), 5, "", 4)
    assert d.p_above(0.0) == pytest.approx(sps.t.sf(3.0, 4))
    assert d.p_below(0.05) == pytest.approx(sps.t.sf(2.0, 4))
    c = stats.superiority("a", d)
    assert stats.judge([c]) == (stats.HOLDS, "") and c.outcome == stats.GREATER
    # one comparison for and one far within the noise: Holm leaves the claim open
    noisy = stats.superiority("b", stats.Diff(0.001, 0.05, 2.0, 5, "", 4))
    assert stats.judge([c, noisy])[0] == stats.UNCLEAR
    # the 95 % interval's rule with one comparison: lower bound above −δ
    edge = stats.Diff(-0.01, 0.005, stats.Z, 3, "")
    assert edge.low > -0.02 and stats.judge([stats.non_inferiority("e", edge)])[0] == stats.HOLDS
    assert stats.judge([]) == (stats.NOT_RUN, "")


# --------------------------------------------------------------------------- decisions


def claims_by_text(claims) -> dict[str, claims_mod.Claim]:
    return {c.text.split(" (")[0]: c for c in claims}


CONFIG = {"datasets": {"imgs": {"source": {"type": "synthetic", "kind": "images"}},
                       "vids": {"source": {"type": "local", "layout": "faceforensics"}}},
          "controls": ["reinit", "random-mask"]}


def test_claims_hold_when_the_numbers_say_so() -> None:
    rows = []
    for model, drop in (("mesonet", 0.06), ("resnet18", 0.005)):
        rows += study(0.62, {"imp-global": [0.63, 0.62, 0.61, 0.62 - drop],
                             "imp-local": [0.61, 0.60, 0.59, 0.58 - drop],
                             "oneshot-global": [0.62, 0.60, 0.58, 0.55 - drop],
                             "control-reinit": [0.55, 0.54, 0.53, 0.50],
                             "control-random-mask": [0.55, 0.54, 0.53, 0.50],
                             "snip": [0.60, 0.58, 0.56, 0.52],
                             "grasp": [0.60, 0.58, 0.55, 0.51]},
                       dataset="imgs", model=model)
    rows += study(0.70, {"imp-local": [0.72, 0.72, 0.71, 0.70],
                         "imp-global": [0.70, 0.66, 0.65, 0.63]}, dataset="vids")
    # no predictions.csv: the binomial SE over the (many) test videos
    runs = runs_frame(rows).assign(test_videos=4000)
    deltas = pd.DataFrame([{"dataset": "imgs", "model": "mesonet", "group": "imp-global",
                            "seed": seed, "row": r, "sparsity": s,
                            "concentration": 0.2 + s * (0.2 + 0.01 * r + 0.01 * seed)}
                           for seed in (0, 1, 2) for r in range(12) for s in (0.0, 0.6, 0.8)])
    claims = claims_by_text(claims_mod.evaluate_claims(runs, None, deltas, CONFIG))
    assert claims["IMP-Global beats IMP-Local on the image set"].verdict == stats.HOLDS
    assert claims["IMP-Local beats IMP-Global on the video set"].verdict == stats.HOLDS
    assert claims["IMP ≥ one-shot pruning at 80 % sparsity"].verdict == stats.HOLDS
    assert claims["ResNet-18 is the most robust model under pruning"].verdict == stats.HOLDS
    narrow = claims["Pruned models narrow their Grad-CAM focus"]
    assert narrow.verdict == stats.HOLDS and "paired by face over 12 faces and 3 seeds" in narrow.evidence[0]
    assert claims["Iterative pruning"].verdict == stats.HOLDS
    # winning tickets are judged only against the matched control, which did not run here
    winning = claims["Deepfake detectors contain winning tickets at substantial sparsity"]
    assert winning.verdict == stats.NOT_RUN and "did not run" in winning.evidence[0]
    # the evidence names each comparison and the rule is stated
    c = claims["IMP-Global beats IMP-Local on the image set"]
    assert len(c.evidence) == 2 and all("counts for the claim" in e for e in c.evidence)
    assert "95 % interval" in c.rule
    assert claims["A ticket transferred at 60 % sparsity keeps the target's dense accuracy"
                  ].verdict == stats.NOT_RUN


def test_claims_fail_or_stay_open() -> None:
    # local beats global on the image set, one-shot beats IMP, no ResNet-18: the opposite verdicts
    runs = runs_frame(study(0.62, {"imp-global": [0.60, 0.59, 0.58, 0.54],
                                   "imp-local": [0.63, 0.62, 0.61, 0.60],
                                   "oneshot-global": [0.62, 0.61, 0.60, 0.59]},
                            dataset="imgs"))
    deltas = pd.DataFrame([{"dataset": "imgs", "model": "mesonet", "group": "imp-global",
                            "seed": seed, "row": r, "sparsity": s,
                            "concentration": 0.5 - s * (0.2 + 0.01 * r + 0.01 * seed)}
                           for seed in (0, 1) for r in range(4) for s in (0.0, 0.8)])
    claims = claims_by_text(claims_mod.evaluate_claims(runs, None, deltas, CONFIG))
    assert claims["IMP-Global beats IMP-Local on the image set"].verdict == stats.FAILS
    assert claims["IMP ≥ one-shot pruning at 80 % sparsity"].verdict == stats.FAILS
    assert claims["Pruned models narrow their Grad-CAM focus"].verdict == stats.FAILS
    resnet = claims["ResNet-18 is the most robust model under pruning"]
    assert resnet.verdict == stats.NOT_RUN and "not in this run" in resnet.evidence[0]
    assert claims["IMP-Local beats IMP-Global on the video set"].verdict == stats.NOT_RUN
    assert claims["Smaller pruning steps"].verdict == stats.NOT_RUN

    # one seed: a single training run per network, not evidence either way — even where the
    # test set is so large that the binomial interval excludes 0
    one = runs_frame(study(0.62, {"imp-global": [0.62, 0.61, 0.60, 0.575],
                                  "oneshot-global": [0.62, 0.61, 0.60, 0.50]},
                           seeds=(0,), dataset="imgs"))
    for frame in (one, one.assign(test_samples=10_000_000)):
        claim = claims_by_text(claims_mod.evaluate_claims(frame, None, None, CONFIG))[
            "IMP ≥ one-shot pruning at 80 % sparsity"]
        assert (claim.verdict, claim.why) == (stats.UNCLEAR, stats.ONE_SEED)

    empty = claims_mod.evaluate_claims(runs.iloc[0:0], None, None, {})
    assert len(empty) == 13 and {c.verdict for c in empty} == {stats.NOT_RUN}
    assert all(c.evidence for c in empty)  # each says why


def test_step_size_and_transfer_claims() -> None:
    rows = study(0.62, {"imp-global": [0.63, 0.62, 0.61, 0.56]}, dataset="imgs")
    for seed, j in zip((0, 1, 2), (0.0, 0.004, -0.003), strict=True):
        for k in range(1, 31):  # rate 0.05 reaches 78.5 % after 30 rounds
            s = 1 - 0.95**k
            rows.append(("imgs", "mesonet", seed, "imp-global-rate0.05", f"round{k}", s,
                         0.60 + j + 0.0001 * k * (1 + seed), 400))
    claims = claims_by_text(claims_mod.evaluate_claims(runs_frame(rows), None, None, CONFIG))
    step = claims["Smaller pruning steps"]
    assert step.verdict == stats.HOLDS
    assert "IMP-Global (rate 0.05) − IMP-Global" in step.evidence[0]

    transfers = with_units(pd.DataFrame([
        {"pair": "a-to-b", "model": "mesonet", "seed": s, "method": m, "test_acc": acc + j,
         "test_samples": 2000}
        for s, j in zip((0, 1, 2), (0.0, 0.01, -0.01), strict=True)
        for m, acc in (("dense", 0.60), ("imp-global-sparsity59", 0.61 + 0.002 * s),
                       ("oneshot-global-sparsity59", 0.40))
    ]))
    claim = claims_by_text(claims_mod.evaluate_claims(runs_frame(rows), transfers, None, CONFIG))[
        "A ticket transferred at 60 % sparsity keeps the target's dense accuracy"]
    assert claim.verdict == stats.HOLDS and len(claim.evidence) == 2  # one-shot is not IMP
    assert "paired by image over 2000 test images and 3 seeds" in claim.evidence[0]
    assert "fine-tuned on the target did not run" in claim.evidence[1]
    # judged against both baselines: a fine-tuned source network 10 points better fails it
    finetuned = with_units(transfers[transfers["method"] == "dense"].assign(
        method=methods.DENSE_FINETUNED, test_acc=lambda t: t["test_acc"] + 0.1))
    both = pd.concat([transfers, finetuned], ignore_index=True)
    claim = claims_by_text(claims_mod.evaluate_claims(runs_frame(rows), both, None, CONFIG))[
        "A ticket transferred at 60 % sparsity keeps the target's dense accuracy"]
    assert claim.verdict == stats.FAILS and len(claim.evidence) == 2
    assert "fine-tuned on the target =" in claim.evidence[1]
    worse = with_units(transfers.assign(test_acc=np.where(transfers["method"] == "dense",
                                                          transfers["test_acc"] + 0.1,
                                                          transfers["test_acc"])))
    claim = claims_by_text(claims_mod.evaluate_claims(runs_frame(rows), worse, None, CONFIG))[
        "A ticket transferred at 60 % sparsity keeps the target's dense accuracy"]
    assert claim.verdict == stats.FAILS


def test_dataset_kind() -> None:
    assert claims_mod.dataset_kind(CONFIG, "imgs") == "images"
    assert claims_mod.dataset_kind(CONFIG, "vids") == "videos"
    assert claims_mod.dataset_kind({"datasets": {"x": {"source": {"type": "local"}}}}, "x") is None
    assert claims_mod.dataset_kind({"datasets": {"x": {"kind": "images",
                                                  "source": {"type": "urls"}}}}, "x") == "images"


# --------------------------------------------------------------------------- D1–D3


def video_table(n_videos: int, n_correct: int, frames: int, offset: int = 0) -> pd.DataFrame:
    """Per-video test results whose frames agree perfectly within each video: videos
    ``offset`` … ``offset + n_correct − 1`` (cyclically) right, the others wrong."""
    right = {(offset + i) % n_videos for i in range(n_correct)}
    return pd.DataFrame({"n": frames, "correct": [frames if v in right else 0
                                                  for v in range(n_videos)]},
                        index=pd.Index([f"v{v:03d}" for v in range(n_videos)], name="video_id"))


def video_runs(dataset: str, model: str, seeds, correct: dict[str, list[int]], n_videos: int,
               frames: int) -> list[dict]:
    """Rows with per_video tables: ``correct[method]`` = correct videos per IMP level (the
    dense network: one value)."""
    rows = []
    for seed in seeds:
        for method, per_level in correct.items():
            levels = [("dense", 0.0)] if method == "dense" else IMP
            for (level, s), c in zip(levels, per_level, strict=True):
                table = video_table(n_videos, c, frames)
                rows.append({"dataset": dataset, "model": model, "seed": seed, "method": method,
                             "level": level, "sparsity": s,
                             "test_acc": table["correct"].sum() / table["n"].sum(),
                             "test_samples": n_videos * frames, "test_videos": n_videos,
                             "per_video": table})
    return rows


def image_runs(dataset: str, model: str, seeds, accs: dict[str, list[float]], n: int) -> list:
    rows = []
    for seed in seeds:
        for method, per_level in accs.items():
            levels = [("dense", 0.0)] if method == "dense" else IMP
            for (level, s), acc in zip(levels, per_level, strict=True):
                rows.append({"dataset": dataset, "model": model, "seed": seed, "method": method,
                             "level": level, "sparsity": s, "test_acc": acc, "test_samples": n})
    return rows


def preset(name: str, tmp_path) -> dict:
    cfg = study_config.validate(study_config.read_yaml(name))
    cfg["resources"] = str(tmp_path / "resources")  # nothing acquired: the config decides
    return cfg


@pytest.mark.parametrize("name", ["config/paper.yaml", "config.yaml", "config/controls.yaml"])
def test_d1_criterion_claims_hold_under_every_preset(name, tmp_path) -> None:
    """D1: with each preset's validated config and results in which IMP-Global beats
    IMP-Local by a clear margin on every image set and the reverse on every video set (every
    round, seed and model), both claims hold (or are not run where the preset lacks that kind
    of set)."""
    cfg = preset(name, tmp_path)
    kinds = {d: claims_mod.dataset_kind(cfg, d) for d in cfg["datasets"]}
    assert set(kinds.values()) <= {"images", "videos"}
    if name == "config/paper.yaml":
        assert kinds == {"openforensics": "images", "ffpp-celebdf": "videos"}
    rows = []
    for dataset, kind in kinds.items():
        for model in cfg["models"]:
            if kind == "images":
                rows += image_runs(dataset, model, cfg["seeds"],
                                   {"dense": [0.62], "imp-global": [0.64, 0.63, 0.62, 0.60],
                                    "imp-local": [0.58, 0.57, 0.56, 0.54]}, n=11_000)
            else:
                rows += video_runs(dataset, model, cfg["seeds"],
                                   {"dense": [40], "imp-local": [48, 47, 47, 46],
                                    "imp-global": [36, 35, 34, 33]}, n_videos=60, frames=40)
    runs = pd.DataFrame(rows)
    claims = claims_by_text(claims_mod.evaluate_claims(runs, None, None, cfg))
    images = claims["IMP-Global beats IMP-Local on the image set"]
    videos = claims["IMP-Local beats IMP-Global on the video set"]
    # a preset with one seed (the demo) cannot judge a comparison of trained networks
    judged = stats.HOLDS if len(cfg["seeds"]) >= 2 else stats.UNCLEAR
    want = {k: judged if k in kinds.values() else stats.NOT_RUN for k in ("images", "videos")}
    assert (images.verdict, videos.verdict) == (want["images"], want["videos"])
    if want["videos"] != stats.NOT_RUN:
        assert all("paired by video over 60 test videos" in e for e in videos.evidence)


def test_d1_kind_from_what_was_acquired(tmp_path) -> None:
    cfg = preset("config/paper.yaml", tmp_path)
    res = tmp_path / "resources"
    (res / "openforensics").mkdir(parents=True)
    (res / "ffpp-celebdf").mkdir(parents=True)
    pd.DataFrame({"path": ["a.jpg", "b.jpg"], "video_id": ["a", "b"], "label": [0, 1],
                  "split": "", "kind": "image", "group": ""}).to_csv(
        res / "openforensics" / "sources.csv", index=False)
    # frame images grouped into videos by group_regex: a video set
    pd.DataFrame({"path": ["x_1.jpg", "x_2.jpg", "y_1.jpg"], "video_id": ["x", "x", "y"],
                  "label": [0, 0, 1], "split": "", "kind": "image", "group": ""}).to_csv(
        res / "ffpp-celebdf" / "sources.csv", index=False)
    assert claims_mod.dataset_kind(cfg, "openforensics") == "images"
    assert claims_mod.dataset_kind(cfg, "ffpp-celebdf") == "videos"
    # what was acquired beats the layout; an explicit kind beats both
    pd.DataFrame({"path": ["x.mp4"], "video_id": ["x"], "label": [0], "split": "",
                  "kind": "video", "group": ""}).to_csv(res / "openforensics" / "sources.csv",
                                                        index=False)
    assert claims_mod.dataset_kind(cfg, "openforensics") == "videos"
    cfg["datasets"]["openforensics"]["kind"] = "images"
    assert claims_mod.dataset_kind(cfg, "openforensics") == "images"
    # a non-synthetic source type alone decides nothing
    assert claims_mod.dataset_kind(
        {"datasets": {"x": {"source": {"type": "kaggle", "layout": "folders"}}},
         "resources": str(res)}, "x") is None


def test_d3_the_video_is_the_unit(tmp_path) -> None:
    """D3: frames of one video are not independent. With every frame of a video agreeing, the
    verdict is the same with 40 frames per video as with 1 (here: 3 of 20 videos apart is
    within the noise), where a binomial SE over frames would call it at 40."""
    cfg = {"datasets": {"vids": {"kind": "videos", "source": {"type": "local"}}}}
    verdicts = {}
    for frames in (1, 40):
        runs = pd.DataFrame(video_runs("vids", "mesonet", [0], {
            "dense": [13], "imp-local": [14, 14, 14, 14], "imp-global": [11, 11, 11, 11]},
            n_videos=20, frames=frames))
        claim = claims_by_text(claims_mod.evaluate_claims(runs, None, None, cfg))[
            "IMP-Local beats IMP-Global on the video set"]
        verdicts[frames] = claim.verdict
        assert "paired by video over 20 test videos" in claim.evidence[0]
        diff = stats.estimate_diff(runs, "vids", "mesonet", "imp-local", "imp-global",
                                   [("round1", "round1")], "videos")
        # 3 of 20 videos differ: D = 0.15, cluster SE = √(20/19 · Σ (1/20)² (dᵥ − D)²)
        d = np.r_[np.zeros(11), np.ones(3), np.zeros(6)]
        se = math.sqrt(20 / 19 * np.sum((d - 0.15) ** 2) / 400)
        assert (diff.mean, diff.se) == pytest.approx((0.15, se))
    assert verdicts == {1: stats.UNCLEAR, 40: stats.UNCLEAR}
    # several seeds: the between-seed variance is added to the video term
    runs = pd.DataFrame(video_runs("vids", "mesonet", [0, 1], {
        "imp-local": [14, 14, 14, 14], "imp-global": [11, 11, 11, 11]}, n_videos=20, frames=5))
    shifted = runs.copy()
    two = stats.estimate_diff(shifted, "vids", "mesonet", "imp-local", "imp-global",
                              [("round1", "round1")], "videos")
    assert two.n_seeds == 2 and "and 2 seeds" in two.how
    assert two.se == pytest.approx(se)  # the same differences on both seeds: no seed term


def test_kd_claim_compares_kd_with_imp_at_the_same_sparsities() -> None:
    better = study(0.62, {"imp-global": [0.60, 0.59, 0.58, 0.55],
                          "kd-global": [0.66, 0.65, 0.64, 0.61]}, dataset="imgs",
                   n_test=100_000)
    kd = claims_by_text(claims_mod.evaluate_claims(runs_frame(better), None, None, CONFIG))
    claim = next(c for t, c in kd.items() if t.startswith("IMP tickets retrained"))
    assert claim.verdict == stats.HOLDS
    assert "KD IMP-Global − IMP-Global" in claim.evidence[0]
    worse = study(0.62, {"imp-global": [0.66, 0.65, 0.64, 0.61],
                         "kd-global": [0.60, 0.59, 0.58, 0.55]}, dataset="imgs",
                  n_test=100_000)
    kd = claims_by_text(claims_mod.evaluate_claims(runs_frame(worse), None, None, CONFIG))
    assert next(c for t, c in kd.items() if t.startswith("IMP tickets retrained")).verdict \
        == stats.FAILS


def test_paired_auc_diff_delong_by_hand():
    from sklearn.metrics import roc_auc_score

    from deepfake_lth.analysis.delong import paired_auc_diff

    labels = np.array([1, 1, 1, 0, 0, 0])
    a = np.array([0.9, 0.8, 0.4, 0.3, 0.5, 0.1])
    b = np.array([0.6, 0.2, 0.7, 0.3, 0.5, 0.1])
    d = paired_auc_diff(labels, a, b)
    assert d.mean == pytest.approx(roc_auc_score(labels, a) - roc_auc_score(labels, b))
    # placements of the fakes: a (1, 1, 2/3), b (1, 1/3, 1); of the reals: a (1, 2/3, 1),
    # b (2/3, 2/3, 1)
    fakes, reals = np.array([0, 2 / 3, -1 / 3]), np.array([1 / 3, 0, 0])
    assert d.se == pytest.approx(np.sqrt(fakes.var(ddof=1) / 3 + reals.var(ddof=1) / 3))
    same = paired_auc_diff(labels, a, a)
    assert same.mean == 0 and same.se == 0
    assert paired_auc_diff(np.array([1, 0, 0]), a[:3], b[:3]) is None
