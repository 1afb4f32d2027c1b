"""One GPU per job on one node: a job claims a share of one device before it touches CUDA.

Snakemake counts GPUs (``gpu``, ``gpu_share``) but never says which device a job gets, so
with ``device: auto`` every job would take ``cuda:0``. Here a job that is about to run on
``auto`` (or a bare ``cuda``) claims ``share`` percent of one device and narrows
``CUDA_VISIBLE_DEVICES`` to it before CUDA is initialised:

- A device has ``SLOTS`` lock files of ``SLOT_PERCENT`` % each in a lock folder
  (``DLTH_GPU_LOCK_DIR``; the workflow sets ``{results}/.gpus/{host}``); a share holds
  ``ceil(share / SLOT_PERCENT)`` of them with ``flock`` for the life of the process, so the
  kernel releases a killed job's claim. No device is ever over 100 %.
- Claims are atomic: the choice is made while holding ``claim.lock``; a job takes the device
  with the most free slots, ties going round-robin after the device claimed last. When no
  device has room the job waits (``Snakemake``'s ``gpu_share`` budget normally prevents it).
- The devices: those of ``CUDA_VISIBLE_DEVICES`` when it is set (by the user: the job picks
  within them), else ``DLTH_GPU_COUNT`` simulated ones (tests), else those ``nvidia-smi -L``
  lists. Under SLURM (``SLURM_JOB_ID``) the executor already gave the job its GPU: nothing is
  claimed. A process claims once: its children and later calls (``DLTH_GPU_CLAIMED`` set)
  keep the device it claimed. ``cpu`` and ``cuda:N`` keep their meaning (nothing is claimed); without GPUs
  nothing changes.

No torch here: the claim must come before anything initialises CUDA.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_lth.core.errors import UserError

log = logging.getLogger(__name__)

SLOT_PERCENT = 25
SLOTS = 100 // SLOT_PERCENT
POLL_SECONDS = 0.2

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


def candidate_devices(env: Mapping[str, str] | None = None,
                      count: Callable[[], int] = nvidia_smi_count) -> list[str]:
    """The device ids a job may claim: CUDA_VISIBLE_DEVICES' when set, else DLTH_GPU_COUNT
    simulated ones, else ``count()`` (nvidia-smi)."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for d in visible.split(","):
            d = d.strip()
            if not d or d.startswith("-"):  # "" or "-1": CUDA sees nothing from here on
                break
            ids.append(d)
        return ids
    simulated = env.get("DLTH_GPU_COUNT")
    if simulated is not None and simulated.strip():
        try:
            n = int(simulated)
        except ValueError:
            raise UserError(f"DLTH_GPU_COUNT={simulated!r} is not a whole number of GPUs; "
                            "unset it or give e.g. DLTH_GPU_COUNT=4") from None
        return [str(i) for i in range(max(n, 0))]
    return [str(i) for i in range(count())]


def lock_dir(env: Mapping[str, str] | None = None) -> Path:
    """DLTH_GPU_LOCK_DIR, else a per-user folder of this host's temporary directory."""
    env = os.environ if env is None else env
    given = env.get("DLTH_GPU_LOCK_DIR")
    if given:
        return Path(given)
    return Path(tempfile.gettempdir()) / f"deepfake-lth-gpus-{os.getuid()}-{socket.gethostname()}"


def slots_for(share: int) -> int:
    """Lock slots of a share in percent: rounded up, 1 to SLOTS."""
    if not 0 < share <= 100:
        raise UserError(f"a GPU share must be 1–100 %, got {share}")
    return min(SLOTS, max(1, math.ceil(share / SLOT_PERCENT)))


def _try_lock(path: Path):
    f = open(path, "a+")  # noqa: SIM115 (kept open: the lock lives as long as the file)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _slot_name(device: str, k: int) -> str:
    """The lock file of slot ``k`` of ``device`` (an index, a GPU-/MIG- UUID, possibly with /)."""
    return f"gpu{re.sub(r'[^A-Za-z0-9._-]', '_', device)}.slot{k}"


def _order(devices: Sequence[str], last: str) -> list[str]:
    """``devices`` starting after ``last`` (round-robin among equally free devices)."""
    if last in devices:
        i = devices.index(last) + 1
        return [*devices[i:], *devices[:i]]
    return list(devices)


def try_claim(devices: Sequence[str], share: int, folder: Path) -> Claim | None:
    """One atomic attempt: ``share`` % of the freest device (None: none has room now)."""
    need = slots_for(share)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "claim.lock", "a+") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one claimer at a time; released on close
        last_file = folder / "last"
        last = last_file.read_text().strip() if last_file.exists() else ""
        free: dict[str, list[tuple[int, object]]] = {}
        for dev in devices:
            free[dev] = [(k, f) for k in range(SLOTS)
                         if (f := _try_lock(folder / _slot_name(dev, k))) is not None]
        best = None
        for dev in _order(devices, last):
            if len(free[dev]) >= need and (best is None or len(free[dev]) > len(free[best])):
                best = dev
        claim = None
        if best is not None:
            kept = free[best][:need]
            claim = Claim(best, share, [k for k, _ in kept], [f for _, f in kept])
            last_file.write_text(best)
        for dev, held in free.items():
            for k, f in held:
                if claim is None or dev != best or k not in claim.slots:
                    f.close()
        return claim


def claim(share: int, devices: Sequence[str], folder: Path,
          timeout: float | None = None) -> Claim:
    """Wait until ``share`` % of one of ``devices`` is free and hold it (until exit or
    :meth:`Claim.release`)."""
    start = time.monotonic()
    waited = False
    while True:
        got = try_claim(devices, share, folder)
        if got is not None:
            _HELD.append(got)
            return got
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no GPU of {list(devices)} had {share} % free for {timeout} s")
        if not waited:
            log.info("waiting for a GPU with %d %% free (lock folder %s)", share, folder)
            waited = True
        time.sleep(POLL_SECONDS)


def wants_claim(device: str | None) -> bool:
    """``auto`` and ``cuda`` pick a device; ``cpu`` and ``cuda:N`` name theirs."""
    return str(device or "auto").strip().lower() in ("auto", "cuda")


def claim_for_job(device: str | None, share: int,
                  env: Mapping[str, str] | None = None) -> Claim | None:
    """Claim a device for this process when ``device`` asks to pick one and there are GPUs,
    and narrow CUDA_VISIBLE_DEVICES to it (call before CUDA is initialised)."""
    env = os.environ if env is None else env
    if not wants_claim(device) or env.get("SLURM_JOB_ID") or env.get("DLTH_GPU_CLAIMED"):
        return None  # DLTH_GPU_CLAIMED: this process or its parent holds a claim already
    devices = candidate_devices(env)
    if not devices:
        return None
    folder = lock_dir(env)
    got = claim(share, devices, folder)
    os.environ["CUDA_VISIBLE_DEVICES"] = got.device
    os.environ["DLTH_GPU_CLAIMED"] = f"{got.device}:{share}"
    log.info("GPU claim: device %s, %d %% (slots %s of %s)", got.device, share,
             ",".join(map(str, got.slots)), folder)
    return got
