"""The file types the project reads: one list of video and one of image extensions, shared by
acquisition (the layouts, ``acquire.urls``), face extraction (``faces``) and ``detect``."""

from __future__ import annotations

VIDEO_EXTS = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
)
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def file_kind(path) -> str | None:
    """``video`` or ``image`` by extension; None for anything else."""
    from pathlib import PurePath

    ext = PurePath(path).suffix.lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext in IMAGE_EXTS:
        return "image"
    return None
