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


@pytest.fixture
def set_umask():
    """Set the process umask for one test and restore it after."""
    import os

    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_outputs_honour_the_umask(tmp_path, set_umask, mask, mode):
    """mkstemp makes 0600 files; every atomic writer gives what open() would: 0o666 & ~umask."""
    import stat

    import torch

    from deepfake_lth.pruning.checkpoints import atomic_torch_save, save_mask

    set_umask(mask)
    assert files.umask() == mask and files.file_mode() == mode
    written = [
        files.write_text(tmp_path / "report.html", "<html/>"),
        files.write_metrics(tmp_path / "run" / "metrics.json", {"test_acc": 0.5}),
        files.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "manifest.csv"),
        files.atomic_write(tmp_path / "b.bin", lambda fh: fh.write(b"\x00"), binary=True),
    ]
    with files.atomic_path(tmp_path / "model.int8.onnx") as tmp:
        tmp.write_bytes(b"onnx")
    written.append(tmp_path / "model.int8.onnx")
    atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    save_mask(tmp_path / "mask.pt", {"w": torch.ones(2)})
    written += [tmp_path / "checkpoint.pt", tmp_path / "mask.pt"]
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives under this umask
    assert stat.S_IMODE(plain.stat().st_mode) == mode
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {
        p.name: oct(mode) for p in written}
