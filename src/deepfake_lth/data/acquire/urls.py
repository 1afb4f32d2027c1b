"""Download the files of a URL manifest, verified by sha256, resumable.

``source: {type: urls, manifest: files.csv, retries: 5, backoff: 1.0, timeout: 60}``; the
manifest has the columns ``url, sha256, label, video_id`` and optionally ``split``, ``group``
and ``kind``. ``label`` is 0/1 or real/fake. An empty ``sha256`` skips verification (logged).

Files land in ``<dataset>/files/``, named after the URL's last path segment (sanitised), or
after the video_id when two URLs share a name. A download goes to ``<name>.part``; a broken
transfer is resumed with a ``Range`` request (a server that ignores ``Range`` makes it start
over), retried with exponential backoff, checked against its sha256 and renamed when complete.
A file already present with the right checksum is not fetched again. A file that fails (HTTP
error, checksum mismatch, retries spent) is deleted, left out of ``sources.csv`` and reported
in ``download_log.csv`` (url, status, message, path); the others go on. If none succeeds the
stage stops with an error.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.media import file_kind

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("url", "sha256", "label", "video_id")
FILES_DIR = "files"
LOG_NAME = "download_log.csv"
CHUNK = 1 << 20
USER_AGENT = "deepfake-lth/0.1 (+urllib)"
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
LABELS = {"0": 0, "1": 1, "real": 0, "fake": 1}


class DownloadError(Exception):
    """A download failed; ``retry`` says whether another attempt may succeed."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass
class Entry:
    """One manifest row, validated."""

    url: str
    sha256: str
    label: int
    video_id: str
    split: str
    group: str
    kind: str
    name: str


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sanitise(name: str) -> str:
    """A safe file name: letters, digits, ``._-``; no leading dots."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return name[:200]


def read_manifest(path: str | Path) -> list[Entry]:
    """Validate a URL manifest and give each row a unique file name."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"source.manifest: {path} not found; give a CSV with columns "
                        f"{', '.join(MANIFEST_COLUMNS)}[, split]")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [c.strip().lower() for c in table.columns]
    missing = [c for c in MANIFEST_COLUMNS if c not in table]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; a URL manifest needs "
                        f"{', '.join(MANIFEST_COLUMNS)} (and optionally split, group, kind)")
    if table.empty:
        raise UserError(f"{path}: the manifest lists no files")
    entries, used = [], set()
    for i, r in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        where = f"{path}:{i}"
        url = r["url"].strip()
        if urlsplit(url).scheme not in ("http", "https"):
            raise UserError(f"{where}: url {url!r} is not an http(s) URL")
        label = LABELS.get(r["label"].strip().lower())
        if label is None:
            raise UserError(f"{where}: label {r['label']!r}; use 0 (real) or 1 (fake)")
        sha = r["sha256"].strip().lower()
        if sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise UserError(f"{where}: sha256 {r['sha256']!r} is not 64 hex digits")
        vid = r["video_id"].strip()
        if not vid:
            raise UserError(f"{where}: empty video_id")
        split = r.get("split", "").strip().lower()
        if split not in ("", "train", "val", "test"):
            raise UserError(f"{where}: split {split!r}; use train, val, test or leave it empty")
        base = sanitise(unquote(PurePosixPath(urlsplit(url).path).name))
        kind = r.get("kind", "").strip().lower() or file_kind(base)
        if kind not in ("video", "image"):
            raise UserError(f"{where}: cannot tell video from image by the URL's extension; "
                            f"add a 'kind' column (video or image)")
        name = base
        if not name or name in used:
            ext = PurePosixPath(base).suffix
            name = sanitise(vid) + ext
            k = 1
            while name in used or not PurePosixPath(name).stem:
                name = f"{sanitise(vid) or 'file'}-{k}{ext}"
                k += 1
        used.add(name)
        entries.append(Entry(url, sha, label, vid, split, r.get("group", "").strip(), kind, name))
    return entries


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # scheme checked in read_manifest
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return exc  # the part may already be complete; the caller decides
        raise DownloadError(f"HTTP {exc.code} {exc.reason}",
                            retry=exc.code in RETRY_STATUS) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"connection failed: {getattr(exc, 'reason', exc)}") from exc


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 10-99/100`` -> (10, 100); ``bytes */100`` -> (None, 100)."""
    m = re.match(r"bytes\s+(\*|(\d+)-\d+)/(\d+|\*)", value or "")
    if not m:
        return None, None
    start = int(m.group(2)) if m.group(2) else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def fetch(url: str, part: Path, timeout: float = 60.0) -> None:
    """One attempt: continue ``part`` from its size (or start over) until the body ends."""
    offset = part.stat().st_size if part.exists() else 0
    resp = _open(url, offset, timeout)
    with resp:
        status = resp.status if hasattr(resp, "status") else resp.code
        if status == 416:  # nothing left to send past our offset
            _, total = _content_range(resp.headers.get("Content-Range"))
            if total == offset:
                return
            part.unlink(missing_ok=True)
            raise DownloadError("server refused to resume (HTTP 416); starting over")
        if status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise DownloadError(f"server resumed at byte {start}, not {offset}; starting over")
            mode = "ab"
            expected = total
        else:
            if offset:
                log.info("%s: server ignored the Range request; starting over", url)
            mode, offset = "wb", 0
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
        written = offset
        try:
            with open(part, mode) as f:
                while block := resp.read(CHUNK):
                    f.write(block)
                    written += len(block)
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"transfer broke at byte {written}: {exc!r}") from exc
    if expected is not None and written < expected:
        raise DownloadError(f"transfer broke at byte {written} of {expected}")


def download(
    url: str,
    dest: Path,
    sha256: str = "",
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    sleep=time.sleep,
) -> str:
    """Fetch ``url`` to ``dest`` (via ``dest.part``); returns ``ok`` or ``present``.

    Raises DownloadError when the retries are spent, on a non-retryable HTTP error, or on a
    checksum mismatch (the file is deleted then).
    """
    dest = Path(dest)
    if dest.exists():
        if not sha256:
            log.info("%s: present, not verified (no sha256 in the manifest)", dest.name)
            return "present"
        if sha256_of(dest) == sha256:
            return "present"
        log.warning("%s: present but its sha256 differs; fetching it again", dest)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    fresh_retry_left = True
    attempt = 0
    while True:
        resumed = part.exists() and part.stat().st_size > 0
        try:
            fetch(url, part, timeout)
        except DownloadError as exc:
            if not exc.retry or attempt >= retries:
                if not exc.retry:
                    part.unlink(missing_ok=True)
                raise DownloadError(f"{exc} (after {attempt + 1} attempt(s))", False) from exc
            delay = backoff * 2**attempt
            attempt += 1
            log.warning("%s: %s; retry %d/%d in %.3gs", url, exc, attempt, retries, delay)
            sleep(delay)
            continue
        if sha256:
            got = sha256_of(part)
            if got != sha256:
                part.unlink(missing_ok=True)
                if resumed and fresh_retry_left:  # a stale part may be the culprit: once more
                    fresh_retry_left = False
                    log.warning("%s: sha256 mismatch after a resumed transfer; fetching it "
                                "whole once more", url)
                    continue
                raise DownloadError(
                    f"sha256 mismatch: expected {sha256}, got {got}; file deleted", False
                )
        part.replace(dest)
        return "ok"


def acquire(name: str, source: dict, out_dir: Path, seed: int) -> pd.DataFrame:
    """Download every manifest file; the table lists the ones that arrived intact."""
    if not source.get("manifest"):
        raise UserError(f"datasets.{name}.source.manifest: give the CSV of URLs to fetch")
    entries = read_manifest(Path(source["manifest"]).expanduser())
    retries = int(source.get("retries", 5))
    backoff = float(source.get("backoff", 1.0))
    timeout = float(source.get("timeout", 60))
    out_dir = Path(out_dir)
    files = out_dir / FILES_DIR
    files.mkdir(parents=True, exist_ok=True)

    rows, report = [], []
    for e in entries:
        dest = files / e.name
        rel = f"{FILES_DIR}/{e.name}"
        try:
            status = download(e.url, dest, e.sha256, retries, backoff, timeout)
            message = "" if e.sha256 else "not verified: no sha256 in the manifest"
            rows.append({"path": rel, "video_id": e.video_id, "label": e.label,
                         "split": e.split, "kind": e.kind, "group": e.group})
        except DownloadError as exc:
            status, message = "failed", str(exc)
            log.error("%s: download failed: %s", e.url, message)
        except OSError as exc:  # disk full, permissions
            status, message = "failed", f"{type(exc).__name__}: {exc}"
            log.error("%s: download failed: %s", e.url, message)
        report.append({"url": e.url, "status": status, "message": message, "path": rel})
    log_path = out_dir / LOG_NAME
    pd.DataFrame(report, columns=["url", "status", "message", "path"]).to_csv(log_path,
                                                                              index=False)
    failed = sum(r["status"] == "failed" for r in report)
    if failed:
        log.warning("%d of %d downloads failed; see %s", failed, len(report), log_path)
    if not rows:
        raise UserError(f"every download of {source['manifest']} failed; see {log_path} for the "
                        f"reason of each URL")
    return pd.DataFrame(rows, columns=["path", "video_id", "label", "split", "kind", "group"])
