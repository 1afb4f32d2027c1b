"""Config checks: the schema stops a bad run before any job, naming the key."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepfake_lth import config as study_config
from deepfake_lth.errors import ConfigError

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
    assert cfg["datasets"]["demo-videos"]["kind"] == "videos"
    assert cfg["datasets"]["demo-images"]["kind"] == "images"


@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_presets_are_valid(path):
    cfg = study_config.load(ROOT / "config" / path)
    assert cfg["datasets"] and cfg["models"]


def test_snakemake_stops_before_any_job_on_a_bad_config(tmp_path):
    bad = study_config.read_yaml(ROOT / "config" / "smoke.yaml")
    bad["prune"]["rate"] = 2.0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(path)],
        capture_output=True, text=True, timeout=120,
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
