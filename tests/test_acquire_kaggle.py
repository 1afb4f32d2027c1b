"""Kaggle source: safe unzip, credential checks, and the flow with a stand-in client."""

from __future__ import annotations

import stat
import sys
import types
import zipfile
from pathlib import Path

import pytest

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire import acquire as acquire_dataset
from deepfake_lth.data.acquire import kaggle as kg
from deepfake_lth.data.acquire import read_sources

KAGGLE_ENV = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "KAGGLE_API_TOKEN")


def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()


def test_safe_extract_normal(tmp_path):
    z = make_zip(tmp_path / "ok.zip", {"Dataset/Train/Real/a.jpg": b"a", "top.txt": b"t",
                                       "Dataset/empty/": b""})
    written = kg.safe_extract(z, tmp_path / "out")
    assert (tmp_path / "out" / "Dataset/Train/Real/a.jpg").read_bytes() == b"a"
    assert (tmp_path / "out" / "Dataset/empty").is_dir()
    assert len(written) == 2


@pytest.mark.parametrize("member", ["../evil.txt", "sub/../../evil.txt", "..\\evil.txt"])
def test_safe_extract_rejects_parent(tmp_path, member):
    z = make_zip(tmp_path / "bad.zip", {"fine.txt": b"ok", member: b"pwned"})
    dest = tmp_path / "a" / "b"
    with pytest.raises(UserError, match=r"'\.\.'") as err:
        kg.safe_extract(z, dest)
    assert member.replace("\\", "\\\\") in str(err.value)
    # nothing written, inside or outside
    assert not list(tmp_path.rglob("evil.txt")) and files_under(dest) == set()


@pytest.mark.parametrize("member", ["/tmp/evil_abs.txt", "C:/evil.txt"])
def test_safe_extract_rejects_absolute(tmp_path, member):
    z = make_zip(tmp_path / "abs.zip", {member: b"pwned"})
    with pytest.raises(UserError, match="absolute path") as err:
        kg.safe_extract(z, tmp_path / "out")
    assert member in str(err.value)
    assert files_under(tmp_path / "out") == set()


def test_safe_extract_symlinks(tmp_path):
    z = make_zip(tmp_path / "l1.zip", {"a.txt": b"a"}, links={"link": "../../outside"})
    with pytest.raises(UserError, match="'link' is a symlink"):
        kg.safe_extract(z, tmp_path / "o1")
    z = make_zip(tmp_path / "l2.zip", {"a.txt": b"a"}, links={"abs": "/etc"})
    with pytest.raises(UserError, match="symlink"):
        kg.safe_extract(z, tmp_path / "o2")
    # a link that stays inside is fine, but nothing may be written through a link
    z = make_zip(tmp_path / "l3.zip", {"d/a.txt": b"a"}, links={"d/alias": "a.txt"})
    kg.safe_extract(z, tmp_path / "o3")
    assert (tmp_path / "o3/d/alias").is_symlink()
    assert (tmp_path / "o3/d/alias").read_bytes() == b"a"
    z = make_zip(tmp_path / "l4.zip", {"up/x.txt": b"x"}, links={"up": "."})
    with pytest.raises(UserError, match="under the symlink"):
        kg.safe_extract(z, tmp_path / "o4")


def test_safe_extract_not_a_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"truncated")
    with pytest.raises(UserError, match="x.zip.*not a readable zip"):
        kg.safe_extract(tmp_path / "x.zip", tmp_path / "out")


@pytest.fixture
def no_kaggle_env(monkeypatch, tmp_path):
    for k in KAGGLE_ENV:
        monkeypatch.delenv(k, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_credentials_missing_names_both_ways(no_kaggle_env, monkeypatch):
    with pytest.raises(UserError) as err:
        kg.check_credentials()
    msg = str(err.value)
    assert "kaggle.json" in msg and "KAGGLE_USERNAME" in msg and "KAGGLE_KEY" in msg
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    with pytest.raises(UserError, match="KAGGLE_USERNAME is set but not the other"):
        kg.check_credentials()
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    assert "KAGGLE_USERNAME" in kg.check_credentials()


def test_credentials_from_file(no_kaggle_env):
    token = no_kaggle_env / ".kaggle" / "kaggle.json"
    token.parent.mkdir()
    token.write_text('{"username": "me"}')
    with pytest.raises(UserError, match=r"kaggle.json.*key"):
        kg.check_credentials()
    token.write_text('{"username": "me", "key": "k"}')
    assert kg.check_credentials() == str(token)


def test_package_missing(no_kaggle_env, monkeypatch, tmp_path):
    monkeypatch.setattr(kg, "_kaggle_installed", lambda: False)
    with pytest.raises(UserError, match="pip install kaggle"):
        kg.acquire("d", {"type": "kaggle", "slug": "o/d"}, tmp_path / "ds", 0)


def test_flow_with_stand_in_client(no_kaggle_env, monkeypatch, tmp_path):
    """The whole stage with a stand-in ``kaggle`` module: download, unzip, list, cache."""
    calls = []

    def dataset_download_files(slug, path=None, unzip=True, **kw):
        calls.append((slug, unzip))
        members = {f"Dataset/{s}/{c}/{c.lower()}_{i}.jpg": b"x"
                   for s in ("Train", "Validation", "Test") for c in ("Real", "Fake")
                   for i in range(2)}
        make_zip(Path(path) / f"{slug.split('/')[1]}.zip", members)

    stub = types.ModuleType("kaggle")
    stub.api = types.SimpleNamespace(dataset_download_files=dataset_download_files)
    monkeypatch.setitem(sys.modules, "kaggle", stub)
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    monkeypatch.setenv("KAGGLE_KEY", "k")

    src = {"type": "kaggle", "slug": "manjilkarki/deepfake-and-real-images",
           "layout": "openforensics"}
    out = tmp_path / "resources" / "openforensics"
    table = read_sources(acquire_dataset("openforensics", src, out))
    assert calls == [("manjilkarki/deepfake-and-real-images", False)]
    assert len(table) == 12 and set(table["split"]) == {"train", "val", "test"}
    assert all(not Path(p).is_absolute() and (out / p).is_file() for p in table["path"])
    assert not list((out / "download").glob("*.zip"))  # the archive is removed once extracted
    acquire_dataset("openforensics", src, out)
    assert len(calls) == 1  # extracted data of the same slug is reused


def test_bad_slug(tmp_path):
    with pytest.raises(UserError, match="owner/dataset"):
        kg.acquire("d", {"type": "kaggle", "slug": "just-a-name"}, tmp_path, 0)
