"""Atomic result files: a failed write leaves the old file and no temporary behind."""

from __future__ import annotations

import pandas as pd
import pytest

from deepfake_lth.core import files


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    files.write_text(target, "old\n")

    def half(fh):
        fh.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, half)
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_csv_and_binary(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    pd.testing.assert_frame_equal(pd.read_csv(files.write_csv(df, tmp_path / "t.csv")), df)
    out = files.atomic_write(tmp_path / "b.bin", lambda fh: fh.write(b"\x00\x01"), binary=True)
    assert out.read_bytes() == b"\x00\x01"


def test_atomic_path_renames_on_success_and_cleans_up_on_failure(tmp_path):
    from deepfake_lth.core.files import atomic_path

    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
