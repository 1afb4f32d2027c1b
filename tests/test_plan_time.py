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
    assert plan_time.schedule(jobs, 1, "node", cores=4)["gpu_busy"] == pytest.approx(100 / 110)
    one_core = plan_time.schedule(jobs, 1, "node", cores=1)  # a GPU job holds a core too
    assert one_core["makespan"] == 410 and one_core["gpu_busy"] == pytest.approx(100 / 410)


def test_longest_remaining_path_goes_first():
    # a chain of two 100 s jobs and two single 100 s jobs, whole GPUs, on 2 GPUs: starting the
    # chain first gives 200 s; starting the singles first would give 300 s
    text = (_block(1, "fit", ["x"], ["c1"], 100) + _block(2, "fit", ["c1"], ["c2"], 100)
            + _block(3, "fit", ["x"], ["s1"], 100) + _block(4, "fit", ["x"], ["s2"], 100))
    jobs = plan_time.parse_dry_run(text)
    for j in jobs:
        j.seconds = 100.0
    assert plan_time.schedule(jobs, 2, "cluster")["makespan"] == 200


def test_a_job_holds_its_threads_and_zero_gpus_run_everything_on_the_cores():
    jobs = _fan_out()  # prep 10 s, then four 100 s jobs with a quarter GPU share each
    cpu = plan_time.schedule(jobs, 0, cores=2)
    assert cpu["makespan"] == 210 and cpu["gpu_busy"] == 0  # two at a time on two cores
    assert plan_time.schedule(jobs, 1, cores=4)["makespan"] == 110
    for j in jobs[1:]:
        j.threads = 2  # each takes both cores
    assert plan_time.schedule(jobs, 0, cores=2)["makespan"] == 410
    assert plan_time.schedule(jobs, 0, cores=1)["makespan"] == 410  # threads scaled down


CONFIG = {"datasets": {"d": {"shards": 2, "faces": {"split": {"train": 0.7, "val": 0.15,
                                                              "test": 0.15},
                                                    "detect_max_side": 640}}},
          "train": {"max_epochs": 10}, "models": {"mesonet": {"input_size": 128}}}


def _costs() -> dict:
    costs = plan_time.load_costs(None)
    costs["throughput"]["mesonet"] = {"input_size": 128, "train_images_per_s": 70.0,
                                      "eval_images_per_s": 15.0}
    costs["startup_seconds"] = {"train_dense": 4.0, "imp_round": 4.0, "oneshot": 4.0,
                                "extract_faces": 1.0}
    costs["work_factor"] = {}
    costs["cpu_scale"] = 1.0
    return costs


def test_training_cost_follows_faces_epochs_the_spec_and_the_measured_rate():
    costs = _costs()
    dense = plan_time.Job(0, "train_dense", {"dataset": "d", "model": "mesonet"}, [], [])
    spec = '--spec \'{"input_size":128,"train":{"max_epochs":4,"patience":1}}\''
    rnd = plan_time.Job(1, "imp_round", {"dataset": "d", "model": "mesonet"}, [], [],
                        command=f"python -m deepfake_lth imp-round {spec}")
    faces = {"d": 1000}
    assert plan_time.job_seconds(dense, CONFIG, costs, faces, None) == pytest.approx(
        4 + 10 * (700 / 70 + 150 / 15) + 150 / 15)
    assert plan_time.job_seconds(rnd, CONFIG, costs, faces, None) == pytest.approx(
        4 + 4 * 20 + 10)  # the epoch cap of its spec
    assert plan_time.job_seconds(rnd, CONFIG, costs, faces, 2) == pytest.approx(4 + 2 * 20 + 10)
    costs["work_factor"] = {"training": 1.5}
    assert plan_time.job_seconds(rnd, CONFIG, costs, faces, 2) == pytest.approx(4 + 75)
    costs["cpu_scale"] = 0.5  # an idle machine's seconds per CPU second measured
    assert plan_time.job_seconds(rnd, CONFIG, costs, faces, 2) == pytest.approx(39.5)
    oneshot = plan_time.Job(3, "oneshot", {"dataset": "d", "model": "mesonet"}, [], [],
                            command=spec.replace(":4,", ":40,"))  # a matched budget of 40
    costs["cpu_scale"], costs["work_factor"] = 1.0, {}
    assert plan_time.job_seconds(oneshot, CONFIG, costs, faces, None) == pytest.approx(
        4 + 40 * 20 + 10)  # beyond train.max_epochs: one-shot runs its budget
    extract = plan_time.Job(2, "extract_faces", {"dataset": "d", "shard": "0"}, [], [])
    assert plan_time.job_seconds(extract, CONFIG, costs, faces, None) == pytest.approx(
        1 + 500 / costs["extract_faces_per_s"])  # 1080p frames scanned at 640 px
    small = {**CONFIG, "datasets": {"d": {**CONFIG["datasets"]["d"], "source": {
        "width": 192, "height": 160}}}}  # 30,720 of the reference's 230,400 pixels
    assert plan_time.job_seconds(extract, small, costs, faces, None) == pytest.approx(
        1 + 500 / (costs["extract_faces_per_s"] * 7.5))


def test_the_input_size_scales_the_rate():
    costs = {"throughput": {"m": {"input_size": 128, "train_images_per_s": 100.0,
                                  "other_sizes": [{"input_size": 32,
                                                   "train_images_per_s": 1600.0}]}}}
    assert plan_time.rate(costs, "m", 64, "train_images_per_s") == pytest.approx(400)
    assert plan_time.rate(costs, "m", 256, "train_images_per_s") == pytest.approx(25)
    assert plan_time.rate(costs, "m", 16, "train_images_per_s") == pytest.approx(6400)
    job = plan_time.Job(0, "imp_round", {"dataset": "d", "model": "mesonet"}, [], [],
                        command='--spec \'{"input_size":64}\'')
    assert plan_time.input_size(job, CONFIG) == 64  # the spec's, over the config's 128


def test_every_rule_has_a_cost_never_a_silent_zero():
    costs, faces = _costs(), {"d": 100}
    unknown = plan_time.Job(0, "new_rule", {"dataset": "d"}, [], [])
    with pytest.raises(UserError, match="no cost for rule 'new_rule'"):
        plan_time.job_seconds(unknown, CONFIG, costs, faces, None)
    report = plan_time.Job(1, "report", {}, [], [])
    with pytest.raises(UserError, match="no start-up for rule 'report'.*--calibrate"):
        plan_time.job_seconds(report, CONFIG, costs, faces, None)
    assert plan_time.job_seconds(plan_time.Job(2, "all", {}, [], []), CONFIG, costs, faces,
                                 None) == 0


def test_faces_come_from_the_sources_or_the_synthetic_config(tmp_path):
    config = {"results": "results", "resources": "resources", "datasets": {
        "v": {"source": {"type": "synthetic", "kind": "videos", "videos_per_class": 5,
                         "frames": 12}, "faces": {"frames_per_video": 8}},
        "i": {"source": {"type": "synthetic", "kind": "images", "images_per_class": 24},
              "faces": {"frames_per_video": 8}},
        "l": {"source": {"type": "local"}, "faces": {"frames_per_video": 8}}}}
    (tmp_path / "resources" / "l").mkdir(parents=True)
    (tmp_path / "resources" / "l" / "sources.csv").write_text(
        "path,kind,label\na.mp4,video,0\nb.jpg,image,1\n")
    assert plan_time.faces_of(config, {}, tmp_path) == {"v": 80, "i": 48, "l": 9}


def test_the_measured_table_names_its_command_device_and_every_models_rate():
    table = plan_time.load_costs(None)
    assert table["command"].startswith("python bench/throughput.py")
    assert table["device"] and table["startup_from"].startswith("python bench/throughput.py")
    for model in ("mesonet", "cnn5", "resnet18", "xception"):
        assert table["throughput"][model]["train_images_per_s"] > 0
    for rule in ("train_dense", "imp_round", "kd_round", "transfer_finetuned", "generalise",
                 "quantize", "robustness", "acquire", "pack_faces", "report"):
        assert rule in table["startup_seconds"], rule


def test_unknown_faces_and_bad_costs_say_what_to_pass(tmp_path):
    with pytest.raises(UserError, match=r"--faces ffpp=N"):
        plan_time.faces_of({"results": "results", "resources": "resources",
                            "datasets": {"ffpp": {}}}, {}, tmp_path)
    for bad in (["ffpp"], ["ffpp=0"], ["ffpp=-3"], ["=5"]):
        with pytest.raises(UserError, match="NAME=N"):
            plan_time.parse_faces(bad)
    bad = tmp_path / "costs.yaml"
    bad.write_text("- 1\n")
    with pytest.raises(UserError, match="costs.yaml"):
        plan_time.load_costs(bad)
    bad.write_text("extract_faces_per_s: 0\n")
    with pytest.raises(UserError, match="extract_faces_per_s must be a number > 0"):
        plan_time.load_costs(bad)
    bad.write_text("startup_seconds: {report: -1}\n")
    with pytest.raises(UserError, match="startup_seconds.report"):
        plan_time.load_costs(bad)


@pytest.mark.parametrize("argv, message", [
    (["--gpus", "-1"], "--gpus takes GPU counts ≥ 0"),
    (["--cores", "0"], "--cores must be ≥ 1"),
    (["--epochs", "0"], "--epochs must be a number > 0"),
    (["--configfile", "nowhere.yaml"], "nowhere.yaml: no such file"),
    (["--config", "train={max_epochs: -3}"], "max_epochs"),
])
def test_bad_arguments_are_clear_errors(argv, message, capsys):
    assert main(["plan-time", "--configfile", str(ROOT / "config" / "smoke.yaml"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_config_overrides_are_read_as_snakemake_reads_them(monkeypatch):
    """`--config seeds=[0,1]` is a list of seeds (not a file name), and the dry run gets it."""
    args = build_parser(["plan-time"]).parse_args(
        ["plan-time", "--configfile", str(ROOT / "config" / "smoke.yaml"),
         "--config", "seeds=[0,1]", "train={max_epochs: 3}"])
    config = plan_time.study(args)
    assert config["seeds"] == [0, 1] and config["train"]["max_epochs"] == 3
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        raise RuntimeError("stop")

    monkeypatch.setattr(plan_time.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError):
        plan_time.dry_run(Path(args.configfile), ROOT / "Snakefile", [], args.config, 2)
    i = seen["cmd"].index("--config")
    assert seen["cmd"][i + 1:i + 3] == ["seeds=[0,1]", "train={max_epochs: 3}"]
    assert seen["cmd"][seen["cmd"].index("--cores") + 1] == "2"


def test_smoke_dag_from_snakemake(tmp_path, capsys):
    """Snakemake's own DAG of the smoke run: dependencies, a cost for every job of every rule
    (only the target rule `all` is free), and the printed plan says what its costs are."""
    saved = tmp_path / "dry-run.txt"
    saved.write_text(plan_time.dry_run(ROOT / "config" / "smoke.yaml", ROOT / "Snakefile",
                                       ["results/report.html"], None, 4))
    args = argparse.Namespace(
        configfile=str(ROOT / "config" / "smoke.yaml"), config=[], gpus=[1, 2], mode="node",
        cores=4, faces=["smoke-images=96", "smoke-videos=96"], epochs=None, costs=None,
        snakefile=str(ROOT / "Snakefile"), directory=str(tmp_path), targets=[],
        dry_run_output=str(saved))
    jobs, results = plan_time.plan(args)
    rounds = {j.wildcards["level"].removeprefix("round"): j for j in jobs
              if j.rule == "imp_round" and j.wildcards.get("method") == "imp-global"
              and j.wildcards["dataset"] == "smoke-videos"}
    dense = next(j for j in jobs if j.rule == "train_dense" and j.wildcards["dataset"]
                 == "smoke-videos" and j.wildcards["model"] == "mesonet")
    assert rounds["1"].id in rounds["2"].deps and dense.id in rounds["1"].deps
    assert rounds["2"].id not in rounds["1"].deps
    rules = {j.rule for j in jobs}
    assert {"report", "transfer_finetuned", "kd_round", "generalise", "quantize",
            "robustness", "transfer_dense", "extract_faces"} <= rules
    assert all(j.seconds > 0 for j in jobs if j.rule != "all")
    assert dense.command and dense.spec_number("max_epochs") == 2
    assert next(j for j in jobs if j.rule == "extract_faces").threads == 2
    assert results[1]["makespan"] <= results[0]["makespan"]
    argv = ["plan-time", "--configfile", args.configfile, "--dry-run-output", str(saved),
            "--faces", "smoke-images=96", "--faces", "smoke-videos=96"]
    assert main([*argv, "--gpus", "0", "--cores", "2"]) == 0
    out = capsys.readouterr().out
    assert "one CPU thread's seconds" in out and "measured on CPU" in out
    assert re.search(r"^\s+0\s+[\d.]+ (s|min|h)\s+.*CPU only$", out, re.M), out
    assert main([*argv, "--gpus", "2", "4"]) == 0
    out = capsys.readouterr().out
    speedups = re.findall(r"^\s+[24]\s+.*?([\d.]+)x", out, re.M)
    assert len(speedups) == 2 and all(float(x) >= 1 for x in speedups), out  # against 1 GPU


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
    # an IMP chain of 8 rounds (its random-chain control follows the ticket round by round)
    assert sum(j.rule in ("imp_round", "control") for j in path) >= 8
    assert all(j.seconds > 0 for j in jobs if j.rule != "all")
    assert one["makespan"] / eight["makespan"] <= work / length * 1.01
    assert one["makespan"] / eight["makespan"] >= 4  # the bar, from the simulation


def test_the_table_predicts_the_idle_demo_it_was_scaled_by():
    """cpu_scale makes the table predict the last `make demo` timed on an idle machine (139
    jobs, 7 min 37 s on 2 cores; its DAG and config kept in bench/plan_time/): recalibrating
    the start-ups without `bench/throughput.py --reference` breaks this."""
    folder = ROOT / "bench" / "plan_time"
    argv = ["plan-time", "--configfile", str(folder / "demo-84ae14a.config.yaml"),
            "--dry-run-output", str(folder / "demo-84ae14a.dryrun.txt"), "--gpus", "0",
            "--cores", "2", "--directory", str(folder)]
    jobs, (cpu_only,) = plan_time.plan(build_parser(argv).parse_args(argv))
    assert len(jobs) == 140 and all(j.seconds > 0 for j in jobs if j.rule != "all")
    assert cpu_only["makespan"] == pytest.approx(457, rel=0.02)
