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


def test_video_is_scored_per_frame(files, capsys):
    rc, out, err = run_cli(
        capsys, str(files / "clip.mp4"), "--model", str(files / "ticket.pt"),
        "--frames", str(FRAMES), "--json", "--device", "cpu",
    )  # fmt: skip
    assert rc == 0, err
    (result,) = json.loads(out)
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
    assert rc == 0 and json.loads(out)[0]["label"] == "fake"
    rc, out, _ = run_cli(capsys, *args, "--threshold", "1.01")
    assert rc == 0
    assert out.startswith(f"{files / 'clip.mp4'}: REAL fake probability ")
    assert "per frame: 0:" in out


@pytest.mark.parametrize(
    ("name", "status"),
    [("notes.mp4", "unreadable"), ("empty.mp4", "empty"), ("missing.mp4", "missing"),
     ("wall.png", "no_face")],
)  # fmt: skip
def test_bad_files_get_one_line_and_exit_1(files, capsys, name, status):
    rc, out, err = run_cli(capsys, str(files / name), "--model", str(files / "ticket.pt"))
    assert rc == 1
    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{files / name}: {status} (") and lines[0].endswith(")")
    assert "Traceback" not in out + err


def test_folder_mixes_good_and_bad_files(files, capsys):
    rc, out, err = run_cli(
        capsys, str(files), "--model", str(files / "ticket.pt"), "--frames", "2", "--json"
    )
    assert rc == 0
    results = {r["path"].rsplit("/", 1)[1]: r for r in json.loads(out)}
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
    (result,) = json.loads(out)
    assert result["status"] == "ok" and len(result["frame_probabilities"]) == 1


def test_checkpoint_with_arch_gives_the_ticket_scores(files, capsys):
    common = [str(files / "clip.mp4"), "--frames", "2", "--json", "--faces", json.dumps(FACES)]
    rc, out, _ = run_cli(capsys, *common, "--model", str(files / "ticket.pt"))
    from_ticket = json.loads(out)[0]["frame_probabilities"]
    rc2, out2, _ = run_cli(
        capsys, *common, "--model", str(files / "checkpoint.pt"), "--arch", "mesonet",
        "--input-size", "32", "--mask", str(files / "mask.pt"),
    )  # fmt: skip
    assert rc == rc2 == 0
    assert np.allclose(json.loads(out2)[0]["frame_probabilities"], from_ticket, atol=1e-6)

    rc, _, err = run_cli(capsys, *common, "--model", str(files / "checkpoint.pt"))
    assert rc == 2 and "--arch" in err
    rc, _, err = run_cli(capsys, *common, "--model", str(files / "notes.mp4"))
    assert rc == 2 and "notes.mp4" in err and "Traceback" not in err
