"""The file types the project reads: one list of video and one of image extensions, shared by
acquisition (``acquire.local``), face extraction (``faces``) and ``detect``."""

from __future__ import annotations

VIDEO_EXTS = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
)
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
