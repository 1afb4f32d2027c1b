"""config/smoke.yaml through profiles/slurm on a real one-node SLURM cluster.

The cluster is tests/slurm/start-cluster.sh (Debian's slurm-wlm, two fake GPUs of type
`fakegpu`); this module starts it when no cluster answers `sinfo` and it is root, and
stops it again if it started it. Where neither works the tests skip and say why.

Checked: the whole DAG reaches results/report.html through sbatch; every job whose rule
declares `gpu` (read from a dry run, not from a list of rule names) asked SLURM for one GPU
of the configured model in the GPU partition, every other job for none in the CPU
partition; the dense baselines went as one group job; the trained networks' metrics equal
those of a plain local run; and a training job sent SIGTERM through SLURM mid-run fails,
is submitted again, resumes after its last completed epoch and ends equal to a local run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "slurm"
# another config can be tried with the same checks (its datasets must include smoke-images)
CONFIG = Path(os.environ.get("DLTH_SLURM_TEST_CONFIG", ROOT / "config" / "smoke.yaml"))
RUN = "results/smoke-images/mesonet/seed0"
COMPARED = [f"{RUN}/dense/metrics.json", f"{RUN}/imp-global/round2/metrics.json",
            f"{RUN}/imp-local/round1/metrics.json"]
NUMBERS = ("test_acc", "test_auc", "test_loss", "video_acc", "val_acc", "val_loss", "sparsity",
           "params_nonzero", "epochs", "round")


def _slurm(*args: str, timeout: float = 30) -> subprocess.CompletedProcess | None:
    """A SLURM client command, or None where the command is missing or hangs."""
    try:
        return subprocess.run(list(args), check=False, capture_output=True, text=True,
                              timeout=timeout)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None


def _node_gres() -> str | None:
    """The GRES of the cluster's nodes (e.g. ``gpu:fakegpu:2``), None when no cluster answers."""
    proc = _slurm("sinfo", "--noheader", "--format=%G")
    if proc is None or proc.returncode != 0 or not proc.stdout.strip():
        return None
    return proc.stdout.strip()


def _partitions() -> tuple[str, str]:
    """(default partition, GPU partition): `gpu` where the cluster has one (the test
    cluster's second partition on the same node), else the default one."""
    proc = _slurm("sinfo", "--noheader", "--format=%P")
    names = proc.stdout.split() if proc is not None and proc.returncode == 0 else []
    default = [n.rstrip("*") for n in names if n.endswith("*")]
    first = (default or [n.rstrip("*") for n in names] or [""])[0]
    return first, "gpu" if "gpu" in names else first


@pytest.fixture(scope="module")
def cluster():
    """A running cluster with GPUs: the partition and GPU model jobs should ask for."""
    started = False
    gres = _node_gres()
    if gres is None:
        if os.geteuid() != 0:
            pytest.skip("no SLURM cluster answers `sinfo`, and starting the test cluster "
                        "(tests/slurm/start-cluster.sh) needs root")
        proc = subprocess.run(["bash", str(SCRIPTS / "start-cluster.sh")], check=False,
                              capture_output=True, text=True, timeout=900)
        if proc.returncode == 2:
            pytest.skip(f"the test cluster cannot run here: {proc.stderr.strip()}")
        if proc.returncode != 0:
            pytest.fail(f"tests/slurm/start-cluster.sh failed:\n{proc.stderr[-4000:]}")
        started = True
        gres = _node_gres()
        assert gres is not None, "the test cluster started but `sinfo` does not answer"
    gpus = [g for g in gres.split(",") if g.startswith("gpu")]
    if not gpus:
        pytest.skip(f"the SLURM cluster here has no GPU GRES (sinfo shows {gres!r})")
    parts = re.sub(r"\(.*\)$", "", gpus[0]).split(":")  # gpu[:model]:count
    cpu_partition, gpu_partition = _partitions()
    yield {"partition": cpu_partition, "gpu_partition": gpu_partition,
           "gpu_model": parts[1] if len(parts) == 3 else ""}
    if started:
        subprocess.run(["bash", str(SCRIPTS / "stop-cluster.sh")], check=False,
                       capture_output=True, timeout=120)


def _jobs_of(work: Path) -> list[dict[str, str]]:
    """Every SLURM job (as scontrol's key=value fields) that ran in the folder ``work``."""
    proc = _slurm("scontrol", "show", "job", "--oneliner")
    assert proc is not None and proc.returncode == 0, "scontrol show job failed"
    jobs = []
    for line in proc.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("WorkDir") and Path(fields["WorkDir"]).resolve() == work.resolve():
            jobs.append(fields)
    return jobs


def _cancel_jobs_of(work: Path) -> None:
    ids = [j["JobId"] for j in _jobs_of(work) if j.get("JobState") in ("PENDING", "RUNNING")]
    if ids:
        _slurm("scancel", *ids)


def _snakemake(work: Path, *args: str, env: dict[str, str], timeout: float) -> None:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--configfile", str(CONFIG), *args]
    try:
        proc = subprocess.run(cmd, check=False, cwd=work, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        _cancel_jobs_of(work)
        out = (e.stdout or b"")[-4000:]
        raise AssertionError(f"snakemake ran past {timeout} s: {' '.join(cmd)}\n{out!r}") from e
    if proc.returncode != 0:
        logs = sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))
        failed = [p for p in logs if "Error in rule" in p.read_text(errors="replace")]
        tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in failed)
        raise AssertionError(f"snakemake failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}\n{tails}")


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> tuple[Path, list[dict[str, str]], dict]:
    """The smoke study run through profiles/slurm; its folder and its SLURM jobs."""
    if not CONFIG.exists():
        pytest.fail(f"{CONFIG} is missing")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("snakemake-executor-plugin-slurm is not installed in this Python; it is a "
                    "dependency of the project (pyproject.toml): run `make setup`")
    work = tmp_path_factory.mktemp("slurm-run")
    _snakemake(work, *SLURM_PROFILES, "results/report.html", env=_slurm_env(cluster),
               timeout=1500)
    return work, _jobs_of(work), cluster


SLURM_PROFILES = ("--profile", str(ROOT / "profiles" / "slurm"), "--profile",
                  str(SCRIPTS / "profile"))


def _slurm_env(cluster: dict) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DLTH_SLURM_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["DLTH_SLURM_PARTITION"] = cluster["partition"]
    env["DLTH_SLURM_GPU_PARTITION"] = cluster["gpu_partition"]
    env["DLTH_SLURM_GPU_MODEL"] = cluster["gpu_model"]
    return env


@pytest.fixture(scope="module")
def gpu_rules() -> set[str]:
    """The rules whose jobs declare a GPU in this config, from a dry run of the workflow."""
    from test_gpu_share import planned_jobs

    jobs = planned_jobs("--workflow-profile", "none", "--cores", "1", "results/report.html",
                        "--configfile", str(CONFIG))
    return {j["rule"] for j in jobs if int(j["resources"].get("gpu", 0)) > 0}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The compared training outputs from a plain local run of the same config."""
    work = tmp_path_factory.mktemp("local-run")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    _snakemake(work, "--cores", "2", *COMPARED, env=env, timeout=900)
    return work


def _rule(job: dict[str, str]) -> str:
    """Rule (or ``group_rule``) of a job from the plugin's comment rule_<name>_wildcards_..."""
    comment = job.get("Comment", "")
    assert comment.startswith("rule_"), f"job {job['JobId']} has comment {comment!r}"
    return comment[len("rule_"):].split("_wildcards_")[0]


def test_smoke_study_reaches_the_report_through_sbatch(slurm_run):
    work, jobs, _ = slurm_run
    assert (work / "results" / "report.html").stat().st_size > 0
    rules = {_rule(j) for j in jobs}
    assert {"extract_faces", "pack_faces", "train_dense", "imp_round", "oneshot", "gradcam",
            "latency", "report"} <= rules, rules
    # acquire is a local rule (downloads need the network of the machine running snakemake)
    assert "acquire" not in rules
    assert (work / "resources" / "smoke-videos" / "sources.csv").is_file()
    assert all(j["JobState"] == "COMPLETED" for j in jobs), [
        (j["JobId"], _rule(j), j["JobState"]) for j in jobs if j["JobState"] != "COMPLETED"]
    # the plugin kept a log per submission (slurm-keep-successful-logs in the test profile)
    logs = {p.stem for p in (work / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert {j["JobId"] for j in jobs} <= logs


def test_gpu_rules_ask_for_a_gpu_and_data_rules_do_not(slurm_run, gpu_rules):
    _, jobs, cluster = slurm_run
    model = cluster["gpu_model"]
    want = f"gres:gpu:{model}:1" if model else "gres:gpu:1"
    assert len(gpu_rules) >= 6
    gpu_jobs = [j for j in jobs if _rule(j) in gpu_rules]
    assert {_rule(j) for j in gpu_jobs} == gpu_rules
    for job in gpu_jobs:
        assert job.get("TresPerJob") == want, (_rule(job), job.get("TresPerJob"))
        assert job["Partition"] == cluster["gpu_partition"], (_rule(job), job["Partition"])
        assert int(job["NumCPUs"]) == 1  # config threads: 1 -> --cpus-per-task=1
    cpu_jobs = [j for j in jobs if _rule(j) not in gpu_rules]
    assert {"extract_faces", "pack_faces", "report"} <= {_rule(j) for j in cpu_jobs}
    for job in cpu_jobs:
        assert "gpu" not in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
        assert job["Partition"] == cluster["partition"], (_rule(job), job["Partition"])
    # wall time comes from the profile: 6 h for training, 1 h for Grad-CAM
    limits = {_rule(j): j["TimeLimit"] for j in gpu_jobs}
    assert limits["train_dense"] == "06:00:00" and limits["gradcam"] == "01:00:00", limits


def test_dense_baselines_go_as_one_group_job(slurm_run):
    _, jobs, _ = slurm_run
    transfer_dense = [j for j in jobs if "transfer_dense" in _rule(j)]
    assert [_rule(j) for j in transfer_dense] == ["baselines_transfer_dense"]


def test_metrics_equal_a_local_run(slurm_run, local_run):
    work, _, _ = slurm_run
    for rel in COMPARED:
        on_slurm = json.loads((work / rel).read_text())
        local = json.loads((local_run / rel).read_text())
        for key in NUMBERS:
            assert key in local, (rel, key)
            assert _same(on_slurm[key], local[key]), (rel, key, on_slurm[key], local[key])
        # the training curve: a loss per epoch, sensitive to any difference in the run
        curve = [(h["train_loss"], h["val_loss"]) for h in local["history"]]
        assert curve
        assert [(h["train_loss"], h["val_loss"]) for h in on_slurm["history"]] == [
            pytest.approx(c, rel=0, abs=1e-9) for c in curve]
        assert on_slurm["layer_sparsity"] == local["layer_sparsity"]
        assert on_slurm["device"] == local["device"] == "cpu"


RESUME_EPOCHS = 100  # tiny epochs; enough of them to signal the job mid-run
RESUME_CONFIG = ("--config", f"train={{max_epochs: {RESUME_EPOCHS}, patience: {RESUME_EPOCHS}}}")
DENSE = f"{RUN}/dense"
DENSE_LOG = "results/logs/train_dense/smoke-images-mesonet-seed0.log"


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {proc.returncode}) before {text!r} "
                                 f"appeared in {path}")
        time.sleep(0.1)
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout} s")


def test_training_job_signalled_through_slurm_is_retried_and_resumes(slurm_run, local_run):
    """SIGTERM (what SLURM sends at preemption and, with --signal, before the time limit)
    reaches the training process inside the job step; the job fails, Snakemake submits it
    again, and the retry continues after the saved epoch, ending equal to a local run."""
    work, _, cluster = slurm_run
    seen = {j["JobId"] for j in _jobs_of(work)}
    # the same data; a longer training: only the dense job of smoke-images reruns
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           *SLURM_PROFILES, "--retries", "1", f"{DENSE}/metrics.json", *RESUME_CONFIG,
           "--configfile", str(CONFIG)]
    out = work / "resume-run.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=work, env=_slurm_env(cluster), stdout=fh,
                                stderr=subprocess.STDOUT)
        try:
            _wait_for_text(work / DENSE_LOG, f"epoch {RESUME_EPOCHS // 4}/{RESUME_EPOCHS}", proc,
                           timeout=300)
            running = [j for j in _jobs_of(work) if j["JobId"] not in seen
                       and _rule(j) == "train_dense" and j["JobState"] == "RUNNING"]
            assert len(running) == 1, running
            sent = _slurm("scancel", "--signal=TERM", running[0]["JobId"])
            assert sent is not None and sent.returncode == 0, sent
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                _cancel_jobs_of(work)
    assert proc.returncode == 0, out.read_text()[-5000:]
    attempts = sorted((j for j in _jobs_of(work) if j["JobId"] not in seen),
                      key=lambda j: int(j["JobId"]))
    assert [(_rule(j), j["JobState"]) for j in attempts] == [
        ("train_dense", "FAILED"), ("train_dense", "COMPLETED")]
    log = (work / DENSE_LOG).read_text()
    metrics = json.loads((work / DENSE / "metrics.json").read_text())
    assert len(metrics["resumed_from"]) == 1, metrics["resumed_from"]
    epoch = metrics["resumed_from"][0]
    assert RESUME_EPOCHS // 4 <= epoch < RESUME_EPOCHS
    assert f"resumed from epoch {epoch}" in log
    # the first attempt's job step got the signal
    logs = work / ".snakemake" / "slurm_logs"
    failed_log = next(logs.rglob(f"{attempts[0]['JobId']}.log")).read_text(errors="replace")
    assert "SIGTERM" in failed_log, failed_log[-3000:]

    _snakemake(local_run, "--cores", "2", f"{DENSE}/metrics.json", *RESUME_CONFIG,
               env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=600)
    local = json.loads((local_run / DENSE / "metrics.json").read_text())
    assert local["resumed_from"] == [] and local["epochs"] == metrics["epochs"]
    for key in NUMBERS:
        assert _same(metrics[key], local[key]), (key, metrics[key], local[key])
    assert [(h["train_loss"], h["val_loss"]) for h in metrics["history"]] == [
        pytest.approx((h["train_loss"], h["val_loss"]), rel=0, abs=1e-9)
        for h in local["history"]]


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a == pytest.approx(b, rel=0, abs=1e-9)


def test_gpu_jobs_get_the_gpu_partition_and_no_other_job_does():
    """A dry run of the controls preset through profiles/slurm: routing follows each job's own
    `gpu` resource (workflow/rules/resources.smk), not a list of rule names."""
    from test_gpu_share import planned_jobs

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DLTH_SLURM_"))}
    env.update(DLTH_SLURM_PARTITION="cpu-part", DLTH_SLURM_GPU_PARTITION="gpu-part",
               DLTH_SLURM_GPU_MODEL="a100", DLTH_SLURM_GPU_HOURS="3")
    jobs = planned_jobs("--profile", str(ROOT / "profiles" / "slurm"),
                        "--configfile", str(ROOT / "config" / "controls.yaml"), env=env)
    gpu_jobs = [j for j in jobs if int(j["resources"].get("gpu", 0)) > 0]
    assert len({j["rule"] for j in gpu_jobs}) >= 9
    for job in gpu_jobs:
        res = job["resources"]
        assert res.get("slurm_partition") == "gpu-part", job
        assert res.get("gpu_model") == "a100", job
        assert res.get("gpu_share"), job  # the local budget travels, unused by SLURM
        # wall time: DLTH_SLURM_GPU_HOURS for training, 60 min for the scoring jobs
        assert int(res["runtime"]) in (180, 60), job
        # SIGTERM 120 s before the limit, to the job step: training saves state and exits
        assert res.get("slurm_extra", "").split() == ["--signal=TERM@120"], job
    cpu_jobs = [j for j in jobs if int(j["resources"].get("gpu", 0)) == 0]
    assert cpu_jobs
    for job in cpu_jobs:
        res = job["resources"]
        assert res.get("slurm_partition") == "cpu-part", job
        assert "gpu_model" not in res and not int(res.get("gpu_share") or 0), job
    # a rule is on one side, except extraction: MTCNN on the GPU where a dataset detects faces,
    # none where its files are face crops already (detect_faces: false)
    both = {j["rule"] for j in gpu_jobs} & {j["rule"] for j in cpu_jobs}
    assert both <= {"extract_faces"}, both


def test_stop_cluster_ends_only_its_own_daemons(tmp_path):
    """stop-cluster.sh with a state folder of strangers' pids kills nothing."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    state = tmp_path / "state"
    (state / "run").mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # a pid file naming a live process that is not slurmd, and one naming nothing
        (state / "run" / "slurmd.pid").write_text(str(sleeper.pid))
        (state / "run" / "munged.pid").write_text("999999999")
        proc = subprocess.run(["bash", str(SCRIPTS / "stop-cluster.sh")], check=False,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "DLTH_SLURM_STATE": str(state)})
        assert proc.returncode == 0, proc.stderr
        assert sleeper.poll() is None  # still running
        assert not (state / "run" / "slurmd.pid").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
