"""Config checks: the schema stops a bad run before any job, naming the key."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepfake_lth.core.errors import ConfigError
from deepfake_lth.workflow import config as study_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo() -> dict:
    return study_config.read_yaml(ROOT / "config.yaml")


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda c: c["models"].update({"mesonett": {}}), "models"),
        (lambda c: c["prune"].update({"rate": 1.5}), "prune.rate"),
        (lambda c: c["prune"].update({"rate": 0}), "prune.rate"),
        (lambda c: c["prune"].update({"rounds": -1}), "prune.rounds"),
        (lambda c: c["datasets"]["demo-videos"]["source"].update({"type": "youtube"}),
         "datasets.demo-videos.source.type"),
        (lambda c: c["train"].update({"lr": -1}), "train.lr"),
        (lambda c: c["faces"].update({"frames_per_vidoe": 40}), "frames_per_vidoe"),
        (lambda c: c["prune"].update({"criteria": ["global", "layerwise"]}), "prune.criteria[1]"),
        (lambda c: c["prune"].update({"rewind": "epoch"}), "prune.rewind"),
        (lambda c: c["transfer"]["pairs"].append({"from": "demo-images", "to": "nope"}),
         "transfer.pairs[1].to"),
        (lambda c: c["faces"]["split"].update({"test": 0.5}), "faces.split"),
    ],
)
def test_bad_value_names_the_key(demo, change, key):
    cfg = copy.deepcopy(demo)
    change(cfg)
    with pytest.raises(ConfigError) as err:
        study_config.validate(cfg)
    assert key in str(err.value)


def test_defaults_are_filled(demo):
    cfg = study_config.validate(demo)
    assert cfg["faces"]["thresholds"] == [0.6, 0.7, 0.7]
    assert cfg["prune"]["rewind"] == "none"
    assert cfg["datasets"]["demo-videos"]["source"]["fps"] == 25
    # no kind is invented: the acquired files (or an explicit `kind:`) decide it
    assert "kind" not in cfg["datasets"]["demo-videos"]
    assert "kind" not in cfg["datasets"]["demo-images"]
    # the global face settings suit real footage; the demo's tuning sits on its datasets
    assert (cfg["faces"]["min_face_size"], cfg["faces"]["detect_max_side"]) == (20, 640)
    videos = cfg["datasets"]["demo-videos"]["faces"]
    assert (videos["min_face_size"], videos["detect_max_side"]) == (40, 320)
    assert videos["frames_per_video"] == cfg["faces"]["frames_per_video"]  # the rest: global


def test_paper_dataset_kind_is_not_videos_by_default():
    cfg = study_config.load(ROOT / "config" / "paper.yaml")
    assert "kind" not in cfg["datasets"]["openforensics"]


def test_dataset_faces_override_the_global_section(demo):
    cfg = copy.deepcopy(demo)
    cfg["datasets"]["demo-images"]["faces"] = {"size": 32, "split": {"train": 0.6, "val": 0.2,
                                                                     "test": 0.2}}
    out = study_config.validate(cfg)
    images, videos = out["datasets"]["demo-images"]["faces"], out["datasets"]["demo-videos"]["faces"]
    assert images["size"] == 32 and images["split"]["train"] == 0.6 and images["margin"] == 0.3
    assert videos["size"] == 64 and videos["split"]["train"] == 0.7
    cfg["datasets"]["demo-images"]["faces"] = {"min_frames": 50}
    with pytest.raises(ConfigError, match=r"datasets\.demo-images\.faces\.min_frames"):
        study_config.validate(cfg)
    cfg["datasets"]["demo-images"]["faces"] = {"min_face_size": 2}
    with pytest.raises(ConfigError, match=r"datasets\.demo-images\.faces\.min_face_size"):
        study_config.validate(cfg)


def test_strings_are_coerced_where_the_schema_wants_numbers(demo):
    # what snakemake's --config "prune={rate: 0.3, rounds: 5}" hands over: strings
    cfg = study_config.merge(demo, {"prune": {"rate": "0.3", "rounds": "5"},
                                    "transfer": {"sparsities": ["0.5", "0.75"]},
                                    "train": {"augment": "false", "lr": "1e-3"},
                                    "oneshot": {"sparsities": "null"}})
    out = study_config.validate(cfg)
    assert out["prune"]["rate"] == 0.3 and out["prune"]["rounds"] == 5
    assert out["transfer"]["sparsities"] == [0.5, 0.75]
    assert out["train"]["augment"] is False and out["oneshot"]["sparsities"] is None
    assert out["train"]["lr"] == 1e-3
    # a string that is not a number still names the key
    with pytest.raises(ConfigError, match="prune.rate"):
        study_config.validate(study_config.merge(demo, {"prune": {"rate": "fast"}}))
    # strings stay strings where the schema takes strings
    out = study_config.validate(study_config.merge(demo, {"prune": {"rewind": "none"}}))
    assert out["prune"]["rewind"] == "none"


def _problems(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        study_config.validate(cfg)
    return str(err.value)


def test_rounds_too_few_for_the_configured_levels(demo):
    text = _problems(study_config.merge(demo, {"prune": {"rounds": 2}}))
    # transfer at 60/80 % needs rounds 4 and 7, Grad-CAM too; one-shot 0.79 matches round 7
    assert "'transfer.sparsities': 0.8 (imp-global) needs IMP round 7" in text
    assert "'gradcam.sparsities': 0.6 (imp-global) needs IMP round 4" in text
    assert "'oneshot.sparsities': 0.7903 matches IMP round 7" in text
    assert "set 'prune.rounds' to at least 7" in text
    # one-shot transfer levels come from oneshot.sparsities: one far from every level fails
    cfg = study_config.merge(demo, {"transfer": {"sparsities": [0.6, 0.95],
                                                 "methods": ["imp-global", "oneshot-global"]},
                                    "gradcam": {"sparsities": [0.0]}, "prune": {"rounds": 14}})
    text = _problems(cfg)
    assert "'transfer.sparsities': 0.95 (oneshot-global) has no one-shot level" in text
    assert "imp-global" not in text  # round 13 (94.5 %) exists with 14 rounds
    # enough rounds: valid
    study_config.validate(study_config.merge(demo, {"prune": {"rounds": 7}}))


def test_rounds_zero_with_stages_that_need_tickets(demo):
    text = _problems(study_config.merge(demo, {"prune": {"rounds": 0}}))
    assert text.count("'prune.rounds' is 0") == 1
    for key in ("prune.criteria", "transfer.methods", "gradcam.methods", "latency.methods"):
        assert f"'{key}'" in text
    # a dense-only study is fine
    assert "'compression.tickets' (imp-global, kd-global)" in text
    assert "'kd.models'" not in text  # kd.rounds is set: its levels exist
    dense = study_config.merge(demo, {"prune": {"rounds": 0, "criteria": []},
                                      "oneshot": {"criteria": []}, "transfer": {"pairs": []},
                                      "gradcam": {"methods": []}, "latency": {"methods": []},
                                      "compression": {"tickets": []}})
    study_config.validate(dense)


def test_input_size_below_the_model_minimum(demo):
    text = _problems(study_config.merge(demo, {"models": {"mesonet": {"input_size": 20}}}))
    assert "'models.mesonet.input_size': 20 is below mesonet's smallest input (32 px)" in text


def test_missing_local_path(demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = copy.deepcopy(demo)
    cfg["datasets"]["mine"] = {"source": {"type": "local", "path": "data/mine"}}
    text = _problems(cfg)
    assert "'datasets.mine.source.path': data/mine does not exist" in text
    assert str(tmp_path) in text
    (tmp_path / "data" / "mine").mkdir(parents=True)
    study_config.validate(cfg)


def _validate_config(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepfake_lth", "validate-config", *args],
                          check=False, capture_output=True, text=True, timeout=120)


def test_validate_config_cli_names_prune_rounds(tmp_path):
    demo = study_config.read_yaml(ROOT / "config.yaml")
    demo["prune"]["rounds"] = 0
    path = tmp_path / "zero.yaml"
    path.write_text(yaml.safe_dump(demo))
    proc = _validate_config(str(path))
    assert proc.returncode != 0 and "prune.rounds" in proc.stderr
    # the same through --config, as snakemake takes it
    proc = _validate_config(str(ROOT / "config.yaml"), "--config", "prune={rounds: 0}")
    assert proc.returncode != 0 and "prune.rounds" in proc.stderr
    proc = _validate_config(str(ROOT / "config.yaml"), "--config", "prune={rate: 0.3}")
    assert proc.returncode == 0, proc.stderr


def test_snakemake_stops_before_any_job_on_a_bad_config(tmp_path):
    bad = study_config.read_yaml(ROOT / "config" / "smoke.yaml")
    bad["prune"]["rate"] = 2.0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(path)],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "prune.rate" in proc.stdout + proc.stderr
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


def _requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)", line)
        if m:
            names.add(m.group(1).lower().replace("_", "-"))
    return names


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _requirement_names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= _requirement_names(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            listed |= _requirement_names(dep["pip"])
        elif isinstance(dep, str) and not dep.startswith(("python", "pip")):
            listed |= _requirement_names([dep])
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"


def test_each_study_gets_its_own_folders(tmp_path):
    """config.yaml writes to results/ and resources/; any other config file that names no
    folders to results/{name}/ and resources/{name}/, so it overwrites nothing of the demo's;
    a config that names its folders keeps them."""
    default = study_config.merge_files([ROOT / "config.yaml"])
    assert (default["results"], default["resources"]) == ("results", "resources")
    paper = study_config.merge_files([ROOT / "config" / "paper.yaml"])
    assert (paper["results"], paper["resources"]) == ("results/paper", "resources/paper")
    own = tmp_path / "mine.yaml"
    own.write_text("results: /scratch/mine\n")
    cfg = study_config.merge_files([ROOT / "config" / "paper.yaml", own])
    assert (cfg["results"], cfg["resources"]) == ("/scratch/mine", "resources/mine")
    cfg = study_config.merge_files([ROOT / "config" / "paper.yaml"], {"results": "elsewhere"})
    assert cfg["results"] == "elsewhere"
