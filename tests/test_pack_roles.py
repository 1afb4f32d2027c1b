"""Packing a dataset only scored (role test) and a dataset that reads another's faces
(faces_from: the shards of another dataset)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_data_stage import _shards

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.pack import pack

FRACTIONS = {"train": 0.5, "val": 0.25, "test": 0.25}


def _mark_crops(faces_dir, shards: int = 2) -> None:
    """Give every crop the number of its video (v7 -> 7), so the packed rows can be traced."""
    for shard in range(shards):
        prefix = faces_dir / "shards" / f"shard{shard}"
        crops = pd.read_csv(prefix.with_suffix(".csv"), dtype={"video_id": str})
        values = [int(v[1:]) for v in crops["video_id"]]
        np.save(prefix.with_suffix(".npy"),
                np.array(values, np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8))


def _packed_values(faces_dir) -> dict[str, set[int]]:
    manifest = pd.read_csv(faces_dir / "manifest.csv", dtype={"video_id": str})
    faces = np.load(faces_dir / "faces.npy")
    assert len(faces) == len(manifest)
    return {v: {int(faces[i, 0, 0, 0]) for i in rows}
            for v, rows in manifest.groupby("video_id")["index"]}


def test_role_test_keeps_the_sources_test_split_only(tmp_path):
    # a Celeb-DF-like source: a test list (both classes), every other video free and real
    videos = [(f"v{i}", i % 2, "test", "") for i in range(8)]
    videos += [(f"v{i}", 0, "", "") for i in range(8, 14)]
    faces_dir = tmp_path / "celebdf" / "faces"
    sources = _shards(faces_dir, videos, ["no_face"])
    _mark_crops(faces_dir)
    with pytest.raises(UserError, match="the (train|val) split has .* 0 fake"):
        pack(faces_dir, sources, 2, FRACTIONS, 0)  # trained on, it cannot be packed
    summary = pack(faces_dir, sources, 2, FRACTIONS, 0, role="test")
    manifest = pd.read_csv(faces_dir / "manifest.csv", dtype={"video_id": str})
    assert set(manifest["video_id"]) == {f"v{i}" for i in range(8)}
    assert set(manifest["split"]) == {"test"}
    assert manifest["index"].tolist() == list(range(len(manifest)))
    # faces.npy holds exactly the crops of the videos kept, each under its own row
    assert _packed_values(faces_dir) == {f"v{i}": {i} for i in range(8)}
    assert summary["role"] == "test" and summary["faces"] == 16
    assert summary["splits"]["test"]["real_videos"] == summary["splits"]["test"]["fake_videos"] == 4
    assert summary["splits"]["train"]["faces"] == summary["splits"]["val"]["faces"] == 0
    assert all(" test split " in w for w in summary["warnings"])  # only test is judged
    log = pd.read_csv(faces_dir / "extraction_log.csv", dtype={"video_id": str},
                      keep_default_na=False)
    assert set(log.loc[log["video_id"].isin(["v0", "v1"]), "split"]) == {"test"}
    assert set(log.loc[log["video_id"] == "v9", "split"]) == {""}  # listed, not packed


def test_role_test_without_a_split_of_its_own_is_all_test(tmp_path):
    # a DFDC-like source: no split given; 3 real and 2 fake videos, too few to split by 50/25/25
    videos = [(f"v{i}", int(i >= 3), "", f"g{i % 3}") for i in range(5)]
    faces_dir = tmp_path / "dfdc" / "faces"
    sources = _shards(faces_dir, videos, [])
    summary = pack(faces_dir, sources, 2, FRACTIONS, 0, role="test")
    assert summary["splits"]["test"]["videos"] == 5 and summary["videos"] == 5
    manifest = json.loads((faces_dir / "summary.json").read_text())
    assert manifest["role"] == "test"


def test_role_test_needs_both_classes_in_its_test_split(tmp_path):
    videos = [(f"v{i}", 0, "test", "") for i in range(4)] + [(f"v{i}", 1, "", "")
                                                             for i in range(4, 8)]
    faces_dir = tmp_path / "d" / "faces"
    sources = _shards(faces_dir, videos, [])
    with pytest.raises(UserError) as err:
        pack(faces_dir, sources, 2, FRACTIONS, 0, role="test")
    text = str(err.value)
    assert "the test split has 4 real and 0 fake videos" in text
    assert "datasets.d.role" in text and "every split" not in text
    assert not (faces_dir / "faces.npy").exists()


def test_a_dataset_packs_the_shards_of_another(tmp_path):
    # ffpp extracts; ffpp-loo (faces_from: ffpp) packs the same shards with its own split
    videos = [(f"v{i}", i % 2, "", f"g{i // 2}") for i in range(24)]
    ffpp = tmp_path / "ffpp" / "faces"
    sources = _shards(ffpp, videos, [])
    _mark_crops(ffpp)
    table = pd.read_csv(sources)
    table["manipulation"] = ["" if lab == 0 else ("swap" if i % 4 == 1 else "mouth")
                             for i, lab in enumerate(table["label"])]
    table.to_csv(sources, index=False)
    own = pack(ffpp, sources, 2, FRACTIONS, 0)
    loo = tmp_path / "ffpp-loo" / "faces"
    summary = pack(loo, sources, 2, FRACTIONS, 0, train_manipulations=["swap"],
                   shard_dir=ffpp / "shards")
    assert not (loo / "shards").exists()  # nothing extracted for it
    assert summary["faces"] == own["faces"] == 48 and summary["held_out_faces"] > 0
    assert _packed_values(loo) == _packed_values(ffpp) == {f"v{i}": {i} for i in range(24)}
    with pytest.raises(UserError, match=r"nowhere/shard0\.npy is missing"):
        pack(tmp_path / "x" / "faces", sources, 2, FRACTIONS, 0, shard_dir=tmp_path / "nowhere")
