"""`deepfake-lth detect` on a generated demo video, bad files, images and both model kinds."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from deepfake_lth import cli
from deepfake_lth.data.acquire import synthetic
from deepfake_lth.data.faces import FaceDetector, extract_file
from deepfake_lth.deploy import detect, export
from deepfake_lth.models import build_model
from deepfake_lth.pruning import checkpoints, masks

torch.set_num_threads(1)

FRAMES = 4
FACES = {"size": 64, "min_face_size": 40, "detect_max_side": 320}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A short synthetic face-swap video, bad files, a faceless image and a mesonet ticket."""
    root = tmp_path_factory.mktemp("detect")
    rng = np.random.default_rng(3)
    target, donor = synthetic.sample_identity(rng), synthetic.sample_identity(rng)
    frames = synthetic.render_frames(target, donor, 8, 160, 128, rng, 0.5)
    synthetic.write_video(root / "clip.mp4", frames, 10, 90)
    (root / "notes.mp4").write_text("this is not a video\n")
    (root / "empty.mp4").write_bytes(b"")
    cv2.imwrite(str(root / "wall.png"), np.full((96, 96, 3), 128, np.uint8))
    cv2.imwrite(str(root / "face.jpg"), frames[0][16:112, 32:128])

    torch.manual_seed(0)
    model = build_model("mesonet", input_size=32)
    with torch.no_grad():  # a varied output, not a constant
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.fill_(0.05)
    mask = masks.prune_to_sparsity(model, 0.5, "global")
    masks.apply_mask(model, mask)
    torch.save(model.state_dict(), root / "checkpoint.pt")
    checkpoints.save_mask(root / "mask.pt", mask)
    ticket = export.pack_ticket(model.state_dict(), mask, "mesonet", 32, meta={"faces": FACES})
    export.save_ticket(root / "ticket.pt", ticket)
    return root


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(["detect", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def json_lines(out: str) -> tuple[list[dict], dict]:
    """The per-file results and the summary of `detect --json` (one object per line)."""
    rows = [json.loads(line) for line in out.splitlines()]
    assert "summary" in rows[-1] and all("summary" not in r for r in rows[:-1])
    return rows[:-1], rows[-1]["summary"]


def test_video_is_scored_per_frame(files, capsys):
    rc, out, err = run_cli(
        capsys, str(files / "clip.mp4"), "--model", str(files / "ticket.pt"),
        "--frames", str(FRAMES), "--json", "--device", "cpu",
    )  # fmt: skip
    assert rc == 0, err
    (result,), summary = json_lines(out)
    assert result["status"] == "ok" and result["kind"] == "video"
    probs = result["frame_probabilities"]
    assert len(probs) == len(result["frame_indices"]) == FRAMES
    assert result["frame_indices"] == [0, 2, 5, 7]  # evenly spaced over 8 frames
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert result["fake_probability"] == pytest.approx(float(np.mean(probs)))
    assert result["label"] == ("fake" if result["fake_probability"] >= 0.5 else "real")

    # the same crops and the same model as the workflow's extraction give the same numbers
    spec = detect.face_spec(FRAMES, FACES)
    row = {"path": "clip.mp4", "video_id": "clip", "label": 1}
    crops, _, entry = extract_file(row, files / "clip.mp4", spec, FaceDetector(spec), "video")
    assert entry["status"] == "ok"
    model = export.load_ticket(files / "ticket.pt")
    from deepfake_lth.data.store import to_tensor

    with torch.inference_mode():
        ref = torch.sigmoid(model(to_tensor(np.stack(crops), 32))[:, 0]).double().numpy()
    assert np.allclose(probs, ref, atol=1e-6)


def test_threshold_decides_the_label(files, capsys):
    args = [str(files / "clip.mp4"), "--model", str(files / "ticket.pt"), "--frames", "2"]
    rc, out, _ = run_cli(capsys, *args, "--json", "--threshold", "0")
    (result,), summary = json_lines(out)
    assert rc == 0 and result["label"] == "fake" and result["threshold"] == 0.0
    assert summary["threshold_from"] == "--threshold" and summary["fake"] == 1
    rc, out, _ = run_cli(capsys, *args, "--threshold", "1")
    assert rc == 0
    assert out.startswith(f"{files / 'clip.mp4'}: REAL fake probability ")
    assert "per frame: 0:" in out
    assert out.splitlines()[-1].startswith("1 file: 1 scored, 0 fake, 1 real at threshold 1.0000")
    for bad in ("1.01", "2", "-0.1", "nan"):
        rc, out, err = run_cli(capsys, *args, "--threshold", bad)
        assert rc == 2 and f"--threshold {float(bad)} is not a probability" in err
        assert out == "" and "Traceback" not in err


def test_the_recorded_threshold_is_the_default(files, tmp_path, capsys):
    """A ticket carries its run's validation threshold and where its faces came from."""
    ticket = export.read_ticket(files / "ticket.pt")
    rc, out, _ = run_cli(capsys, str(files / "clip.mp4"), "--model", str(files / "ticket.pt"),
                         "--frames", "2", "--json")
    (base,), _ = json_lines(out)
    p = base["fake_probability"]
    for t, label in ((p - 1e-3, "fake"), (p + 1e-3, "real")):
        meta = {**ticket.meta, "threshold": t,
                "training_faces": {"dataset": "demo-videos", "synthetic": True}}
        packed = export.pack_ticket(ticket.state, ticket.mask, "mesonet", 32, meta=meta)
        export.save_ticket(tmp_path / "t.pt", packed)
        rc, out, err = run_cli(capsys, str(files / "clip.mp4"), "--model", str(tmp_path / "t.pt"),
                               "--frames", "2", "--json")
        (result,), summary = json_lines(out)
        assert rc == 0 and result["threshold"] == t and result["label"] == label
        assert summary["threshold"] == t and "validation" in summary["threshold_from"]
        assert "synthetic demo faces (demo-videos)" in err and len(err.splitlines()) == 1
    # a ticket that records none: 0.5, and it says so
    rc, out, err = run_cli(capsys, str(files / "wall.png"), "--model", str(files / "ticket.pt"),
                           "--face-crops")
    assert out.splitlines()[-1].endswith("(the default: the model records no threshold)")
    assert "synthetic" not in err


def test_quiet_prints_the_summary_alone(files, capsys):
    rc, out, _ = run_cli(capsys, str(files), "--model", str(files / "ticket.pt"), "--frames", "2",
                         "--quiet")
    assert rc == 0 and len(out.splitlines()) == 1
    assert out.startswith("5 files: 2 scored, ") and "not scored: 1 empty, 1 no_face" in out
    rc, out, _ = run_cli(capsys, str(files), "--model", str(files / "ticket.pt"), "--frames", "2",
                         "--quiet", "--json")
    (line,) = out.splitlines()
    summary = json.loads(line)["summary"]
    assert summary["files"] == summary["done"] == 5 and summary["scored"] == 2
    assert summary["failed"] == {"empty": 1, "no_face": 1, "unreadable": 1}


def test_results_stream_and_ctrl_c_keeps_them(files, capsys, monkeypatch):
    """Each file's line is out before the next file is read; Ctrl-C during the third file
    exits 130 with the two lines printed, a summary that says so, and no traceback."""
    seen: list[str] = []
    score = detect.score_file

    def scoring(path, *a, **kw):
        printed = capsys.readouterr().out  # what reached stdout before this file
        seen.append(printed)
        if len(seen) == 3:
            raise KeyboardInterrupt
        return score(path, *a, **kw)

    monkeypatch.setattr(detect, "score_file", scoring)
    rc = cli.main(["detect", str(files), "--model", str(files / "ticket.pt"), "--frames", "2",
                   "--json"])
    rest = capsys.readouterr()
    assert rc == 130 and "Traceback" not in rest.err and "stopped" in rest.err
    assert seen[1].count("\n") == 1 and seen[2].count("\n") == 1  # one line per file, at once
    first, second = json.loads(seen[1]), json.loads(seen[2])
    assert first["path"] != second["path"]
    summary = json.loads(rest.out.splitlines()[-1])["summary"]
    assert summary["stopped"] is True and summary["done"] == 2 and summary["files"] == 5


@pytest.mark.parametrize(
    ("name", "status"),
    [("notes.mp4", "unreadable"), ("empty.mp4", "empty"), ("missing.mp4", "missing"),
     ("wall.png", "no_face")],
)  # fmt: skip
def test_bad_files_get_one_line_and_exit_1(files, capsys, name, status):
    rc, out, err = run_cli(capsys, str(files / name), "--model", str(files / "ticket.pt"))
    assert rc == 1
    lines = out.strip().splitlines()
    assert len(lines) == 2  # the file's line and the summary
    assert lines[0].startswith(f"{files / name}: {status} (") and lines[0].endswith(")")
    assert lines[1].startswith("1 file: 0 scored, 0 fake, 0 real at threshold 0.5000 (")
    assert lines[1].endswith(f"; not scored: 1 {status}")
    assert "Traceback" not in out + err


def test_folder_mixes_good_and_bad_files(files, capsys):
    rc, out, err = run_cli(
        capsys, str(files), "--model", str(files / "ticket.pt"), "--frames", "2", "--json"
    )
    assert rc == 0
    results = {r["path"].rsplit("/", 1)[1]: r for r in json_lines(out)[0]}
    assert set(results) == {"clip.mp4", "notes.mp4", "empty.mp4", "wall.png", "face.jpg"}
    assert results["clip.mp4"]["status"] == "ok"
    assert results["notes.mp4"]["status"] == "unreadable"
    assert "fake_probability" not in results["notes.mp4"]
    assert "notes.mp4: unreadable" in err and "Traceback" not in err


def test_face_crop_images_skip_mtcnn(files, capsys):
    rc, out, _ = run_cli(
        capsys, str(files / "wall.png"), "--model", str(files / "ticket.pt"), "--face-crops",
        "--json",
    )  # fmt: skip
    assert rc == 0
    (result,), _ = json_lines(out)
    assert result["status"] == "ok" and len(result["frame_probabilities"]) == 1


def test_checkpoint_with_arch_gives_the_ticket_scores(files, capsys):
    common = [str(files / "clip.mp4"), "--frames", "2", "--json", "--faces", json.dumps(FACES)]
    rc, out, _ = run_cli(capsys, *common, "--model", str(files / "ticket.pt"))
    from_ticket = json_lines(out)[0][0]["frame_probabilities"]
    rc2, out2, _ = run_cli(
        capsys, *common, "--model", str(files / "checkpoint.pt"), "--arch", "mesonet",
        "--input-size", "32", "--mask", str(files / "mask.pt"),
    )  # fmt: skip
    assert rc == rc2 == 0
    assert np.allclose(json_lines(out2)[0][0]["frame_probabilities"], from_ticket, atol=1e-6)

    rc, _, err = run_cli(capsys, *common, "--model", str(files / "checkpoint.pt"))
    assert rc == 2 and "--arch" in err
    rc, _, err = run_cli(capsys, *common, "--model", str(files / "notes.mp4"))
    assert rc == 2 and "notes.mp4" in err and "Traceback" not in err
