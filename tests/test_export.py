"""Compact ticket files: round trip, size, fp16, structured tickets, bad input, CLI."""

from __future__ import annotations

import logging

import pytest
import torch

from deepfake_lth import cli
from deepfake_lth.core.errors import UserError
from deepfake_lth.deploy import export
from deepfake_lth.models import build_model
from deepfake_lth.pruning import checkpoints, masks, structured

torch.set_num_threads(1)


def random_mask(model: torch.nn.Module, keep: float, seed: int = 0) -> dict:
    """A random mask keeping ``keep`` of every prunable layer."""
    gen = torch.Generator().manual_seed(seed)
    return {
        n: torch.rand(p.shape, generator=gen) < keep
        for n, p in masks.prunable_parameters(model).items()
    }


def trained_like(name: str, size: int, seed: int = 0) -> torch.nn.Module:
    """A registry model with BatchNorm statistics away from their defaults."""
    torch.manual_seed(seed)
    model = build_model(name, input_size=size)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            m.num_batches_tracked.fill_(7)
    return model.eval()


def save_checkpoint(tmp_path, model, mask):
    masks.apply_mask(model, mask)
    ck, mk = tmp_path / "checkpoint.pt", tmp_path / "mask.pt"
    torch.save(model.state_dict(), ck)
    checkpoints.save_mask(mk, mask)
    return ck, mk


def test_round_trip_fp32_is_exact_and_small(tmp_path):
    model = trained_like("cnn5", 32)
    mask = random_mask(model, keep=0.2)
    ck, mk = save_checkpoint(tmp_path, model, mask)
    info = export.export_ticket(ck, mk, tmp_path / "ticket.pt", "cnn5", input_size=32)

    assert info["ratio"] < 0.3
    assert info["ticket_bytes"] == (tmp_path / "ticket.pt").stat().st_size
    assert info["sparsity"] == pytest.approx(masks.sparsity(mask))
    # plain data only: readable without unpickling arbitrary objects
    raw = torch.load(tmp_path / "ticket.pt", weights_only=True)
    assert raw["format"] == export.TICKET_FORMAT and raw["model"] == "cnn5"
    assert raw["values"].numel() == masks.mask_counts(mask)[0]

    ticket = export.read_ticket(tmp_path / "ticket.pt")
    state = model.state_dict()
    assert set(ticket.state) == set(state)
    for k, v in state.items():
        assert torch.equal(ticket.state[k], v), k
    for k, m in mask.items():
        assert torch.equal(ticket.mask[k], m), k
    loaded = export.load_ticket(tmp_path / "ticket.pt")
    assert not loaded.training
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), model(x), atol=1e-6, rtol=0)


def test_fp16_is_close_and_smaller(tmp_path):
    model = trained_like("cnn5", 32)
    mask = random_mask(model, keep=0.2)
    ck, mk = save_checkpoint(tmp_path, model, mask)
    fp32 = export.export_ticket(ck, mk, tmp_path / "t32.pt", "cnn5", input_size=32)
    fp16 = export.export_ticket(ck, mk, tmp_path / "t16.pt", "cnn5", input_size=32, fp16=True)
    assert fp16["dtype"] == "float16"
    assert fp16["ticket_bytes"] < 0.75 * fp32["ticket_bytes"]
    raw = torch.load(tmp_path / "t16.pt", weights_only=True)
    assert raw["values"].dtype == torch.float16
    loaded = export.load_ticket(tmp_path / "t16.pt")
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        ref, got = model(x), loaded(x)
    assert got.dtype == torch.float32
    assert torch.allclose(got, ref, atol=1e-2, rtol=0)
    # the weights really went through float16
    assert not torch.equal(got, ref)


def test_mesonet_input_size_is_recorded(tmp_path):
    model = trained_like("mesonet", 64)  # fc1 depends on the input size
    mask = masks.prune_to_sparsity(model, 0.8, "global")
    ck, mk = save_checkpoint(tmp_path, model, mask)
    export.export_ticket(ck, mk, tmp_path / "t.pt", "mesonet", input_size=64)
    ticket = export.read_ticket(tmp_path / "t.pt")
    assert ticket.input_size == 64
    loaded = ticket.build()
    assert loaded.classifier.fc1.in_features == model.classifier.fc1.in_features
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), model(x), atol=1e-6, rtol=0)
    # the default size (256) does not fit this checkpoint: the error names --input-size
    with pytest.raises(UserError, match="--input-size"):
        export.export_ticket(ck, mk, tmp_path / "bad.pt", "mesonet")


def test_without_mask_keeps_the_nonzero_weights(tmp_path):
    model = trained_like("cnn5", 32)
    mask = random_mask(model, keep=0.3, seed=1)
    ck, _ = save_checkpoint(tmp_path, model, mask)
    export.export_ticket(ck, None, tmp_path / "t.pt", "cnn5", input_size=32)
    ticket = export.read_ticket(tmp_path / "t.pt")
    for k, m in mask.items():
        assert torch.equal(ticket.mask[k], m & (model.state_dict()[k] != 0)), k


def test_weights_outside_the_mask_are_dropped_with_a_warning(tmp_path, caplog):
    model = trained_like("cnn5", 32)
    mask = random_mask(model, keep=0.5)
    state = model.state_dict()  # dense: every pruned weight is nonzero
    with caplog.at_level(logging.WARNING, logger="deepfake_lth.deploy.export"):
        ticket = export.unpack_ticket(export.pack_ticket(state, mask, "cnn5", 32))
    stray = sum(int((~m).sum()) for m in mask.values())
    assert f"{stray} weights the mask prunes are nonzero" in caplog.text
    for k, m in mask.items():
        assert torch.equal(ticket.state[k], state[k] * m), k


def test_structured_ticket_loads_compacted(tmp_path):
    model = trained_like("cnn5", 32)
    cmask = structured.channel_mask(model, None, 0.5, "local")
    wmask = structured.apply_channel_mask(model, cmask)
    ck, mk = save_checkpoint(tmp_path, model, wmask)
    structured.save_channels(tmp_path / "channels.pt", cmask)
    export.export_ticket(
        ck, mk, tmp_path / "t.pt", "cnn5", input_size=32, channels=tmp_path / "channels.pt"
    )
    compact = export.load_ticket(tmp_path / "t.pt")
    full = export.load_ticket(tmp_path / "t.pt", compact=False)
    n = sum(p.numel() for p in compact.parameters())
    assert n < 0.5 * sum(p.numel() for p in full.parameters())
    assert compact.features.block1.conv.out_channels == int(cmask["features.block1.conv"].sum())
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        ref = model(x)
        assert torch.allclose(full(x), ref, atol=1e-6, rtol=0)
        assert torch.allclose(compact(x), ref, atol=1e-5, rtol=0)


def test_bad_files_are_user_errors(tmp_path):
    model = trained_like("cnn5", 32)
    mask = random_mask(model, keep=0.2)
    ck, mk = save_checkpoint(tmp_path, model, mask)
    with pytest.raises(UserError, match="not a ticket file"):
        export.read_ticket(ck)  # a plain state dict
    with pytest.raises(UserError, match="does not exist"):
        export.read_ticket(tmp_path / "nope.pt")
    export.export_ticket(ck, mk, tmp_path / "t.pt", "cnn5", input_size=32)
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.pt"):
        export.read_ticket(tmp_path / "cut.pt")
    raw = torch.load(tmp_path / "t.pt", weights_only=True)
    raw["values"] = raw["values"][:-5]
    with pytest.raises(UserError, match="damaged"):
        export.unpack_ticket(raw)
    # a checkpoint of another architecture
    with pytest.raises(UserError, match="does not fit"):
        export.export_ticket(ck, mk, tmp_path / "x.pt", "resnet18", input_size=32)


def test_cli_export(tmp_path, capsys):
    model = trained_like("cnn5", 32)
    mask = random_mask(model, keep=0.2)
    ck, mk = save_checkpoint(tmp_path, model, mask)
    out = tmp_path / "ticket.pt"
    args = ["export", str(ck), str(mk), "-o", str(out), "--model", "cnn5", "--input-size", "32"]
    assert cli.main([*args, "--fp16", "--faces", '{"size": 48}']) == 0
    printed = capsys.readouterr().out
    assert "ticket.pt" in printed and f"sparsity {masks.sparsity(mask):.4f}" in printed
    ticket = export.read_ticket(out)
    assert ticket.dtype == "float16" and ticket.meta["faces"] == {"size": 48}

    missing = export.onnx_missing()
    rc = cli.main([*args, "--onnx", str(tmp_path / "ticket.onnx")])
    if missing:  # the packages are optional: a clear message, not a traceback
        assert rc == 2
        assert "onnx" in capsys.readouterr().err
    else:
        assert rc == 0
        assert (tmp_path / "ticket.onnx").stat().st_size > 0
    assert cli.main([*args[:3], "-o", str(out), "--model", "cnn5", "--faces", "[1"]) == 2


def test_onnx_missing_names_the_packages(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a)
    )
    assert "onnxruntime not installed" in export.onnx_missing()


def test_the_decisions_line_says_what_is_missing():
    from deepfake_lth.deploy.decisions import decisions_line, synthetic_notice

    assert decisions_line({}) == "recorded: no threshold (detect uses 0.5)"
    meta = {"threshold": 0.3, "scores": {"test_auc": 0.9, "test_acc_val_threshold": None},
            "training_faces": {"dataset": "ff", "type": "local", "layout": "faceforensics",
                               "synthetic": False}}
    assert decisions_line(meta) == ("recorded: threshold 0.3000 (chosen on validation); test "
                                    "AUC 0.9000, accuracy at the threshold n/a (fp32); trained "
                                    "on ff (local, faceforensics layout)")
    assert synthetic_notice(meta) is None
    assert "synthetic demo faces (ff)" in synthetic_notice(
        {"training_faces": {**meta["training_faces"], "synthetic": True}})
