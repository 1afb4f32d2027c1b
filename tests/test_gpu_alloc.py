"""The GPU allocator (deepfake_lth.core.gpus) on simulated devices: concurrent processes with
mixed shares never put a device over 100 %, every job gets one, a killed job's claim
returns, CUDA_VISIBLE_DEVICES set by the user is respected."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepfake_lth.core import gpus

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json, os, sys, time
from deepfake_lth.core.gpus import claim_for_job
share, hold, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
got = claim_for_job("auto", share)
start = time.time()
with open(out, "w") as f:
    f.write(json.dumps({"device": os.environ["CUDA_VISIBLE_DEVICES"], "share": share,
                        "start": start}))
    f.flush()
    time.sleep(hold)
    end = time.time()
with open(out, "w") as f:
    f.write(json.dumps({"device": got.device, "share": share, "start": start, "end": end}))
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "DLTH_GPU_COUNT",
                        "DLTH_GPU_CLAIMED")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["DLTH_GPU_LOCK_DIR"] = str(tmp_path / "locks")
    env.update(extra)
    return env


def _worker(tmp_path: Path, env: dict[str, str], share: int, hold: float, name: str):
    out = tmp_path / f"{name}.json"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(share), str(hold), str(out)],
                            env=env)
    return proc, out


def test_sixteen_jobs_with_mixed_shares_on_four_devices(tmp_path):
    env = _env(tmp_path, DLTH_GPU_COUNT="4")
    shares = [100, 50, 25, 25] * 4  # 800 % asked of 400 %: some jobs must wait
    procs = [_worker(tmp_path, env, s, 0.4, f"job{i}") for i, s in enumerate(shares)]
    for proc, _ in procs:
        assert proc.wait(timeout=60) == 0
    runs = [json.loads(out.read_text()) for _, out in procs]
    assert len(runs) == 16 and all("end" in r for r in runs)  # every job got a device
    assert {r["device"] for r in runs} == {"0", "1", "2", "3"}
    for r in runs:  # at every job's start, its device's running shares sum to ≤ 100 %
        load = sum(o["share"] for o in runs
                   if o["device"] == r["device"] and o["start"] <= r["start"] < o["end"])
        assert load <= 100, (r, load)
    first = min(r["end"] for r in runs)
    assert any(r["start"] > first for r in runs)  # the queue really was full


def test_a_killed_jobs_claim_returns(tmp_path):
    env = _env(tmp_path, DLTH_GPU_COUNT="1")
    proc, out = _worker(tmp_path, env, 100, 120, "holder")
    deadline = time.time() + 30
    while not out.exists() or not out.read_text():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    folder = tmp_path / "locks"
    assert gpus.try_claim(["0"], 25, folder) is None  # the device is full
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    got = gpus.claim(25, ["0"], folder, timeout=10)
    assert got.device == "0"
    got.release()


def test_claims_pick_within_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("DLTH_GPU_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setenv("DLTH_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("DLTH_GPU_CLAIMED", "")
    assert gpus.candidate_devices() == ["2", "3"]
    first = gpus.claim_for_job("auto", 100)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == first.device
    assert os.environ["DLTH_GPU_CLAIMED"] == f"{first.device}:100"
    assert gpus.claim_for_job("auto", 100) is None  # one claim per process (and its children)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setenv("DLTH_GPU_CLAIMED", "")
    second = gpus.claim_for_job("cuda", 100)
    assert {first.device, second.device} == {"2", "3"}
    assert gpus.try_claim(["2", "3"], 25, tmp_path) is None
    first.release()
    second.release()


def test_shares_pack_and_ties_go_round_robin(tmp_path):
    held = [gpus.try_claim(["0", "1"], 25, tmp_path) for _ in range(8)]
    assert all(held) and sorted(c.device for c in held) == ["0"] * 4 + ["1"] * 4
    assert gpus.try_claim(["0", "1"], 25, tmp_path) is None
    for c in held:
        c.release()
    half = gpus.try_claim(["0", "1"], 50, tmp_path)
    whole = gpus.try_claim(["0", "1"], 100, tmp_path)  # only the other device has 100 %
    assert whole is not None and whole.device != half.device
    whole.release()
    quarter = gpus.try_claim(["0", "1"], 25, tmp_path)  # the freest device
    assert quarter.device != half.device
    for c in (half, quarter):
        c.release()
    devices = []
    for _ in range(4):  # one job at a time still spreads over the devices
        c = gpus.try_claim(["0", "1"], 25, tmp_path)
        devices.append(c.device)
        c.release()
    assert devices in (["0", "1", "0", "1"], ["1", "0", "1", "0"])


def test_cpu_cuda_n_slurm_and_no_gpu_claim_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DLTH_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.delenv("DLTH_GPU_CLAIMED", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("DLTH_GPU_COUNT", "2")
    assert gpus.claim_for_job("cpu", 25) is None
    assert gpus.claim_for_job("cuda:1", 25) is None
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert gpus.claim_for_job("auto", 25) is None
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("DLTH_GPU_COUNT", "0")
    assert gpus.claim_for_job("auto", 25) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.delenv("DLTH_GPU_COUNT")
    assert gpus.candidate_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpus.candidate_devices({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert gpus.candidate_devices({}, count=lambda: 3) == ["0", "1", "2"]


def test_bad_count_and_share_say_what_to_fix():
    with pytest.raises(gpus.UserError, match="DLTH_GPU_COUNT"):
        gpus.candidate_devices({"DLTH_GPU_COUNT": "four"})
    with pytest.raises(gpus.UserError, match="1–100"):
        gpus.slots_for(150)


CUDA_WORKER = """
import json, sys, time
from deepfake_lth.core.gpus import claim_for_job
got = claim_for_job("auto", 100)
import torch
x = torch.ones(1, device="cuda")  # CUDA starts after the claim: it sees one device
props = torch.cuda.get_device_properties(0)
print(json.dumps({"claimed": got.device, "visible": torch.cuda.device_count(),
                  "uuid": str(getattr(props, "uuid", props.name))}), flush=True)
time.sleep(float(sys.argv[1]))
"""


@pytest.mark.gpu
def test_two_jobs_run_on_two_different_real_gpus(tmp_path):
    """`make gpu-check` on a machine with at least two GPUs."""
    torch = pytest.importorskip("torch")
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    env = _env(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", CUDA_WORKER, "3"], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    out = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert {o["visible"] for o in out} == {1}
    assert out[0]["claimed"] != out[1]["claimed"] and out[0]["uuid"] != out[1]["uuid"]


def test_uuid_and_mig_names_lock_their_own_files(tmp_path):
    mig = "MIG-GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f/7/0"
    got = gpus.try_claim([mig, "GPU-a1"], 100, tmp_path)
    assert got.device in (mig, "GPU-a1") and len(list(tmp_path.glob("gpu*.slot*"))) == 8
    got.release()


def _cli(tmp_path: Path, *argv: str) -> str:
    env = _env(tmp_path, DLTH_GPU_COUNT="2")
    env.pop("DLTH_DEVICE", None)
    proc = subprocess.run([sys.executable, "-m", "deepfake_lth", *argv], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    return proc.stderr


def test_the_cli_claims_the_models_share_before_the_stage_runs(tmp_path):
    """A subcommand with --device claims its model's share (the stage then fails on its
    bad spec: the claim came first); --device cpu and the spec's cpu claim nothing."""
    gradcam = ["gradcam", "--faces", str(tmp_path), "--levels", "[]", "--out",
               str(tmp_path / "o")]
    bad = ["--spec", '{"sample_per_class": 2}']
    err = _cli(tmp_path, *gradcam, "--model", "xception", *bad)
    assert re.search(r"GPU claim: device [01], 100 %", err) and "sample_per_class" in err
    err = _cli(tmp_path, *gradcam, "--model", "mesonet", *bad)
    assert re.search(r"GPU claim: device [01], 25 %", err)
    assert "GPU claim" not in _cli(tmp_path, *gradcam, "--model", "mesonet", *bad,
                                   "--device", "cpu")
    assert "GPU claim" not in _cli(tmp_path, *gradcam, "--model", "mesonet", "--spec",
                                   '{"device": "cpu", "sample_per_class": 2}')
