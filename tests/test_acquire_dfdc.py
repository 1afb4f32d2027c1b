"""The DFDC layout: dfdc_train_part_*/metadata.json, fakes grouped with their original."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire import acquire, local, read_sources, write_sources
from deepfake_lth.data.acquire.layout import list_layout
from deepfake_lth.data.dataset_kind import dataset_kind
from deepfake_lth.data.pack import assign_splits

PARTS = {
    "dfdc_train_part_0": {
        "aaa.mp4": {"label": "REAL", "split": "train"},
        "fa1.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        "fa2.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        "bbb.mp4": {"label": "REAL", "split": "train"},
        "fb1.mp4": {"label": "FAKE", "split": "train", "original": "bbb.mp4"},
    },
    "dfdc_train_part_1": {
        **{f"r{i}.mp4": {"label": "REAL", "split": "train"} for i in range(6)},
        **{f"f{i}.mp4": {"label": "FAKE", "split": "train", "original": f"r{i}.mp4"}
           for i in range(6)},
    },
}


def make_dfdc(root: Path, absent: tuple[str, ...] = ()) -> None:
    for part, meta in PARTS.items():
        folder = root / part
        folder.mkdir(parents=True)
        (folder / "metadata.json").write_text(json.dumps(meta))
        for name in meta:
            if f"{part}/{name}" not in absent:
                (folder / name).write_bytes(b"x")


def test_labels_groups_and_one_split_per_group(tmp_path):
    make_dfdc(tmp_path / "wrapper" / "dfdc")  # a wrapper folder above the parts is found
    table = local.acquire("dfdc", {"path": str(tmp_path / "wrapper"), "layout": "dfdc"},
                          tmp_path / "out", 0)
    assert len(table) == 17 and (table["kind"] == "video").all() and (table["split"] == "").all()
    label = dict(zip(table["video_id"], table["label"]))
    group = dict(zip(table["video_id"], table["group"]))
    assert label["dfdc_train_part_0/aaa"] == 0 and label["dfdc_train_part_0/fa2"] == 1
    assert int(table["label"].sum()) == 9
    assert group["dfdc_train_part_0/fa1"] == group["dfdc_train_part_0/fa2"] == "aaa"
    assert group["dfdc_train_part_0/aaa"] == "aaa" and group["dfdc_train_part_1/f3"] == "r3"
    write_sources(table, tmp_path / "sources.csv")  # the contract's checks pass
    for seed in range(5):  # a fake always lands in its original's split
        split = assign_splits(table, {"train": 0.6, "val": 0.2, "test": 0.2}, seed)
        by_group = table.assign(split=table["video_id"].map(split)).groupby("group")["split"]
        assert (by_group.nunique() == 1).all()
        assert set(split) == {"train", "val", "test"}


def test_one_part_folder_and_the_kind(tmp_path):
    make_dfdc(tmp_path)
    table = list_layout(tmp_path / "dfdc_train_part_0", "dfdc", {})
    assert sorted(table["video_id"]) == [f"dfdc_train_part_0/{n}"
                                         for n in ("aaa", "bbb", "fa1", "fa2", "fb1")]
    cfg = {"datasets": {"d": {"source": {"type": "local", "layout": "dfdc"}}}}
    assert dataset_kind(cfg, "d", tmp_path / "nowhere") == "videos"


def test_absent_files_are_named_and_counted(tmp_path, caplog):
    absent = ("dfdc_train_part_0/fa2.mp4", "dfdc_train_part_1/r4.mp4")
    make_dfdc(tmp_path, absent)
    with caplog.at_level(logging.WARNING):
        table = list_layout(tmp_path, "dfdc", {})
    assert len(table) == 15
    assert "2 of 17 videos listed in metadata.json are not on disk" in caplog.text
    assert all(name in caplog.text for name in absent)


def test_nothing_on_disk_or_bad_metadata_is_an_error(tmp_path):
    make_dfdc(tmp_path / "a", absent=tuple(f"{p}/{n}" for p, m in PARTS.items() for n in m))
    with pytest.raises(UserError, match=r"17 of 17 videos.*not on disk.*Unpack"):
        list_layout(tmp_path / "a", "dfdc", {})
    make_dfdc(tmp_path / "b")
    meta = tmp_path / "b" / "dfdc_train_part_1" / "metadata.json"
    meta.write_text(json.dumps({"x.mp4": {"label": "MAYBE"}}))
    with pytest.raises(UserError, match=r"dfdc_train_part_1/metadata.json.*'x.mp4'.*REAL or FAKE"):
        list_layout(tmp_path / "b", "dfdc", {})
    meta.write_text("{not json")
    with pytest.raises(UserError, match=r"metadata.json: not readable as JSON"):
        list_layout(tmp_path / "b", "dfdc", {})
    (tmp_path / "c").mkdir()
    with pytest.raises(UserError, match=r"no dfdc_train_part_\*/metadata.json.*source.path"):
        list_layout(tmp_path / "c", "dfdc", {})


def test_the_schema_accepts_the_layout(tmp_path):
    from deepfake_lth.workflow import config as study_config

    cfg = study_config.read_yaml(Path(__file__).parents[1] / "config" / "smoke.yaml")
    cfg["datasets"]["d"] = {"source": {"type": "local", "path": str(tmp_path), "layout": "dfdc"}}
    assert study_config.validate(cfg)["datasets"]["d"]["source"]["layout"] == "dfdc"
    cfg["datasets"]["d"]["source"]["layout"] = "dfdcx"
    with pytest.raises(UserError, match="dfdc"):
        study_config.validate(cfg)


def test_absent_originals_are_named_noted_and_keep_their_fakes_together(tmp_path, caplog):
    # the originals aaa (2 fakes) and r4 (1 fake) are not on disk; fb1's original bbb is
    make_dfdc(tmp_path / "d", absent=("dfdc_train_part_0/aaa.mp4", "dfdc_train_part_1/r4.mp4"))
    with caplog.at_level(logging.WARNING):
        path = acquire("dfdc", {"type": "local", "path": str(tmp_path / "d"), "layout": "dfdc"},
                       tmp_path / "out")
    assert ("2 originals named by fakes in metadata.json are not on disk: aaa.mp4 (2 fakes), "
            "r4.mp4 (1 fake); their 3 fakes are kept") in caplog.text
    table = read_sources(path)
    notes = dict(zip(table["video_id"], table["note"]))
    assert notes["dfdc_train_part_0/fa1"] == notes["dfdc_train_part_0/fa2"] == (
        "original aaa.mp4 not on disk")
    assert notes["dfdc_train_part_1/f4"] == "original r4.mp4 not on disk"
    assert notes["dfdc_train_part_0/fb1"] == "" and notes["dfdc_train_part_0/bbb"] == ""
    assert set(table.loc[table["label"] == 1, "manipulation"]) == {"dfdc"}
    for seed in range(5):  # the orphaned fakes still go to one split together
        split = assign_splits(table, {"train": 0.6, "val": 0.2, "test": 0.2}, seed)
        assert split["dfdc_train_part_0/fa1"] == split["dfdc_train_part_0/fa2"]


def test_role_test_keeps_everything_as_test_and_unknown_manipulations_stop_early(tmp_path):
    make_dfdc(tmp_path / "d")
    source = {"type": "local", "path": str(tmp_path / "d"), "layout": "dfdc"}
    table = read_sources(acquire("dfdc", source, tmp_path / "t", role="test"))
    assert len(table) == 17 and set(table["split"]) == {"test"}  # DFDC fixes no split
    with pytest.raises(UserError, match=r"datasets.dfdc.train_manipulations: \['Deepfakes'\] "
                       r"are not manipulations of this dataset \(the files acquired name "
                       r"\['dfdc'\]\)"):
        acquire("dfdc", source, tmp_path / "m", train_manipulations=["Deepfakes"])
    assert not (tmp_path / "m" / "sources.csv").exists()
