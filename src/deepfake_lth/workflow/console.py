"""The console of a workflow run: a short line per job, a progress line per running training
job, and a Ctrl-C that says what to do next.

Snakemake's own console prints, for every job, its shell command and every input path (a
training job's code inputs are some 25 source files): one line of a rerun reached 9,465
characters. The logger plugin ``snakemake_logger_plugin_deepfake_lth`` (turned on by
profiles/default; ``--logger deepfake-lth`` elsewhere) hands Snakemake's log records to
:class:`Console`, which prints instead::

    84 jobs to run: train_dense 4, imp_round 64, oneshot 8, gradcam 4, report 1, ...
    [22:05:03] start  train_dense  dataset=demo-videos model=cnn5 seed=0
    [22:05:41]        train_dense  dataset=demo-videos model=cnn5 seed=0: epoch 3/30, loss 0.4120, val auc 0.8710, 35 s
    [22:06:10] done   train_dense  dataset=demo-videos model=cnn5 seed=0 (5 of 84 jobs, 6 %)
    [22:06:12] FAILED pack_faces  dataset=x (log results/logs/pack/x.log)
        <the log's last lines>

A running job's progress line comes from its log (the ``epoch e/E: ...`` lines that
:func:`deepfake_lth.training.fit.early_stopping` writes), at most once per
``DLTH_PROGRESS_SECONDS`` (default 15) per job. On Ctrl-C the jobs stop (a training job
keeps its state: :mod:`deepfake_lth.training.resume`) and the console says so in one line,
without Snakemake's "Error in rule ... message: None" per job. A dry run (``-n``) prints
Snakemake's full plan unchanged; ``--printshellcmds`` (``-p``) adds the commands back.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STOPPED = "stopped; the state is saved; rerun the same command to resume"
TERMINATING = "Terminating processes on user request"
# Snakemake's lines that say nothing a person watching a run acts on
CHATTER = ("Building DAG of jobs", "Using shell:", "Provided cores", "Provided resources",
           "Rules claiming more threads", "Select jobs to execute", "Execute ",
           "Assuming unrestricted shared filesystem", "Job stats:", "Complete log",
           "Singularity containers", "Conda environments:", "host:", "Waiting at most",
           "Removing temporary output", "Touching output file", "Storing output in storage",
           "Retrieving input from storage", "Using profile", "Using workflow specific profile", "Falling back to greedy",
           "No validator found")
EPOCH = re.compile(
    r"epoch (?P<epoch>\d+)/(?P<epochs>\d+): train loss (?P<loss>\S+) acc \S+ \| val loss "
    r"(?P<val_loss>\S+) acc (?P<val_acc>\S+)(?: auc (?P<val_auc>\S+))?[^(]*\((?P<seconds>[\d.]+)s"
    r"(?:, (?P<elapsed>[\d.]+)s in all)?\)")
LOG_TAIL = 5  # lines of a failed job's log shown
TAIL_BYTES = 64 * 1024  # a log is read from its end


def duration(seconds: float) -> str:
    """``35 s``, ``2 min 14 s``, ``1 h 03 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_text(line: str) -> str | None:
    """The console's words for the last progress line of a training log, or None."""
    m = EPOCH.search(line)
    if m is None:
        return None
    auc = m.group("val_auc")
    metric = (f"val auc {auc}" if auc and auc != "nan" else f"val acc {m.group('val_acc')}")
    elapsed = float(m.group("elapsed") or m.group("seconds"))
    return (f"epoch {m.group('epoch')}/{m.group('epochs')}, loss {m.group('loss')}, {metric}, "
            f"{duration(elapsed)}")


def last_progress(path: str | Path) -> str | None:
    """The console's words for the newest epoch line of the log at ``path`` (its end only)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        found = progress_text(line)
        if found:
            return found
    return None


def log_tail(path: str | Path, n: int = LOG_TAIL, width: int = 200) -> list[str]:
    """The last ``n`` non-empty lines of a log (each cut at ``width`` characters)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - TAIL_BYTES))
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []
    lines = [ln.rstrip()[:width] for ln in lines if ln.strip() and "\r" not in ln]
    return lines[-n:]


def job_label(rule: str, wildcards: Mapping[str, Any] | None) -> str:
    """``rule  key=value key=value``: what a job is, in one short piece."""
    parts = " ".join(f"{k}={v}" for k, v in (wildcards or {}).items())
    return f"{rule}  {parts}" if parts else rule


@dataclass
class RunningJob:
    label: str
    logs: list[str]
    shown: str | None = None  # the progress text last printed
    shown_at: float = 0.0
    started: float = field(default_factory=time.monotonic)


class Console:
    """Snakemake's log records (their ``__dict__``) as short lines, written by ``write``."""

    def __init__(self, write: Callable[[str], None], printshellcmds: bool = False,
                 interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 stamp: Callable[[], str] = lambda: time.strftime("%H:%M:%S")) -> None:
        self.write, self.printshellcmds = write, printshellcmds
        self.interval = float(os.environ.get("DLTH_PROGRESS_SECONDS", 15)
                              if interval is None else interval)
        self.clock, self.stamp = clock, stamp
        self.running: dict[Any, RunningJob] = {}
        self.finished: list[str] = []  # done lines waiting for their progress count
        self.stopping = self.said_stopped = False
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ records

    def handle(self, rec: Mapping[str, Any]) -> None:
        """Print what one record says (nothing for chatter)."""
        with self.lock:
            event = str(rec.get("event") or "") or None
            handler = getattr(self, f"_on_{event}", None) if event else None
            if event != "progress":
                self._flush_finished()
            if handler is not None:
                handler(rec)
            elif event is None or event == "error":
                self._on_message(rec)

    def _line(self, text: str) -> None:
        self.write(f"[{self.stamp()}] {text}")

    def _on_message(self, rec: Mapping[str, Any]) -> None:
        msg = str(rec.get("msg") or "").strip()
        level = int(rec.get("levelno") or 20)
        if TERMINATING in msg:
            self.stopping = True
            self.write("Ctrl-C: stopping the running jobs (a training job saves its state "
                       "first)")
            return
        if not msg or level < 20 or (self.stopping and level >= 30):
            return  # debug records; once stopping, the stopped jobs' errors
        if level < 30 and (msg.startswith(CHATTER) or msg.startswith("Elapsed time")):
            return
        if "CalledProcessError" in msg and "non-zero exit status" in msg:
            return  # a job's shell command failed: its FAILED line follows, with its log
        self.write(msg)

    def _on_run_info(self, rec: Mapping[str, Any]) -> None:
        stats = rec.get("stats")
        if isinstance(stats, Mapping) and "total" in stats:
            parts = [f"{k} {v}" for k, v in stats.items() if k != "total"]
            total = stats["total"]
            self.write(f"{total} job{'' if total == 1 else 's'} to run: {', '.join(parts)}")
        elif rec.get("msg"):
            self.write(str(rec["msg"]).strip())

    def _on_job_info(self, rec: Mapping[str, Any]) -> None:
        label = (str(rec["rule_msg"]) if rec.get("rule_msg")
                 else job_label(str(rec.get("rule_name")), rec.get("wildcards")))
        self.running[rec.get("jobid")] = RunningJob(label, [str(p) for p in rec.get("log") or []],
                                                    started=self.clock())
        self._line(f"start  {label}")

    def _on_shellcmd(self, rec: Mapping[str, Any]) -> None:
        if self.printshellcmds:  # --printshellcmds asks for them back
            self.write(f"    {str(rec.get('cmd') or rec.get('msg') or '').strip()}")

    def _on_job_finished(self, rec: Mapping[str, Any]) -> None:
        job = self.running.pop(rec.get("job_id", rec.get("jobid")), None)
        if job is not None:
            took = duration(self.clock() - job.started)
            self.finished.append(f"done   {job.label} ({took}")

    def _on_progress(self, rec: Mapping[str, Any]) -> None:
        done, total = int(rec.get("done", 0)), int(rec.get("total", 0))
        count = f"{done} of {total} jobs, {100 * done // max(total, 1)} %"
        if not self.finished:
            self._line(count)
        for text in self.finished:
            self._line(f"{text}; {count})")
        self.finished.clear()

    def _flush_finished(self) -> None:
        for text in self.finished:
            self._line(f"{text})")
        self.finished.clear()

    def _on_job_error(self, rec: Mapping[str, Any]) -> None:
        job = self.running.pop(rec.get("jobid"), None)
        label = job.label if job else job_label(str(rec.get("rule_name")), rec.get("wildcards"))
        logs = [str(p) for p in rec.get("log") or []] or (job.logs if job else [])
        if self.stopping:
            self._line(f"stopped {label}")
            return
        self._line(f"FAILED {label}" + (f" (log {', '.join(logs)})" if logs else ""))
        for log in logs[:1]:
            for line in log_tail(log):
                self.write(f"    {line}")

    def _on_group_info(self, rec: Mapping[str, Any]) -> None:
        jobs = rec.get("jobs") or ()
        self._line(f"group  {rec.get('group_id', '')} ({len(jobs)} jobs, in one submission)")

    def _on_group_error(self, rec: Mapping[str, Any]) -> None:
        if not self.stopping:
            self._line(f"FAILED group job: {str(rec.get('msg') or '').strip()}")

    # ------------------------------------------------------------------ progress, the end

    def poll(self) -> None:
        """A progress line for each running job whose log shows a newer epoch, at most once
        per ``interval`` seconds each."""
        with self.lock:
            now = self.clock()
            for job in [] if self.stopping else self.running.values():
                if not job.logs or now - job.shown_at < self.interval:
                    continue
                text = last_progress(job.logs[0])
                if text and text != job.shown:
                    job.shown, job.shown_at = text, now
                    self._line(f"       {job.label}: {text}")

    def close(self) -> None:
        with self.lock:
            self._flush_finished()
            if self.stopping and not self.said_stopped:
                self.said_stopped = True
                self.write(STOPPED)
