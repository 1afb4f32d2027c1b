"""The data rules on a copy of the project: each dataset's face settings key only its own
jobs, pack records them and says each dataset's failed files on the console."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepfake_lth.workflow import config as study_config

# about 1 min on 2 cores (a real data stage, then dry runs): run by `make bench`, not CI
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SMK = [sys.executable, "-m", "snakemake", "--workflow-profile", "none", "--cores", "2"]
TARGETS = ["results/one/faces/summary.json", "results/two/faces/summary.json"]


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SMK, *args, "--configfile", "config/data.yaml"], cwd=work,
                          check=False, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _config(change: dict | None = None) -> dict:
    smoke = study_config.read_yaml(ROOT / "config" / "smoke.yaml")
    images = smoke["datasets"]["smoke-images"]
    cfg = {**smoke, "datasets": {
        "one": images,
        "two": {**images, "source": {**images["source"], "seed": 7}},
    }, "transfer": {"pairs": []}, "generalisation": []}
    return study_config.merge(cfg, change or {})


def _planned(work: Path, change: dict) -> set[tuple[str, str]]:
    (work / "config" / "data.yaml").write_text(yaml.safe_dump(_config(change)))
    out = _snakemake(work, "-n", *TARGETS).stdout
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block)
        w = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        if m:
            jobs.add((m.group(1), w.group(1) if w else ""))
    return jobs


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("data")
    for name in ("Snakefile", "config.yaml", "environment.yml", "pyproject.toml"):
        shutil.copy(ROOT / name, work / name)
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, work / name)
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (work / "config" / "data.yaml").write_text(yaml.safe_dump(_config()))
    proc = _snakemake(work, *TARGETS)
    work.joinpath("console.txt").write_text(proc.stdout + proc.stderr)
    return work


def test_pack_records_the_settings_and_prints_one_line_per_dataset(work):
    console = (work / "console.txt").read_text()
    for name in ("one", "two"):
        summary = json.loads((work / "results" / name / "faces" / "summary.json").read_text())
        assert summary["face_settings"]["size"] == 32  # smoke.yaml's faces.size
        assert summary["face_settings"]["detect_faces"] == "no"
        assert re.search(rf"^{name}: \d+ of \d+ files ok", console, re.MULTILINE), console[-2000:]


def test_one_datasets_face_settings_rerun_only_its_jobs(work):
    assert _planned(work, {}) == set()  # finished: nothing to do
    only_one = _planned(work, {"datasets": {"one": {"faces": {"size": 24}}}})
    assert only_one and {w for _, w in only_one} <= {"dataset=one", "dataset=one, shard=0"}
    assert {rule for rule, _ in only_one} == {"extract_faces", "pack_faces"}
    # a split of its own: only its packing
    split = {"datasets": {"two": {"faces": {"split_seed": 3}}}}
    assert _planned(work, split) == {("pack_faces", "dataset=two")}
    # the global section keys every dataset that does not override it
    overridden = _planned(work, {"faces": {"margin": 0.2},
                                 "datasets": {"one": {"faces": {"margin": 0.3}}}})
    assert {w for _, w in overridden} == {"dataset=two", "dataset=two, shard=0"}
