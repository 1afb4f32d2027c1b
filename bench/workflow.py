"""Workflow overhead, per-job start-up, dry runs and scaling of the Snakemake workflow.

    python bench/workflow.py [--quick]

1. Start-up of one job: ``python -c pass``, ``import torch``, ``import torch, torchvision``,
   ``deepfake-lth train --help`` and a full tiny training job, each timed as a subprocess
   (median of a few runs, interleaved), plus the tiny job's own breakdown (imports, model,
   data, training, evaluation, files) measured inside it.
2. Scaling: the smoke config (config/smoke.yaml) run from scratch in temporary copies of the
   project, as tests/test_workflow.py does, then with rounds, models and seeds doubled, and
   on one core instead of two. Cost should grow with the number of jobs; two cores should
   take at most 1/1.6 of the one-core time.
3. Overhead: a run's wall time against the sum of its jobs' own compute (Snakemake's
   benchmark files, column ``s``; the log's start and finish times for rules without a
   ``benchmark:``, or whose file is gone) divided by the cores: overhead = wall / (compute /
   cores) - 1. Measured on the smoke run here, and on the largest complete demo run logged
   in the checkout's .snakemake/log.
4. Dry runs: config/paper.yaml (a temporary ``--directory``, so the checkout is not locked)
   and a no-op rerun (``snakemake -n``) of the finished demo (or of the smoke run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _cli  # bench/_cli.py: the shared command line

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
OVERHEAD_GOAL = 0.20
DRY_RUN_GOAL = 10.0
CORES_GOAL = 1.6


# --------------------------------------------------------------------------- helpers


def _children_cpu() -> float:
    """CPU seconds (user + system) of the waited-for child processes and their descendants."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str], cwd: Path | None = None, timeout: float = 1800) -> tuple[float, str]:
    wall, _, out = _timed_cpu(cmd, cwd, timeout)
    return wall, out


def _timed_cpu(cmd: list[str], cwd: Path | None = None,
               timeout: float = 1800) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds of the whole process tree, and the output of ``cmd``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)[:300]} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, cpu, proc.stdout + proc.stderr


def _copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "config.yaml", "environment.yml"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _snakemake(work: Path, configfile: str | None, *args: str,
               profile: bool = False) -> tuple[float, float, str]:
    """Snakemake in ``work``; without the workflow profile unless ``profile`` (as a user runs)."""
    cmd = [PY, "-m", "snakemake", *args, *([] if profile else ["--workflow-profile", "none"])]
    if configfile:
        cmd += ["--configfile", configfile]
    return _timed_cpu(cmd, cwd=work)


def job_stats(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry run, as {rule: count}."""
    block = output.split("Job stats:", 1)
    if len(block) < 2:
        return {}
    counts = {}
    for line in block[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


_TS = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def log_jobs(log_text: str) -> list[dict]:
    """Rule, jobid, start, end (1 s resolution) and benchmark file of every finished job of a
    Snakemake log."""
    ts = None
    started: dict[int, tuple] = {}
    pending_rule, last_job = None, None
    jobs = []
    for line in log_text.splitlines():
        m = _TS.match(line.strip())
        if m:
            ts = dt.datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            continue
        m = re.match(r"^(?:local)?(?:checkpoint|rule) (\w+):$", line.strip())
        if m:
            pending_rule = (m.group(1), ts)
            continue
        m = re.match(r"^\s+jobid: (\d+)$", line)
        if m and pending_rule is not None:
            started[int(m.group(1))] = (*pending_rule, None)
            last_job = int(m.group(1))
            pending_rule = None
            continue
        m = re.match(r"^\s+benchmark: (\S+)$", line)
        if m and last_job in started:
            started[last_job] = (*started[last_job][:2], m.group(1))
            continue
        m = re.match(r"^Finished jobid: (\d+) \(Rule: (\w+)\)", line.strip())
        if m and int(m.group(1)) in started:
            rule, start, bench = started.pop(int(m.group(1)))
            jobs.append({"rule": rule, "jobid": int(m.group(1)), "start": start, "end": ts,
                         "benchmark": bench})
    return jobs


def _benchmarks(bench_dir: Path, since: float | None = None,
                column: str = "s") -> dict[str, float]:
    """{tsv path: value of ``column``} of Snakemake benchmark files (written after ``since``)."""
    out = {}
    for tsv in bench_dir.rglob("*.tsv"):
        if since is not None and tsv.stat().st_mtime < since:
            continue
        lines = tsv.read_text().splitlines()
        if len(lines) >= 2:
            header, values = lines[0].split("\t"), lines[-1].split("\t")
            try:
                out[str(tsv)] = float(values[header.index(column)])
            except (ValueError, IndexError):
                continue
    return out


def _tsv_value(path: Path, column: str = "s") -> float | None:
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        return None
    header, values = lines[0].split("\t"), lines[-1].split("\t")
    try:
        return float(values[header.index(column)])
    except (ValueError, IndexError):
        return None


def overhead(wall: float, cores: int, jobs: list[dict], workdir: Path) -> dict:
    """Wall time against the jobs' own compute / cores. A job counts with the ``s`` of its
    benchmark file when it has one written during the job, else with its log duration."""
    bench_s = log_s = 0.0
    n_bench = n_log = 0
    for j in jobs:
        if j["rule"] == "all":
            continue
        tsv = workdir / j["benchmark"] if j.get("benchmark") else None
        value = None
        if tsv is not None and tsv.exists():
            mtime = tsv.stat().st_mtime
            if j["start"].timestamp() - 2 <= mtime <= j["end"].timestamp() + 2:
                value = _tsv_value(tsv)
        if value is not None:
            bench_s += value
            n_bench += 1
        else:
            log_s += (j["end"] - j["start"]).total_seconds()
            n_log += 1
    compute = bench_s + log_s
    ideal = compute / cores
    return {"wall_s": wall, "cores": cores, "compute_s": compute,
            "compute_from_benchmark_files_s": bench_s, "compute_from_log_s": log_s,
            "benchmarked_jobs": n_bench, "other_jobs": n_log,
            "overhead": wall / ideal - 1 if ideal > 0 else float("nan")}


def _latest_log(work: Path) -> str:
    logs = sorted((work / ".snakemake" / "log").glob("*.snakemake.log"))
    return logs[-1].read_text() if logs else ""


# --------------------------------------------------------------------------- start-up


def job_breakdown(faces: str, out: str) -> dict:
    """Run inside a fresh interpreter: where a tiny training job's time goes."""
    t0 = time.perf_counter()
    marks = []

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter()))

    import torch  # noqa: F401

    mark("import torch")
    import deepfake_lth.models  # noqa: F401

    mark("import the model registry")
    from deepfake_lth.stages.dense import train_dense

    mark("import the stage code")
    train_dense(faces, out, "mesonet", 0, _TINY_SPEC)
    mark("train_dense (model, data, training, evaluation, files)")
    result, prev = {}, t0
    for name, t in marks:
        result[name] = t - prev
        prev = t
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    result["of which training (fit)"] = metrics["train_seconds"]
    return result


_TINY_SPEC = {"device": "cpu", "input_size": 32, "threads": 1,
              "train": {"max_epochs": 2, "batch_size": 32, "lr": 1e-3, "patience": 1}}


def startup(faces: Path, scratch: Path, repeats: int) -> dict:
    """Subprocess wall times (medians) and the tiny job's own breakdown."""
    spec = json.dumps(_TINY_SPEC)
    commands = {
        "python -c pass": [PY, "-c", "pass"],
        "import torch": [PY, "-c", "import torch"],
        "import torch, torchvision": [PY, "-c", "import torch, torchvision"],
        "import torch, sklearn.metrics": [PY, "-c", "import torch, sklearn.metrics"],
        "deepfake-lth train --help": [PY, "-m", "deepfake_lth", "train", "--help"],
        "tiny train job": [PY, "-m", "deepfake_lth", "train", "--faces", str(faces), "--out",
                           str(scratch / "tiny"), "--model", "mesonet", "--seed", "0",
                           "--spec", spec],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            times[name].append(_timed(cmd)[0])
    _, text = _timed([PY, str(Path(__file__).resolve()), "--job-breakdown", str(faces),
                      str(scratch / "breakdown")])
    breakdown = json.loads(text.strip().splitlines()[-1])
    med = {k: statistics.median(v) for k, v in times.items()}
    job = med["tiny train job"]
    fit_s = breakdown["of which training (fit)"]
    return {"seconds": med, "breakdown": breakdown,
            "tiny_job_startup_share": 1 - fit_s / job if job > 0 else None}


# --------------------------------------------------------------------------- scaling


def _variant_config(base: dict, rounds: int = 1, models: int = 1, seeds: int = 1) -> dict:
    import copy

    cfg = copy.deepcopy(base)
    cfg["prune"]["rounds"] = cfg["prune"].get("rounds", 2) * rounds
    if models == 2:
        cfg["models"]["cnn5"] = {"input_size": cfg["models"]["mesonet"].get("input_size", 32)}
    if seeds == 2:
        cfg["seeds"] = list(cfg["seeds"]) + [max(cfg["seeds"]) + 1]
    return cfg


def smoke_run(scratch: Path, name: str, cfg: dict, cores: int) -> dict:
    """The smoke config from scratch in a fresh copy of the project."""
    import yaml

    work = _copy_project(scratch / name)
    (work / "bench.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    started = time.time()
    wall, cpu, out = _snakemake(work, "bench.yaml", "results/report.html", "--cores", str(cores))
    stats = job_stats(out)
    jobs = log_jobs(_latest_log(work))
    bench_dir = work / "results" / "benchmarks"
    bench = _benchmarks(bench_dir, since=started - 1)
    job_cpu = _benchmarks(bench_dir, since=started - 1, column="cpu_time")
    row_overhead = overhead(wall, cores, jobs, work)
    n_jobs = sum(v for k, v in stats.items() if k not in ("all", "total"))
    row = {"name": name, "cores": cores, "jobs": n_jobs,
           "rounds": cfg["prune"]["rounds"], "models": len(cfg["models"]),
           "seeds": len(cfg["seeds"]), "work": str(work), "cpu_s": cpu,
           "cpu_s_per_job": cpu / max(n_jobs, 1), "cores_used": cpu / wall,
           # a job on threads: 1 should not keep more than one core busy
           "max_job_cpu_per_wall": max((job_cpu[k] / bench[k] for k in job_cpu
                                        if bench.get(k)), default=None)}
    row.update(row_overhead)
    return row


def scaling(scratch: Path, quick: bool) -> list[dict]:
    import yaml

    base = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    plan = [("base", _variant_config(base), 2), ("base-1-core", _variant_config(base), 1)]
    if not quick:
        plan += [("rounds-x2", _variant_config(base, rounds=2), 2),
                 ("models-x2", _variant_config(base, models=2), 2),
                 ("seeds-x2", _variant_config(base, seeds=2), 2)]
    return [smoke_run(scratch, name, cfg, cores) for name, cfg, cores in plan]


# --------------------------------------------------------------------------- dry runs


def dry_run_paper() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-paper-") as tmp:
        wall, out = _timed([PY, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"),
                            "--directory", tmp, "--configfile", str(ROOT / "config" / "paper.yaml")])
    stats = job_stats(out)
    return {"seconds": wall, "jobs": stats.get("total", 0)}


def noop_rerun(work: Path, configfile: str | None, profile: bool = False) -> dict:
    """``snakemake -n`` on a finished run: the time to find there is nothing to do."""
    args = ["-n", "--nolock", "results/report.html"]
    wall, _, out = _snakemake(work, configfile, *args, profile=profile)
    stats = job_stats(out)
    return {"seconds": wall, "work": str(work), "jobs_to_run": stats.get("total", 0),
            "rules_to_run": {k: v for k, v in stats.items() if k != "total"}}


def demo_overhead() -> dict | None:
    """Overhead of the demo run in the checkout, from its largest complete Snakemake log."""
    logs = sorted((ROOT / ".snakemake" / "log").glob("*.snakemake.log"), reverse=True)
    logs.sort(key=lambda p: -p.read_text().count("Finished jobid"))  # stable: newest first
    for log in logs:
        text = log.read_text()
        command = re.search(r"Command: (.*)", text)
        if ("steps (100%) done" not in text or not command
                or re.search(r"--configfile|\s-n\b|--dry-run", command.group(1))):
            continue  # an unfinished run, a dry run, or not the default (demo) config
        m = re.search(r"Date: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", text)
        cores = re.search(r"Provided cores: (\d+)", text)
        jobs = log_jobs(text)
        if not m or not cores or not jobs:
            continue
        start = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
        end = max(j["end"] for j in jobs)
        wall = (end - start).total_seconds()
        row = overhead(wall, int(cores.group(1)), jobs, ROOT)
        row.update(log=str(log), jobs=len([j for j in jobs if j["rule"] != "all"]),
                   finished=end.isoformat(sep=" "))
        return row
    return None


def thread_settings(rules_dir: Path = ROOT / "workflow" / "rules",
                    src: Path = ROOT / "src" / "deepfake_lth") -> dict:
    """Which rules declare ``threads:`` and how they reach torch.set_num_threads."""
    rules = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        for block in re.split(r"^(?=(?:local)?rule \w+:)", smk.read_text(), flags=re.MULTILINE):
            m = re.match(r"(?:local)?rule (\w+):", block)
            if not m:
                continue
            t = re.search(r"^\s+threads: (.+)$", block, re.MULTILINE)
            via = ("--threads {threads}" if "{threads}" in block else
                   'spec "threads" (config["threads"])' if '"threads"' in block or
                   "train_spec" in block else None)
            rules[m.group(1)] = {"threads": t.group(1).strip() if t else None, "passed_as": via}
    setters = sorted(p.name for p in src.glob("*.py") if "set_num_threads" in p.read_text())
    return {"rules": rules, "modules_setting_torch_threads": setters}


# --------------------------------------------------------------------------- run


def run(quick: bool = False) -> dict:
    result: dict = {"name": "workflow"}
    with tempfile.TemporaryDirectory(prefix="bench-workflow-") as tmp:
        scratch = Path(tmp)
        rows = scaling(scratch, quick)
        base = rows[0]
        result["scaling"] = [{k: v for k, v in r.items() if k != "work"} for r in rows]
        faces = Path(base["work"]) / "results" / "smoke-images" / "faces"
        result["startup"] = startup(faces, scratch, 2 if quick else 3)
        result["noop_smoke"] = noop_rerun(Path(base["work"]), "bench.yaml")
    result["threads"] = thread_settings()
    result["dry_run_paper"] = dry_run_paper()
    demo_done = (ROOT / "results" / "report.html").exists()
    result["noop_demo"] = noop_rerun(ROOT, None, profile=True) if demo_done else None
    result["demo_overhead"] = demo_overhead()
    one = next(r for r in rows if r["name"] == "base-1-core")
    targets = [
        {"id": "workflow-overhead-smoke",
         "title": f"smoke run overhead: wall / (compute / {base['cores']} cores) - 1",
         "measured": round(base["overhead"], 3), "goal": OVERHEAD_GOAL, "op": "<=", "unit": "%",
         "met": base["overhead"] <= OVERHEAD_GOAL},
        {"id": "workflow-cores",
         "title": "smoke run, wall on 1 core / wall on 2 cores",
         "measured": round(one["wall_s"] / base["wall_s"], 3), "goal": CORES_GOAL, "op": ">=",
         "unit": "x", "met": one["wall_s"] / base["wall_s"] >= CORES_GOAL},
        {"id": "workflow-dry-run-paper",
         "title": f"dry run of config/paper.yaml ({result['dry_run_paper']['jobs']} jobs)",
         "measured": round(result["dry_run_paper"]["seconds"], 2), "goal": DRY_RUN_GOAL,
         "op": "<=", "unit": "s", "met": result["dry_run_paper"]["seconds"] <= DRY_RUN_GOAL},
    ]
    noop = result["noop_demo"] or result["noop_smoke"]
    which = "demo" if result["noop_demo"] else "smoke run (the demo has not finished)"
    targets.append({
        "id": "workflow-noop-rerun", "title": f"no-op rerun (snakemake -n) of the {which}",
        "measured": round(noop["seconds"], 2), "goal": DRY_RUN_GOAL, "op": "<=", "unit": "s",
        "met": noop["seconds"] <= DRY_RUN_GOAL})
    if result["demo_overhead"]:
        d = result["demo_overhead"]
        targets.append({
            "id": "workflow-overhead-demo",
            "title": f"demo overhead: wall / (compute / {d['cores']} cores) - 1",
            "measured": round(d["overhead"], 3), "goal": OVERHEAD_GOAL, "op": "<=", "unit": "%",
            "met": d["overhead"] <= OVERHEAD_GOAL})
    result["targets"] = targets
    return result


def table(result: dict) -> str:
    lines = [("| run | rounds | models | seeds | cores | jobs | wall s | job compute s | "
              "overhead | CPU s (all processes) | CPU s / job | cores busy | jobs / base | "
              "CPU / base | wall / base |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = result["scaling"][0]
    for r in result["scaling"]:
        lines.append(f"| {r['name']} | {r['rounds']} | {r['models']} | {r['seeds']} | {r['cores']} | "
                     f"{r['jobs']} | {r['wall_s']:.1f} | {r['compute_s']:.1f} | "
                     f"{100 * r['overhead']:.0f} % | {r['cpu_s']:.1f} | "
                     f"{r['cpu_s_per_job']:.2f} | {r['cores_used']:.2f} | "
                     f"{r['jobs'] / base['jobs']:.2f} | {r['cpu_s'] / base['cpu_s']:.2f} | "
                     f"{r['wall_s'] / base['wall_s']:.2f} |")
    lines += ["", "| start-up | seconds |", "|---|---:|"]
    for k, v in result["startup"]["seconds"].items():
        lines.append(f"| {k} | {v:.2f} |")
    lines += ["", "| inside the tiny train job | seconds |", "|---|---:|"]
    for k, v in result["startup"]["breakdown"].items():
        lines.append(f"| {k} | {v:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    internal = argparse.ArgumentParser(add_help=False)  # run inside the tiny train job
    internal.add_argument("--job-breakdown", nargs=2, metavar=("FACES", "OUT"),
                          help=argparse.SUPPRESS)
    known, _ = internal.parse_known_args(argv)
    if known.job_breakdown:
        print(json.dumps(job_breakdown(*known.job_breakdown)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[internal])
    return _cli.main(__doc__, run, table, "base run on 1 and 2 cores only", argv, parser)


if __name__ == "__main__":
    raise SystemExit(main())
