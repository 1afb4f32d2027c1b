"""Download a Kaggle dataset with the official ``kaggle`` package and list it by layout.

``source: {type: kaggle, slug: owner/dataset, layout: <name>, ...}``: ``layout`` names a
module of ``deepfake_lth.data.acquire.LAYOUTS`` and the other keys are that layout's options.
The archive is fetched to ``<dataset>/download/``, checked member by member and extracted to
``<dataset>/data/`` (through ``data.tmp``, renamed when complete); ``sources.csv`` paths are
relative to the dataset folder. A completed extraction of the same slug is not fetched again.

Credentials: ``~/.kaggle/kaggle.json`` (or ``$KAGGLE_CONFIG_DIR/kaggle.json``), or the
environment variables ``KAGGLE_USERNAME`` and ``KAGGLE_KEY`` (``KAGGLE_API_TOKEN`` or
``~/.kaggle/access_token`` for the newer tokens).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import posixpath
import shutil
import stat
import zipfile
from pathlib import Path

import pandas as pd

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire.layout import DEFAULT, list_layout

log = logging.getLogger(__name__)

DOWNLOAD_DIR = "download"
DATA_DIR = "data"
MARKER = ".kaggle-complete.json"
CREDENTIALS_HELP = (
    "Kaggle credentials not found: put your API token in ~/.kaggle/kaggle.json "
    "(Kaggle > Settings > API > Create New Token; chmod 600 it) or set the environment "
    "variables KAGGLE_USERNAME and KAGGLE_KEY"
)


def _kaggle_installed() -> bool:
    try:
        return importlib.util.find_spec("kaggle") is not None
    except (ValueError, ImportError):  # a module in sys.modules without a spec
        return True


def check_credentials(env: dict | None = None, home: Path | None = None) -> str:
    """Where the Kaggle credentials come from; UserError naming both ways when there are none."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else Path(home)
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "environment (KAGGLE_USERNAME, KAGGLE_KEY)"
    if env.get("KAGGLE_API_TOKEN"):
        return "environment (KAGGLE_API_TOKEN)"
    config = Path(env["KAGGLE_CONFIG_DIR"]) if env.get("KAGGLE_CONFIG_DIR") else home / ".kaggle"
    token = config / "kaggle.json"
    if token.is_file():
        try:
            data = json.loads(token.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{token}: not readable JSON ({exc}); download a new token from "
                            f"Kaggle > Settings > API") from exc
        if not (isinstance(data, dict) and data.get("username") and data.get("key")):
            raise UserError(f'{token}: needs "username" and "key"; download a new token from '
                            f"Kaggle > Settings > API")
        return str(token)
    if (config / "access_token").is_file():
        return str(config / "access_token")
    partial = [k for k in ("KAGGLE_USERNAME", "KAGGLE_KEY") if env.get(k)]
    hint = f" ({partial[0]} is set but not the other)" if partial else ""
    raise UserError(f"{CREDENTIALS_HELP}{hint}; looked for {token}")


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _member_parts(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _check_member(info: zipfile.ZipInfo, target: str | None = None) -> None:
    """UserError when a member would land outside the folder it is extracted into."""
    name = info.filename
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or "\0" in norm:
        raise UserError(f"archive member {name!r} has an absolute path; refusing to extract")
    if ".." in _member_parts(name):
        raise UserError(f"archive member {name!r} has a '..' component; refusing to extract")
    if target is not None:
        t = target.replace("\\", "/")
        inside = posixpath.normpath(posixpath.join(posixpath.dirname(norm), t))
        if t.startswith("/") or inside == ".." or inside.startswith("../"):
            raise UserError(f"archive member {name!r} is a symlink to {target!r}, outside the "
                            f"extraction folder; refusing to extract")


def safe_extract(zip_path: str | Path, dest: str | Path) -> list[Path]:
    """Extract a zip into ``dest`` after checking every member; returns the files written.

    Refuses (UserError naming the member, before anything is written) absolute paths, ``..``
    components, symlinks pointing outside ``dest`` and members placed under a symlink.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{zip_path}: not a readable zip archive ({exc}); delete it and "
                        f"run again") from exc
    with zf:
        infos = zf.infolist()
        links: dict[str, str] = {}
        for info in infos:
            target = None
            if _is_link(info):
                target = zf.read(info).decode("utf-8", "replace")
                links["/".join(_member_parts(info.filename))] = target
            _check_member(info, target)
        for info in infos:
            parts = _member_parts(info.filename)
            for k in range(1, len(parts)):
                if "/".join(parts[:k]) in links:
                    raise UserError(f"archive member {info.filename!r} lies under the symlink "
                                    f"{'/'.join(parts[:k])!r}; refusing to extract")
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written = []
        for info in infos:
            parts = _member_parts(info.filename)
            if not parts:
                continue
            out = root.joinpath(*parts)
            if not out.resolve().is_relative_to(root):  # belt and braces
                raise UserError(f"archive member {info.filename!r} resolves outside {dest}")
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            if _is_link(info):
                out.unlink(missing_ok=True)
                out.symlink_to(links["/".join(parts)])
                continue
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            written.append(out)
    return written


def _download(slug: str, folder: Path) -> Path:
    """Fetch the dataset archive with the official client; returns the zip's path."""
    if not _kaggle_installed():
        raise UserError("source type kaggle needs the kaggle package: pip install kaggle")
    check_credentials()
    try:
        kaggle = importlib.import_module("kaggle")  # authenticates on import
    except Exception as exc:  # the client raises OSError/ValueError/... on bad credentials
        raise UserError(f"the kaggle client failed to start: {exc}. {CREDENTIALS_HELP}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading Kaggle dataset %s to %s", slug, folder)
    try:
        kaggle.api.dataset_download_files(slug, path=str(folder), unzip=False, quiet=False)
    except Exception as exc:  # HTTP 403/404 arrive as the client's own exception types
        raise UserError(
            f"Kaggle download of {slug} failed: {exc}. Check the slug (owner/dataset), that "
            f"you accepted the dataset's terms on kaggle.com, and your network"
        ) from exc
    expected = folder / f"{slug.split('/')[-1]}.zip"
    if expected.exists():
        return expected
    zips = sorted(folder.glob("*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips:
        raise UserError(f"Kaggle download of {slug} left no zip archive in {folder}")
    return zips[-1]


def fetch_dataset(slug: str, out_dir: Path, keep_zip: bool = False) -> Path:
    """Download and safely extract ``slug`` to ``out_dir/data`` (once); returns that folder."""
    out_dir = Path(out_dir)
    data = out_dir / DATA_DIR
    marker = data / MARKER
    if marker.exists():
        try:
            done = json.loads(marker.read_text()).get("slug")
        except ValueError:
            done = None
        if done == slug:
            log.info("%s: %s already extracted; not fetched again", data, slug)
            return data
        log.info("%s holds %s, not %s; fetching again", data, done, slug)
        shutil.rmtree(data)
    elif data.exists():
        raise UserError(f"{data} exists but was not extracted by this stage; move it away or "
                        f"use source type local with path: {data}")
    zip_path = _download(slug, out_dir / DOWNLOAD_DIR)
    tmp = out_dir / (DATA_DIR + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        files = safe_extract(zip_path, tmp)
    except UserError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / MARKER).write_text(json.dumps({"slug": slug, "archive": zip_path.name,
                                          "files": len(files)}))
    tmp.replace(data)
    log.info("%s: %d files extracted from %s", data, len(files), zip_path.name)
    if not keep_zip:
        zip_path.unlink(missing_ok=True)
    return data


def acquire(name: str, source: dict, out_dir: Path, seed: int) -> pd.DataFrame:
    """Fetch the Kaggle dataset and list it with its layout; paths relative to ``out_dir``."""
    slug = str(source.get("slug", ""))
    if slug.count("/") != 1 or not all(slug.split("/")):
        raise UserError(f"datasets.{name}.source.slug: {slug!r}; use owner/dataset as in "
                        f"kaggle.com/datasets/owner/dataset")
    out_dir = Path(out_dir)
    data = fetch_dataset(slug, out_dir, keep_zip=bool(source.get("keep_zip", False)))
    root = data
    if source.get("subdir"):
        sub = Path(str(source["subdir"]))
        if sub.is_absolute() or ".." in sub.parts:
            raise UserError(f"datasets.{name}.source.subdir: {sub} must be a folder inside "
                            f"the archive (relative, no '..')")
        root = data / sub
    table = list_layout(root, source.get("layout", DEFAULT), source, seed=seed, name=name)
    base = out_dir.resolve()
    table["path"] = [Path(p).relative_to(base).as_posix() for p in table["path"]]
    return table
