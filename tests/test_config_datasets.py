"""Config checks of the datasets (role, faces_from, train_manipulations), a source replaced by
one of another type, and the compression/distill model lists and tickets."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from deepfake_lth.core.errors import ConfigError
from deepfake_lth.data.dataset_kind import dataset_kind
from deepfake_lth.workflow import config as study_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo() -> dict:
    return study_config.read_yaml(ROOT / "config.yaml")


def _problems(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        study_config.validate(cfg)
    return str(err.value)


def _ff_tree(root: Path) -> Path:
    for sub in ("original_sequences/youtube/c23/videos",
                "manipulated_sequences/Deepfakes/c23/videos"):
        (root / sub).mkdir(parents=True)
    return root


# --------------------------------------------------------------------------- source type


def test_a_source_of_another_type_replaces_the_old_one_whole(tmp_path):
    ff = _ff_tree(tmp_path / "FF")
    overrides = study_config.parse_overrides([
        f"datasets={{ffpp-celebdf: {{source: {{type: local, path: {ff}, layout: faceforensics}}}}}}"])
    cfg = study_config.load(ROOT / "config" / "paper.yaml", overrides)
    source = cfg["datasets"]["ffpp-celebdf"]["source"]
    assert "slug" not in source and "group_regex" not in source  # nothing of the Kaggle source
    assert (source["type"], source["layout"], source["compression"]) == ("local",
                                                                         "faceforensics", "c23")
    assert cfg["datasets"]["ffpp-celebdf"]["detect_faces"] is False  # the dataset's other keys
    # a source of the same type is merged key by key, as any section
    same = study_config.merge({"source": {"type": "kaggle", "slug": "a/b", "layout": "folders"}},
                              {"source": {"type": "kaggle", "slug": "c/d"}})
    assert same["source"] == {"type": "kaggle", "slug": "c/d", "layout": "folders"}


def test_snakemake_replaces_a_source_of_another_type(tmp_path):
    data = tmp_path / "mine"
    (data / "real").mkdir(parents=True)
    (data / "fake").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "-s",
         str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(ROOT / "config" / "smoke.yaml"),
         "--config", f"datasets={{smoke-images: {{source: {{type: local, path: {data}}}}}}}",
         "--", "resources/smoke-images/sources.csv"],
        check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"type":"local"' in proc.stdout and "images_per_class" not in proc.stdout


# --------------------------------------------------------------------------- role


def test_role_test_datasets_are_never_trained_on(demo):
    cfg = copy.deepcopy(demo)
    assert study_config.validate(cfg)["datasets"]["demo-videos"]["role"] == "train"  # default
    cfg["datasets"]["demo-videos"]["role"] = "test"
    text = _problems(cfg)
    assert "'datasets.demo-videos.train_manipulations': demo-videos has role test" in text
    assert "'transfer.pairs[0].to': 'demo-videos' has role test" in text
    assert "'generalisation[1].from': 'demo-videos' has role test" in text
    # a target scored only: valid once it is not trained on anywhere
    cfg["datasets"]["demo-videos"]["train_manipulations"] = []
    cfg["transfer"]["pairs"] = []
    cfg["generalisation"] = [{"from": "demo-images", "to": ["demo-videos"]}]
    assert study_config.validate(cfg)["datasets"]["demo-videos"]["role"] == "test"
    cfg["datasets"]["again"] = {"faces_from": "demo-videos"}
    assert ("'datasets.again.faces_from': 'demo-videos' has role test, so it keeps only what "
            "is scored") in _problems(cfg)
    cfg["datasets"]["again"]["role"] = "test"
    study_config.validate(cfg)
    cfg["datasets"]["demo-images"]["role"] = "test"
    assert "every dataset has role test" in _problems(cfg)
    cfg["datasets"]["demo-images"]["role"] = "scoring"
    assert "'datasets.demo-images.role': 'scoring' is not one of 'train', 'test'" in _problems(cfg)


# --------------------------------------------------------------------------- faces_from


def test_faces_from_takes_the_other_datasets_source_and_settings(demo, tmp_path):
    cfg = copy.deepcopy(demo)
    cfg["datasets"]["loo"] = {"faces_from": "demo-videos", "train_manipulations": ["mouth"],
                              "faces": {"split_seed": 3}}
    out = study_config.validate(cfg)
    loo, videos = out["datasets"]["loo"], out["datasets"]["demo-videos"]
    assert loo["source"] == videos["source"] and loo["shards"] == videos["shards"]
    assert loo["faces"]["split_seed"] == 3  # its own split: allowed
    # demo-videos' own face settings (min_face_size 40 over the global 20) come with its faces
    assert {k: v for k, v in loo["faces"].items() if k != "split_seed"} == {
        k: v for k, v in videos["faces"].items() if k != "split_seed"}
    assert dataset_kind(out, "loo", tmp_path) == dataset_kind(out, "demo-videos", tmp_path)
    # face settings that change the crops must match; the message names each key
    cfg["datasets"]["loo"]["faces"] = {"size": 32, "margin": 0.5}
    text = _problems(cfg)
    assert ("'datasets.loo.faces_from': demo-videos's faces were cropped with other face "
            "settings: margin (0.5 vs 0.3), size (32 vs 64)") in text


def test_faces_from_names_a_dataset_that_extracts(demo, tmp_path):
    cfg = copy.deepcopy(demo)
    cfg["datasets"]["a"] = {"faces_from": "nope"}
    assert "'datasets.a.faces_from': dataset 'nope' is not in 'datasets'" in _problems(cfg)
    cfg["datasets"]["a"] = {"faces_from": "a"}
    assert "names the dataset itself" in _problems(cfg)
    cfg["datasets"]["a"] = {"faces_from": "demo-images"}
    cfg["datasets"]["b"] = {"faces_from": "a"}
    assert "'datasets.b.faces_from': 'a' reads the faces of 'demo-images' itself" in _problems(cfg)
    del cfg["datasets"]["b"]
    cfg["datasets"]["a"]["source"] = {"type": "synthetic", "kind": "images", "seed": 9}
    text = _problems(cfg)
    assert "'datasets.a.source' differs from 'datasets.demo-images.source'" in text
    assert "identities" in text and "seed" in text and "drop 'source' from a" in text
    # without faces_from a dataset still needs its source
    cfg["datasets"]["c"] = {"shards": 1}
    assert "'datasets.c': 'source' is a required property" in _problems(cfg)


# --------------------------------------------------------------------------- manipulations


def test_unknown_train_manipulations_are_caught_before_any_job(demo, tmp_path):
    cfg = copy.deepcopy(demo)
    cfg["datasets"]["demo-videos"]["train_manipulations"] = ["NoSuchMethod"]
    assert ("datasets.demo-videos.train_manipulations: ['NoSuchMethod'] are not manipulations "
            "of this dataset (its synthetic source names ['mouth', 'swap'])") in _problems(cfg)
    ff = _ff_tree(tmp_path / "FF")
    cfg["datasets"]["demo-videos"]["train_manipulations"] = ["swap"]
    cfg["datasets"]["ff"] = {"source": {"type": "local", "path": str(ff),
                                        "layout": "faceforensics",
                                        "methods": ["Deepfakes", "FaceSwap"]},
                             "train_manipulations": ["NeuralTextures"]}
    text = _problems(cfg)
    assert ("datasets.ff.train_manipulations: ['NeuralTextures'] are not manipulations of this "
            "dataset (its faceforensics source names ['Deepfakes', 'FaceSwap'])") in text
    cfg["datasets"]["ff"]["train_manipulations"] = ["FaceSwap"]
    study_config.validate(cfg)
    # a folders tree names its manipulations only in its files: checked at acquisition
    (tmp_path / "tree").mkdir()
    cfg["datasets"]["tree"] = {"source": {"type": "local", "path": str(tmp_path / "tree")},
                               "train_manipulations": ["anything"]}
    study_config.validate(cfg)


# --------------------------------------------------------------------------- compression, distill


def test_compression_and_kd_models_must_be_configured(demo):
    cfg = study_config.merge(demo, {"compression": {"models": ["mesonet", "xception"]},
                                    "kd": {"models": ["resnet18"]}})
    text = _problems(cfg)
    assert "'compression.models': xception not under 'models' (mesonet, cnn5)" in text
    assert "'kd.models': resnet18 not under 'models'" in text


def test_compression_tickets_are_checked_like_the_transfer_levels(demo):
    # the README's rule: a level is never silently replaced by another
    text = _problems(study_config.merge(demo, {"kd": {"rounds": 3}}))
    assert ("'compression.tickets[1].sparsity': 0.5904 (kd-global) needs kd round 4 (59.0 %) "
            "but 'kd.rounds' is 3 (reaching 48.8 %); set 'kd.rounds' to at least 4"
            ) in text
    assert "compression.tickets[0]" not in text  # imp-global reaches round 4
    cfg = study_config.merge(demo, {"compression": {"tickets": [
        {"method": "imp-global", "sparsity": 0.5904}, {"method": "imp-lamp", "sparsity": 0.5},
        {"method": "oneshot-global", "sparsity": 0.3}]}})
    text = _problems(cfg)
    assert "'compression.tickets[1].method': imp-lamp is not run by this config" in text
    assert "'compression.tickets[2].sparsity': 0.3 (oneshot-global) has no one-shot level" in text
    # KD's chain has its own rounds ('kd.rounds' 4 reaches 0.5904) whatever 'prune.rounds' is
    cfg = study_config.merge(demo, {"prune": {"rounds": 3}, "transfer": {"pairs": []},
                                    "gradcam": {"methods": []}, "oneshot": {"sparsities": None},
                                    "robustness": {"methods": []},
                                    "compression": {"tickets": [{"method": "kd-global",
                                                                 "sparsity": 0.5904}]}})
    study_config.validate(cfg)
    text = _problems(study_config.merge(cfg, {"kd": {"rounds": 3}}))
    assert "'compression.tickets[0].sparsity': 0.5904 (kd-global) needs kd round 4" in text
