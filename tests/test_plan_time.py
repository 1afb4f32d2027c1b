"""`deepfake-lth plan-time`: the DAG from Snakemake's dry run, per-job costs, list scheduling."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from deepfake_lth.cli import build_parser, main
from deepfake_lth.core.errors import UserError
from deepfake_lth.workflow import plan_time

ROOT = Path(__file__).resolve().parents[1]


def _block(jobid: int, rule: str, inputs: list[str], outputs: list[str], share: int = 0) -> str:
    res = f"tmpdir=/tmp, gpu=1, gpu_share={share}, runtime=360" if share else "tmpdir=/tmp"
    return (f"[Fri Dec  4 14:44:47 2026]\nrule {rule}:\n    input: {', '.join(inputs)}\n"
            f"    output: {', '.join(outputs)}\n    jobid: {jobid}\n"
            f"    wildcards: name=j{jobid}\n    resources: {res}\n")


def _fan_out() -> list[plan_time.Job]:
    """One CPU job of 10 s, then four GPU jobs of 100 s at a quarter share each."""
    text = "Building DAG of jobs...\n" + _block(1, "prep", ["src.txt"], ["a.txt"])
    for i in range(4):
        text += _block(2 + i, "fit", ["a.txt", "code.py"], [f"b{i}.txt"], share=25)
    jobs = plan_time.parse_dry_run(text)
    for j in jobs:
        j.seconds = 10.0 if j.rule == "prep" else 100.0
    return jobs


def test_the_dry_run_gives_jobs_and_their_dependencies():
    jobs = _fan_out()
    assert [(j.id, j.rule, j.share) for j in jobs] == [(1, "prep", 0)] + [
        (i, "fit", 25) for i in range(2, 6)]
    assert all(j.deps == {1} for j in jobs[1:]) and jobs[0].deps == set()
    assert jobs[1].wildcards == {"name": "j2"}


def test_list_scheduling_packs_shares_on_a_node_and_whole_gpus_on_a_cluster():
    jobs = _fan_out()
    length, path, _ = plan_time.critical_path(jobs)
    assert length == 110 and [j.rule for j in path] == ["prep", "fit"]
    assert plan_time.schedule(jobs, 1, "node")["makespan"] == 110  # four quarter shares at once
    assert plan_time.schedule(jobs, 1, "cluster")["makespan"] == 410  # one after the other
    assert plan_time.schedule(jobs, 2, "cluster")["makespan"] == 210
    assert plan_time.schedule(jobs, 4, "cluster")["makespan"] == 110
    assert plan_time.schedule(jobs, 1, "node", cores=0 + 1)["gpu_busy"] == pytest.approx(
        100 / 110)


def test_longest_remaining_path_goes_first():
    # a chain of two 100 s jobs and two single 100 s jobs, whole GPUs, on 2 GPUs: starting the
    # chain first gives 200 s; starting the singles first would give 300 s
    text = (_block(1, "fit", ["x"], ["c1"], 100) + _block(2, "fit", ["c1"], ["c2"], 100)
            + _block(3, "fit", ["x"], ["s1"], 100) + _block(4, "fit", ["x"], ["s2"], 100))
    jobs = plan_time.parse_dry_run(text)
    for j in jobs:
        j.seconds = 100.0
    assert plan_time.schedule(jobs, 2, "cluster")["makespan"] == 200


def test_training_cost_follows_faces_epochs_and_the_measured_rate():
    config = {"faces": {"split": {"train": 0.7, "val": 0.15, "test": 0.15}},
              "train": {"max_epochs": 10}, "prune": {"retrain_epochs": 4},
              "datasets": {"d": {"shards": 2}}}
    costs = plan_time.load_costs(None)
    costs["throughput"]["mesonet"] = {"train_images_per_s": 70.0, "eval_images_per_s": 15.0}
    dense = plan_time.Job(0, "train_dense", {"dataset": "d", "model": "mesonet"}, [], [])
    rnd = plan_time.Job(1, "imp_round", {"dataset": "d", "model": "mesonet"}, [], [])
    faces = {"d": 1000}
    assert plan_time.job_seconds(dense, config, costs, faces, None) == pytest.approx(
        10 * (700 / 70 + 150 / 15) + 150 / 15)
    assert plan_time.job_seconds(rnd, config, costs, faces, None) == pytest.approx(
        4 * 20 + 10)  # capped by retrain_epochs
    assert plan_time.job_seconds(rnd, config, costs, faces, 2) == pytest.approx(2 * 20 + 10)
    extract = plan_time.Job(2, "extract_faces", {"dataset": "d", "shard": "0"}, [], [])
    assert plan_time.job_seconds(extract, config, costs, faces, None) == pytest.approx(
        500 / costs["extract_faces_per_s"])


def test_the_measured_table_names_its_command_and_has_every_model():
    table = plan_time.load_costs(None)
    assert table["command"].startswith("python bench/throughput.py")
    for model in ("mesonet", "cnn5", "resnet18", "xception"):
        assert table["throughput"][model]["train_images_per_s"] > 0


def test_unknown_faces_and_bad_costs_say_what_to_pass(tmp_path):
    with pytest.raises(UserError, match=r"--faces ffpp=N"):
        plan_time.faces_of({"results": "results", "datasets": {"ffpp": {}}}, {}, tmp_path)
    with pytest.raises(UserError, match="NAME=N"):
        plan_time.parse_faces(["ffpp"])
    bad = tmp_path / "costs.yaml"
    bad.write_text("- 1\n")
    with pytest.raises(UserError, match="costs.yaml"):
        plan_time.load_costs(bad)


def test_smoke_dag_from_snakemake(tmp_path):
    args = argparse.Namespace(
        configfile=str(ROOT / "config" / "smoke.yaml"), gpus=[1, 2], mode="node", cores=4,
        faces=["smoke-images=96", "smoke-videos=96"], epochs=None, costs=None,
        snakefile=str(ROOT / "Snakefile"), directory=str(tmp_path),
        targets=["results/report.html"], dry_run_output=None)
    jobs, results = plan_time.plan(args)
    rounds = {j.wildcards["level"].removeprefix("round"): j for j in jobs
              if j.rule == "imp_round" and j.wildcards.get("method") == "imp-global"
              and j.wildcards["dataset"] == "smoke-videos"}
    dense = next(j for j in jobs if j.rule == "train_dense" and j.wildcards["dataset"]
                 == "smoke-videos" and j.wildcards["model"] == "mesonet")
    assert rounds["1"].id in rounds["2"].deps and dense.id in rounds["1"].deps
    assert rounds["2"].id not in rounds["1"].deps
    assert any(j.rule == "report" for j in jobs) and all(j.seconds >= 0 for j in jobs)
    assert results[1]["makespan"] <= results[0]["makespan"]


def test_paper_preset_on_1_and_8_gpus(capsys):
    """The paper's DAG with the measured table: one GPU runs all the GPU work one share at a
    time; eight share the work of three seeds and stay above the critical path (the Xception
    IMP chain on OpenForensics), which bounds the speed-up (the GPU work over it)."""
    argv = ["plan-time", "--configfile", str(ROOT / "config" / "paper.yaml"),
            "--snakefile", str(ROOT / "Snakefile"), "--gpus", "1", "8",
            "--faces", "openforensics=190335", "--faces", "ffpp-celebdf=16000"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+) (h|min)\s+([\d.]+) (h|min)", out, re.M)
    assert [int(r[0]) for r in rows] == [1, 8], out
    assert re.search(r"critical path \(\d+ jobs", out), out
    assert "train_dense(dataset=openforensics, model=xception" in out
    args = build_parser(argv).parse_args(argv)
    jobs, (one, eight) = plan_time.plan(args)
    length, path, _ = plan_time.critical_path(jobs)
    work = sum(j.seconds * j.share / 100 for j in jobs if j.share)
    assert one["makespan"] >= work and one["gpu_busy"] > 0.99
    # list scheduling: never below the critical path or an even split of the work, and
    # (Graham) never above their sum
    assert max(length, work / 8) <= eight["makespan"] * (1 + 1e-9)
    assert eight["makespan"] <= (work / 8 + length) * (1 + 1e-9)
    assert [j.rule for j in path].count("imp_round") == 8
    assert one["makespan"] / eight["makespan"] <= work / length * 1.01
    assert one["makespan"] / eight["makespan"] >= 4  # the bar, from the simulation
