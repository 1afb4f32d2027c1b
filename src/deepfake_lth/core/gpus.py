"""One GPU per job on one node: a job claims a share of one device before it touches CUDA.

Snakemake counts GPUs (``gpu``, ``gpu_share``) but never says which device a job gets, so
with ``device: auto`` every job would take ``cuda:0``. Here a job that is about to run on
``auto`` (or a bare ``cuda``) claims ``share`` percent of one device and narrows
``CUDA_VISIBLE_DEVICES`` to it before CUDA is initialised:

- A device has ``SLOTS`` lock files of ``SLOT_PERCENT`` % each in a lock folder; a share
  holds ``ceil(share / SLOT_PERCENT)`` of them with ``flock`` for the life of the process, so
  the kernel releases a killed job's claim. No device is ever over 100 %. A held slot file
  names its holder (pid and share), so a waiting job can say who it waits for.
- Claims are atomic (made while holding ``claim.lock``) and **best fit**: a job takes the
  device with the least room that still fits it (ties: the first listed), so small jobs
  pack and whole devices stay free for large ones.
- **Reservations**: a job that finds no room queues (``queue/``, a file it holds locked);
  every later claim first sets aside room for the older waiting jobs, in order: the device
  that fits each best, else, for one that fits nowhere, the device nearest to fitting it,
  which then takes no new job until it has drained. A 100 % job is not starved by a stream
  of 25 % jobs.
- A waiting job logs the holders of the devices (pid, share) when it starts waiting and
  every ``RELOG_SECONDS``; ``DLTH_GPU_TIMEOUT`` (seconds) ends the wait with an error.
- The devices (:func:`visible_devices`, also what profiles/default budgets
  ``gpu_share`` by): those of ``CUDA_VISIBLE_DEVICES`` when it is set (indices, ``GPU-``
  or ``MIG-`` UUIDs; read as CUDA reads it: up to the first empty or negative entry, so
  ``0,,1`` is one device), else ``DLTH_GPU_COUNT`` simulated ones (tests), else those
  ``nvidia-smi -L`` lists.
- Under SLURM (``SLURM_JOB_ID``) a job claims only where the allocation shows it several
  devices (``salloc --gpus=4`` then ``snakemake``); with one, the executor gave the job its
  GPU.
- The lock folder: ``DLTH_GPU_LOCK_DIR``, else one per user on this host's local
  ``/tmp`` (``/tmp/deepfake-lth-gpus-{user}``; in a SLURM allocation a sub-folder per job,
  whose device indices are the allocation's own), so every run of the user on the host
  sees every other's claims. An unusable folder, a file system without ``flock``
  (``ENOLCK``) and bad environment values are errors that say what to set.
- A process claims once: its children and later calls (``DLTH_GPU_CLAIMED`` set) keep
  the device it claimed. ``cpu`` and ``cuda:N`` keep their meaning (nothing is claimed);
  without GPUs nothing changes.

No torch here: the claim must come before anything initialises CUDA.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_lth.core.errors import UserError

log = logging.getLogger(__name__)

SLOT_PERCENT = 25
EXTRACT_SHARE = 25  # an extraction job's (MTCNN is small): the CLI claims it, its rule declares it
SLOTS = 100 // SLOT_PERCENT
POLL_SECONDS = 0.2
RELOG_SECONDS = 60.0

_HELD: list[Claim] = []  # claims of this process: their files stay open (and locked) until exit


@dataclass
class Claim:
    """``share`` percent of ``device`` (an id as CUDA_VISIBLE_DEVICES names it), held by
    ``slots`` locked lock files."""

    device: str
    share: int
    slots: list[int]
    files: list = field(default_factory=list, repr=False)

    def release(self) -> None:
        for f in self.files:
            f.close()  # closing the file releases its flock
        self.files.clear()


def nvidia_smi_count() -> int:
    """The GPUs ``nvidia-smi -L`` lists (0 without nvidia-smi or a driver)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def parse_visible(value: str) -> list[str]:
    """The devices of a CUDA_VISIBLE_DEVICES value, read as CUDA reads it: entries up to the
    first empty or negative one (``0,,1`` and ``0,-1,1``: device 0 only)."""
    ids = []
    for d in value.split(","):
        d = d.strip()
        if not d or d.startswith("-"):
            break
        ids.append(d)
    return ids


def visible_devices(env: Mapping[str, str] | None = None,
                    count: Callable[[], int] = nvidia_smi_count) -> list[str]:
    """The device ids a job may claim: CUDA_VISIBLE_DEVICES' when set, else DLTH_GPU_COUNT
    simulated ones, else ``count()`` (nvidia-smi). The one count of GPUs: the allocator's
    and profiles/default's."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return parse_visible(visible)
    simulated = env.get("DLTH_GPU_COUNT")
    if simulated is not None and simulated.strip():
        try:
            n = int(simulated)
        except ValueError:
            n = -1
        if n < 0:
            raise UserError(f"DLTH_GPU_COUNT={simulated!r} is not a number of GPUs (a whole "
                            "number ≥ 0); unset it or give e.g. DLTH_GPU_COUNT=4") from None
        return [str(i) for i in range(n)]
    return [str(i) for i in range(count())]


candidate_devices = visible_devices  # the name callers used before


def _user() -> str:
    import pwd

    try:
        return re.sub(r"[^A-Za-z0-9._-]", "_", pwd.getpwuid(os.getuid()).pw_name)
    except KeyError:  # a container's uid without a passwd entry
        return str(os.getuid())


def lock_dir(env: Mapping[str, str] | None = None) -> Path:
    """DLTH_GPU_LOCK_DIR, else ``/tmp/deepfake-lth-gpus-{user}`` (local to the host, one per
    user; in a SLURM allocation its ``slurm-{SLURM_JOB_ID}`` sub-folder)."""
    env = os.environ if env is None else env
    given = env.get("DLTH_GPU_LOCK_DIR")
    if given:
        return Path(given)
    base = Path("/tmp") / f"deepfake-lth-gpus-{_user()}"
    job = env.get("SLURM_JOB_ID")
    return base / f"slurm-{re.sub(r'[^A-Za-z0-9._-]', '_', job)}" if job else base


def wait_timeout(env: Mapping[str, str] | None = None) -> float | None:
    """DLTH_GPU_TIMEOUT in seconds (unset, empty or 0: wait as long as it takes)."""
    env = os.environ if env is None else env
    given = (env.get("DLTH_GPU_TIMEOUT") or "").strip()
    if not given:
        return None
    try:
        seconds = float(given)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or math.isinf(seconds):
        raise UserError(f"DLTH_GPU_TIMEOUT={given!r} is not a number of seconds ≥ 0; give e.g. "
                        "DLTH_GPU_TIMEOUT=3600, or unset it (or 0) to wait without limit")
    return seconds or None


def prepare_folder(folder: Path) -> Path:
    """Create the lock folder (private to the user where this creates it); a clear error
    where it cannot be used."""
    fix = "set DLTH_GPU_LOCK_DIR to a writable folder on local storage (e.g. under /tmp)"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"GPU lock folder {folder}: cannot create it ({exc.strerror}); {fix}") \
            from None
    if not folder.is_dir():
        raise UserError(f"GPU lock folder {folder} is not a folder; {fix}")
    if not os.access(folder, os.W_OK | os.X_OK):
        owner = folder.stat().st_uid
        whose = "" if owner == os.getuid() else f" (it belongs to uid {owner})"
        raise UserError(f"GPU lock folder {folder} is not writable{whose}; {fix}")
    (folder / "queue").mkdir(mode=0o700, exist_ok=True)
    return folder


def _flock(f, flags: int, path: Path) -> bool:
    """flock ``f``; False where another process holds it (non-blocking)."""
    try:
        fcntl.flock(f, flags)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise UserError(f"GPU lock folder {path.parent}: the file system does not support "
                            f"flock ({exc.strerror}); set DLTH_GPU_LOCK_DIR to a folder on "
                            "local storage (e.g. under /tmp)") from None
        raise
    return True


def _open(path: Path):
    try:
        return open(path, "a+")  # noqa: SIM115 (kept open: the lock lives as long as the file)
    except OSError as exc:
        raise UserError(f"GPU lock file {path}: cannot open it ({exc.strerror}); set "
                        "DLTH_GPU_LOCK_DIR to a writable folder on local storage") from None


def _try_lock(path: Path):
    f = _open(path)
    if not _flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB, path):
        f.close()
        return None
    return f


def _slot_name(device: str, k: int) -> str:
    """The lock file of slot ``k`` of ``device`` (an index, a GPU-/MIG- UUID, possibly with /)."""
    return f"gpu{re.sub(r'[^A-Za-z0-9._-]', '_', device)}.slot{k}"


def _stamp(f, record: dict) -> None:
    """Write who holds a locked file into it (read by waiting jobs)."""
    f.seek(0)
    f.truncate(0)
    f.write(json.dumps(record) + "\n")
    f.flush()


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def best_fit(room: Mapping[str, int], need: int, order: Sequence[str]) -> str | None:
    """The device of ``order`` with the least room that still fits ``need`` slots."""
    fits = [d for d in order if room.get(d, 0) >= need]
    return min(fits, key=lambda d: room[d]) if fits else None


def set_aside(room: dict[str, int], waiting: Sequence[dict], order: Sequence[str]) -> dict:
    """Room left after the ``waiting`` jobs (oldest first) have theirs: each takes its best
    fit; one that fits nowhere reserves the device nearest to fitting it, which takes no
    other job until it has drained. Returns {device: the waiting job reserving it}."""
    reserved = {}
    for w in waiting:
        theirs = [d for d in order if d in set(w.get("devices", order)) and d not in reserved]
        need = slots_for(int(w.get("share", 100)))
        fit = best_fit(room, need, theirs)
        if fit is not None:
            room[fit] -= need
        elif theirs:
            nearest = max(theirs, key=lambda d: room[d])  # ties: the first listed
            room[nearest] = 0
            reserved[nearest] = w
    return reserved


def _waiting(folder: Path, before: int | None, prune: bool = True) -> list[dict]:
    """The live queued jobs older than ticket ``before`` (all with None), oldest first; with
    ``prune`` (only under ``claim.lock``) the files of dead ones are removed."""
    out = []
    for path in sorted((folder / "queue").glob("*.json")):
        ticket = int(path.stem.split("-")[0])
        if before is not None and ticket >= before:
            continue
        probe = _try_lock(path)
        if probe is not None:  # its owner is gone
            probe.close()
            if prune:
                path.unlink(missing_ok=True)
            continue
        out.append({**_read(path), "ticket": ticket})
    return out


def try_claim(devices: Sequence[str], share: int, folder: Path,
              ticket: int | None = None) -> Claim | None:
    """One atomic attempt: ``share`` % of the best-fitting device after older waiting jobs'
    room is set aside (None: no room now). ``ticket``: this job's place in the queue."""
    need = slots_for(share)
    prepare_folder(folder)
    guard_path = folder / "claim.lock"
    with _open(guard_path) as guard:
        _flock(guard, fcntl.LOCK_EX, guard_path)  # one claimer at a time; released on close
        free: dict[str, list[tuple[int, object]]] = {}
        for dev in devices:
            free[dev] = [(k, f) for k in range(SLOTS)
                         if (f := _try_lock(folder / _slot_name(dev, k))) is not None]
        room = {dev: len(held) for dev, held in free.items()}
        set_aside(room, _waiting(folder, ticket), devices)
        best = best_fit(room, need, devices)
        claim = None
        if best is not None:
            kept = free[best][:need]
            claim = Claim(best, share, [k for k, _ in kept], [f for _, f in kept])
            for f in claim.files:
                _stamp(f, {"pid": os.getpid(), "share": share})
        for dev, held in free.items():
            for k, f in held:
                if claim is None or dev != best or k not in claim.slots:
                    f.close()
        return claim


def holders(devices: Sequence[str], folder: Path) -> dict[str, dict[int, int]]:
    """{device: {pid: share}} of the claims held now (from the held slot files)."""
    out: dict[str, dict[int, int]] = {}
    for dev in devices:
        for k in range(SLOTS):
            path = folder / _slot_name(dev, k)
            if not path.exists():
                continue
            probe = _try_lock(path)
            if probe is not None:  # free
                probe.close()
                continue
            rec = _read(path)
            if "pid" in rec:
                out.setdefault(dev, {})[int(rec["pid"])] = int(rec.get("share", SLOT_PERCENT))
    return out


def describe(devices: Sequence[str], folder: Path) -> str:
    """Who holds each device and who waits, for a waiting job's log and its timeout error."""
    held = holders(devices, folder)
    parts = []
    for dev in devices:
        pids = held.get(dev, {})
        used = ", ".join(f"pid {p} ({s} %)" for p, s in sorted(pids.items()))
        parts.append(f"device {dev}: {used or 'free'}")
    queued = [w for w in _waiting(folder, None, prune=False) if w.get("pid") != os.getpid()]
    if queued:
        parts.append("also waiting: " + ", ".join(f"pid {w.get('pid')} ({w.get('share')} %)"
                                                  for w in queued))
    return "; ".join(parts)


def _enqueue(folder: Path, share: int, devices: Sequence[str]) -> tuple[int, object]:
    """A place in the queue: a ticket and its file, held locked while this job waits."""
    guard_path = folder / "claim.lock"
    with _open(guard_path) as guard:  # under the lock: no claimer sees the file half made
        _flock(guard, fcntl.LOCK_EX, guard_path)
        counter = folder / "queue" / "next"
        ticket = int(counter.read_text() or 0) if counter.exists() else 0
        counter.write_text(str(ticket + 1))
        path = folder / "queue" / f"{ticket:012d}-{os.getpid()}.json"
        f = _try_lock(path)
        _stamp(f, {"pid": os.getpid(), "share": share, "devices": list(devices)})
    return ticket, f


def claim(share: int, devices: Sequence[str], folder: Path,
          timeout: float | None = None) -> Claim:
    """Wait until ``share`` % of one of ``devices`` is free and hold it (until exit or
    :meth:`Claim.release`). ``timeout``: seconds before a UserError (None: no limit)."""
    start = time.monotonic()
    got = try_claim(devices, share, folder)
    if got is not None:
        _HELD.append(got)
        return got
    ticket, place = _enqueue(folder, share, devices)
    path = Path(place.name)
    logged = -math.inf
    try:
        while True:
            got = try_claim(devices, share, folder, ticket)
            if got is not None:
                _HELD.append(got)
                return got
            waited = time.monotonic() - start
            if timeout is not None and waited > timeout:
                raise UserError(f"none of GPU(s) {','.join(devices)} had {share} % free within "
                                f"{timeout:g} s (DLTH_GPU_TIMEOUT): {describe(devices, folder)}"
                                "; wait for those jobs, or raise or unset DLTH_GPU_TIMEOUT")
            if waited - logged >= RELOG_SECONDS:
                log.info("waiting %.0f s for %d %% of a GPU (lock folder %s): %s", waited,
                         share, folder, describe(devices, folder))
                logged = waited
            time.sleep(POLL_SECONDS)
    finally:
        path.unlink(missing_ok=True)
        place.close()


def slots_for(share: int) -> int:
    """Lock slots of a share in percent: rounded up, 1 to SLOTS."""
    if not 0 < share <= 100:
        raise UserError(f"a GPU share must be 1–100 %, got {share}")
    return min(SLOTS, max(1, math.ceil(share / SLOT_PERCENT)))


def wants_claim(device: str | None) -> bool:
    """``auto`` and ``cuda`` pick a device; ``cpu`` and ``cuda:N`` name theirs."""
    return str(device or "auto").strip().lower() in ("auto", "cuda")


def claim_for_job(device: str | None, share: int,
                  env: Mapping[str, str] | None = None) -> Claim | None:
    """Claim a device for this process when ``device`` asks to pick one and there are GPUs,
    and narrow CUDA_VISIBLE_DEVICES to it (call before CUDA is initialised)."""
    env = os.environ if env is None else env
    if not wants_claim(device) or share <= 0 or env.get("DLTH_GPU_CLAIMED"):
        return None  # DLTH_GPU_CLAIMED: this process or its parent holds a claim already
    devices = visible_devices(env)
    if env.get("SLURM_JOB_ID") and len(devices) < 2:
        return None  # SLURM gave this job its GPU (or none)
    if not devices:
        return None
    folder = lock_dir(env)
    got = claim(share, devices, folder, wait_timeout(env))
    os.environ["CUDA_VISIBLE_DEVICES"] = got.device
    os.environ["DLTH_GPU_CLAIMED"] = f"{got.device}:{share}"
    log.info("GPU claim: device %s, %d %% (slots %s of %s)", got.device, share,
             ",".join(map(str, got.slots)), folder)
    return got
