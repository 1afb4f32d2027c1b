"""A network as an ONNX file: exported with a dynamic batch axis (the exporter's warnings
and progress lines kept off the console), checked against torch through onnxruntime, and
written atomically with the project's metadata (:func:`write_onnx`): exported, checked, the
metadata set, then renamed, so nothing is left at the final name when a step fails."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.files import atomic_path
from deepfake_lth.deploy.runtime import quiet, session, set_metadata

log = logging.getLogger(__name__)


def onnx_missing() -> str | None:
    """None when ONNX export and checking can run here, else what is missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    return f"{' and '.join(missing)} not installed" if missing else None


def to_onnx(model: nn.Module, path: str | Path, input_size: int, opset: int | None = None) -> Path:
    """Write ``model`` (eval mode, CPU) as ONNX with a dynamic batch axis; ``opset`` defaults
    to the installed torch's. Needs the ``onnx`` package (and ``onnxscript`` for the
    torch.export-based exporter, used when present)."""
    import importlib.util

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    example = (torch.zeros(2, 3, input_size, input_size),)
    dynamo = importlib.util.find_spec("onnxscript") is not None
    # the batch axis is dynamic: torch.export's dynamic_shapes for the dynamo exporter (its
    # current API), dynamic_axes for the TorchScript one
    batch = (
        {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
        if dynamo
        else {"dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}}
    )
    with quiet_exporter():
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=["input"],
            output_names=["logits"],
            opset_version=opset,
            dynamo=dynamo,
            external_data=False,
            verbose=False,  # no progress lines on stdout
            **batch,
        )
    return path


@contextlib.contextmanager
def quiet_exporter():
    """The ONNX exporter's warnings and progress lines kept off the console (they name torch
    internals a user cannot act on); errors still raise."""
    import io

    sink = io.StringIO()
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir",
             "torch._export", "torch.utils._sympy")
    try:
        with quiet(*names), contextlib.redirect_stdout(sink):
            yield
    finally:
        if sink.getvalue():
            log.debug("ONNX exporter output: %s", sink.getvalue())


def check_onnx(model: nn.Module, path: str | Path, x: torch.Tensor, atol: float = 1e-4,
               name: str | Path | None = None) -> float:
    """Largest |torch − onnxruntime| logit difference on ``x``; UserError (naming ``name``,
    default ``path``) above ``atol``."""

    sess = session(path, 1)
    with torch.inference_mode():
        ref = model.cpu().eval()(x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    diff = float(np.abs(ref - got).max())
    if not diff <= atol:
        raise UserError(f"{name or path}: onnxruntime logits differ from torch by {diff:.2e} > "
                        f"{atol}; the exported graph is wrong, nothing was written")
    return diff


def write_onnx(model, path: str | Path, input_size: int, meta: Mapping[str, Any],
               atol: float = 1e-4) -> float:
    """``model`` as ONNX at ``path`` (``.onnxz``: sparse and coded), atomically: exported,
    checked against torch (largest |Δlogit|, UserError above ``atol``), ``meta`` set, then
    renamed; nothing is left at ``path`` when a step fails. Returns the largest |Δlogit|."""
    import shutil
    import tempfile

    import torch

    from deepfake_lth.deploy import onnxz

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "model.onnx"
        to_onnx(model, plain, input_size)
        diff = check_onnx(model, plain, torch.randn(2, 3, input_size, input_size), atol, path)
        set_metadata(plain, meta)
        if path.suffix == onnxz.SUFFIX:
            onnxz.write(plain, path)
        else:
            with atomic_path(path) as dst:
                shutil.copyfile(plain, dst)
    return diff
