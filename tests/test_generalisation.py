"""Zero-shot evaluation (analysis/generalisation.py): a run scored on unseen test sets and per
manipulation, its files, its threshold, its planning and its config checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from test_stages import SPEC, write_faces

from deepfake_lth import cli
from deepfake_lth.analysis import generalisation as gen
from deepfake_lth.core.errors import ConfigError
from deepfake_lth.stages import methods
from deepfake_lth.stages.dense import train_dense
from deepfake_lth.stages.spec import parse_spec
from deepfake_lth.training.scoring import equal_error_rate
from deepfake_lth.workflow import config as study_config

torch.set_num_threads(1)


def with_manipulations(folder, names):
    """Give the fakes of a packed dataset a manipulation each, in turn from ``names``."""
    manifest = pd.read_csv(folder / "manifest.csv")
    fake_videos = sorted(set(manifest.loc[manifest["label"] == 1, "video_id"]))
    of = {v: names[i % len(names)] for i, v in enumerate(fake_videos)}
    manifest["manipulation"] = manifest["video_id"].map(of).fillna("")
    manifest.to_csv(folder / "manifest.csv", index=False)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    faces_a = write_faces(root, "dsa", seed=1)
    faces_b = write_faces(root, "dsb", seed=2, videos=12)
    with_manipulations(faces_a, ["swap"])
    with_manipulations(faces_b, ["swap", "mouth"])
    manifest = pd.read_csv(faces_b / "manifest.csv")  # videos 6..11 (3 real, 3 fake): test
    number = manifest["video_id"].str.split("-").str[1].astype(int)
    manifest.loc[number >= 6, "split"] = "test"
    manifest.to_csv(faces_b / "manifest.csv", index=False)
    run = root / "dsa" / "mesonet" / "seed0" / "dense"
    train_dense(faces_a, run, "mesonet", 0, SPEC)
    (run / "cross" / "stale").mkdir(parents=True)  # a test set of an earlier config
    table = root / "generalisation" / "dsa" / "mesonet" / "seed0.csv"
    code = cli.main(["generalise", "--runs", str(run), "--model", "mesonet", "--source", "dsa",
                     "--faces", f"dsa={faces_a}", f"dsb={faces_b}", "--manipulations",
                     "--spec", json.dumps({"input_size": 32}), "--threads", "1",
                     "--out", str(table)])
    assert code == 0
    return run, faces_b, table


def test_every_test_set_gets_metrics_and_predictions(scored):
    run, faces_b, table = scored
    found = {m["test_set"]: m for m in gen.read_cross(run)}
    assert not (run / "cross" / "stale").exists()
    rows = pd.read_csv(table)
    assert sorted(rows["test_set"]) == ["dsb", "dsb/mouth", "dsb/swap"]
    assert np.allclose(rows.set_index("test_set")["video_auc"],
                       [found[t]["video_auc"] for t in rows["test_set"]])
    # dsa has one manipulation: its own test split is the run's metrics.json, nothing more
    assert set(found) == {"dsb", "dsb/mouth", "dsb/swap"}
    own = json.loads((run / "metrics.json").read_text())
    manifest = pd.read_csv(faces_b / "manifest.csv", keep_default_na=False)
    test = manifest[manifest["split"] == "test"]
    for name, m in found.items():
        pred = pd.read_csv(run / "cross" / name / "predictions.csv")
        assert m["zero_shot"] and m["target"] == "dsb" and m["method"] == "dense"
        assert m["val_threshold"] == own["val_threshold"]
        videos = pred.groupby("video_id").agg(prob=("prob", "mean"), label=("label", "max"))
        assert m["video_auc"] == pytest.approx(roc_auc_score(videos["label"], videos["prob"]))
        assert m["eer"] == pytest.approx(equal_error_rate(pred["label"], pred["prob"]))
        acc = np.mean((pred["prob"] > own["val_threshold"]) == (pred["label"] > 0.5))
        assert m["acc_val_threshold"] == pytest.approx(acc)
        assert m["samples"] == len(pred) and m["real_videos"] == 3
        # a video's mean p(fake) is judged at the threshold chosen on validation video means
        assert m["val_video_threshold"] == own["val_video_threshold"]
        video_acc = np.mean((videos["prob"] > own["val_video_threshold"]) == (videos["label"] > 0.5))
        assert m["video_acc_val_threshold"] == pytest.approx(video_acc)
    whole = pd.read_csv(run / "cross" / "dsb" / "predictions.csv")
    assert whole["row"].tolist() == test["index"].tolist()
    mouth = pd.read_csv(run / "cross" / "dsb" / "mouth" / "predictions.csv")
    fakes = test[(test["label"] == 1) & (test["manipulation"] == "mouth")]
    assert set(mouth.loc[mouth["label"] == 1, "video_id"]) == set(fakes["video_id"])
    # a subset of the same predictions: the model ran once per test split
    merged = mouth.merge(whole, on="row", suffixes=("", "_all"))
    assert np.allclose(merged["prob"], merged["prob_all"])


def test_faces_and_videos_each_get_their_own_threshold():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    probs = np.array([0.1, 0.5, 0.3, 0.3, 0.6, 0.2, 0.7, 0.7])
    videos = np.array(["r1", "r1", "r2", "r2", "f1", "f1", "f2", "f2"])  # means .3 .3 .4 .7
    out = gen.score(labels, probs, videos, 0.55, 0.35)
    assert out["acc_val_threshold"] == pytest.approx(7 / 8)  # face .2 of f1 missed
    assert out["video_acc_val_threshold"] == 1.0  # at 0.55 video f1 (mean .4) would be missed
    assert gen.score(labels, probs, videos, 0.55)["video_acc_val_threshold"] == 0.75
    assert gen.thresholds_of({"val_threshold": 0.4}) == (0.4, 0.4)
    assert gen.thresholds_of({}) == (0.5, 0.5)


def test_a_manipulation_left_out_of_training_is_marked(scored, tmp_path):
    run, faces_b, _ = scored
    (faces_b / "summary.json").write_text(json.dumps({"train_manipulations": ["swap"]}))
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("checkpoint.pt", "metrics.json"):
        (copy / name).write_bytes((run / name).read_bytes())
    rows = gen.generalise([copy], "mesonet", {"dsb": faces_b}, "dsb", True, None,
                          parse_spec({"input_size": 32}))
    assert {r["test_set"]: r["held_out"] for r in rows} == {"dsb/mouth": True,
                                                             "dsb/swap": False}
    assert not any(r["zero_shot"] for r in rows)


def test_planning_and_config_checks():
    config = {"generalisation": [{"from": "a", "to": ["b", "c"]},
                                 {"from": "a", "to": ["c"], "manipulations": True},
                                 {"from": "b", "to": ["a"]}]}
    assert gen.sources(config) == ["a", "b"]
    assert gen.targets(config, "a") == ["b", "c"]
    assert gen.faces_needed(config, "a") == ["a", "b", "c"]
    assert gen.faces_needed(config, "b") == ["a"]
    assert gen.faces_needed(config, "c") == []
    assert gen.folder_name("Face 2/Face") == "Face_2_Face"
    smoke = study_config.validate(study_config.read_yaml("config/smoke.yaml"))
    levels = gen.cross_levels(smoke, "smoke-images", "mesonet", 0)
    assert [f"{lv.method}/{lv.path.name}" for lv in levels][:3] == [
        "dense/dense", "imp-global/round1", "imp-global/round2"]
    # dense, 2 + 2 IMP rounds, 2 one-shot levels, 1 structured round, 1 KD round
    assert len(levels) == 9
    # smoke-videos: its own runs, then the tickets of smoke-images transferred to it
    to_videos = gen.cross_levels(smoke, "smoke-videos", "mesonet", 0)
    transferred = [lv.path.as_posix() for lv in to_videos if "/transfer/" in lv.path.as_posix()]
    assert not any("/transfer/" in lv.path.as_posix() for lv in to_videos[:9])  # own runs first
    assert methods.parse_transfer_method(smoke, "dense-finetuned") == ("dense-finetuned", 0.0)
    assert methods.parse_transfer_method(smoke, "imp-global-sparsity20")[0] == "imp-global"
    pair = "results/transfer/smoke-images-to-smoke-videos/mesonet/seed0/"
    assert transferred[:2] == [pair + "dense-finetuned", pair + "imp-global-sparsity20"]
    assert len(transferred) == 5 and not any(t.endswith("/dense") for t in transferred)
    base = study_config.read_yaml("config/smoke.yaml")
    for bad, text in (([{"from": "smoke-images", "to": ["nope"]}], r"generalisation\[0\].*'nope'"),
                      ([{"from": "smoke-images", "to": ["smoke-images"]}], "names its 'from'"),
                      ([{"from": "smoke-images"}], "nothing to score")):
        with pytest.raises(ConfigError, match=text):
            study_config.validate({**base, "generalisation": bad})


def test_bad_faces_argument_names_the_form(tmp_path, capsys):
    code = cli.main(["generalise", "--runs", str(tmp_path), "--model", "mesonet", "--source", "a",
                     "--faces", "nofolder"])
    assert code != 0
    assert "--faces 'nofolder': expected DATASET=FOLDER" in capsys.readouterr().err


def _cross_rows(ticket_probs, seeds=(0,), dense_probs=None):
    dense_probs = (np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8, 0.9]) if dense_probs is None
                   else dense_probs)
    n = len(dense_probs)
    labels = (np.arange(n) >= n // 2).astype(int)
    ids = [f"v{i}" for i in range(n)]

    def videos(p):
        return pd.DataFrame({"prob": p, "label": labels}, index=pd.Index(ids, name="video_id"))

    rows = []
    for seed in seeds:
        base = {"dataset": "a", "model": "mesonet", "seed": seed, "test_set": "b",
                "zero_shot": True, "manipulation": ""}
        rows += [
            base | {"method": "dense", "level": "dense", "sparsity": 0.0,
                    "per_video": videos(dense_probs)},
            base | {"method": "imp-global", "level": "round1", "sparsity": 0.2,
                    "per_video": videos(ticket_probs)},
            base | {"method": "imp-global", "level": "round9", "sparsity": 0.87,  # past 80 %
                    "per_video": videos(1 - dense_probs)},
            base | {"method": "imp-global", "level": "round1", "sparsity": 0.2,
                    "test_set": "a/x", "zero_shot": False,
                    "per_video": videos(1 - dense_probs)},  # not cross-dataset
        ]
    return pd.DataFrame(rows)


def test_claim_generalisation_verdicts():
    from deepfake_lth.analysis.claims_beyond import claim_generalisation
    from deepfake_lth.analysis.stats import FAILS, HOLDS, NOT_RUN, ONE_SEED, UNCLEAR

    same_probs = np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8, 0.9])
    # planted degenerate case: 4 videos a class, the ticket scoring as dense: no certainty
    same = claim_generalisation(_cross_rows(same_probs, seeds=(0, 1, 2)))
    assert same.verdict == UNCLEAR and "fewer than 10 per class" in same.why
    assert "at 20 %" in same.evidence[0] and "+0.000" in same.evidence[0]
    assert "δ = 5 AUC points" in same.rule and "Holm" in same.rule
    # 40 videos a class, the ticket's scores a little off dense's: it keeps the AUC
    rng = np.random.default_rng(3)
    dense = rng.random(80) * 0.7 + 0.3 * (np.arange(80) >= 40)
    close = claim_generalisation(_cross_rows(dense + 0.05 * rng.random(80), (0, 1, 2), dense))
    assert close.verdict == HOLDS, close.evidence
    assert "paired by video over 80 test videos and 3 seeds" in close.evidence[0]
    wide = claim_generalisation(_cross_rows(dense + 0.05 * rng.random(80), (0, 1, 2), dense),
                                {"claims": {"auc_margin": 0.001}})
    assert wide.verdict != HOLDS and "δ = 0 AUC points" in wide.rule
    worse = claim_generalisation(_cross_rows(np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2, 0.3, 0.4]),
                                             seeds=(0, 1, 2)))
    assert worse.verdict == FAILS
    # one seed: one training run per network, not judged
    one = claim_generalisation(_cross_rows(same_probs))
    assert (one.verdict, one.why) == (UNCLEAR, ONE_SEED)
    assert claim_generalisation(pd.DataFrame()).verdict == NOT_RUN


def test_report_section_reads_the_cross_folders(scored):
    from deepfake_lth.report.collect import collect_metrics
    from deepfake_lth.report.common import Figures
    from deepfake_lth.report.generalisation import collect_cross, section

    run, faces_b, _ = scored
    root = run.parents[3]
    runs, _ = collect_metrics(root)
    cross = collect_cross(root, runs)
    assert sorted(cross["test_set"]) == ["dsa (in-domain)", "dsb", "dsb/mouth", "dsb/swap"]
    whole = cross.set_index("test_set").loc["dsb"]
    metrics = json.loads((run / "cross" / "dsb" / "metrics.json").read_text())
    assert whole["video_auc"] == metrics["video_auc"] and whole["eer"] == metrics["eer"]
    config = {"generalisation": [{"from": "dsa", "to": ["dsb"], "manipulations": True}]}
    sec = section(root, runs, config, Figures(None), None)
    (part,) = sec.parts
    auc, video_auc, eer, ap = part.tables  # DeepfakeBench's metrics, a table each
    names = ["dsa (in-domain)", "dsb", "dsb/mouth", "dsb/swap"]
    assert all(c.startswith(n) for c, n in zip(auc.columns[3:-1], names, strict=True))
    assert auc.columns[-1] == "Mean of unseen" and "EER: " in eer.note
    assert auc.rows[0][:3] == ["mesonet", "dense", "0.0"]
    assert auc.rows[0][4] == f"{metrics['auc']:.3f}"
    assert video_auc.rows[0][4] == f"{metrics['video_auc']:.3f}"
    assert eer.rows[0][4] == f"{metrics['eer']:.3f}" and ap.rows[0][4] == f"{metrics['ap']:.3f}"
    assert part.figure is not None and sec.claims[0].verdict  # no IMP run: not run
    assert section(root, runs, {}, Figures(None), None) is None
