"""Resuming a training job after preemption, a time limit, Ctrl-C or ``kill -9``.

A training job saves its whole state (model, optimizer, GradScaler, RNG states, early
stopping, history, elapsed seconds) at the end of every epoch with :class:`ResumeState`;
a rerun of the same command continues after the last completed epoch and ends
bit-identical (on the CPU) to a run that was never stopped. The state is keyed by
:func:`resume_key`: a state written by another stage, spec, input or code version is never
used (a fresh start, logged), and the job removes its state once its outputs are written.

Where the state lives (:func:`state_path`): ``{results}/.resume/<the job's folder relative
to results>/state.pt``, e.g. ``results/.resume/smoke-images/mesonet/seed0/dense/state.pt``
for ``results/smoke-images/mesonet/seed0/dense``. It sits outside the job's own folder on
purpose: Snakemake deletes the outputs of an incomplete job before it reruns it, and that
must not take the state along. ``DLTH_RESUME_DIR`` moves every state under another folder
(one that every retry of a job can read, e.g. a scratch file system the nodes share).

Signals (:class:`StopSignals`): SIGTERM (sent by SLURM at preemption and before a time
limit) and SIGINT set a flag; training finishes its current step, keeps the state of the
last completed epoch and raises :class:`StopRequested`, which the command line turns into
exit status 128 + the signal number, so that Snakemake and SLURM see a failure to retry. A
second SIGINT raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import re
import signal
import threading
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from deepfake_lth.core.files import atomic_write

if TYPE_CHECKING:  # torch and numpy load on first use: the command line imports this module
    import numpy as np
    import torch

log = logging.getLogger(__name__)

RESUME_DIR_ENV = "DLTH_RESUME_DIR"
STATE_DIR = ".resume"
STATE_FILE = "state.pt"
FORMAT = 1
# input files up to this size are identified by their content, larger ones (faces.npy) by
# (size, mtime_ns): hashing tens of GB at every start would cost minutes
HASH_LIMIT_BYTES = 256 * 2**20
_SEED_DIR = re.compile(r"seed\d+")
# what torch.load raises on a truncated, foreign or tampered file
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError,
                IndexError, AttributeError, TypeError)


class StopRequested(Exception):
    """Training stopped on a signal after saving its state; a rerun resumes.

    ``signum``: the signal that asked for the stop; ``state``: where the state is kept;
    ``epoch``: the last completed epoch in that state (0: none).
    """

    def __init__(
        self,
        message: str,
        *,
        signum: int | None = None,
        state: Path | None = None,
        epoch: int | None = None,
    ) -> None:
        super().__init__(message)
        self.signum = signum
        self.state = state
        self.epoch = epoch

    @property
    def exit_code(self) -> int:
        """128 + the signal number (143 for SIGTERM, 130 for SIGINT), as a shell reports it."""
        return 128 + self.signum if self.signum else 1


class StopSignals:
    """Context manager: SIGTERM and SIGINT set :attr:`requested` instead of killing the job.

    The first signal is logged and sets the flag (the training loop checks it after each
    step); a second SIGINT raises KeyboardInterrupt. The previous handlers come back on
    exit. Outside the main thread (where Python cannot install handlers) nothing is
    installed and the flag stays False.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested: bool = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum else None

    def _handle(self, signum: int, frame) -> None:
        if self.requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            log.warning("%s again: already stopping after the current step",
                        signal.Signals(signum).name)
            return
        self.requested = True
        self.signum = signum
        log.warning("%s received: finishing the current step, saving the state, then exiting",
                    signal.Signals(signum).name)

    def __enter__(self) -> Self:
        if threading.current_thread() is not threading.main_thread():
            log.debug("not the main thread: SIGTERM/SIGINT keep their handlers")
            return self
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def stopped(self, exc: BaseException, resume: ResumeState | None) -> StopRequested:
        """The StopRequested a stage raises to the command line, saying how to resume."""
        epoch = getattr(exc, "epoch", None)
        if epoch is None and resume is not None:
            epoch = resume.saved_epoch
        by = f"stopped by {self.signal_name}" if self.signum else "stopped"
        if resume is not None and epoch:
            tail = (f"after epoch {epoch}; state saved to {resume.path}; "
                    "rerun the same command to resume")
        elif resume is not None:
            tail = "before the first epoch ended; a rerun starts over"
        else:
            tail = "no resume state is kept; a rerun starts over"
        return StopRequested(f"{by} {tail}", signum=self.signum,
                             state=resume.path if resume is not None else None, epoch=epoch)


class ResumeState:
    """One job's resume file: ``load`` the payload of this job, ``save`` one, ``clear`` it."""

    def __init__(self, path: str | Path, key: str) -> None:
        self.path = Path(path)
        self.key = key
        self.saved_epoch: int | None = None  # the epoch of the last state loaded or saved

    def load(self) -> dict | None:
        """The saved payload when the file exists and was written for this key, else None."""
        import torch

        if not self.path.is_file():
            log.info("resume: no state at %s: fresh start", self.path)
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except _LOAD_ERRORS as exc:  # truncated or foreign file: never fatal, never used
            log.warning("resume: state %s is unreadable (%s): fresh start", self.path, exc)
            return None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            log.warning("resume: %s is not a resume state of this version: fresh start",
                        self.path)
            return None
        if saved.get("key") != self.key:
            log.warning("resume: state %s was written by another spec/code/input: fresh start",
                        self.path)
            return None
        payload = saved["payload"]
        self.saved_epoch = payload.get("epoch") if isinstance(payload, dict) else None
        log.info("resume: state %s (saved after epoch %s) continues this job", self.path,
                 self.saved_epoch)
        return payload

    def save(self, payload: dict) -> None:
        """Write ``payload`` with this key, atomically (a kill mid-write keeps the old state)."""
        import torch

        record = {"format": FORMAT, "key": self.key, "payload": payload}
        atomic_write(self.path, lambda fh: torch.save(record, fh), binary=True)
        self.saved_epoch = payload.get("epoch")
        log.debug("resume: state saved to %s (epoch %s)", self.path, self.saved_epoch)

    def clear(self) -> None:
        """Remove the state file (and half-written ones of a killed save) and the folders
        above it left empty, up to and including the ``.resume`` folder (never above it, never
        DLTH_RESUME_DIR itself)."""
        self.path.unlink(missing_ok=True)
        # half-written states of a save killed mid-write (files.atomic_write's temporary name)
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        stop_at = _clear_boundary(self.path)
        if stop_at is None:
            return
        parent = Path(os.path.abspath(self.path.parent))
        while stop_at in parent.parents or (parent == stop_at and parent.name == STATE_DIR):
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent


def _clear_boundary(path: Path) -> Path | None:
    """The highest folder :meth:`ResumeState.clear` may remove when empty."""
    path = Path(os.path.abspath(path))
    for parent in path.parents:
        if parent.name == STATE_DIR:
            return parent
    env = os.environ.get(RESUME_DIR_ENV)
    if env:
        root = Path(os.path.abspath(env))
        if root in path.parents:
            return root
    return None


# ---------------------------------------------------------------------------- where


def results_root(out_dir: str | Path) -> tuple[Path, Path] | None:
    """``(results, out_dir relative to it)`` for a folder of the path scheme
    ``{results}/{dataset}/{model}/seed{seed}/...`` or
    ``{results}/transfer/{src}-to-{dst}/{model}/seed{seed}/...``; None for other folders."""
    out = Path(os.path.abspath(out_dir))
    parts = out.parts
    seeds = [i for i, p in enumerate(parts) if _SEED_DIR.fullmatch(p)]
    if not seeds or seeds[-1] < 3:
        return None
    i = seeds[-1]
    start = i - 2  # {dataset}/{model}/seed{seed}
    if i >= 4 and parts[i - 3] == "transfer" and "-to-" in parts[i - 2]:
        start = i - 3  # transfer/{src}-to-{dst}/{model}/seed{seed}
    root = Path(*parts[:start])
    return root, Path(*parts[start:])


def state_path(out_dir: str | Path) -> Path:
    """Where the resume state of the job writing ``out_dir`` lives (see the module doc)."""
    out = Path(os.path.abspath(out_dir))
    found = results_root(out)
    env = os.environ.get(RESUME_DIR_ENV)
    if env:
        rel = found[1] if found else Path(*out.parts[1:])
        return Path(env) / rel / STATE_FILE
    if found:
        root, rel = found
        return root / STATE_DIR / rel / STATE_FILE
    # a folder outside the path scheme: a hidden sibling folder, still outside out_dir
    return out.parent / STATE_DIR / out.name / STATE_FILE


# ---------------------------------------------------------------------------- key


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 over the package's Python sources: any code change invalidates every state."""
    pkg = Path(__file__).resolve().parents[1]  # the whole package
    h = hashlib.sha256()
    for path in sorted(pkg.rglob("*.py")):
        h.update(path.relative_to(pkg).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def file_identity(path: str | Path) -> dict[str, Any]:
    """A file's identity: its sha256 up to HASH_LIMIT_BYTES, (size, mtime_ns) above."""
    path = Path(path)
    st = path.stat()
    if st.st_size > HASH_LIMIT_BYTES:
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"size": st.st_size, "sha256": h.hexdigest()}


def tensor_digest(obj: torch.Tensor | np.ndarray | Mapping[str, Any]) -> str:
    """sha256 of a tensor, an array or a state dict (names, dtypes, shapes and values)."""
    import numpy as np
    import torch

    h = hashlib.sha256()
    items = sorted(obj.items()) if isinstance(obj, Mapping) else [("", obj)]
    for name, value in items:
        if isinstance(value, torch.Tensor):
            arr = value.detach().cpu().contiguous()
            if arr.dtype == torch.bfloat16:
                arr = arr.view(torch.int16)
            arr = arr.numpy()
        else:
            arr = np.ascontiguousarray(value)
        h.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _canonical(obj: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return {"tensor": tensor_digest(obj)}
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"resume_key: {type(obj).__name__} is not part of a key; pass plain "
                    "values, paths, tensors or state dicts")


def _plain(obj: Any) -> Any:
    """State dicts become digests; the rest stays for json.dumps (with _canonical)."""
    import torch

    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {"state_dict": tensor_digest(obj)}
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def resume_key(*, inputs: Iterable[str | Path] = (), **parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts`` (stage name, its arguments, the parsed spec,
    initial weights and mask as state dicts), the identity of every file in ``inputs`` and
    the code version. Equal keys mean the job would compute the same thing."""
    import torch

    record = {
        "parts": _plain(parts),
        "inputs": {str(p): file_identity(p) for p in inputs},
        "code": code_version(),
        "torch": torch.__version__,
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------- RNG


def capture_rng() -> dict:
    """The RNG states of python, numpy and torch (CPU, and every CUDA device once CUDA is
    initialised), as plain lists and tensors that ``torch.load(weights_only=True)`` reads."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict) -> None:
    """Set the RNG states captured by :func:`capture_rng`."""
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning("resume: the state has %d CUDA RNG states, this machine %d devices; "
                        "CUDA RNG not restored", len(cuda), torch.cuda.device_count())
