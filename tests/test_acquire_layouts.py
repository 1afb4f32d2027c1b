"""Dataset layouts as a registry: one module and one line in LAYOUTS each; the config schema's
layout names and per-layout keys, acquisition and the dataset's kind all read it."""

from __future__ import annotations

import copy
import re
import textwrap
from pathlib import Path

import pytest

from deepfake_lth.core.errors import ConfigError, UserError
from deepfake_lth.data.acquire import LAYOUTS, acquire, read_sources
from deepfake_lth.data.acquire import layout as layouts
from deepfake_lth.data.dataset_kind import dataset_kind
from deepfake_lth.workflow import config as study_config

ROOT = Path(__file__).resolve().parents[1]

TOY = '''
"""A toy layout: <root>/<real|fake>_<n>.<suffix>, every fake made by 'toymethod'."""
from pathlib import Path

from deepfake_lth.data.acquire.layout import frame, row, walk_files

HELP = "real_<n>.png and fake_<n>.png"
KIND = "images"
OPTIONS = {"suffix": {"type": "string", "default": ".png", "description": "file suffix"}}


def manipulations(options):
    return ["toymethod"]


def list_files(root: Path, options: dict):
    rows = [row(p, p.stem, int(p.stem.startswith("fake")), manipulation="toymethod")
            for p in walk_files(root) if p.name.endswith(options["suffix"])]
    return frame(rows)
'''


@pytest.fixture
def smoke() -> dict:
    return study_config.read_yaml(ROOT / "config" / "smoke.yaml")


@pytest.fixture
def toy(tmp_path, monkeypatch) -> Path:
    """A layout added as the recipe says: its module (here in a temporary folder on the path)
    and one registry line; returns a tree in that layout."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "toy_layout.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setitem(LAYOUTS, "toy", "toy_layout")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        for cls in ("real", "fake"):
            (data / f"{cls}_{i}.png").write_bytes(b"x")
    (data / "notes.txt").write_text("not listed")
    return data


def test_a_toy_layout_is_one_module_and_one_registry_line(toy, smoke, tmp_path):
    cfg = copy.deepcopy(smoke)
    cfg["datasets"]["t"] = {"source": {"type": "local", "path": str(toy), "layout": "toy"}}
    out = study_config.validate(cfg)
    assert out["datasets"]["t"]["source"]["suffix"] == ".png"  # its option's default
    assert "real_names" not in out["datasets"]["t"]["source"]  # no other layout's keys
    # its own key is accepted, another layout's refused with the allowed keys named
    cfg["datasets"]["t"]["source"]["suffix"] = ".png"
    study_config.validate(cfg)
    cfg["datasets"]["t"]["source"]["compression"] = "c23"
    with pytest.raises(ConfigError, match=r"unknown key 'compression' under "
                       r"'datasets.t.source' \(layout toy\); allowed keys: layout, path, "
                       r"suffix, type"):
        study_config.validate(cfg)
    del cfg["datasets"]["t"]["source"]["compression"]
    # its manipulations are known before listing: validate-config checks train_manipulations
    cfg["datasets"]["t"]["train_manipulations"] = ["other"]
    with pytest.raises(ConfigError, match=r"datasets.t.train_manipulations: \['other'\].*"
                       r"toymethod"):
        study_config.validate(cfg)

    # acquisition lists its files; its KIND decides the kind before anything is acquired
    table = read_sources(acquire("t", out["datasets"]["t"]["source"], tmp_path / "res" / "t"))
    assert sorted(table["video_id"]) == [f"{c}_{i}" for c in ("fake", "real") for i in range(3)]
    assert set(table.loc[table["label"] == 1, "manipulation"]) == {"toymethod"}
    assert set(table.loc[table["label"] == 0, "manipulation"]) == {""}
    assert dataset_kind(out, "t", tmp_path / "nothing") == "images"


def test_the_schema_names_the_registered_layouts(toy):
    schema = study_config.load_schema()
    source = schema["properties"]["datasets"]["additionalProperties"]["properties"]["source"]
    for branch in source["allOf"]:
        if branch["if"]["properties"]["type"]["const"] in ("local", "kaggle"):
            fragment = branch["then"]["allOf"][0]
            assert fragment["properties"]["layout"]["enum"] == list(LAYOUTS)
            assert "toy" in fragment["properties"]["layout"]["enum"]
    raw = (ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text()
    for name in ("faceforensics", "celebdf", "dfdc", "openforensics", "group_regex",
                 "test_list", "split_dir"):  # never spelt in the schema itself
        assert not re.search(rf"\b{name}\b", raw), name


def test_every_layout_module_has_the_parts_the_registry_reads():
    for name in LAYOUTS:
        mod = layouts.module(name)
        assert isinstance(mod.HELP, str) and mod.HELP, name
        assert mod.KIND in ("images", "videos", None), name
        assert isinstance(mod.OPTIONS, dict), name
        assert all("default" in spec for spec in mod.OPTIONS.values()), name
        assert callable(mod.list_files), name


def test_keys_of_another_layout_and_unknown_layouts_are_refused(smoke, tmp_path):
    cfg = copy.deepcopy(smoke)
    cfg["datasets"]["c"] = {"source": {"type": "local", "path": str(tmp_path),
                                       "layout": "celebdf", "group_regex": "x"}}
    with pytest.raises(ConfigError, match=r"unknown key 'group_regex' under 'datasets.c.source' "
                       r"\(layout celebdf\); allowed keys: layout, path, test_list, type"):
        study_config.validate(cfg)
    # the folders layout is the default: its keys need no `layout`
    cfg["datasets"]["c"]["source"] = {"type": "local", "path": str(tmp_path), "group_regex": "x"}
    assert study_config.validate(cfg)["datasets"]["c"]["source"]["layout"] == "folders"
    # an unknown layout is named once, with the registered ones, not as unknown keys
    cfg["datasets"]["c"]["source"]["layout"] = "zip"
    with pytest.raises(ConfigError) as err:
        study_config.validate(cfg)
    assert "'datasets.c.source.layout': 'zip' is not one of 'folders'" in str(err.value)
    assert "unknown key" not in str(err.value)
    with pytest.raises(UserError, match="unknown layout 'zip'; use one of folders"):
        layouts.list_layout(tmp_path, "zip", {})


def test_kaggle_sources_take_the_layout_keys_too(smoke):
    cfg = copy.deepcopy(smoke)
    cfg["datasets"]["k"] = {"source": {"type": "kaggle", "slug": "a/b", "layout": "folders",
                                       "group_regex": "^(.+)_\\d+$"}}
    src = study_config.validate(cfg)["datasets"]["k"]["source"]
    assert src["group_regex"] == "^(.+)_\\d+$" and src["keep_zip"] is False
    assert src["real_names"] == ["real", "original", "originals", "pristine"]
