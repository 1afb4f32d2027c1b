"""Preemption-safe training: `deepfake-lth train` and the workflow's training job, stopped by
SIGTERM or SIGKILL about halfway and run again with the same command, end identical to a run
that was never stopped (checkpoint tensors, test/val metrics, epochs, best epoch), with the
epochs they resumed at in metrics.json `resumed_from`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deepfake_lth.training.resume import state_path

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 30  # a tiny epoch each: long enough a run to stop at its middle
SPEC = {
    "input_size": 32,
    "device": "cpu",
    "threads": 1,
    "train": {"max_epochs": EPOCHS, "patience": EPOCHS, "batch_size": 16, "lr": 1e-3,
              "amp": False},
}
COMPARED = ("test_acc", "test_auc", "test_loss", "video_acc", "val_acc", "val_loss", "val_auc",
            "epochs", "best_epoch", "stopped_early", "sparsity")


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``text`` appears in ``log`` (the job is mid-run); fails if the job ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(f"the job ended (rc {proc.returncode}) before {text!r}:\n"
                        f"{log.read_text(errors='replace')[-3000:] if log.is_file() else ''}")
        time.sleep(0.05)
    pytest.fail(f"{text!r} did not appear in {log} within {timeout} s")


def _same_run(run: Path, reference: Path) -> dict:
    """``run`` ended exactly as ``reference``; returns run's metrics."""
    got = json.loads((run / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    for key in COMPARED:
        assert got[key] == want[key], (key, got[key], want[key])
    assert [(h["train_loss"], h["val_loss"]) for h in got["history"]] == [
        (h["train_loss"], h["val_loss"]) for h in want["history"]]
    a = torch.load(run / "checkpoint.pt", weights_only=True)
    b = torch.load(reference / "checkpoint.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert want["resumed_from"] == []
    return got


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_stages import write_faces

    return write_faces(tmp_path_factory.mktemp("faces"), "ds", 0, videos=24, frames=4)


def _train_cmd(faces: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "deepfake_lth", "train", "--faces", str(faces), "--out",
            str(out), "--model", "mesonet", "--seed", "0", "--spec", json.dumps(SPEC)]


@pytest.fixture(scope="module")
def reference(faces, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "ds" / "mesonet" / "seed0" / "dense"
    proc = subprocess.run(_train_cmd(faces, out), capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not state_path(out).exists()  # a completed job leaves no state
    return out


def _interrupt(faces: Path, out: Path, sig: signal.Signals) -> subprocess.CompletedProcess:
    log = out.parent / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.Popen(_train_cmd(faces, out), stdout=fh, stderr=subprocess.STDOUT)
        try:
            _wait_for(log, f"epoch {EPOCHS // 2}/{EPOCHS}", proc)
            proc.send_signal(sig)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text(), "")


@pytest.mark.parametrize("sig", [
    signal.SIGTERM,
    pytest.param(signal.SIGKILL, marks=pytest.mark.slow),  # ~20 s more: make bench
], ids=["sigterm", "sigkill"])
def test_train_stopped_halfway_resumes_identically(faces, reference, tmp_path, sig):
    out = tmp_path / "results" / "ds" / "mesonet" / "seed0" / "dense"
    stopped = _interrupt(faces, out, sig)
    state = state_path(out)
    assert state == tmp_path / "results" / ".resume" / "ds" / "mesonet" / "seed0" / "dense" / (
        "state.pt")
    assert state.is_file(), stopped.stdout[-3000:]
    assert not (out / "metrics.json").exists()
    if sig == signal.SIGTERM:
        assert stopped.returncode == 128 + signal.SIGTERM, stopped.stdout[-3000:]
        assert "stopped by SIGTERM after epoch" in stopped.stdout
        assert f"state saved to {state}; rerun the same command to resume" in stopped.stdout
        assert "Traceback" not in stopped.stdout
    else:
        assert stopped.returncode == -signal.SIGKILL

    rerun = subprocess.run(_train_cmd(faces, out), capture_output=True, text=True, timeout=300,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from epoch" in rerun.stderr
    metrics = _same_run(out, reference)
    assert len(metrics["resumed_from"]) == 1
    assert 0 < metrics["resumed_from"][0] < EPOCHS
    assert not state.exists() and not (tmp_path / "results" / ".resume").exists()


@pytest.mark.slow
def test_a_changed_spec_starts_fresh(faces, tmp_path):
    out = tmp_path / "results" / "ds" / "mesonet" / "seed0" / "dense"
    _interrupt(faces, out, signal.SIGKILL)
    assert state_path(out).is_file()
    changed = json.loads(json.dumps(SPEC))
    changed["train"]["max_epochs"] = 3
    cmd = _train_cmd(faces, out)
    cmd[-1] = json.dumps(changed)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "written by another spec/code/input: fresh start" in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] == [] and metrics["epochs"] == 3


# ---------------------------------------------------------------------------- the workflow

TARGET = "results/smoke-images/mesonet/seed0/dense"
TRAIN_LOG = "results/logs/train_dense/smoke-images-mesonet-seed0.log"


def _snakemake(work: Path, *args: str, check: bool = True,
               popen: bool = False) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", f"{TARGET}/metrics.json", "--snakefile",
           str(ROOT / "Snakefile"), "--workflow-profile", "none", "--cores", "1",
           "--config", f"train={{max_epochs: {EPOCHS}, patience: {EPOCHS}}}",
           *args, "--configfile", str(ROOT / "config" / "smoke.yaml")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if popen:
        return subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _training_pid(snakemake: subprocess.Popen) -> int:
    for pid in _descendants(snakemake.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"deepfake_lth" in cmdline and b"train" in cmdline:
            return pid
    raise AssertionError("no `deepfake_lth train` process under snakemake")


@pytest.fixture(scope="module")
def workflow_reference(tmp_path_factory) -> Path:
    """The smoke data and one uninterrupted training job; the job's outputs kept aside."""
    work = tmp_path_factory.mktemp("workflow")
    _snakemake(work)
    shutil.copytree(work / TARGET, work / "reference")
    return work


def _rerun_from_scratch(work: Path) -> None:
    shutil.rmtree(work / TARGET)
    (work / TRAIN_LOG).unlink()


@pytest.mark.slow  # ~40 s on 2 cores: two workflow runs
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_workflow_job_stopped_halfway_resumes(workflow_reference, sig):
    work = workflow_reference
    _rerun_from_scratch(work)
    smk = _snakemake(work, popen=True)
    try:
        _wait_for(work / TRAIN_LOG, f"epoch {EPOCHS // 2}/{EPOCHS}", smk)
        train = _training_pid(smk)
        if sig == signal.SIGTERM:  # the job alone: snakemake sees it fail and stops
            os.kill(train, signal.SIGTERM)
            smk.wait(timeout=120)
            assert smk.returncode != 0
            assert "rerun the same command to resume" in (work / TRAIN_LOG).read_text()
        else:  # a lost node: snakemake and the job die at once, the lock stays
            for pid in [smk.pid, *_descendants(smk.pid)]:
                os.kill(pid, signal.SIGKILL)
            smk.wait(timeout=60)
            again = _snakemake(work, check=False)  # a plain rerun refuses the incomplete job
            assert again.returncode != 0 and "--rerun-incomplete" in again.stderr
            _snakemake(work, "--unlock")
    finally:
        if smk.poll() is None:
            smk.kill()
            smk.wait()
        smk.stdout.close()
    assert state_path(work / TARGET).is_file()

    _snakemake(work, "--rerun-incomplete")
    log = (work / TRAIN_LOG).read_text()
    assert "resumed from epoch" in log
    metrics = _same_run(work / TARGET, work / "reference")
    assert metrics["resumed_from"] and f"resumed from epoch {metrics['resumed_from'][0]}" in log
    assert not state_path(work / TARGET).exists()
