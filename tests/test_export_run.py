"""`deepfake-lth export <run folder>`: the model, input size, mask and face settings come from
the run folder, and a ticket exported without flags detects like one exported with the right
ones (a workflow-shaped folder of smoke size; no training)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from deepfake_lth import cli
from deepfake_lth.core import runfolder
from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire import synthetic
from deepfake_lth.deploy import export
from deepfake_lth.models import build_model
from deepfake_lth.pruning import checkpoints, masks

torch.set_num_threads(1)

SIZE = 48  # the run's input size; the registry's cnn5 default is 128
THRESHOLD = 0.37  # the run's val_threshold
SETTINGS = {"frames_per_video": 4, "min_frames": 4, "size": 64, "margin": 0.3,
            "min_face_size": 40, "thresholds": [0.6, 0.7, 0.7], "detect_max_side": 320,
            "batch_size": 16, "detect_faces": "auto"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """results/demo/cnn5/seed0/imp-global/round7 as the workflow leaves it, and two clips."""
    root = tmp_path_factory.mktemp("run")
    faces = root / "results" / "demo" / "faces"
    faces.mkdir(parents=True)
    (faces / "summary.json").write_text(json.dumps({
        "faces": 10, "face_settings": SETTINGS,
        "source": {"dataset": "demo", "type": "synthetic", "layout": None}}))
    folder = root / "results" / "demo" / "cnn5" / "seed0" / "imp-global" / "round7"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    model = build_model("cnn5", input_size=SIZE)
    with torch.no_grad():  # varied outputs, not a constant
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.fill_(0.05)
                m.bias.uniform_(-0.5, 0.5)
    mask = masks.prune_to_sparsity(model, 0.79, "global")
    masks.apply_mask(model, mask)
    torch.save(model.state_dict(), folder / "checkpoint.pt")
    checkpoints.save_mask(folder / "mask.pt", mask)
    (folder / "metrics.json").write_text(json.dumps(
        {"dataset": "demo", "model": "cnn5", "seed": 0, "method": "imp-global", "round": 7,
         "input_size": SIZE, "test_acc": 0.9, "test_auc": 0.95, "val_threshold": THRESHOLD,
         "val_video_threshold": 0.4, "test_acc_val_threshold": 0.91}))
    # the same files outside any run folder: nothing is recorded there
    bare = root / "bare"
    bare.mkdir()
    for name in ("checkpoint.pt", "mask.pt"):
        shutil.copy(folder / name, bare / name)
    rng = np.random.default_rng(5)
    for name, fake in (("real.mp4", False), ("fake.mp4", True)):
        target, donor = synthetic.sample_identity(rng), synthetic.sample_identity(rng)
        frames = synthetic.render_frames(target, donor if fake else None, 8, 160, 128, rng, 0.5)
        synthetic.write_video(root / name, frames, 10, 90)
    return root, folder, bare


def _detect(capsys, root, ticket, *extra: str) -> list[dict]:
    rc = cli.main(["detect", str(root / "real.mp4"), str(root / "fake.mp4"), "--model",
                   str(ticket), "--json", "--threshold", "0.5", *extra])
    out = capsys.readouterr().out
    assert rc == 0
    return [json.loads(line) for line in out.splitlines()][:-1]


def test_export_of_a_round_folder_needs_no_flags(run, capsys):
    root, folder, bare = run
    assert cli.main(["export", str(folder), "-o", str(root / "auto.pt")]) == 0
    printed = capsys.readouterr().out
    assert f"cnn5 at {SIZE} px" in printed and "summary.json" in printed
    auto = export.read_ticket(root / "auto.pt")
    assert (auto.model_name, auto.input_size) == ("cnn5", SIZE)
    assert auto.meta["faces"] == SETTINGS and auto.meta["round"] == 7
    assert masks.sparsity(auto.mask) == pytest.approx(0.79, abs=0.01)  # the folder's mask.pt

    # the same ticket with every flag given by hand, from files that record nothing
    assert cli.main(["export", str(bare / "checkpoint.pt"), str(bare / "mask.pt"), "-o",
                     str(root / "manual.pt"), "--model", "cnn5", "--input-size", str(SIZE),
                     "--faces", json.dumps(SETTINGS)]) == 0
    # and as the old default made it: the registry's 128 px
    assert cli.main(["export", str(bare / "checkpoint.pt"), str(bare / "mask.pt"), "-o",
                     str(root / "default.pt"), "--model", "cnn5", "--input-size", "128",
                     "--faces", json.dumps(SETTINGS)]) == 0
    capsys.readouterr()

    by_auto = _detect(capsys, root, root / "auto.pt")
    by_manual = _detect(capsys, root, root / "manual.pt")
    by_default = _detect(capsys, root, root / "default.pt")
    assert [r["status"] for r in by_auto] == ["ok", "ok"]
    assert [r["label"] for r in by_auto] == [r["label"] for r in by_manual]
    for a, m in zip(by_auto, by_manual, strict=True):
        # the recorded frames_per_video (4) and crop settings are used
        assert len(a["frame_probabilities"]) == SETTINGS["frames_per_video"]
        assert np.allclose(a["frame_probabilities"], m["frame_probabilities"], atol=1e-6)
    wrong = np.concatenate([r["frame_probabilities"] for r in by_default])
    right = np.concatenate([r["frame_probabilities"] for r in by_auto])
    assert np.abs(wrong - right).max() > 1e-3  # the input size matters

    # detect on the folder's checkpoint.pt reads the folder as export does
    by_checkpoint = _detect(capsys, root, folder / "checkpoint.pt")
    for a, c in zip(by_auto, by_checkpoint, strict=True):
        assert np.allclose(a["frame_probabilities"], c["frame_probabilities"], atol=1e-6)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--input-size", "128"], ["--input-size 128", f"records {SIZE}"]),
        (["--model", "mesonet"], ["--model mesonet", "records cnn5"]),
        (["--faces", '{"min_face_size": 20}'], ["min_face_size=20", "min_face_size=40"]),
    ],
)
def test_a_flag_that_contradicts_the_run_folder_is_an_error(run, capsys, flags, named):
    root, folder, _ = run
    rc = cli.main(["export", str(folder / "checkpoint.pt"), "-o", str(root / "x.pt"), *flags])
    err = capsys.readouterr().err
    assert rc == 2
    for text in named:
        assert text in err
    assert not (root / "x.pt").exists()


def test_without_a_run_folder_the_model_and_size_must_be_given(run, capsys):
    root, _, bare = run
    rc = cli.main(["export", str(bare / "checkpoint.pt"), "-o", str(root / "y.pt"), "--model",
                   "cnn5"])
    err = capsys.readouterr().err
    assert rc == 2 and "--input-size" in err and "metrics.json" in err
    # agreeing flags are fine
    info = export.export_ticket(run[1], None, root / "z.pt", "cnn5", SIZE)
    assert info["input_size"] == SIZE and info["mask"].endswith("mask.pt")


def test_transfer_folders_find_their_dataset_faces(tmp_path):
    results = tmp_path / "results"
    (results / "B" / "faces").mkdir(parents=True)
    (results / "B" / "faces" / "summary.json").write_text(
        json.dumps({"face_settings": {"size": 32}}))
    folder = results / "transfer" / "A-to-B" / "cnn5" / "seed0" / "imp-global-sparsity59"
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"")
    (folder / "channels.pt").write_bytes(b"")
    (folder / "metrics.json").write_text(json.dumps({"dataset": "B", "model": "cnn5",
                                                     "input_size": 32}))
    found = runfolder.read_run_folder(folder)
    assert found.faces == {"size": 32} and found.channels == folder / "channels.pt"
    assert found.mask is None and found.input_size == 32
    with pytest.raises(UserError, match="no checkpoint.pt"):
        runfolder.read_run_folder(tmp_path)


def _lines(out: str) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in out.splitlines()]
    return rows[:-1], rows[-1]["summary"]


def test_detect_takes_the_run_folder_and_its_threshold(run, capsys):
    root, folder, _ = run
    assert cli.main(["detect", str(root / "real.mp4"), "--model", str(folder), "--json"]) == 0
    out, err = capsys.readouterr()
    (result,), summary = _lines(out)
    assert result["threshold"] == summary["threshold"] == THRESHOLD
    assert result["label"] == ("fake" if result["fake_probability"] >= THRESHOLD else "real")
    assert "synthetic demo faces (demo)" in err
    rc = cli.main(["detect", str(root / "real.mp4"), "--model", str(root)])
    assert rc == 2 and "without checkpoint.pt" in capsys.readouterr().err


def test_a_ticket_carries_its_decisions(run, capsys):
    root, folder, _ = run
    assert cli.main(["export", str(folder), "-o", str(root / "d.pt")]) == 0
    out, err = capsys.readouterr()
    assert f"threshold {THRESHOLD:.4f} (chosen on validation)" in out
    assert "trained on demo (synthetic demo faces)" in out and "synthetic" in err
    meta = export.read_ticket(root / "d.pt").meta
    assert meta["threshold"] == THRESHOLD and meta["video_threshold"] == 0.4
    assert meta["scores"]["test_auc"] == 0.95 and meta["scores"]["model"] == "fp32"
    assert meta["training_faces"] == {"dataset": "demo", "acquired": "demo", "type": "synthetic",
                                      "layout": None, "synthetic": True}


@pytest.mark.parametrize("name", ["model.onnx", "model.onnxz"])
def test_an_onnx_name_writes_onnx_with_the_decisions(run, capsys, name):
    """`export RUN -o x.onnx` (no --onnx) writes ONNX, its metadata holding the threshold,
    the input size, the face settings, the scores and where the faces came from."""
    pytest.importorskip("onnxruntime")
    from deepfake_lth.deploy.runtime import OnnxModule

    root, folder, _ = run
    out = root / name
    assert cli.main(["export", str(folder), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: fp32 ONNX" in printed
    meta = OnnxModule(out).meta
    assert meta["threshold"] == THRESHOLD and meta["input_size"] == SIZE
    assert meta["faces"] == SETTINGS and meta["int8"] is False and meta["reduce_range"] is None
    assert meta["scores"]["test_acc_val_threshold"] == 0.91
    assert meta["training_faces"]["synthetic"] is True
    assert cli.main(["detect", str(root / "fake.mp4"), "--model", str(out), "--json"]) == 0
    (result,), _ = _lines(capsys.readouterr().out)
    assert result["threshold"] == THRESHOLD and result["status"] == "ok"
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_failed_export_leaves_nothing(run, capsys, monkeypatch):
    root, folder, _ = run

    def wrong(*a, **kw):
        raise UserError("onnxruntime logits differ from torch")

    from deepfake_lth.deploy import onnx_export

    monkeypatch.setattr(onnx_export, "check_onnx", wrong)
    target = root / "failed"
    target.mkdir()
    for argv in (["-o", str(target / "x.onnx")],
                 ["-o", str(target / "t.pt"), "--onnx", str(target / "t.onnx")]):
        assert cli.main(["export", str(folder), *argv]) == 2
        assert "differ from torch" in capsys.readouterr().err
        assert not (target / "x.onnx").exists() and not (target / "t.onnx").exists()
    assert sorted(p.name for p in target.iterdir()) == ["t.pt"]  # the ticket asked for


def test_outputs_are_checked_before_any_work(run, capsys, monkeypatch):
    root, folder, _ = run
    monkeypatch.setattr(export, "export_ticket", lambda *a, **kw: pytest.fail("work started"))
    (root / "plain").write_text("a file")
    cases = [
        (["-o", str(root / "plain" / "t.pt")], "is a file, not a folder"),
        (["-o", str(root)], "is a folder; give a file name"),
        (["-o", str(root / "t.pt"), "--onnx", str(root / "t.txt")], ".onnx (plain) or .onnxz"),
        (["-o", str(root / "a.onnx"), "--onnx", str(root / "b.onnx")], "names an ONNX file"),
        (["-o", "/proc/t.pt"], "cannot write in /proc"),
    ]
    for argv, named in cases:
        assert cli.main(["export", str(folder), *argv]) == 2
        err = capsys.readouterr().err
        assert named in err and "Traceback" not in err
