"""The robustness stage (analysis/robustness.py), its config and planning, what tickets
forget (analysis/forgetting.py), the robustness claim and the report's section."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from test_stages import SPEC, write_faces

from deepfake_lth import cli, stages
from deepfake_lth.analysis import robustness as robust
from deepfake_lth.core.errors import ConfigError
from deepfake_lth.data import perturbations as pert
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
    assert "data/perturbations/video_compression.py" in robust.code_files()


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
    stages.train_dense(faces, base / "dense", "mesonet", 0, SPEC)
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
