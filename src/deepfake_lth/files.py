"""Writing result files atomically: a temporary file next to the target, then a rename, so a
killed job never leaves a half-written file that a rerun would take for finished work."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO], Any], binary: bool = False) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
