"""Sparse, coded ONNX files (.onnxz): exact round trip, only the nonzero weights stored,
onnxruntime sessions from them, damaged files named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfake_lth.core.errors import UserError
from deepfake_lth.deploy import export, onnxz, runtime
from deepfake_lth.pruning import masks

pytest.importorskip("onnxruntime")
pytest.importorskip("zstandard")
torch.set_num_threads(1)


def _initializers(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


@pytest.fixture(scope="module")
def ticket_onnx(tmp_path_factory):
    """CNN-5 at 32 px with 80 % of its weights pruned, as ONNX."""
    from test_export import trained_like

    model = trained_like("cnn5", 32)
    masks.apply_mask(model, masks.prune_to_sparsity(model, 0.8, "global"))
    path = tmp_path_factory.mktemp("onnxz") / "ticket.onnx"
    return export.to_onnx(model, path, 32), model


def test_round_trip_is_exact_and_stores_only_the_nonzero_weights(ticket_onnx, tmp_path):
    import onnx

    path, model = ticket_onnx
    out = tmp_path / "ticket.onnxz"
    nbytes = onnxz.write(path, out)
    assert nbytes == out.stat().st_size and onnxz.is_onnxz(out) and not onnxz.is_onnxz(path)
    original = onnx.load(str(path))
    restored = onnxz.decode(out.read_bytes())
    a, b = _initializers(original), _initializers(restored)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
    assert [n.SerializeToString() for n in original.graph.node] == [
        n.SerializeToString() for n in restored.graph.node]
    info = onnxz.info(out)
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight")
                  and p.dim() > 1)
    nonzero = sum(int((p != 0).sum()) for n, p in model.named_parameters()
                  if n.endswith("weight") and p.dim() > 1)
    # every conv/linear weight is stored sparse: a bit each, and only its nonzero values
    assert info["sparse_elements"] == weights and info["nonzero"] == nonzero
    assert info["sections"]["bits"]["raw"] == (weights + 7) // 8
    assert info["sections"]["values-<f4"]["raw"] < 4 * (nonzero + 0.1 * weights)
    assert nbytes < 0.35 * path.stat().st_size  # 20 % of the weights, a bit each, coded


def test_a_session_of_the_onnxz_file_scores_like_the_onnx_file(ticket_onnx, tmp_path):
    path, model = ticket_onnx
    out = tmp_path / "ticket.onnxz"
    onnxz.write(path, out)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    got = runtime.OnnxModule(out).logits(x)
    ref = runtime.OnnxModule(path).logits(x)
    assert np.array_equal(got, ref)
    with torch.inference_mode():
        assert np.abs(model(torch.from_numpy(x)).numpy() - got).max() < 1e-4


def test_dense_tensors_are_stored_dense():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8)).astype(np.float32)  # no zero: a mask would cost more
    s = w.copy()
    s[rng.random(s.shape) < 0.9] = 0
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("MatMul", ["y", "s"],
                                                                          ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(s.T.copy(), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = onnxz.encode(model)
    header_tensors = {t["name"]: t["nnz"] for t in __import__("json").loads(
        data[12: 12 + int.from_bytes(data[8:12], "little")])["tensors"]}
    assert header_tensors == {"w": None, "s": int((s != 0).sum())}
    restored = _initializers(onnxz.decode(data))
    assert np.array_equal(restored["w"], w) and np.array_equal(restored["s"], s.T)
    onnx.checker.check_model(onnxz.decode(data))


def test_damaged_files_are_user_errors(ticket_onnx, tmp_path):
    path, _ = ticket_onnx
    out = tmp_path / "t.onnxz"
    onnxz.write(path, out)
    data = out.read_bytes()
    for name, bad in (("truncated", data[: len(data) // 2]), ("text", b"DLTONNXZ not a header"),
                      ("flipped", data[:-40] + bytes(40))):
        f = tmp_path / f"{name}.onnxz"
        f.write_bytes(bad)
        with pytest.raises(UserError, match="damaged .onnxz"):
            onnxz.load_bytes(f)
    with pytest.raises(UserError, match="does not exist"):
        onnxz.load_bytes(tmp_path / "missing.onnxz")
    with pytest.raises(UserError, match="not an .onnxz file"):
        onnxz.decode(b"ONNX")
