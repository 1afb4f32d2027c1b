"""ONNX Runtime on the CPU: sessions of ONNX and ``.onnxz`` files, the project's metadata in
them, and a session called like the torch detector (``deepfake-lth detect``, the quantize
stage, the benchmarks)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.files import atomic_path

META_KEY = "deepfake_lth"  # ONNX metadata_props entry: model, input size, face settings, ...
QUIET = 3  # onnxruntime log severity: errors only (its warnings name graph internals)


@contextlib.contextmanager
def quiet(*names: str) -> Iterator[None]:
    """Warnings and log records below ERROR of the loggers ``names`` (``""``: the root logger,
    where ONNX Runtime's quantization tools write) kept off the console for the block: they
    name graph internals a user cannot act on."""
    import warnings

    loggers = [logging.getLogger(n) if n else logging.getLogger() for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def set_metadata(path: str | Path, meta: Mapping[str, Any]) -> None:
    """Record ``meta`` (JSON) in the ONNX file's metadata_props, for ``detect``; the exporter's
    per-node records (source stack traces, names) are dropped: they do not run, and in a small
    model they outweigh the weights."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        del value.metadata_props[:]
    for init in model.graph.initializer:
        del init.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(dict(meta), default=str)
    with atomic_path(path) as tmp:  # never a half-written model at ``path``
        onnx.save(model, str(tmp))


def session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session of ``path`` (an ONNX file, or an ``.onnxz`` file expanded
    in memory: :mod:`deepfake_lth.deploy.onnxz`) with ``threads`` intra-op threads."""
    import onnxruntime as ort

    from deepfake_lth.deploy import onnxz

    ort.set_default_logger_severity(QUIET)
    opts = ort.SessionOptions()
    opts.log_severity_level = QUIET
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    model = onnxz.load_bytes(path) if onnxz.is_onnxz(path) else str(path)
    try:
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types on bad files
        raise UserError(f"{path} is not an ONNX model onnxruntime loads ({exc}); "
                        "write it again with `deepfake-lth export --int8`") from None


def onnx_metadata(sess) -> dict[str, Any]:
    raw = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}


class OnnxModule:
    """An ONNX model called like the torch detector: NCHW float tensor in, logits out."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.session = session(path, threads)
        self.input = self.session.get_inputs()[0].name
        self.meta = onnx_metadata(self.session)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, np.float32)})[0]

    def __call__(self, x):
        import torch

        return torch.from_numpy(self.logits(x.detach().cpu().contiguous().numpy()))

    def eval(self) -> OnnxModule:
        return self


def probabilities(model: OnnxModule, images, size: int, batch_size: int = 256) -> np.ndarray:
    """p(fake) of every uint8 face of ``images`` through onnxruntime."""
    from deepfake_lth.data.store import to_tensor

    out = []
    for start in range(0, len(images), batch_size):
        x = to_tensor(np.asarray(images[start : start + batch_size]), size).contiguous()
        z = model.logits(x.numpy()).reshape(len(x), -1)[:, 0].astype(np.float64)
        out.append(1.0 / (1.0 + np.exp(-z)))
    return np.concatenate(out) if out else np.zeros(0)


def time_sessions(models: Sequence[OnnxModule], x: np.ndarray, warmup: int,
                  repeats: int) -> list[list[float]]:
    """Seconds per forward of each model on ``x``, round-robin after ``warmup`` passes
    (:func:`deepfake_lth.deploy.serve.time_round_robin`)."""
    return time_round_robin([m.logits for m in models], x, warmup, repeats)




def time_round_robin(fns: Sequence[Callable[[Any], Any]], x: Any, warmup: int,
                     repeats: int) -> list[list[float]]:
    """Seconds per call of each function on ``x``: ``warmup`` untimed rounds, then
    ``repeats`` rounds of one call each, the starting function rotated every round."""
    n = len(fns)
    for _ in range(warmup):
        for f in fns:
            f(x)
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        for k in range(n):
            i = (r + k) % n
            t0 = time.perf_counter()
            fns[i](x)
            times[i].append(time.perf_counter() - t0)
    return times
