"""GPU shares: every job that runs a network declares its model's `gpu_share`, and the
default profile's budget (100 per visible GPU) lets four MesoNet jobs share one GPU but
never two Xception jobs.

The scheduler is checked on real Snakemake runs of one-second jobs declared with the
workflow's own `gpu_job()` (workflow/rules/resources.smk) and profiles/default; the
declarations of the study's rules on a dry run of the controls preset, which has every rule.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from deepfake_lth.models.registry import get_spec, gpu_share_percent

ROOT = Path(__file__).resolve().parents[1]

SNAKEFILE = f"""
import sys
sys.path.insert(0, {str(ROOT / "src")!r})
include: {str(ROOT / "workflow" / "rules" / "resources.smk")!r}

rule job:
    output: "done/{{model}}-{{i}}"
    resources: **gpu_job(),
    shell:
        "python3 -c 'import time; print(time.time())' > {{output}}.start; sleep 1; "
        "python3 -c 'import time; print(time.time())' > {{output}}"
"""


def _run(work: Path, targets: list[str], visible: str, *extra: str) -> list[tuple[str, float,
                                                                                  float]]:
    """Run ``targets`` with profiles/default seeing ``visible`` GPUs; (model, start, end)."""
    (work / "Snakefile").write_text(SNAKEFILE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")}
    env["CUDA_VISIBLE_DEVICES"] = visible
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", str(ROOT / "profiles" /
         "default"), *targets, "--cores", "8", "--forceall", *extra, "--quiet", "all"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = []
    for t in targets:
        start = float((work / f"{t}.start").read_text())
        end = float((work / t).read_text())
        runs.append((t.split("/")[1].split("-")[0], start, end))
    return runs


def _most_at_once(runs, model: str | None = None) -> int:
    """The largest number of jobs (of ``model``) running at the same moment."""
    spans = [(s, e) for m, s, e in runs if model is None or m == model]
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)


def _most_share_at_once(runs) -> int:
    return max(sum(gpu_share_percent(m) for m, s, e in runs if s <= t < e) for _, t, _ in runs)


def test_shards_replace_a_whole_gpu_where_the_site_has_them(monkeypatch):
    from deepfake_lth.workflow.job_resources import gpu_job

    monkeypatch.setenv("DLTH_SLURM_GPU_MODEL", "a100")
    monkeypatch.setenv("DLTH_SLURM_GPU_PARTITION", "gpu")
    whole = gpu_job()
    assert (whole["gpu"], whole["gpu_model"], whole["slurm_partition"]) == (1, "a100", "gpu")
    assert "gres" not in whole
    monkeypatch.setenv("DLTH_SLURM_GPU_SHARDS", "16")
    shared = gpu_job()
    assert shared["gpu"] == 0 and "gpu_model" not in shared
    assert shared["slurm_partition"] == "gpu"
    mesonet, xception = {"model": "mesonet"}, {"model": "xception"}  # .get as on Wildcards
    assert (shared["gres"](mesonet), shared["gres"](xception)) == ("shard:4", "shard:16")


def test_registry_shares_are_whole_percents():
    assert [gpu_share_percent(m) for m in ("xception", "resnet18", "cnn5", "mesonet")] == [
        100, 50, 25, 25]
    assert get_spec("mesonet").gpu_share == 0.25


def test_four_mesonet_jobs_share_one_gpu(tmp_path):
    runs = _run(tmp_path, [f"done/mesonet-{i}" for i in range(4)], "0")
    assert _most_at_once(runs) == 4


def test_two_xception_jobs_never_share_one_gpu(tmp_path):
    runs = _run(tmp_path, [f"done/xception-{i}" for i in range(2)], "0")
    assert _most_at_once(runs) == 1
    # with two GPUs visible, both run at once
    runs = _run(tmp_path, [f"done/xception-{i}" for i in range(2)], "0,1")
    assert _most_at_once(runs) == 2


def test_mixed_jobs_stay_within_one_gpu(tmp_path):
    targets = ([f"done/mesonet-{i}" for i in range(2)] + ["done/resnet18-0", "done/xception-0"])
    runs = _run(tmp_path, targets, "0")
    assert _most_share_at_once(runs) <= 100
    assert _most_at_once(runs) >= 2  # MesoNet and ResNet-18 jobs do share


def test_no_gpu_means_no_cap(tmp_path):
    """CPU-only (no GPU visible): GPU jobs are bounded by cores only."""
    runs = _run(tmp_path, [f"done/xception-{i}" for i in range(2)], "")
    assert _most_at_once(runs) == 2


_JOB = re.compile(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", re.M | re.S)


def planned_jobs(*args: str, env: dict[str, str] | None = None) -> list[dict]:
    """Every job of a dry run of the study's Snakefile: rule, wildcards and resources as dicts
    of strings (tests/test_slurm.py uses it too)."""
    with tempfile.TemporaryDirectory() as work:  # no results yet: every job is planned
        cmd = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
               "--directory", work, *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    jobs = []
    for rule, body in _JOB.findall(proc.stdout):
        fields = dict(re.findall(r"^    (\w+): (.*)$", body, re.M))
        jobs.append({
            "rule": rule,
            "wildcards": dict(kv.split("=", 1) for kv in _split(fields.get("wildcards", ""))),
            "resources": dict(kv.split("=", 1) for kv in _split(fields.get("resources", ""))),
        })
    assert jobs, proc.stdout[-2000:]
    return jobs


def _split(text: str) -> list[str]:
    return [p for p in text.split(", ") if "=" in p]


def test_every_gpu_job_of_the_study_declares_its_model_share():
    jobs = planned_jobs("--workflow-profile", "none", "--cores", "2",
                        "--configfile", str(ROOT / "config" / "controls.yaml"))
    gpu_jobs = [j for j in jobs if j["resources"].get("gpu") == "1"]
    assert len({j["rule"] for j in gpu_jobs}) >= 9
    for job in gpu_jobs:
        model = job["wildcards"]["model"]
        assert job["resources"].get("gpu_share") == str(gpu_share_percent(model)), job
    for job in jobs:  # extraction: the share its face detector claims (none: --detect no)
        if job["rule"] == "extract_faces":
            detect = config_detect(job["wildcards"]["dataset"])
            assert job["resources"].get("gpu_share") == ("0" if detect is False else "25"), job
        elif job["resources"].get("gpu") != "1":
            assert "gpu_share" not in job["resources"], job


def config_detect(dataset: str):
    from deepfake_lth.workflow import config as study_config

    cfg = study_config.load(ROOT / "config" / "controls.yaml")
    return cfg["datasets"][dataset].get("detect_faces")
