"""The GPU allocator (deepfake_lth.core.gpus) on simulated devices: concurrent processes with
mixed shares never put a device over 100 %, every job gets one, a killed job's claim
returns, CUDA_VISIBLE_DEVICES set by the user is respected."""

from __future__ import annotations

import errno
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


def test_best_fit_packs_and_keeps_whole_devices_free(tmp_path):
    held = [gpus.try_claim(["0", "1"], 25, tmp_path) for _ in range(8)]
    assert all(held) and [c.device for c in held] == ["0"] * 4 + ["1"] * 4
    assert gpus.try_claim(["0", "1"], 25, tmp_path) is None
    for c in held:
        c.release()
    quarters = [gpus.try_claim(["0", "1"], 25, tmp_path) for _ in range(2)]
    half = gpus.try_claim(["0", "1"], 50, tmp_path)  # packs beside them: device 1 stays whole
    assert {c.device for c in [*quarters, half]} == {"0"}
    whole = gpus.try_claim(["0", "1"], 100, tmp_path)
    assert whole is not None and whole.device == "1"
    for c in (*quarters, half, whole):
        c.release()
    # two MesoNet jobs on two devices and an Xception job: the best fit leaves it a device
    a = gpus.try_claim(["0", "1"], 25, tmp_path)
    b = gpus.try_claim(["0", "1"], 25, tmp_path)
    x = gpus.try_claim(["0", "1"], 100, tmp_path)
    assert (a.device, b.device, x.device) == ("0", "0", "1")
    for c in (a, b, x):
        c.release()


def test_set_aside_reserves_the_nearest_device_for_a_job_that_fits_nowhere():
    room = {"0": 3, "1": 1}
    reserved = gpus.set_aside(room, [{"share": 100, "pid": 9}], ["0", "1"])
    assert room == {"0": 0, "1": 1} and reserved["0"]["pid"] == 9
    room = {"0": 3, "1": 1}
    gpus.set_aside(room, [{"share": 25}, {"share": 50}], ["0", "1"])
    assert room == {"0": 1, "1": 0}  # each waiting job in its best fit
    room = {"0": 4, "1": 4}
    gpus.set_aside(room, [{"share": 100, "devices": ["1"]}], ["0", "1"])
    assert room == {"0": 4, "1": 0}  # only among the devices the waiting job can use


def test_simulated_four_gpu_slurm_allocation_packs_eight_quarter_jobs(tmp_path):
    """`salloc --gpus=4` then snakemake: SLURM_JOB_ID set, four devices visible. Eight 25 %
    jobs at once claim (SLURM no longer turns claiming off), land on two devices or more,
    and no device goes over 100 %."""
    env = _env(tmp_path, SLURM_JOB_ID="4242", CUDA_VISIBLE_DEVICES="0,1,2,3")
    procs = [_worker(tmp_path, env, 25, 3.0, f"job{i}") for i in range(8)]
    for proc, _ in procs:
        assert proc.wait(timeout=60) == 0
    runs = [json.loads(out.read_text()) for _, out in procs]
    assert max(r["start"] for r in runs) < min(r["end"] for r in runs)  # all eight at once
    assert len({r["device"] for r in runs}) >= 2
    assert {r["device"] for r in runs} <= {"0", "1", "2", "3"}
    for r in runs:
        load = sum(o["share"] for o in runs
                   if o["device"] == r["device"] and o["start"] <= r["start"] < o["end"])
        assert load <= 100, (r, load)


def _wait_claimed(procs) -> None:
    deadline = time.time() + 60
    for proc, out in procs:
        while not out.exists() or not out.read_text():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)


@pytest.mark.parametrize("allocation", ["one device", "SLURM, four devices"])
def test_a_whole_gpu_job_is_not_starved_by_a_stream_of_quarter_jobs(tmp_path, allocation):
    """One device kept busy by 25 % jobs arriving faster than they finish (in the simulated
    4-GPU SLURM allocation the other three are held by 100 % jobs throughout): a 100 % job
    that arrives meanwhile reserves the device, later 25 % jobs queue behind it, and it runs
    once the device drains, long before the stream ends."""
    if allocation == "one device":
        env, holders = _env(tmp_path, DLTH_GPU_COUNT="1"), []
    else:
        env = _env(tmp_path, SLURM_JOB_ID="4243", CUDA_VISIBLE_DEVICES="0,1,2,3")
        holders = [_worker(tmp_path, env, 100, 60, f"holder{i}") for i in range(3)]
        _wait_claimed(holders)
    stream, big = [], None
    for i in range(16):
        stream.append(_worker(tmp_path, env, 25, 1.5, f"small{i}"))
        if i == 3:
            big = _worker(tmp_path, env, 100, 0.5, "big")
        time.sleep(0.4)
    for proc, _ in [*stream, big]:
        assert proc.wait(timeout=120) == 0
    for proc, _ in holders:
        proc.kill()
        proc.wait()
    small = [json.loads(out.read_text()) for _, out in stream]
    whole = json.loads(big[1].read_text())
    assert sum(r["start"] > whole["end"] for r in small) >= 4  # the stream went on after it
    for r in small:  # and never ran beside it
        assert r["device"] != whole["device"] or r["end"] <= whole["start"] \
            or r["start"] >= whole["end"], (r, whole)
    if holders:
        held = {json.loads(out.read_text())["device"] for _, out in holders}
        assert len(held) == 3 and whole["device"] not in held


def test_a_waiting_job_names_the_holders_and_times_out(tmp_path, monkeypatch, caplog):
    env = _env(tmp_path, DLTH_GPU_COUNT="1")
    proc, out = _worker(tmp_path, env, 75, 60, "holder")
    _wait_claimed([(proc, out)])
    try:
        monkeypatch.setattr(gpus, "RELOG_SECONDS", 0.3)
        caplog.set_level("INFO", logger=gpus.__name__)
        with pytest.raises(gpus.UserError, match=rf"pid {proc.pid} \(75 %\).*DLTH_GPU_TIMEOUT"):
            gpus.claim(50, ["0"], tmp_path / "locks", timeout=1.0)
        waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
        assert len(waits) >= 2 and all(f"pid {proc.pid} (75 %)" in m for m in waits)
        assert not list((tmp_path / "locks" / "queue").glob("*.json"))  # it left the queue
    finally:
        proc.kill()
        proc.wait()


def test_slurm_with_one_device_cpu_cuda_n_and_no_gpu_claim_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DLTH_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.delenv("DLTH_GPU_CLAIMED", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("DLTH_GPU_COUNT", "2")
    assert gpus.claim_for_job("cpu", 25) is None
    assert gpus.claim_for_job("cuda:1", 25) is None
    assert gpus.claim_for_job("auto", 0) is None
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # sbatch --gpus=1: the job's own GPU
    assert gpus.claim_for_job("auto", 25) is None
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("DLTH_GPU_COUNT", "0")
    assert gpus.claim_for_job("auto", 25) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.delenv("DLTH_GPU_COUNT")
    assert gpus.visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpus.visible_devices({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert gpus.visible_devices({}, count=lambda: 3) == ["0", "1", "2"]


def test_device_lists_as_cuda_reads_them():
    assert gpus.visible_devices({"CUDA_VISIBLE_DEVICES": "0,,1"}) == ["0"]  # CUDA stops there
    assert gpus.visible_devices({"CUDA_VISIBLE_DEVICES": " 2, 3 "}) == ["2", "3"]
    uuids = "GPU-8f2a1c3e-0000-1111-2222-333344445555,MIG-GPU-5c89852c-d268/7/0"
    assert gpus.visible_devices({"CUDA_VISIBLE_DEVICES": uuids}) == uuids.split(",")
    assert gpus.visible_devices({"DLTH_GPU_COUNT": "3"}) == ["0", "1", "2"]


def test_the_profile_budgets_the_devices_the_claims_count(monkeypatch):
    """profiles/default caps gpu_share at 100 per device of visible_devices: `0,,1` is one
    device for the budget as for the claims; DLTH_GPU_COUNT simulates devices for both."""
    yte = pytest.importorskip("yte")
    monkeypatch.chdir(ROOT)

    def budget(**env: str) -> int | None:
        for k in ("CUDA_VISIBLE_DEVICES", "DLTH_GPU_COUNT"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        with open(ROOT / "profiles" / "default" / "profile.yaml") as f:
            doc = yte.process_yaml(f)
        return (doc.get("resources") or {}).get("gpu_share")

    assert budget(CUDA_VISIBLE_DEVICES="0,,1") == 100 == 100 * len(gpus.visible_devices())
    assert budget(CUDA_VISIBLE_DEVICES="0,1,2,3") == 400
    assert budget(CUDA_VISIBLE_DEVICES="", DLTH_GPU_COUNT="4") is None
    assert budget(DLTH_GPU_COUNT="2") == 200


def test_bad_count_and_share_say_what_to_fix():
    for bad in ("four", "-2"):
        with pytest.raises(gpus.UserError, match="DLTH_GPU_COUNT"):
            gpus.visible_devices({"DLTH_GPU_COUNT": bad})
    with pytest.raises(gpus.UserError, match="1–100"):
        gpus.slots_for(150)
    for bad in ("soon", "-5", "nan"):
        with pytest.raises(gpus.UserError, match="DLTH_GPU_TIMEOUT"):
            gpus.wait_timeout({"DLTH_GPU_TIMEOUT": bad})
    assert gpus.wait_timeout({"DLTH_GPU_TIMEOUT": "0"}) is None
    assert gpus.wait_timeout({"DLTH_GPU_TIMEOUT": "90"}) == 90


def test_the_lock_folder_is_local_per_user_and_per_allocation(tmp_path):
    default = gpus.lock_dir({})
    assert default.parent == Path("/tmp") and default.name.startswith("deepfake-lth-gpus-")
    assert gpus.lock_dir({"SLURM_JOB_ID": "77"}) == default / "slurm-77"
    assert gpus.lock_dir({"DLTH_GPU_LOCK_DIR": str(tmp_path)}) == tmp_path


def test_an_unusable_lock_folder_and_a_file_system_without_flock_say_what_to_set(
        tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(gpus.UserError, match="DLTH_GPU_LOCK_DIR"):
        gpus.try_claim(["0"], 25, blocker / "locks")
    if os.getuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(gpus.UserError, match="not writable.*DLTH_GPU_LOCK_DIR"):
            gpus.try_claim(["0"], 25, locked)

    def no_locks(*_):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(gpus.fcntl, "flock", no_locks)
    with pytest.raises(gpus.UserError, match="does not support flock.*DLTH_GPU_LOCK_DIR"):
        gpus.try_claim(["0"], 25, tmp_path / "nfs")


def test_bad_environment_values_are_errors_of_the_cli_not_tracebacks(tmp_path):
    gradcam = ["gradcam", "--faces", str(tmp_path), "--levels", "[]", "--out",
               str(tmp_path / "o"), "--model", "mesonet", "--spec", "{}"]
    blocker = tmp_path / "file"
    blocker.write_text("")
    for extra in ({"DLTH_GPU_COUNT": "four"}, {"DLTH_GPU_LOCK_DIR": str(blocker / "x")},
                  {"DLTH_GPU_TIMEOUT": "later"}):
        env = _env(tmp_path, **{"DLTH_GPU_COUNT": "2", **extra})
        env.pop("DLTH_DEVICE", None)
        proc = subprocess.run([sys.executable, "-m", "deepfake_lth", *gradcam], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "deepfake-lth gradcam: error:" in proc.stderr
        assert next(iter(extra)) in proc.stderr


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


def test_extraction_claims_the_share_its_rule_declares(tmp_path):
    """`extract` claims EXTRACT_SHARE with a face detector, nothing with --detect no (the
    extract_faces rule declares the same: job_resources.extract_job)."""
    from deepfake_lth.workflow.job_resources import extract_job

    extract = ["extract", "--sources", str(tmp_path / "none.csv"), "--shard", "0", "--shards",
               "1", "--spec", "{}", "--out", str(tmp_path / "shard0")]
    err = _cli(tmp_path, *extract, "--detect", "auto")
    assert re.search(rf"GPU claim: device [01], {gpus.EXTRACT_SHARE} %", err)
    assert "GPU claim" not in _cli(tmp_path, *extract, "--detect", "no")
    share = extract_job(lambda w: w["detect"])["gpu_share"]
    assert (share({"detect": "auto"}), share({"detect": "no"})) == (gpus.EXTRACT_SHARE, 0)
