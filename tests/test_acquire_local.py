"""Listing of datasets already on disk: folders, OpenForensics, FaceForensics++, Celeb-DF."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire import local, write_sources
from deepfake_lth.data.acquire.celebdf import read_celebdf_test_list
from deepfake_lth.data.acquire.layout import list_layout


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def split_of(table: pd.DataFrame) -> dict[str, str]:
    """video_id -> its split, asserting one split per video."""
    per = table.groupby("video_id")["split"].unique()
    assert all(len(s) == 1 for s in per), per[per.map(len) > 1]
    return {v: s[0] for v, s in per.items()}


# --------------------------------------------------------------------------- FaceForensics++

FF_IDS = [("000", "003"), ("001", "870"), ("002", "006"), ("004", "982"), ("005", "010")]


def make_ff(root: Path, with_splits: bool) -> None:
    ids = [i for pair in FF_IDS for i in pair]
    for comp in ("c23", "c40"):
        touch(root, *[f"original_sequences/youtube/{comp}/videos/{i}.mp4" for i in ids])
        for method in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter"):
            touch(root, *[
                f"manipulated_sequences/{method}/{comp}/videos/{a}_{b}.mp4"
                for a, b in FF_IDS for a, b in ((a, b), (b, a))
            ])
    touch(root, "manipulated_sequences/Deepfakes/masks/videos/000_003.mp4")  # not a video set
    if with_splits:
        (root / "splits").mkdir()
        chosen = {"train": FF_IDS[:3], "val": FF_IDS[3:4], "test": FF_IDS[4:]}
        for split, pairs in chosen.items():
            (root / "splits" / f"{split}.json").write_text(json.dumps([list(p) for p in pairs]))


def test_faceforensics_official_splits(tmp_path):
    make_ff(tmp_path / "FF", with_splits=True)
    table = list_layout(tmp_path / "FF", "faceforensics",
                              {"compression": "c40", "methods": ["Deepfakes", "FaceSwap"]})
    # only the chosen compression and methods, nothing from masks/
    assert all("/c40/videos/" in p for p in table["path"])
    assert set(table["video_id"].str.split("/").str[0]) == {"original", "Deepfakes", "FaceSwap"}
    assert (table["label"] == 0).sum() == 10 and (table["label"] == 1).sum() == 20
    assert all(Path(p).is_absolute() and Path(p).exists() for p in table["path"])
    splits = split_of(table)
    expected = {"000": "train", "003": "train", "001": "train", "870": "train", "002": "train",
                "006": "train", "004": "val", "982": "val", "005": "test", "010": "test"}
    for vid, split in splits.items():
        ids = vid.split("/")[1].split("_")
        # a fake is in the split of its pair, so with both its target and source videos
        assert all(expected[i] == split for i in ids), (vid, split)
    assert splits["Deepfakes/010_005"] == "test" and splits["original/982"] == "val"
    write_sources(table, tmp_path / "sources.csv")  # the contract's checks pass


def test_faceforensics_without_splits_groups_pairs(tmp_path):
    make_ff(tmp_path / "wrapper" / "FaceForensics++", with_splits=False)
    # a wrapper folder above the tree is found
    table = list_layout(tmp_path / "wrapper", "faceforensics", {})
    assert (table["split"] == "").all()
    assert set(table["video_id"].str.split("/").str[0]) == {
        "original", "Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"}
    assert all("/c23/" in p for p in table["path"])
    group = dict(zip(table["video_id"], table["group"]))
    for a, b in FF_IDS:
        pair = "_".join(sorted((a, b)))
        assert group[f"original/{a}"] == group[f"original/{b}"] == pair
        assert group[f"Deepfakes/{a}_{b}"] == group[f"Face2Face/{b}_{a}"] == pair
    assert table["group"].nunique() == len(FF_IDS)


def test_faceforensics_missing_compression_names_path(tmp_path):
    make_ff(tmp_path / "FF", with_splits=False)
    with pytest.raises(UserError, match=r"youtube/c0/videos.*faceforensics"):
        list_layout(tmp_path / "FF", "faceforensics", {"compression": "c0"})
    with pytest.raises(UserError, match=r"methods.*Bogus.*choose from"):
        list_layout(tmp_path / "FF", "faceforensics", {"methods": ["Bogus"]})


def test_faceforensics_bad_split_file(tmp_path):
    make_ff(tmp_path / "FF", with_splits=True)
    (tmp_path / "FF" / "splits" / "val.json").write_text('{"not": "pairs"}')
    with pytest.raises(UserError, match="val.json"):
        list_layout(tmp_path / "FF", "faceforensics", {})


# --------------------------------------------------------------------------- Celeb-DF


def make_celebdf(root: Path) -> None:
    touch(root, "Celeb-real/id0_0000.mp4", "Celeb-real/id0_0001.mp4", "Celeb-real/id1_0000.mp4",
          "Celeb-real/id2_0003.mp4",
          "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id0_id2_0001.mp4",
          "Celeb-synthesis/id1_id0_0000.mp4", "Celeb-synthesis/id2_id1_0003.mp4",
          "YouTube-real/00000.mp4", "YouTube-real/00170.mp4", "YouTube-real/notes.txt")
    (root / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00170.mp4\n1 Celeb-real/id2_0003.mp4\n"
        "0 Celeb-synthesis/id2_id1_0003.mp4\n0 Celeb-synthesis/id9_id8_0000.mp4\n"
    )


def test_celebdf_test_list(tmp_path):
    make_celebdf(tmp_path / "Celeb-DF-v2")
    table = local.acquire("celeb", {"path": str(tmp_path / "Celeb-DF-v2"), "layout": "celebdf"},
                          tmp_path / "out", 0)
    assert len(table) == 10 and (table["kind"] == "video").all()
    tests = set(table.loc[table["split"] == "test", "video_id"])
    assert tests == {"YouTube-real/00170", "Celeb-real/id2_0003", "Celeb-synthesis/id2_id1_0003"}
    # every other video is left to pack, so no test video can reach train or val
    assert set(table.loc[table["split"] != "test", "split"]) == {""}
    assert not tests & set(table.loc[table["split"] == "", "video_id"])
    label = dict(zip(table["video_id"], table["label"]))
    assert label["YouTube-real/00170"] == 0 and label["Celeb-real/id0_0000"] == 0
    assert label["Celeb-synthesis/id2_id1_0003"] == 1
    assert int(table["label"].sum()) == 4
    group = dict(zip(table["video_id"], table["group"]))
    assert group["Celeb-synthesis/id0_id1_0000"] == "id0" == group["Celeb-real/id0_0001"]
    assert group["Celeb-synthesis/id1_id0_0000"] == "id1"
    assert group["YouTube-real/00000"] == ""


def test_read_celebdf_test_list_convention(tmp_path):
    p = tmp_path / "List_of_testing_videos.txt"
    p.write_text("1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id0_id16_0000.mp4\n")
    got = read_celebdf_test_list(p)
    assert got == {("youtube-real", "00170.mp4"): 0, ("celeb-synthesis", "id0_id16_0000.mp4"): 1}
    p.write_text("YouTube-real/00170.mp4\n")
    with pytest.raises(UserError, match=r"List_of_testing_videos.txt:1"):
        read_celebdf_test_list(p)


def test_celebdf_missing_folder(tmp_path):
    touch(tmp_path / "cdf", "Celeb-real/id0_0000.mp4")
    with pytest.raises(UserError, match=r"Celeb-synthesis.*celebdf"):
        list_layout(tmp_path / "cdf", "celebdf", {})
    with pytest.raises(UserError, match=r"nowhere.*celebdf"):
        list_layout(tmp_path / "nowhere", "celebdf", {})


# --------------------------------------------------------------------------- OpenForensics


def test_openforensics_keeps_splits(tmp_path):
    root = tmp_path / "kaggle"
    for split in ("Train", "Validation", "Test"):
        touch(root, *[f"Dataset/{split}/{c}/{c.lower()}_{i}.jpg"
                      for c in ("Real", "Fake") for i in range(3)])
    touch(root, "Dataset/Train/Real/readme.txt", "__MACOSX/Dataset/Train/Real/._real_0.jpg")
    table = list_layout(root, "openforensics", {})
    assert len(table) == 18 and (table["kind"] == "image").all()
    assert table.groupby("split").size().to_dict() == {"test": 6, "train": 6, "val": 6}
    assert table.groupby(["split", "label"]).size().eq(3).all()
    # same file names in every split, yet each image is its own unit
    assert table["video_id"].is_unique
    row = table[table["video_id"] == "Validation/Fake/fake_2"].iloc[0]
    assert (row["split"], row["label"]) == ("val", 1)


def test_openforensics_missing_class_folder(tmp_path):
    touch(tmp_path, "Train/Real/a.jpg", "Test/Real/b.jpg", "Test/Fake/c.jpg")
    with pytest.raises(UserError, match=r"Train.*Fake"):
        list_layout(tmp_path, "openforensics", {})


# --------------------------------------------------------------------------- folders


def test_folders_custom_class_names(tmp_path):
    touch(tmp_path, "genuine/clip1.mp4", "genuine/sub/clip2.AVI", "forged/x.png", "forged/y.jpeg",
          "forged/z.mp4", "other/ignored.mp4", "genuine/notes.csv")
    table = list_layout(tmp_path, "folders",
                              {"real_names": ["genuine"], "fake_names": ["forged"]})
    got = {(v, k, lab) for v, k, lab in zip(table["video_id"], table["kind"], table["label"])}
    assert got == {("genuine/clip1", "video", 0), ("genuine/sub/clip2", "video", 0),
                   ("x", "image", 1), ("y", "image", 1), ("forged/z", "video", 1)}
    assert (table["split"] == "").all()
    with pytest.raises(UserError, match=r"no video or image files under folders named"):
        list_layout(tmp_path, "folders", {})  # default names find nothing here


def test_folders_splits_and_frames_regex(tmp_path):
    # the nanduncs/1000-videos-split shape: frames named <video>_<frame>.png
    root = tmp_path / "1000_videos"
    touch(root, "train/real/000_0.png", "train/real/000_1.png", "train/fake/000_003_0.png",
          "validation/real/129_0.png", "test/real/129_1.png", "test/fake/005_010_7.png",
          "Valid/REAL/042_3.png")
    table = list_layout(tmp_path, "folders", {"group_regex": r"^(.+)_\d+$"})
    splits = split_of(table)
    assert splits["000"] == "train" and splits["000_003"] == "train"
    assert splits["042"] == "val" and splits["005_010"] == "test"
    # video 129 appears under validation and test in the source: moved whole to test
    assert splits["129"] == "test"
    assert (table.loc[table["video_id"] == "000", "label"] == 0).all()
    assert (table.loc[table["video_id"] == "000_003", "label"] == 1).all()


def test_folders_colliding_stems_without_regex(tmp_path):
    touch(tmp_path, "train/real/a.jpg", "test/real/a.jpg", "train/fake/b.jpg")
    table = list_layout(tmp_path, "folders", {})
    assert table["video_id"].is_unique
    assert set(table["video_id"]) == {"train/real/a", "test/real/a", "train/fake/b"}
    assert split_of(table)["test/real/a"] == "test"


def test_missing_folder_names_path_and_layout(tmp_path):
    with pytest.raises(UserError, match=r"absent.*openforensics"):
        local.acquire("x", {"path": str(tmp_path / "absent"), "layout": "openforensics"},
                      tmp_path, 0)
    with pytest.raises(UserError, match="unknown layout"):
        local.acquire("x", {"path": str(tmp_path), "layout": "zip"}, tmp_path, 0)


def test_role_test_keeps_the_test_list_of_celebdf(tmp_path):
    from deepfake_lth.data.acquire import acquire, read_sources

    make_celebdf(tmp_path / "cdf")
    source = {"type": "local", "path": str(tmp_path / "cdf"), "layout": "celebdf"}
    table = read_sources(acquire("celebdf", source, tmp_path / "out", role="test"))
    assert set(table["video_id"]) == {"YouTube-real/00170", "Celeb-real/id2_0003",
                                      "Celeb-synthesis/id2_id1_0003"}
    assert set(table["split"]) == {"test"}


def test_a_folders_tree_checks_train_manipulations_at_acquisition(tmp_path):
    from deepfake_lth.data.acquire import acquire

    touch(tmp_path / "tree", "real/a.mp4", "fake/FaceSwap/b.mp4", "fake/Deepfakes/c.mp4")
    source = {"type": "local", "path": str(tmp_path / "tree")}
    acquire("t", source, tmp_path / "ok", train_manipulations=["FaceSwap"])
    with pytest.raises(UserError, match=r"datasets.t.train_manipulations: \['NoSuchMethod'\].*"
                       r"\['Deepfakes', 'FaceSwap'\]"):
        acquire("t", source, tmp_path / "bad", train_manipulations=["NoSuchMethod"])


def test_the_acquire_and_pack_commands_take_the_role_and_train_manipulations(tmp_path, capsys):
    from deepfake_lth.cli import main

    touch(tmp_path / "tree", "train/real/a.mp4", "train/fake/X/b.mp4", "test/real/c.mp4",
          "test/fake/X/d.mp4")
    source = json.dumps({"type": "local", "path": str(tmp_path / "tree")})
    base = ["acquire", "--dataset", "t", "--source", source, "--out"]
    assert main([*base, str(tmp_path / "bad"), "--train-manipulations", '["Y"]']) == 2
    assert "datasets.t.train_manipulations: ['Y']" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "ok"), "--role", "test"]) == 0
    table = pd.read_csv(tmp_path / "ok" / "sources.csv", keep_default_na=False)
    assert sorted(table["video_id"]) == ["test/fake/X/d", "test/real/c"]
    args = ["pack", "--faces", "f", "--sources", "s", "--shards", "1", "--split", "{}",
            "--role", "test", "--shard-dir", "elsewhere"]
    from deepfake_lth.cli import build_parser

    parsed = build_parser(args).parse_args(args)
    assert (parsed.role, parsed.shard_dir) == ("test", "elsewhere")
