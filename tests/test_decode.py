"""Frame reading on real-like encodings: long-GOP H.264 with B-frames, rotation metadata,
wrong frame counts, and agreement with OpenCV's reader."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_lth.data.decode import (
    read_frames_opencv,
    read_video_frames,
    sample_indices,
    upright,
    write_h264,
)

N, W, H = 300, 320, 240


def _ramp_frames(n: int, w: int, h: int) -> list[np.ndarray]:
    """Frame i is a flat gray of level ~ i * 255 / n with a little texture (its order shows in
    the mean) and a moving bar (so that the encoder uses P- and B-frames)."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 6, (h, w, 3)).astype(np.int16)
    frames = []
    for i in range(n):
        f = np.full((h, w, 3), int(20 + 200 * i / n), np.int16) + texture
        x = (7 * i) % (w - 20)
        f[:, x : x + 20] = 255
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory):
    """320x240, 300 frames, H.264 CRF 23, 3 B-frames, one keyframe every 250 frames."""
    path = tmp_path_factory.mktemp("gop") / "long_gop.mp4"
    frames = _ramp_frames(N, W, H)
    write_h264(path, frames, gop=250, crf=23, bframes=3)
    return path, frames


def test_the_fixture_is_a_long_gop_with_b_frames(long_gop):
    import av

    path, _ = long_gop
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        kinds = [(f.key_frame, int(f.pict_type)) for f in c.decode(s)]
    assert [i for i, (key, _) in enumerate(kinds) if key] == [0, 250]
    assert 3 in {t for _, t in kinds}  # AV_PICTURE_TYPE_B


def test_forty_sampled_frames_in_order(long_gop):
    path, frames = long_gop
    got, idx, n = read_video_frames(path, 40)
    assert n == N and idx == sample_indices(N, 40) and len(got) == 40
    for g, i in zip(got, idx):
        assert g.shape == (H, W, 3) and g.dtype == np.uint8
        assert np.abs(g.astype(int) - frames[i]).mean() < 4, i  # the frame, not a neighbour
    # frames i and i+1 differ by less than 1 gray level, the bar by 7 px: check it is there
    for g, i in zip(got, idx):
        x = (7 * i) % (W - 20)
        assert g[:, x + 3 : x + 17].mean() > 240


def test_pyav_and_opencv_read_the_same_frames(long_gop):
    path, _ = long_gop
    a, ia, na = read_video_frames(path, 12)
    b, ib, nb = read_frames_opencv(path, 12)
    assert (ia, na) == (ib, nb)
    assert max(np.abs(x.astype(int) - y).mean() for x, y in zip(a, b)) < 2


def test_fewer_frames_than_asked_and_a_short_video(tmp_path):
    path = tmp_path / "short.mp4"
    frames = _ramp_frames(10, 64, 48)
    write_h264(path, frames, gop=250)
    got, idx, n = read_video_frames(path, 40)
    assert n == 10 and idx == list(range(10)) and len(got) == 10


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_rotation_metadata_comes_out_upright(tmp_path, rotation):
    """A portrait scene stored as rotated pixels with a display rotation, as phones write
    it, is read upright (the white block at the top left)."""
    scene = np.zeros((96, 64, 3), np.uint8)  # portrait: 64 wide, 96 high
    scene[:24, :16] = 255
    turns = int(rotation / 90)
    stored = np.ascontiguousarray(np.rot90(scene, -turns))  # what the display rotation undoes
    path = tmp_path / f"rot{rotation}.mp4"
    write_h264(path, [stored] * 8, gop=250, rotation=rotation)
    for reader in (read_video_frames, read_frames_opencv):
        got, _, n = reader(path, 4)
        assert n == 8 and got[0].shape == scene.shape, reader
        assert got[0][:24, :16].mean() > 200 and got[0][-24:, -16:].mean() < 50, reader


def test_upright_turns():
    a = np.arange(6).reshape(2, 3)
    assert upright(a, 0) is a and upright(a, None) is a
    assert (upright(a, 360) == a).all() and (upright(a, -270) == np.rot90(a, 1)).all()


def test_wrong_container_count_falls_back(tmp_path, monkeypatch, caplog):
    """A container that claims more frames than it holds: the frames decoded are counted
    and sampled again; one that claims none: the packets are counted."""
    import av

    path = tmp_path / "clip.mp4"
    frames = _ramp_frames(60, 64, 48)
    write_h264(path, frames, gop=250)
    caplog.set_level("INFO", logger="deepfake_lth.data.decode")
    real = av.video.stream.VideoStream.frames
    for claimed in (200, 0):
        monkeypatch.setattr(av.video.stream.VideoStream, "frames", property(lambda s: claimed))
        got, idx, n = read_video_frames(path, 20)
        assert n == 60 and idx == sample_indices(60, 20) and len(got) == 20, claimed
        assert all(np.abs(g.astype(int) - frames[i]).mean() < 4 for g, i in zip(got, idx))
    monkeypatch.setattr(av.video.stream.VideoStream, "frames", real)
    assert "the container says 200 frames, 60 decode" in caplog.text


def test_not_a_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    assert read_video_frames(bad, 40) == ([], [], 0)
    cut = tmp_path / "cut.mp4"
    write_h264(tmp_path / "whole.mp4", _ramp_frames(30, 64, 48), gop=250)
    cut.write_bytes((tmp_path / "whole.mp4").read_bytes()[:200])  # header only
    got, _, n = read_video_frames(cut, 40)
    assert got == [] and n == 0
