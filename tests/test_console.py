"""The workflow's console (deepfake_lth.workflow.console and its Snakemake logger plugin): a
short line per job, a progress line per running training job read from its log, one line on
Ctrl-C; the profiles that turn it on."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from deepfake_lth.workflow import console

ROOT = Path(__file__).resolve().parents[1]
CODE = [f"src/deepfake_lth/module{i}.py" for i in range(25)]  # a job's code inputs


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(interval: float = 15.0, printshellcmds: bool = False):
    lines: list[str] = []
    clock = Clock()
    c = console.Console(lines.append, printshellcmds, interval, clock, lambda: "12:00:00")
    return c, lines, clock


def job_info(jobid: int, log: Path, **extra) -> dict:
    return {"event": "job_info", "jobid": jobid, "rule_name": "train_dense", "rule_msg": None,
            "wildcards": {"dataset": "demo-videos", "model": "cnn5", "seed": "0"},
            "input": CODE, "output": ["results/demo-videos/cnn5/seed0/dense/metrics.json"],
            "log": [str(log)], "shellcmd": "python -m deepfake_lth train " + " ".join(CODE),
            "levelno": logging.INFO, "msg": " Rule: train_dense", **extra}


def epoch_line(epoch: int, epochs: int = 30) -> str:
    """The progress line fit() logs (the format of training/fit.py's early_stopping)."""
    return (f"2026-01-01 12:00:00,000 INFO deepfake_lth.training.fit: epoch {epoch}/{epochs}: "
            f"train loss 0.{epoch}123 acc 0.812 | val loss 0.5012 acc 0.790 auc 0.8{epoch}10 * "
            f"(1.2s, {35 * epoch}s in all)")


def test_a_job_is_one_short_line_and_its_progress_comes_from_its_log(tmp_path):
    c, lines, clock = make()
    log = tmp_path / "train.log"
    c.handle({"event": "run_info", "stats": {"train_dense": 4, "imp_round": 64, "total": 68},
              "msg": "Job stats:\n...", "levelno": logging.INFO})
    for chatter in ("Building DAG of jobs...", "Select jobs to execute...", "Execute 2 jobs...",
                    "Using shell: /usr/bin/bash", "Provided cores: 2"):
        c.handle({"msg": chatter, "levelno": logging.INFO})
    c.handle(job_info(7, log))
    c.handle({"event": "shellcmd", "cmd": "python -m deepfake_lth train", "levelno": 20})
    assert lines == ["68 jobs to run: train_dense 4, imp_round 64",
                     "[12:00:00] start  train_dense  dataset=demo-videos model=cnn5 seed=0"]
    c.poll()  # no log yet: nothing
    log.write_text(epoch_line(1) + "\n" + epoch_line(2) + "\n")
    c.poll()
    assert lines[-1] == ("[12:00:00]        train_dense  dataset=demo-videos model=cnn5 seed=0: "
                         "epoch 2/30, loss 0.2123, val auc 0.8210, 1 min 10 s")
    with open(log, "a") as fh:
        fh.write(epoch_line(3) + "\n")
    clock.now += 5
    c.poll()  # within the interval: nothing new
    assert len(lines) == 3
    clock.now += 11
    c.poll()
    assert lines[-1].endswith("epoch 3/30, loss 0.3123, val auc 0.8310, 1 min 45 s")
    clock.now += 30
    c.poll()  # no newer epoch: nothing
    assert len(lines) == 4
    c.handle({"event": "job_finished", "job_id": 7, "levelno": 20})
    c.handle({"event": "progress", "done": 5, "total": 68, "levelno": 20})
    assert lines[-1] == ("[12:00:00] done   train_dense  dataset=demo-videos model=cnn5 seed=0 "
                         "(46 s; 5 of 68 jobs, 7 %)")
    assert all(len(line) < 150 for line in lines)
    assert not any("module" in line or "python -m" in line for line in lines)


def test_shell_commands_come_back_with_printshellcmds(tmp_path):
    c, lines, _ = make(printshellcmds=True)
    c.handle(job_info(1, tmp_path / "x.log"))
    c.handle({"event": "shellcmd", "cmd": "python -m deepfake_lth train", "levelno": 20})
    assert lines[-1] == "    python -m deepfake_lth train"


def test_a_group_job_is_one_line_and_its_jobs_one_each(tmp_path):
    c, lines, _ = make()
    c.handle({"event": "group_info", "group_id": "baselines", "jobs": [1, 2], "levelno": 20,
              "msg": "Group job baselines (jobs in lexicogr. order):"})
    c.handle(job_info(1, tmp_path / "a.log", rule_name="transfer_dense"))
    assert lines[0] == "[12:00:00] group  baselines (2 jobs, in one submission)"
    assert lines[1].startswith("[12:00:00] start  transfer_dense  dataset=demo-videos")


def test_a_failed_job_names_its_log_and_shows_its_end(tmp_path):
    c, lines, _ = make()
    log = tmp_path / "pack.log"
    log.write_text("".join(f"line {i}\n" for i in range(20)) + "UserError: no faces\n")
    c.handle(job_info(3, log))
    c.handle({"msg": "RuleException:\nCalledProcessError in file Snakefile, line 9:\nCommand "
              "'set -euo pipefail; python ...' returned non-zero exit status 2.",
              "levelno": logging.ERROR})
    c.handle({"event": "job_error", "jobid": 3, "rule_name": "train_dense", "log": [str(log)],
              "levelno": logging.ERROR, "msg": None})
    c.handle({"msg": "Exiting because a job execution failed. Look below for error messages",
              "levelno": logging.ERROR})
    assert lines[1] == (f"[12:00:00] FAILED train_dense  dataset=demo-videos model=cnn5 seed=0 "
                        f"(log {log})")
    assert lines[2:6] == ["    line 16", "    line 17", "    line 18", "    line 19"]
    assert lines[6] == "    UserError: no faces"
    assert lines[7].startswith("Exiting because a job execution failed")
    c.close()
    assert console.STOPPED not in lines


def test_ctrl_c_is_one_line_without_the_errors_of_stopped_jobs(tmp_path):
    c, lines, _ = make()
    c.handle(job_info(1, tmp_path / "a.log"))
    c.handle(job_info(2, tmp_path / "b.log"))
    c.handle({"msg": "Terminating processes on user request, this might take some time.",
              "levelno": logging.WARNING})
    c.handle({"msg": "RuleException:\nCalledProcessError ... died with <Signals.SIGINT: 2>.",
              "levelno": logging.ERROR})
    for jobid in (1, 2):
        c.handle({"event": "job_error", "jobid": jobid, "rule_name": "train_dense",
                  "log": [], "msg": None, "levelno": logging.ERROR})
    c.handle({"msg": "WorkflowError:\nAt least one job did not complete successfully.",
              "levelno": logging.ERROR})
    c.close()
    c.close()
    text = "\n".join(lines)
    assert "Error" not in text and "message: None" not in text
    assert lines[-1] == "stopped; the state is saved; rerun the same command to resume"
    assert text.count(console.STOPPED) == 1 and text.count("stopped train_dense") == 2


def test_the_training_log_line_is_the_one_the_console_reads(caplog):
    """fit() itself writes the line progress_text reads (the loss, validation AUC and time)."""
    import torch
    from fit_helpers import fit_with

    from deepfake_lth.data.store import FaceSplit

    rng = np.random.default_rng(0)

    def split(n: int) -> FaceSplit:
        labels = np.arange(n) % 2
        images = (rng.uniform(0, 255, (n, 16, 16, 3)) + labels[:, None, None, None] * 40)
        return FaceSplit(np.clip(images, 0, 255).astype(np.uint8), labels,
                         np.array([f"v{i // 2}" for i in range(n)]), np.arange(n))

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(),
                                torch.nn.Linear(2 * 14 * 14, 1))
    with caplog.at_level(logging.INFO, logger="deepfake_lth.training.fit"):
        fit_with(model, split(16), split(8), max_epochs=2, patience=5, batch_size=8,
                 input_size=16, lr=1e-3, amp=False)
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(epochs) == 2
    text = console.progress_text(epochs[-1])
    assert text is not None and text.startswith("epoch 2/2, loss ")
    assert ", val auc " in text and text.endswith(" s")


def test_durations_read_as_a_person_writes_them():
    assert [console.duration(s) for s in (4.4, 59.6, 134, 3600 + 180)] == [
        "4 s", "1 min 00 s", "2 min 14 s", "1 h 03 min"]


# ---------------------------------------------------------------------------- profiles


def test_the_profiles_print_no_shell_commands_and_use_the_console():
    default = (ROOT / "profiles" / "default" / "profile.yaml").read_text()
    slurm = yaml.safe_load((ROOT / "profiles" / "slurm" / "profile.yaml").read_text())
    assert "printshellcmds: false" in default and "printshellcmds: true" not in default
    assert "logger: [deepfake-lth]" in default
    assert slurm["printshellcmds"] is False and "logger" not in slurm
    from snakemake_interface_logger_plugins.registry import LoggerPluginRegistry

    assert LoggerPluginRegistry().is_installed("deepfake-lth")


# ---------------------------------------------------------------------------- real runs

SNAKEFILE = """
rule all:
    input: "a.txt", "b.txt"

rule train:
    output: "{x}.txt"
    log: "logs/{x}.log"
    shell: "python job.py {log} && touch {output}"
"""
JOB = """
import sys, time
with open(sys.argv[1], "a") as log:
    for i in range(1, 41):
        print("2026 INFO deepfake_lth.training.fit: epoch %d/40: train loss 0.5000 acc 0.700 "
              "| val loss 0.6000 acc 0.650 auc 0.7%d00 * (0.2s, %ds in all)" % (i, i % 10, i),
              file=log, flush=True)
        time.sleep(0.25)
"""


def _workflow(tmp_path: Path) -> Path:
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "job.py").write_text(JOB)
    return tmp_path


def _snakemake(work: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "DLTH_PROGRESS_SECONDS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--logger", "deepfake-lth", *args]
    return subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_a_run_prints_short_lines_and_a_plan_stays_in_full(tmp_path):
    work = _workflow(tmp_path)
    out, _ = _snakemake(work, "-p").communicate(timeout=300)
    assert "rule train:" not in out and "Job stats" not in out, out
    assert "3 jobs to run: train 2, all 1" in out
    assert out.count("start  train  x=") == 2 and "done   all" in out, out
    assert "python job.py logs/a.log" in out  # -p: the commands, one line each
    assert "train  x=a: epoch " in out and ", val auc 0.7" in out
    assert max(len(line) for line in out.splitlines()) < 200
    (work / "a.txt").unlink()
    plan, _ = _snakemake(work, "-n").communicate(timeout=300)
    assert "rule train:" in plan and "wildcards: x=a" in plan  # Snakemake's own plan


@pytest.mark.slow  # a workflow started and stopped: ~20 s on 2 cores
def test_ctrl_c_says_how_to_resume(tmp_path):
    work = _workflow(tmp_path)
    proc = _snakemake(work, start_new_session=True,
                      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (work / "logs" / "a.log").is_file() or "epoch 3/" not in (
            work / "logs" / "a.log").read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, _ = proc.communicate(timeout=120)
    assert out.rstrip().endswith(console.STOPPED), out[-2000:]
    assert "Error in rule" not in out and "message: None" not in out
    assert "WorkflowError" not in out and "stopped train  x=a" in out
