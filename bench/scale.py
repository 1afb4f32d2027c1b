"""Paper scale: the memory of one training job on packed sets shaped like the paper's, inside
a memory cgroup smaller than the set, and streaming against in-memory speed on the demo.

    python bench/scale.py [--quick] [--faces 8000 30000] [--dir /tmp] [--keep]

1. Writes packed sets of N faces at 299 px (``faces.npy`` uint8 + ``manifest.csv``, videos of
   8 frames, 70/15/15 split by video), by default 8,000 faces (2.1 GB, the size the issue
   tried) and 30,000 faces (8.0 GB).
2. Runs ``deepfake-lth train`` (MesoNet, input_size 64, batch 32, one epoch over the whole
   train split, validation and test on their whole splits, CPU, one thread) on each as a
   subprocess, sampling its ``RssAnon`` (anonymous memory: what a job costs beyond the
   shared, reclaimable page cache of the file) from /proc every 20 ms.
3. Runs the same command inside a cgroup-v1 memory cgroup of 1.5 GB (as root; skipped with a
   message where the controller is not writable), the set's pages first dropped from the
   page cache (``posix_fadvise``), so the job really reads it through the cgroup's limit.
4. Trains the same model on a demo-shaped set (1,000 faces at 64 px, MesoNet at 64, batch 16)
   streamed from faces.npy and held in memory, interleaved, and compares wall times and
   final weights.

The packed sets are deleted at the end unless ``--keep``. Figures go to bench/out/scale.json
and bench/scale.md (included in BENCHMARKS.md by bench/run.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
SIZE = 299
FRAMES = 8  # faces per video
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
CGROUP_LIMIT = 1_500_000_000  # bytes (1.5 GB)
RSS_GOAL = 1_500_000_000
GROWTH_GOAL = 0.10
SPEED_GOAL = 0.95
SPEC = {"device": "cpu", "input_size": 64, "threads": 1,
        "train": {"batch_size": 32, "max_epochs": 1, "patience": 1, "amp": False,
                  "lr": 1e-3, "augment": True}}
# the issue's must-show: the command with the stage's defaults (MesoNet at its registry input
# size, 256 px) for one epoch on 8,000 faces, in the cgroup
ISSUE_FACES = 8000
ISSUE_SPEC = {"device": "cpu", "threads": 1, "train": {"max_epochs": 1}}


def write_packed(folder: Path, n: int, size: int = SIZE, seed: int = 0) -> Path:
    """A packed set of ``n`` synthetic faces (written in chunks through a memory map, so the
    writer's memory stays small); videos of FRAMES faces, split 70/15/15 by video."""
    import pandas as pd

    from deepfake_lth.data.store import MANIFEST_COLUMNS

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(folder / "faces.npy", mode="w+", dtype=np.uint8,
                                    shape=(n, size, size, 3))
    pattern = rng.integers(0, 256, (64, size, size, 3), dtype=np.uint8)
    chunk = 512
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = np.resize(np.roll(pattern, start % 61, axis=1), (stop - start, size, size, 3))
        out[start:stop] = block + (np.arange(start, stop) % 256).astype(np.uint8)[:, None, None, None]
    out.flush()
    del out
    video = np.arange(n) // FRAMES
    n_videos = int(video[-1]) + 1
    order = rng.permutation(n_videos)
    split_of = np.empty(n_videos, dtype=object)
    cut1, cut2 = int(0.7 * n_videos), int(0.85 * n_videos)
    split_of[order[:cut1]], split_of[order[cut1:cut2]], split_of[order[cut2:]] = (
        "train", "val", "test")
    pd.DataFrame({"index": np.arange(n), "video_id": [f"v{v}" for v in video],
                  "label": video % 2, "split": split_of[video], "frame_index": np.arange(n) % FRAMES,
                  "source": "synthetic"}, columns=MANIFEST_COLUMNS).to_csv(
        folder / "manifest.csv", index=False)
    return folder


def drop_page_cache(path: Path) -> None:
    """Drop ``path``'s clean pages from the page cache (this file only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def train_command(faces: Path, out: Path, spec: dict = SPEC) -> list[str]:
    return [sys.executable, "-m", "deepfake_lth", "train", "--faces", str(faces), "--out",
            str(out), "--model", "mesonet", "--seed", "0", "--spec", json.dumps(spec)]


def run_train(faces: Path, out: Path, cgroup: Path | None = None, spec: dict = SPEC) -> dict:
    """``deepfake-lth train`` as a subprocess (in ``cgroup`` when given), its peak RssAnon
    sampled every 20 ms, its exit status, wall time and steps/s."""
    cmd = train_command(faces, out, spec)
    if cgroup is not None:  # join the cgroup, then become the training job (same pid)
        cmd = ["sh", "-c", f'echo $$ > {cgroup / "cgroup.procs"} && exec "$@"', "sh", *cmd]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    peak = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0, "read_bytes": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for key, value in _status(proc.pid).items():
                peak[key] = max(peak[key], value)
            try:  # bytes the job made the kernel read from the disk, so far
                io = Path(f"/proc/{proc.pid}/io").read_text()
                peak["read_bytes"] = max(peak["read_bytes"], int(io.split("read_bytes:")[1]
                                                                 .split()[0]))
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    log, _ = proc.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - t0
    result = {"returncode": proc.returncode, "wall_s": wall, "peak_rss_anon": peak["RssAnon"],
              "peak_rss_file": peak["RssFile"], "vm_hwm": peak["VmHWM"],
              "disk_read_bytes": peak["read_bytes"],
              "command": " ".join(train_command(faces, out, spec)).replace(sys.executable,
                                                                           "python"),
              "log_tail": log[-1500:]}
    metrics = out / "metrics.json"
    if proc.returncode == 0 and metrics.exists():
        m = json.loads(metrics.read_text())
        import pandas as pd

        manifest = pd.read_csv(faces / "manifest.csv")
        n_train = int((manifest["split"] == "train").sum())
        steps = -(-n_train // m["train"]["batch_size"])
        epoch_s = m["history"][0]["seconds"]
        result.update(train_faces=n_train, steps=steps, epoch_s=epoch_s,
                      input_size=m["input_size"], batch_size=m["train"]["batch_size"],
                      steps_per_s=steps / epoch_s, epochs=m["epochs"],
                      test_acc=m["test_acc"])
    return result


def make_cgroup(name: str) -> tuple[Path | None, str]:
    """A fresh cgroup-v1 memory cgroup limited to CGROUP_LIMIT, or None and why not."""
    if not (CGROUP_ROOT / "cgroup.procs").exists():
        return None, f"no cgroup-v1 memory controller at {CGROUP_ROOT}"
    path = CGROUP_ROOT / name
    try:
        path.mkdir(exist_ok=True)
        (path / "memory.limit_in_bytes").write_text(str(CGROUP_LIMIT))
        swap = path / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(CGROUP_LIMIT))
    except OSError as exc:
        return None, f"cannot create a memory cgroup at {path} ({exc}); run as root"
    return path, ""


def cgroup_figures(path: Path) -> dict:
    def read(name: str) -> str:
        f = path / name
        return f.read_text().strip() if f.exists() else ""

    oom = dict(line.split() for line in read("memory.oom_control").splitlines() if line)
    return {"limit": int(read("memory.limit_in_bytes")),
            "max_usage": int(read("memory.max_usage_in_bytes") or 0),
            "failcnt": int(read("memory.failcnt") or 0),
            "oom_kill": int(oom.get("oom_kill", 0))}


def run_cgroup(faces: Path, out: Path, name: str, spec: dict = SPEC) -> dict:
    cgroup, why = make_cgroup(name)
    if cgroup is None:
        print(f"skipping the cgroup run: {why}", file=sys.stderr)
        return {"skipped": why}
    try:
        drop_page_cache(faces / "faces.npy")
        result = run_train(faces, out, cgroup, spec)
        result["cgroup"] = cgroup_figures(cgroup)
    finally:
        try:
            cgroup.rmdir()
        except OSError:
            pass
    return result


def speed_on_demo(repeats: int) -> dict:
    """Wall time of fit on a demo-shaped set, streamed (rows read from the file; with and
    without a read-ahead thread) vs held in memory (the old path), interleaved; and whether the weights match."""
    import tempfile

    import torch

    from deepfake_lth.data.store import load_split
    from deepfake_lth.models import build_model
    from deepfake_lth.training.evaluate import evaluate
    from deepfake_lth.training.fit import fit
    from deepfake_lth.training.hparams import TrainingHparams

    torch.set_num_threads(1)
    hp = TrainingHparams.from_dict({"lr": 3e-3, "batch_size": 16, "max_epochs": 2,
                                    "patience": 3, "amp": False})
    kw = {"input_size": 64, "device": "cpu", "seed": 0}
    # "streaming": fit's default on the CPU (no read-ahead thread); "streaming_prefetch": the
    # next batch read on a background thread (the default on CUDA)
    times: dict[str, list[float]] = {"streaming": [], "streaming_prefetch": [], "in_ram": []}
    prefetch = {"streaming": None, "streaming_prefetch": True, "in_ram": None}
    states: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-demo-") as tmp:
        faces = write_packed(Path(tmp) / "faces", 1000, size=64, seed=1)
        splits = {"streaming": [load_split(faces, s) for s in ("train", "val", "test")],
                  "in_ram": [load_split(faces, s, mmap=False) for s in ("train", "val", "test")]}
        splits["streaming_prefetch"] = splits["streaming"]
        for r in range(repeats + 1):  # the first round warms up and is not counted
            names = list(times) if r % 2 == 0 else list(reversed(times))
            for name in names:
                torch.manual_seed(0)
                model = build_model("mesonet", input_size=64)
                train, val, test = splits[name]
                t0 = time.perf_counter()
                fit(model, train, val, hp, prefetch=prefetch[name], **kw)
                evaluate(model, test, 64, "cpu", 256, prefetch=prefetch[name])
                if r:
                    times[name].append(time.perf_counter() - t0)
                states[name] = {k: v.clone() for k, v in model.state_dict().items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    identical = all(torch.equal(states["in_ram"][k], states[name][k])
                    for name in ("streaming", "streaming_prefetch") for k in states["in_ram"])
    return {"faces": 1000, "face_size": 64, "model": "mesonet@64", "batch_size": 16,
            "epochs": 2, "repeats": repeats, "median_s": med,
            "ratio": med["in_ram"] / med["streaming"],
            "ratio_prefetch": med["in_ram"] / med["streaming_prefetch"],
            "identical_weights": bool(identical)}


def run(quick: bool = False, sizes: tuple[int, ...] = (8000, 30000), work: Path | None = None,
        keep: bool = False) -> dict:
    work = Path(work or "/tmp") / f"dlth-scale-{os.getpid()}"
    if quick:
        sizes = tuple(min(s, 4000) for s in sizes[:1]) + tuple(min(s, 8000) for s in sizes[1:])
    rows = []
    try:
        for n in sizes:
            t0 = time.perf_counter()
            faces = write_packed(work / f"n{n}" / "faces", n)
            write_s = time.perf_counter() - t0
            gb = (faces / "faces.npy").stat().st_size / 1e9
            print(f"== {n} faces at {SIZE} px: {gb:.2f} GB written in {write_s:.0f} s",
                  file=sys.stderr, flush=True)
            row = {"faces": n, "gb": gb, "write_s": write_s}
            row["free"] = run_train(faces, work / f"n{n}" / "out-free")
            print(f"   RssAnon {row['free']['peak_rss_anon'] / 1e6:.0f} MB, exit "
                  f"{row['free']['returncode']}", file=sys.stderr, flush=True)
            row["cgroup"] = run_cgroup(faces, work / f"n{n}" / "out-cgroup",
                                       f"dlth-scale-{os.getpid()}-{n}")
            print(f"   in a {CGROUP_LIMIT / 1e9:.1f} GB cgroup: exit "
                  f"{row['cgroup'].get('returncode', 'skipped')}", file=sys.stderr, flush=True)
            if n == ISSUE_FACES:
                row["issue"] = run_cgroup(faces, work / f"n{n}" / "out-issue",
                                          f"dlth-scale-{os.getpid()}-issue", ISSUE_SPEC)
                print(f"   the issue's command (MesoNet@256) in the cgroup: exit "
                      f"{row['issue'].get('returncode', 'skipped')}", file=sys.stderr, flush=True)
            rows.append(row)
            if not keep:
                shutil.rmtree(work / f"n{n}")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    demo = speed_on_demo(3 if quick else 5)
    rss = [r["free"]["peak_rss_anon"] for r in rows]
    growth = rss[-1] / rss[0] - 1 if len(rss) > 1 and rss[0] else None
    targets = [
        {"id": f"scale-rss-{r['faces']}", "title": f"peak RssAnon of a training job, "
         f"{r['faces']:,} faces at {SIZE} px ({r['gb']:.1f} GB packed)",
         "measured": r["free"]["peak_rss_anon"] / 1e9, "goal": RSS_GOAL / 1e9, "op": "<=",
         "unit": "GB", "met": r["free"]["returncode"] == 0
         and r["free"]["peak_rss_anon"] <= RSS_GOAL} for r in rows
    ]
    if growth is not None:
        targets.append({"id": "scale-rss-growth", "title": f"RssAnon growth, {rows[0]['faces']:,}"
                        f" → {rows[-1]['faces']:,} faces", "measured": growth,
                        "goal": GROWTH_GOAL, "op": "<=", "unit": "%",
                        "met": growth <= GROWTH_GOAL})
    for r in rows:
        c = r["cgroup"]
        if "skipped" not in c:
            targets.append({"id": f"scale-cgroup-{r['faces']}", "title": f"one epoch, "
                            f"{r['faces']:,} faces ({r['gb']:.1f} GB) in a "
                            f"{CGROUP_LIMIT / 1e9:.1f} GB memory cgroup: exit status",
                            "measured": c["returncode"], "goal": 0, "op": "==", "unit": "",
                            "met": c["returncode"] == 0})
    for r in rows:
        c = r.get("issue")
        if c and "skipped" not in c:
            targets.append({"id": "scale-issue-cgroup", "title": f"the issue's must-show: one "
                            f"epoch of `deepfake-lth train` (MesoNet, stage defaults: "
                            f"{c.get('input_size', 256)} px) on {r['faces']:,} faces at {SIZE} px "
                            f"in a {CGROUP_LIMIT / 1e9:.1f} GB memory cgroup: exit status",
                            "measured": c["returncode"], "goal": 0, "op": "==", "unit": "",
                            "met": c["returncode"] == 0})
    targets.append({"id": "scale-streaming-speed", "title": "streaming / in-memory speed, demo "
                    "(MesoNet@64, 1,000 faces)", "measured": demo["ratio"], "goal": SPEED_GOAL,
                    "op": ">=", "unit": "x", "met": demo["ratio"] >= SPEED_GOAL})
    return {"name": "scale", "rows": rows, "demo": demo, "targets": targets,
            "settings": {"spec": SPEC, "cgroup_limit": CGROUP_LIMIT, "face_size": SIZE,
                         "frames_per_video": FRAMES}}


def _gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


def table(result: dict) -> str:
    lines = [
        ("| packed set | peak RssAnon | peak RssFile | exit | epoch s | steps/s | in a "
        f"{CGROUP_LIMIT / 1e9:.1f} GB cgroup: exit, max usage, OOM kills, disk read |"),
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        f, c = r["free"], r["cgroup"]
        cg = (f"skipped: {c['skipped']}" if "skipped" in c else
              f"{c['returncode']}, {_gb(c['cgroup']['max_usage'])}, {c['cgroup']['oom_kill']}, "
              f"{_gb(c.get('disk_read_bytes', 0))} ({c.get('epoch_s', float('nan')):.1f} s "
              "epoch)")
        lines.append(f"| {r['faces']:,} faces at {SIZE} px, {r['gb']:.2f} GB | "
                     f"{_gb(f['peak_rss_anon'])} | {_gb(f['peak_rss_file'])} | "
                     f"{f['returncode']} | {f.get('epoch_s', float('nan')):.1f} | "
                     f"{f.get('steps_per_s', float('nan')):.2f} | {cg} |")
    for r in result["rows"]:
        c = r.get("issue")
        if not c:
            continue
        if "skipped" in c:
            lines.append(f"\nThe issue's command in the cgroup: skipped ({c['skipped']}).")
            continue
        lines += ["", "| the issue's command, in the cgroup | input | exit | peak RssAnon | "
                  "cgroup max usage | OOM kills | disk read | epoch s | wall s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {r['faces']:,} faces at {SIZE} px | {c.get('input_size', '?')} px | "
                  f"{c['returncode']} | {_gb(c['peak_rss_anon'])} | "
                  f"{_gb(c['cgroup']['max_usage'])} | {c['cgroup']['oom_kill']} | "
                  f"{_gb(c.get('disk_read_bytes', 0))} | "
                  f"{c.get('epoch_s', float('nan')):.0f} | {c['wall_s']:.0f} |",
                  "", f"    {c['command']}"]
    d = result["demo"]
    m = d["median_s"]
    same = "yes" if d["identical_weights"] else "**no**"
    lines += [
        "",
        ("| demo-shaped set (1,000 faces at 64 px), MesoNet@64, 2 epochs + test | median s | "
        "in-memory / this |"),
        "|---|---:|---:|",
        f"| in memory (`load_split(..., mmap=False)`, the old path) | {m['in_ram']:.2f} | 1.00x |",
        (f"| streamed from faces.npy (the default on the CPU) | {m['streaming']:.2f} | "
         f"{d['ratio']:.2f}x |"),
        (f"| streamed, the next batch read on a background thread (the default on CUDA) | "
         f"{m['streaming_prefetch']:.2f} | {d['ratio_prefetch']:.2f}x |"),
        "",
        f"Same final weights, streamed and in memory: {same}.",
    ]
    return "\n".join(lines)


def _fmt(value, unit: str) -> str:
    if unit == "GB":
        return f"{value:.2f} GB"
    if unit == "%":
        return f"{100 * value:.1f} %"
    if unit == "x":
        return f"{value:.2f}x"
    return str(value)


def markdown(result: dict, command: str) -> str:
    rows = result["rows"]
    cmd = rows[0]["free"]["command"] if rows else ""
    targets = "\n".join(
        f"- {t['title']}: {_fmt(t['measured'], t['unit'])} (goal {t['op']} "
        f"{_fmt(t['goal'], t['unit'])}): {'met' if t['met'] else '**not met**'}"
        for t in result["targets"])
    return f"""## Paper scale (bench/scale.py)

Generated by `{command}` on {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}
({os.cpu_count()} cores; CPU only). Each training job is

    {cmd}

(MesoNet at input_size 64, one epoch over the whole train split, validation and test on
their whole splits), on packed sets of synthetic faces at {SIZE} px, videos of {FRAMES} faces,
split 70/15/15 by video. Peak `RssAnon` (the job's own memory) and `RssFile` (mapped files:
mostly torch's libraries) are sampled from /proc every 20 ms; the faces read sit in the
kernel's page cache, shared and reclaimable, in neither. The cgroup runs drop the set from
the page cache first, so the job reads it from disk through a cgroup-v1 memory limit of
{CGROUP_LIMIT / 1e9:.1f} GB, smaller than the set; "disk read" is the job's `read_bytes`
(/proc/PID/io): about the set's bytes it uses, once, when nothing thrashes.

{table(result)}

{targets}

Batches are read by index from `faces.npy` (`data.FaceImages`: a batch's rows are read in
ascending order, straight into their place in the drawn order, with `pread` at the offsets of
the `.npy` memory map; on CUDA one batch ahead on a background thread); no stage copies a split into
memory any more, and evaluation on the CPU converts and runs at most 2^22 pixels (faces ×
side²) at a time. `pread` rather than reads through the map: in the 1.5 GB cgroup, pages
touched through a map were promoted over the job's own code pages and the epoch thrashed (it
had read ~15 GB from disk after 2.5 min of a 2.1 GB set); read with `pread`, an epoch reads
about the set once (the disk read column, torch's libraries included). Before this change the same command on the 2.1 GB set peaked at 3.9 GB RSS and
was OOM-killed in a 1.5 GB cgroup (issue 13).

On the CPU the read-ahead thread is off by default: on the demo-shaped set it was within
noise of no thread in three runs on this shared 2-core machine (median s, with / without /
in memory: 1.54 / 1.53 / 1.57 lightly loaded; 2.36 / 2.20 / 2.43 under a running demo;
the run above), and the demo runs two jobs on two cores. On CUDA it is on.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sets (4,000 and 8,000)")
    parser.add_argument("--faces", type=int, nargs="+", default=[8000, 30000],
                        help="sizes of the packed sets, in faces at 299 px")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where to write them")
    parser.add_argument("--keep", action="store_true", help="keep the packed sets")
    parser.add_argument("--no-markdown", action="store_true", help="leave bench/scale.md alone")
    parser.add_argument("--markdown-only", action="store_true",
                        help="run nothing: rewrite bench/scale.md from bench/out/scale.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    if args.markdown_only:
        saved = json.loads((OUT / "scale.json").read_text())
        (BENCH / "scale.md").write_text(markdown(saved, saved["command"]))
        print(f"wrote {BENCH / 'scale.md'} from {OUT / 'scale.json'}")
        return 0
    result = run(args.quick, tuple(args.faces), args.dir, args.keep)
    command = "python bench/scale.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps({**result, "command": command}, indent=2,
                                               default=str))
    print(table(result))
    print(json.dumps(result["targets"], indent=2))
    if not args.no_markdown:
        (BENCH / "scale.md").write_text(markdown(result, command))
        print(f"wrote {BENCH / 'scale.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
