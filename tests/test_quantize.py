"""INT8 post-training quantization (ONNX Runtime): the stage on a tiny packed dataset, the
CPU flags that decide reduce_range, `export --int8` and `detect` on the INT8 model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepfake_lth import cli
from deepfake_lth.core.errors import UserError
from deepfake_lth.deploy import quantize
from deepfake_lth.stages.dense import train_dense
from deepfake_lth.stages.imp import imp_round

pytest.importorskip("onnxruntime.quantization")
torch.set_num_threads(1)

SPEC = {
    "train": {"lr": 3e-3, "batch_size": 16, "max_epochs": 3, "patience": 3, "amp": False},
    "prune": {"rate": 0.5, "rewind": "none"},
    "input_size": 32,
    "device": "cpu",
    "threads": 1,
}
QSPEC = {"calibration_samples": 24, "batch_sizes": [1, 4], "warmup": 1, "repeats": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from test_stages import write_faces

    root = tmp_path_factory.mktemp("results")
    faces = write_faces(root, "dsq", seed=3, videos=12, frames=4)
    run = root / "dsq" / "mesonet" / "seed0"
    train_dense(faces, run / "dense", "mesonet", 0, SPEC)
    imp_round(faces, run / "dense", run / "dense", run / "imp-global" / "round1",
                     "mesonet", 0, 1, "global", SPEC)
    return root, faces, run


def test_cpu_flags_decide_reduce_range(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    flags = quantize.cpu_flags(info)
    assert "avx512_vnni" in flags and quantize.has_vnni(flags)
    assert quantize.resolve_reduce_range("auto", flags) is False
    assert quantize.resolve_reduce_range("auto", {"avx2", "avx512f"}) is True
    assert quantize.resolve_reduce_range(False, {"avx2"}) is False
    assert quantize.cpu_flags(tmp_path / "missing") == set()
    with pytest.raises(UserError, match="reduce_range"):
        quantize.resolve_reduce_range("yes", flags)


@pytest.fixture(scope="module")
def quantized(trained):
    """The dense network chooses what it serves (2 timed rounds: too few to find INT8
    faster); the ticket serves INT8 as `compression.serve: int8` asks."""
    root, faces, run = trained
    levels = ((run / "dense", QSPEC), (run / "imp-global" / "round1", {**QSPEC, "serve": "int8"}))
    return [(lv, quantize.quantize_stage(faces, lv, lv / "int8", spec)) for lv, spec in levels]


def test_quantize_stage_evaluates_the_int8_model(trained, quantized):
    root, faces, run = trained
    for level, m in quantized:
        out = level / "int8"
        assert {"model.onnx", "model.int8.onnx", "model.onnxz", "model.int8.onnxz",
                "metrics.json", "predictions.csv"} <= {p.name for p in out.iterdir()}
        b = m["bytes"]
        # MesoNet at 32 px has 12k weights: the QDQ graph (scales, nodes) is a large share
        assert b["onnx_int8"] < 0.7 * b["onnx_fp32"]
        assert b["onnxz_int8"] == (out / "model.int8.onnxz").stat().st_size < b["onnx_int8"]
        assert b["onnxz_fp32"] == (out / "model.onnxz").stat().st_size < b["onnx_fp32"]
        assert set(m["coding"]["int8"]) >= {"graph", "bits", "values-|i1"}
        # fp32 through onnxruntime scores like the torch run that wrote the folder
        run_metrics = json.loads((level / "metrics.json").read_text())
        assert m["fp32"]["acc"] == pytest.approx(run_metrics["test_acc"], abs=1e-6)
        assert m["label_agreement"] >= 0.9 and abs(m["test_auc_drop"]) <= 0.1
        assert [r["batch"] for r in m["latency"]] == [1, 4]
        assert all(r["int8_ms"] > 0 and r["fp32_ms"] > 0 for r in m["latency"])
        assert m["quantization"]["reduce_range"] == (not quantize.has_vnni())
        preds = __import__("pandas").read_csv(out / "predictions.csv")
        assert len(preds) == m["test_samples"] and preds["prob"].between(0, 1).all()
        assert not np.allclose(preds["prob"], preds["prob"].iloc[0])  # not a constant
        # nothing staged is left, and each served file carries its own decisions
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
        run_metrics = json.loads((level / "metrics.json").read_text())
        for name, form in (("model.onnxz", "fp32"), ("model.int8.onnxz", "int8")):
            meta = quantize.OnnxModule(out / name).meta
            assert meta["threshold"] == run_metrics["val_threshold"] and meta["int8"] == (
                form == "int8")
            assert meta["scores"]["model"] == form
            assert meta["scores"]["test_auc"] == pytest.approx(m[form]["auc"], nan_ok=True)
        assert meta["reduce_range"] == m["quantization"]["reduce_range"]
    ticket = json.loads((run / "imp-global" / "round1" / "int8" / "metrics.json").read_text())
    assert ticket["method"] == "imp-global" and ticket["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert ticket["bytes"]["ticket"] < 0.7 * ticket["bytes"]["checkpoint"]
    # sparsity and INT8 compound: the ticket's INT8 file is well below the dense one's
    dense = quantized[0][1]
    assert ticket["bytes"]["onnxz_int8"] < 0.8 * dense["bytes"]["onnxz_int8"]
    assert ticket["bytes"]["onnxz_fp32"] < 0.7 * dense["bytes"]["onnxz_fp32"]


def test_the_stage_states_what_it_serves_and_why(quantized):
    (_, dense), (_, ticket) = quantized
    # two rounds give no 95 % interval: no finding, so fp32 is served, and it says so
    assert dense["serve"]["form"] == "fp32" and dense["serve"]["file"] == "model.onnxz"
    assert "too few" in dense["serve"]["reason"] and dense["serve"]["policy"] == "auto"
    assert all(r["verdict"] == "no measurable difference" for r in dense["latency"])
    assert dense["serve"]["bytes"] == dense["bytes"]["onnxz_fp32"]
    search = dense["search"]
    assert search["chosen"] == "all" and {"all", "compute"} <= set(search["candidates"])
    assert len(search["nodes"]) == 6  # four convs and two linear layers, each tried alone
    assert ticket["serve"]["form"] == "int8" and ticket["serve"]["policy"] == "int8"
    assert ticket["serve"]["bytes"] == ticket["bytes"]["onnxz_int8"] and ticket["search"] is None


def test_export_int8_and_detect_agree_with_fp32(trained, tmp_path, capsys):
    root, faces, run = trained
    level = run / "imp-global" / "round1"
    out = tmp_path / "ticket.int8.onnxz"
    assert cli.main(["export", str(level), "--int8", "--always-int8", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "INT8 sparse, coded .onnxz" in printed and "served int8" in printed
    assert "batch 1, 1 thread(s)" in printed
    detector = quantize.OnnxModule(out)
    assert detector.meta["model"] == "mesonet" and detector.meta["input_size"] == 32
    assert detector.meta["int8"] is True
    # the decisions it carries: the run's threshold, reduce_range, the INT8 file's own scores
    run_metrics = json.loads((level / "metrics.json").read_text())
    assert detector.meta["threshold"] == run_metrics["val_threshold"]
    assert detector.meta["reduce_range"] == (not quantize.has_vnni())
    scores = detector.meta["scores"]
    assert scores["model"] == "int8" and "(test split)" in scores["scored_on"]
    assert 0 <= scores["test_acc_val_threshold"] <= 1 and scores["test_samples"] > 0
    assert f"INT8 test AUC {scores['test_auc']:.4f}" in printed
    # the plain ONNX beside it: larger than the sparse, coded file
    plain = tmp_path / "ticket.int8.onnx"
    assert cli.main(["export", str(level), "--int8", "--always-int8", "-o", str(plain)]) == 0
    assert out.stat().st_size < plain.stat().st_size
    from deepfake_lth.data.store import load_split
    from deepfake_lth.deploy.detect import load_detector

    test = load_split(faces, "test")
    crops = np.asarray(test.images)
    int8 = load_detector(out).probabilities(crops)
    fp32 = load_detector(level / "checkpoint.pt").probabilities(crops)
    assert np.mean((int8 >= 0.5) == (fp32 >= 0.5)) >= 0.9
    assert np.abs(int8 - fp32).max() < 0.2


def test_bad_inputs_name_the_fix(trained, tmp_path, capsys):
    root, faces, run = trained
    bad = tmp_path / "bad.onnx"
    bad.write_text("not onnx")
    with pytest.raises(UserError, match="export --int8"):
        quantize.OnnxModule(bad)
    with pytest.raises(UserError, match="calibration_samples"):
        quantize.parse_spec({"calibration_samples": 0})
    with pytest.raises(UserError, match="unknown"):
        quantize.parse_spec({"calibrate": 3})
    with pytest.raises(UserError, match="serve"):
        quantize.parse_spec({"serve": "fp16"})
    for argv, fix in ((["--int8"], "model.onnxz"), (["--always-int8"], "goes with --int8")):
        assert cli.main(["export", str(run / "dense"), *argv, "-o", str(tmp_path / "m.pt")]) == 2
        assert fix in capsys.readouterr().err
    # the output and the calibration faces are checked before any work
    calls = []
    monkey = pytest.MonkeyPatch()
    monkey.setattr(quantize, "build_int8", lambda *a, **kw: calls.append(a))
    try:
        for argv, fix in (
            (["-o", "/proc/m.onnx"], "cannot write in /proc"),
            (["-o", str(tmp_path / "m.onnx"), "--calibration", str(tmp_path)],
             "no faces.npy or manifest.csv; give a packed faces folder"),
            (["-o", str(tmp_path / "m.onnx"), "--calibration", str(tmp_path / "none")],
             "not a folder"),
        ):
            assert cli.main(["export", str(run / "dense"), "--int8", *argv]) == 2
            err = capsys.readouterr().err
            assert fix in err and "Traceback" not in err
        assert calls == [] and not (tmp_path / "m.onnx").exists()
    finally:
        monkey.undo()


def test_a_failed_int8_export_leaves_nothing(trained, tmp_path, capsys, monkeypatch):
    root, faces, run = trained

    def fail(*a, **kw):
        raise UserError("timing failed")

    monkeypatch.setattr(quantize, "latency_rows", fail)
    out = tmp_path / "served" / "m.onnxz"
    rc = cli.main(["export", str(run / "imp-global" / "round1"), "--int8", "-o", str(out)])
    assert rc == 2 and "timing failed" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.rglob("*.onnx*"))


def test_pareto_front_by_hand():
    from deepfake_lth.report.compression import pareto_front

    #            small+bad  big+good  dominated  smallest  nan
    cost = [10, 40, 45, 5, np.nan]
    acc = [0.70, 0.90, 0.85, 0.60, 0.99]
    assert pareto_front(cost, acc).tolist() == [True, True, False, True, False]
    assert pareto_front([1, 1], [0.5, 0.5]).tolist() == [True, True]  # ties dominate nothing
    # bytes and latency together: small but slow, and fast but large, both stay; a point as
    # large and as slow as another and no better drops out
    both = [[10, 9.0], [40, 1.0], [40, 9.0], [10, 1.0]]
    assert pareto_front(both, [0.9, 0.9, 0.9, 0.8]).tolist() == [True, True, False, True]


def test_compression_section_shows_measured_points(trained, quantized, tmp_path):
    from deepfake_lth.report.common import Figures
    from deepfake_lth.report.compression import collect_compression, compression_section

    root, faces, run = trained
    config = {"datasets": {"dsq": {}}, "models": {"mesonet": {}}, "seeds": [0]}
    points = collect_compression(root, config)
    assert len(points) == 4 and set(points["form"]) == {"fp32", "INT8"}
    dense = quantized[0][1]
    row = points[(points["method"] == "dense") & (points["form"] == "INT8")].iloc[0]
    # bytes and latency of the same file: the INT8 .onnxz
    assert row["bytes"] == dense["bytes"]["onnxz_int8"] and row["acc"] == dense["int8"]["acc"]
    assert row["ms_1"] == dense["latency"][0]["int8_ms"] and row["auc"] == dense["int8"]["auc"]
    assert points.loc[points["served"], "form"].tolist() == ["fp32", "INT8"]  # dense, ticket
    section = compression_section(root, config, Figures(tmp_path))
    assert "1 intra-op thread (as the stage ran)" in section.intro
    main, compounded = section.parts[0].tables
    names = [r[0] for r in main.rows]
    assert set(names) == {"Dense fp32", "Dense INT8", "IMP-Global r1 fp32", "IMP-Global r1 INT8"}
    aucs = [float(r[main.columns.index("AUC")]) for r in main.rows]
    assert aucs == sorted(aucs, reverse=True)  # ranked by AUC
    served = {r[0] for r in main.rows if r[1] == "✓"}
    assert served == {"Dense fp32", "IMP-Global r1 INT8"}
    assert any(r[-1] == "✓" for r in main.rows)
    ticket = next(r for r in compounded.rows if r[0] == "IMP-Global r1")
    ticket_int8 = quantized[1][1]["bytes"]["onnxz_int8"]
    assert ticket[5] == f"{ticket_int8 / 1e3:,.1f}"
    assert ticket[6] == f"{ticket_int8 / dense['bytes']['onnx_fp32']:.3f}"
    assert any("Dense serves fp32: INT8 at batch 1" in line for line in section.parts[0].lines)
    assert section.parts[0].figure is not None and (tmp_path / "compression-dsq-mesonet.png").is_file()


def test_detect_runs_the_int8_export_on_videos_like_the_fp32_ticket(trained, tmp_path, capsys):
    """`export --int8` then `detect` on videos: the labels equal the fp32 checkpoint's."""
    from deepfake_lth.data.acquire import synthetic

    root, faces, run = trained
    level = run / "imp-global" / "round1"
    model = tmp_path / "detector.int8.onnx"
    assert cli.main(["export", str(level), "--int8", "-o", str(model)]) == 0
    rng = np.random.default_rng(7)
    for i, fake in enumerate((False, True, False, True)):
        target, donor = synthetic.sample_identity(rng), synthetic.sample_identity(rng)
        frames = synthetic.render_frames(target, donor if fake else None, 6, 160, 128, rng, 0.5)
        synthetic.write_video(tmp_path / f"clip{i}.mp4", frames, 10, 90)
    capsys.readouterr()
    results = {}
    for name, path in (("int8", model), ("fp32", level / "checkpoint.pt")):
        rc = cli.main(["detect", str(tmp_path), "--model", str(path), "--json", "--frames", "4",
                       "--faces", '{"min_face_size": 40, "detect_max_side": 320}'])
        assert rc == 0
        results[name] = [json.loads(line) for line in capsys.readouterr().out.splitlines()][:-1]
    ok = [(a, b) for a, b in zip(results["int8"], results["fp32"], strict=True)
          if a["status"] == "ok"]
    assert len(ok) >= 3
    assert np.mean([a["label"] == b["label"] for a, b in ok]) >= 0.9
    assert max(abs(a["fake_probability"] - b["fake_probability"]) for a, b in ok) < 0.1
