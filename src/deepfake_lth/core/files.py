"""Writing result files atomically: a temporary file next to the target, then a rename, so a
killed job never leaves a half-written file that a rerun would take for finished work.

The temporary file (``mkstemp`` makes it 0600) gets the mode a plain ``open`` would give,
``0o666 & ~umask`` (0644 under umask 022), before it is renamed: results on a shared file
system are readable by those the umask lets read them."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(current)
    return current


def file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0644 under 022)."""
    return 0o666 & ~umask()


def atomic_write(path: str | Path, write: Callable[[IO], Any], binary: bool = False) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it to ``path``
    (mode ``0o666 & ~umask``, as ``open`` gives)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """``text`` to ``path``, atomically."""
    return atomic_write(path, lambda fh: fh.write(text))


def write_csv(df, path: str | Path) -> Path:
    """A pandas DataFrame to ``path`` as CSV (no index), atomically."""
    return atomic_write(path, lambda fh: df.to_csv(fh, index=False))


def json_safe(value: Any) -> Any:
    """NaN/inf → null (strict JSON); numpy scalars → python numbers."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """metrics.json, atomically, as strict JSON (NaN written as null)."""
    return write_text(path, json.dumps(json_safe(dict(metrics)), indent=2) + "\n")


def read_metrics(folder: str | Path) -> dict[str, Any]:
    """The metrics.json of a run folder; UserError naming the file when missing or broken."""
    from deepfake_lth.core.errors import UserError

    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise UserError(f"{path} is missing: run the stage that writes {Path(folder)} first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path} is not valid JSON ({exc}); delete it and rerun its stage"
        ) from None


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path next to ``path`` (ending in ``suffix``, default ``path``'s own, for
    writers that pick the format by extension) renamed to ``path`` when the block succeeds,
    removed when it fails: for writers that take a file name, not a file object. The file
    renamed gets mode ``0o666 & ~umask`` (a writer may have replaced the temporary file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output(path: str | Path, flag: str = "-o") -> Path:
    """``path`` as a file this process can write: its folder, or the nearest one above that
    exists, takes a new file (probed: permissions, read-only mounts); UserError naming the
    flag and the fix otherwise. Checked before any work."""
    from deepfake_lth.core.errors import UserError

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'ticket.pt'}")
    folder = path.absolute().parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder; choose another "
                        f"{flag}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write in {existing} ({exc.strerror or exc}); "
                        f"choose another {flag}") from None
    return path
