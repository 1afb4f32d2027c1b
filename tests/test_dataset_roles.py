"""Datasets that are only scored (``role: test``) and datasets that reuse another's faces
(``faces_from``): the dry run of a study plans no training on the first and no acquisition or
extraction for the second."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from deepfake_lth.workflow import config as study_config

ROOT = Path(__file__).resolve().parents[1]


def _jobs(tmp_path: Path, cfg: dict) -> list[tuple[str, str]]:
    for name in ("Snakefile", "config.yaml", "environment.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("workflow", "src", "config"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "config" / "roles.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", "none", "--cores", "1", "-n",
         "results/report.html", "--configfile", "config/roles.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "src")})
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        m = re.match(r"(?:local)?rule (\w+):", block)
        w = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        if m and m.group(1) != "all":
            jobs.append((m.group(1), w.group(1) if w else ""))
    return jobs


def test_a_test_dataset_is_scored_and_a_faces_from_dataset_extracts_nothing(tmp_path):
    cfg = study_config.read_yaml(ROOT / "config" / "smoke.yaml")
    videos = cfg["datasets"]["smoke-videos"]
    cfg["datasets"] = {
        "smoke-images": cfg["datasets"]["smoke-images"],
        "target": {**videos, "role": "test"},       # scored only (Celeb-DF, DFDC test parts)
        "train-videos": {**videos},                  # trained on
        "loo": {"faces_from": "train-videos",        # the same faces, another split
                "faces": {"split_seed": 3}},
    }
    cfg["transfer"]["pairs"] = [{"from": "smoke-images", "to": "train-videos"}]
    cfg["generalisation"] = [{"from": "smoke-images", "to": ["target", "loo"]}]
    jobs = _jobs(tmp_path, cfg)
    on = {d: {r for r, w in jobs if re.search(rf"\b(dataset|dst)={d}(,|$)", w)}
          for d in cfg["datasets"]}
    assert on["target"] == {"acquire", "extract_faces", "pack_faces"}  # packed, never trained
    assert {"train_dense", "imp_round"} <= on["train-videos"]
    assert on["loo"] >= {"pack_faces", "train_dense", "imp_round"}
    assert not on["loo"] & {"acquire", "extract_faces"}  # it reads train-videos' shards
    packs = [w for r, w in jobs if r == "pack_faces"]
    assert len(packs) == 4
    # the zero-shot scoring of smoke-images reads the test datasets' packed faces
    assert ("generalise", "dataset=smoke-images, model=mesonet, seed=0") in jobs
