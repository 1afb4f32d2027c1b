"""The manipulation column: sources.csv per layout, carried into the manifest, and the
leave-one-manipulation-out split of pack (train_manipulations)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_acquire_local import make_celebdf, make_ff, touch
from test_data_stage import _shards

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire import acquire, read_sources, write_sources
from deepfake_lth.data.acquire.folders import folder_manipulation
from deepfake_lth.data.pack import HELD_OUT, pack
from deepfake_lth.data.store import load_manifest, load_splits


def test_faceforensics_names_the_method_and_keeps_ids_apart(tmp_path):
    make_ff(tmp_path / "ff", with_splits=True)
    path = acquire("ff", {"type": "local", "path": str(tmp_path / "ff"),
                          "layout": "faceforensics", "methods": ["Deepfakes", "FaceSwap"]},
                   tmp_path / "out")
    table = read_sources(path)
    fakes, reals = table[table["label"] == 1], table[table["label"] == 0]
    assert set(fakes["manipulation"]) == {"Deepfakes", "FaceSwap"}
    assert set(reals["manipulation"]) == {""}
    # 000_003 under both methods: two videos, not one
    same = fakes[fakes["path"].str.endswith("/000_003.mp4")]
    assert sorted(same["video_id"]) == ["Deepfakes/000_003", "FaceSwap/000_003"]
    assert table["video_id"].is_unique


def test_celebdf_openforensics_folders(tmp_path):
    make_celebdf(tmp_path / "celeb")
    celeb = read_sources(acquire("c", {"type": "local", "path": str(tmp_path / "celeb"),
                                       "layout": "celebdf"}, tmp_path / "c"))
    assert set(celeb.loc[celeb["label"] == 1, "manipulation"]) == {"Celeb-synthesis"}
    touch(tmp_path / "tree", "train/real/a.mp4", "train/fake/Deepfakes/b.mp4",
          "test/fake/FaceSwap/b.mp4", "test/fake/c.mp4")
    tree = read_sources(acquire("t", {"type": "local", "path": str(tmp_path / "tree")},
                                tmp_path / "t"))
    by_id = dict(zip(tree["video_id"], tree["manipulation"]))
    assert by_id == {"train/real/a": "", "train/fake/Deepfakes/b": "Deepfakes",
                     "test/fake/FaceSwap/b": "FaceSwap", "test/fake/c": "fake"}
    assert folder_manipulation("/x/Fake/NT/y/z.mp4", ["fake"]) == "NT"
    assert folder_manipulation("/fake/a/Fake/NT/z.mp4", ["fake"], root="/fake/a") == "NT"


def test_one_video_id_of_two_manipulations_is_an_error(tmp_path):
    table = pd.DataFrame({"path": ["a/1.mp4", "b/1.mp4"], "video_id": ["1", "1"],
                          "label": [1, 1], "kind": "video",
                          "manipulation": ["Deepfakes", "FaceSwap"]})
    with pytest.raises(UserError, match="sources.csv.*more than one manipulation"):
        write_sources(table, tmp_path / "sources.csv")


def _packed(tmp_path, train_manipulations=None):
    # 24 real, 12 + 12 fake videos of two manipulations; group g{i} pairs a fake with a real
    videos = [(f"v{i}", i % 2, "", f"g{i // 2}") for i in range(48)]
    faces_dir = tmp_path / "demo" / "faces"
    sources = _shards(faces_dir, videos, [])
    table = pd.read_csv(sources)
    table["manipulation"] = [("" if lab == 0 else ("swap" if i % 4 == 1 else "mouth"))
                             for i, lab in enumerate(table["label"])]
    table.to_csv(sources, index=False)
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    summary = pack(faces_dir, sources, 2, fractions, 0, train_manipulations=train_manipulations)
    return faces_dir, summary


def test_pack_carries_the_manipulation_and_holds_out_the_others(tmp_path):
    faces_dir, summary = _packed(tmp_path / "all")
    manifest = load_manifest(faces_dir)
    assert summary["manipulations"] == {"mouth": 12, "swap": 12}
    assert set(manifest.loc[manifest["label"] == 0, "manipulation"]) == {""}
    assert HELD_OUT not in set(manifest["split"])

    faces_dir, summary = _packed(tmp_path / "loo", ["swap"])
    manifest = load_manifest(faces_dir)
    train, val, test = load_splits(faces_dir, mmap=False)
    fake_methods = {s: set(manifest.loc[(manifest["split"] == s) & (manifest["label"] == 1),
                                        "manipulation"]) for s in ("train", "val", "test")}
    assert fake_methods == {"train": {"swap"}, "val": {"swap"}, "test": {"swap", "mouth"}}
    held = manifest[manifest["split"] == HELD_OUT]
    assert len(held) == summary["held_out_faces"] > 0
    assert set(held["manipulation"]) == {"mouth"}
    assert not set(held["video_id"]) & set(np.concatenate([train.video_ids, val.video_ids,
                                                           test.video_ids]))
    # the split by group is the same as without holding out: the test split is unchanged
    all_manifest = load_manifest(tmp_path / "all" / "demo" / "faces")
    assert (all_manifest.loc[all_manifest["split"] == "test", "video_id"].tolist()
            == manifest.loc[manifest["split"] == "test", "video_id"].tolist())


def test_a_split_left_without_fakes_names_the_key(tmp_path):
    faces_dir = tmp_path / "one" / "faces"
    videos = [(f"v{i}", i % 2, ["train", "val", "test"][i // 4 % 3], "") for i in range(24)]
    sources = _shards(faces_dir, videos, [])
    table = pd.read_csv(sources, keep_default_na=False)
    # the train split's fakes are all "mouth": training on "swap" leaves it without fakes
    table["manipulation"] = [("" if lab == 0 else "mouth" if split == "train" else "swap")
                             for lab, split in zip(table["label"], table["split"])]
    table.to_csv(sources, index=False)
    with pytest.raises(UserError, match="leave no fake in the train split"):
        pack(faces_dir, sources, 2, {"train": 0.5, "val": 0.25, "test": 0.25}, 0,
             train_manipulations=["swap"])


def test_unknown_train_manipulation_names_the_key(tmp_path):
    with pytest.raises(UserError, match=r"datasets.demo.train_manipulations: \['NT'\].*swap"):
        _packed(tmp_path, ["NT"])


def test_synthetic_videos_cycle_through_families(tmp_path):
    source = {"type": "synthetic", "kind": "videos", "identities": 3, "videos_per_class": 3,
              "frames": 2, "width": 64, "height": 64, "seed": 5}
    one = read_sources(acquire("one", source, tmp_path / "one"))
    two = read_sources(acquire("two", {**source, "families": ["swap", "mouth"]}, tmp_path / "two"))
    assert set(one.loc[one["label"] == 1, "manipulation"]) == {"swap"}
    fakes = two[two["label"] == 1]
    assert fakes["manipulation"].tolist() == ["swap", "mouth", "swap"]
    assert set(two.loc[two["label"] == 0, "manipulation"]) == {""}
    # the swap fakes are the same bytes with or without the second family
    for rel in fakes.loc[fakes["manipulation"] == "swap", "path"]:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    mouth = fakes.loc[fakes["manipulation"] == "mouth", "path"].item()
    assert "_mouth_" in mouth and (tmp_path / "two" / mouth).stat().st_size > 0


def test_splits_hold_every_manipulation_in_test_with_train_manipulations():
    from deepfake_lth.data.pack import assign_splits

    rows = [(f"r{i}", 0, "") for i in range(20)]
    rows += [(f"f{i}", 1, "swap" if i % 2 else "mouth") for i in range(10)]
    videos = pd.DataFrame(rows, columns=["video_id", "label", "manipulation"]).assign(
        split="", group="")
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    for seed in range(6):
        split = assign_splits(videos, fractions, seed, ["swap"])
        fakes = videos[videos["label"] == 1].assign(split=lambda d: d["video_id"].map(split))
        by_split = fakes.groupby("split")["manipulation"].agg(set)
        assert by_split["test"] == {"swap", "mouth"}, seed
        assert "swap" in by_split["train"] and "swap" in by_split["val"], seed
