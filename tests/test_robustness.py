"""The robustness stage (analysis/robustness.py), its config and planning, what tickets
forget (analysis/forgetting.py), the robustness claim and the report's section."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from test_stages import SPEC, write_faces

from deepfake_lth import cli
from deepfake_lth.analysis import forgetting
from deepfake_lth.analysis import robustness as robust
from deepfake_lth.core.errors import ConfigError
from deepfake_lth.data import perturbations as pert
from deepfake_lth.stages.dense import train_dense
from deepfake_lth.workflow import config as study_config

torch.set_num_threads(1)


# --------------------------------------------------------------------------- config


def test_config_validation_names_the_allowed_perturbations_and_levels():
    base = study_config.read_yaml("config/smoke.yaml")
    with pytest.raises(ConfigError, match=r"'robustness.perturbations\[1\]': 'fog' is not a "
                       r"perturbation; allowed: colour-saturation, .*jpeg, resize"):
        study_config.validate({**base, "robustness": {"perturbations": ["jpeg", "fog"]}})
    for level in (0, 6):
        with pytest.raises(ConfigError, match=rf"'robustness.levels\[1\]': {level} is out of "
                           "range for jpeg; its levels are 1 to 5"):
            study_config.validate({**base, "robustness": {"perturbations": ["jpeg"],
                                                          "levels": [1, level]}})
    with pytest.raises(ConfigError, match=r"robustness.methods\[0\]"):
        study_config.validate({**base, "robustness": {"methods": ["imp-nope"]}})
    off = study_config.validate(study_config.read_yaml("config/paper.yaml"))
    assert off["robustness"]["methods"] == [] and robust.jobs(off) == []


def test_planning_covers_dense_and_the_methods_levels():
    smoke = study_config.validate(study_config.read_yaml("config/smoke.yaml"))
    levels = robust.robust_levels(smoke, "smoke-images", "mesonet", 0)
    assert [f"{lv.method}/{lv.path.name}" for lv in levels] == [
        "dense/dense", "imp-global/round1", "imp-global/round2"]
    assert robust.conditions(smoke) == [("gaussian-noise", 2), ("video-compression", 2)]
    assert robust.jobs(smoke) == [("smoke-images", "mesonet", 0), ("smoke-videos", "mesonet", 0)]
    two = {**smoke, "robustness": {**smoke["robustness"],
                                   "methods": ["imp-global", "oneshot-global", "snip"]}}
    names = [lv.path.name for lv in robust.robust_levels(two, "smoke-images", "mesonet", 0)]
    assert names == ["dense", "round1", "round2", "sparsity20", "sparsity36"]  # snip: not run
    other = {**smoke, "robustness": {**smoke["robustness"], "models": ["cnn5"]}}
    assert robust.jobs(other) == []
    from deepfake_lth.workflow.code import job_code

    code = job_code("deepfake_lth.analysis.robustness", model="mesonet", relative_to="src")
    assert "deepfake_lth/data/perturbations/video_compression.py" in code


# --------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    faces = write_faces(root, "dsa", seed=1, videos=14)
    manifest = pd.read_csv(faces / "manifest.csv")  # 6..9, 12, 13 (3 real, 3 fake): test
    number = manifest["video_id"].str.split("-").str[1].astype(int)
    manifest.loc[number.between(6, 9), "split"] = "test"
    manifest["manipulation"] = np.where(manifest["label"] == 1,
                                        np.where(number % 4 == 1, "swap", "mouth"), "")
    manifest.to_csv(faces / "manifest.csv", index=False)
    base = root / "dsa" / "mesonet" / "seed0"
    train_dense(faces, base / "dense", "mesonet", 0, SPEC)
    ticket = base / "imp-global" / "round1"  # the dense network's weights as a stand-in
    shutil.copytree(base / "dense", ticket)
    metrics = json.loads((ticket / "metrics.json").read_text())
    (ticket / "metrics.json").write_text(json.dumps(
        metrics | {"method": "imp-global", "criterion": "global", "round": 1, "sparsity": 0.2}))
    (base / "dense" / "robust" / "stale" / "1").mkdir(parents=True)  # an earlier config's
    table = root / "robustness" / "dsa" / "mesonet" / "seed0.csv"
    code = cli.main(["robustness", "--runs", str(base / "dense"), str(ticket), "--model",
                     "mesonet", "--source", "dsa", "--faces", str(faces), "--perturbations",
                     "gaussian-noise", "video-compression", "--levels", "1", "5",
                     "--spec", json.dumps({"input_size": 32}), "--threads", "1",
                     "--out", str(table)])
    assert code == 0
    return root, faces, base, table


def test_the_stage_writes_metrics_with_an_auc_for_every_run_and_level(scored):
    root, faces, base, table = scored
    rows = pd.read_csv(table)
    assert len(rows) == 2 * 4 and set(rows["method"]) == {"dense", "imp-global"}
    assert not (base / "dense" / "robust" / "stale").exists()
    test = pd.read_csv(faces / "manifest.csv").query("split == 'test'")
    for run in (base / "dense", base / "imp-global" / "round1"):
        found = {(m["perturbation"], m["level"]): m for m in robust.read_robust(run)}
        assert set(found) == {("gaussian-noise", 1), ("gaussian-noise", 5),
                              ("video-compression", 1), ("video-compression", 5)}
        own = json.loads((run / "metrics.json").read_text())
        for (name, level), m in found.items():
            pred = pd.read_csv(run / "robust" / name / str(level) / "predictions.csv")
            assert pred["row"].tolist() == test["index"].tolist()
            assert m["auc"] == pytest.approx(roc_auc_score(pred["label"], pred["prob"]))
            assert m["auc_drop"] == pytest.approx(own["test_auc"] - m["auc"])
            assert m["parameter"] == pert.get(name).parameter(level)
            assert m["samples"] == len(test) and m["method"] == own["method"]
    # both runs scored on the same perturbed faces (their weights are the same)
    a = pd.read_csv(base / "dense" / "robust" / "video-compression" / "5" / "predictions.csv")
    b = pd.read_csv(base / "imp-global" / "round1" / "robust" / "video-compression" / "5"
                    / "predictions.csv")
    assert np.allclose(a["prob"], b["prob"])
    clean = pd.read_csv(base / "dense" / "predictions.csv")
    assert not np.allclose(a["prob"], clean["prob"])


def test_a_level_out_of_range_fails_before_any_work(scored, capsys):
    root, faces, base, _ = scored
    code = cli.main(["robustness", "--runs", str(base / "dense"), "--model", "mesonet",
                     "--source", "dsa", "--faces", str(faces), "--perturbations", "jpeg",
                     "--levels", "9"])
    assert code == 2 and "levels 1 to 5" in capsys.readouterr().err
    assert (base / "dense" / "robust" / "gaussian-noise").is_dir()


# --------------------------------------------------------------------------- forgetting


def planted_units(ticket_probs, seeds=(0, 1, 2), conditions=("clean",)):
    """Units of a dense network and one ticket level: 4 real then 4 fake videos (v4, v5 swap;
    v6, v7 mouth), the dense probabilities fixed, the ticket's per seed from
    ``ticket_probs(seed, condition)``."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    dense = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.4])
    rows = []
    for seed in seeds:
        for condition in conditions:
            for method, level, s, probs in (("dense", "dense", 0.0, dense),
                                            ("imp-global", "round4", 0.59,
                                             ticket_probs(seed, condition))):
                for i in range(8):
                    rows.append({"dataset": "a", "model": "mesonet", "seed": seed,
                                 "method": method, "level": level, "sparsity": s,
                                 "condition": condition, "video_id": f"v{i}",
                                 "label": labels[i], "prob": probs[i]})
    return pd.DataFrame(rows)


MANIPULATIONS = {("a", "v4"): "swap", ("a", "v5"): "swap", ("a", "v6"): "mouth",
                 ("a", "v7"): "mouth"}


def test_pruning_identified_exemplars_on_planted_predictions():
    # seed 0 and 1 flip v4 (a fake the dense networks get right): modal flip; seed 2 alone
    # flips v1; v2 is a tie (one seed of two) decided by the mean p(fake) 0.55; v7 was wrong
    # and is now right (a PIE, not forgotten)
    def ticket(seed, condition):
        p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.4])
        p[7] = 0.9
        if seed in (0, 1):
            p[4] = 0.2
        if seed == 2:
            p[1] = 0.9
        return p

    units = planted_units(ticket)
    modal = forgetting.modal(units)
    t = modal[modal["method"] == "imp-global"].set_index("video_id")
    assert t.loc["v4", "predicted"] == 0 and t.loc["v1", "predicted"] == 0
    assert t.loc["v4", "fake_votes"] == pytest.approx(1 / 3) and t.loc["v4", "seeds"] == 3
    tie = forgetting.modal(units[units["seed"] != 0].assign(
        prob=lambda d: np.where((d["video_id"] == "v2") & (d["seed"] == 1), 0.9, d["prob"])))
    row = tie[(tie["method"] == "imp-global") & (tie["video_id"] == "v2")].iloc[0]
    assert row["fake_votes"] == 0.5 and row["predicted"] == 1  # mean p(fake) 0.6 > 0.5
    pies = forgetting.pies(modal, MANIPULATIONS)
    assert set(pies.loc[pies["pie"], "video_id"]) == {"v4", "v7"}
    assert set(pies.loc[pies["forgotten"], "video_id"]) == {"v4"}
    shares = forgetting.shares(pies).set_index("manipulation")
    assert shares.loc["all", "pie"] == pytest.approx(2 / 8)
    assert shares.loc["all", "forgotten"] == pytest.approx(1 / 8)
    assert shares.loc["swap", "pie"] == pytest.approx(1 / 2)
    assert shares.loc["mouth", "pie"] == pytest.approx(1 / 2)
    assert shares.loc["real", "pie"] == 0 and shares.loc["all", "units"] == 8
    worst = forgetting.most_forgotten(pies, 3)
    assert worst["video_id"].tolist() == ["v4"] and worst["times"].tolist() == [1]


def test_forgetting_by_perturbation_compares_on_the_same_perturbed_faces():
    def ticket(seed, condition):
        p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.4])
        if condition == "jpeg/3":  # under JPEG the ticket calls every fake real
            p[4:] = 0.1
        return p

    units = planted_units(ticket, conditions=("clean", "jpeg/3"))
    shares = forgetting.shares(forgetting.pies(forgetting.modal(units), MANIPULATIONS))
    whole = shares[shares["manipulation"] == "all"].set_index("condition")
    assert whole.loc["clean", "pie"] == 0
    assert whole.loc["jpeg/3", "pie"] == pytest.approx(3 / 8)  # v7 was called real already
    assert whole.loc["jpeg/3", "forgotten"] == pytest.approx(3 / 8)


def test_auc_contrast_of_two_scorings_is_delongs_paired_difference():
    from deepfake_lth.analysis.delong import paired_auc_diff

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(30), np.ones(30)]
    a, b = rng.random(60) + 0.3 * labels, rng.random(60) + 0.1 * labels
    mine = robust.auc_contrast(labels, [a, b], [1.0, -1.0], "x")
    ref = paired_auc_diff(labels, a, b)
    assert mine.mean == pytest.approx(ref.mean) and mine.se == pytest.approx(ref.se)
    assert mine.mean == pytest.approx(roc_auc_score(labels, a) - roc_auc_score(labels, b))
    assert robust.auc_contrast(labels[:31], [a[:31]], [1.0], "x") is None  # one fake


def test_claim_robustness_verdicts():
    from deepfake_lth.analysis.stats import FAILS, HOLDS, NOT_RUN, ONE_SEED, UNCLEAR

    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(40), np.ones(40)]
    clean = {s: rng.random(80) * 0.6 + 0.4 * labels for s in range(3)}

    def units(ticket_breaks: bool, seeds=(0, 1, 2)):
        rows = []
        for seed in seeds:
            noisy = clean[seed] * 0.7 + 0.3 * rng.random(80)  # dense and ticket alike
            # the ticket: its own small wobble (identical scores would have no variance)
            broken = rng.random(80) if ticket_breaks else noisy + 0.02 * rng.random(80)
            for method, level, s, cond, probs in (
                    ("dense", "dense", 0.0, "clean", clean[seed]),
                    ("dense", "dense", 0.0, "gaussian-noise/2", noisy),
                    ("imp-global", "round4", 0.59, "clean", clean[seed]),
                    ("imp-global", "round4", 0.59, "gaussian-noise/2", broken),
                    ("imp-global", "round9", 0.87, "clean", clean[seed]),  # past 80 %
                    ("imp-global", "round9", 0.87, "gaussian-noise/2", rng.random(80))):
                rows += [{"dataset": "a", "model": "mesonet", "seed": seed, "method": method,
                          "level": level, "sparsity": s, "condition": cond,
                          "video_id": f"v{i}", "label": labels[i], "prob": probs[i]}
                         for i in range(80)]
        return pd.DataFrame(rows)

    keeps = robust.claim_robustness(units(False), 0.05, 0.8)
    assert keeps.verdict == HOLDS and len(keeps.evidence) == 1
    assert "at 59 %, Gaussian noise" in keeps.evidence[0]
    assert "δ = 5 AUC points" in keeps.rule and "Holm" in keeps.rule
    assert robust.claim_robustness(units(True), 0.05, 0.8).verdict == FAILS
    one = robust.claim_robustness(units(False, seeds=(0,)), 0.05, 0.8)
    assert (one.verdict, one.why) == (UNCLEAR, ONE_SEED)
    assert robust.claim_robustness(pd.DataFrame(), 0.05, 0.8).verdict == NOT_RUN


# --------------------------------------------------------------------------- the report


def test_report_section_has_the_claim_the_curves_and_the_gallery(scored, tmp_path):
    from deepfake_lth.report import robustness as section_module
    from deepfake_lth.report.collect import collect_metrics
    from deepfake_lth.report.common import Figures

    root, faces, base, _ = scored
    config = study_config.validate({
        "results": str(root), "seeds": [0],
        "datasets": {"dsa": {"source": {"type": "synthetic", "kind": "videos"}}},
        "models": {"mesonet": {"input_size": 32}},
        "prune": {"rounds": 1, "criteria": ["global"]}, "oneshot": {"criteria": []},
        "gradcam": {"sparsities": [0.0]}, "transfer": {"methods": ["imp-global"]},
        "robustness": {"perturbations": ["gaussian-noise", "video-compression"],
                       "levels": [1, 5], "methods": ["imp-global"]}})
    ticket = base / "imp-global" / "round1"
    saved = {run: (run / "predictions.csv").read_text() for run in (base / "dense", ticket)}
    pred = pd.read_csv(base / "dense" / "predictions.csv")
    try:  # plant it: the dense network right on every video, the ticket wrong on the fakes
        for run, fake_prob in ((base / "dense", 0.9), (ticket, 0.1)):
            pred.assign(prob=np.where(pred["label"] == 1, fake_prob, 0.2)).to_csv(
                run / "predictions.csv", index=False)
        runs, _ = collect_metrics(root, config)
        ctx = SimpleNamespace(results_dir=root, config=config, runs=runs, model_order=None,
                              figures=Figures(tmp_path / "figures"))
        sec = section_module.section(ctx)
        recs = section_module.records(root, config, runs)
        pies = forgetting.pies(forgetting.modal(forgetting.unit_table(recs, [])), {})
        shown = forgetting.gallery(faces, "mesonet", 32, section_module.gallery_picks(
            pies, recs, "dsa", "mesonet"))
    finally:
        for run, text in saved.items():
            (run / "predictions.csv").write_text(text)
    assert sorted(f.video_id for f in shown) == ["dsa-13", "dsa-7", "dsa-9"]
    for f in shown:  # the "ticket" has the dense weights: the same map and p(fake)
        assert f.label == 1 and f.image.shape == (32, 32, 3) and f.sparsity == 0.2
        assert np.array_equal(f.dense_map, f.ticket_map) and f.dense_prob == f.ticket_prob
        assert 0 <= f.dense_map.min() and f.dense_map.max() <= 1
    assert sec.title == "Robustness" and len(sec.claims) == 1
    assert "keep the dense network's robustness" in sec.claims[0].text
    (part,) = sec.parts
    assert part.figure is not None and len(part.figures) == 1  # the curves and the gallery
    assert (tmp_path / "figures" / "forgotten_dsa_mesonet.png").is_file()
    summary, forgot = part.tables
    assert summary.columns[:4] == ["Method", "Sparsity (%)", "Clean", "Mean over perturbations"]
    assert [r[:2] for r in summary.rows] == [["Dense", "0.0"], ["IMP-Global", "20.0"]]
    row = dict(zip(forgot.columns, forgot.rows[0], strict=True))
    assert row["PIEs"] == "50.0" and row["Forgotten"] == "50.0"  # 3 of 6 videos: the fakes
    assert row["PIEs: real"] == "0.0" and row["PIEs: mouth"] == "100.0"
