"""INT8 post-training static quantization of the dense network and its tickets (ONNX Runtime).

A run folder's network (dense, an IMP ticket, a structured ticket compacted first) is written
as ONNX (:func:`deepfake_lth.deploy.export.to_onnx`) and quantized with ONNX Runtime's
``quantize_static``: QDQ format, int8 weights per output channel, uint8 activations whose
ranges are calibrated (min–max) on a seeded sample of the dataset's training faces. x86
CPUs without VNNI multiply u8×s8 with ``VPMADDUBSW``, whose 16-bit sums can saturate; there
the weights are quantized to 7 bits (``reduce_range``), as ONNX Runtime advises; with VNNI
(``avx512_vnni`` or ``avx_vnni`` in /proc/cpuinfo) the full 8 bits are used.

The INT8 model is evaluated, not assumed: the stage scores the test split through
onnxruntime with the fp32 ONNX model and the INT8 one (the scores of every run,
:func:`deepfake_lth.training.scoring.split_metrics`), times both side by side on the CPU
(round-robin, one forward of each in turn) and records the file sizes::

    results/{dataset}/{model}/seed{seed}/{level}/int8/
        model.onnx, model.int8.onnx, metrics.json, predictions.csv

``{level}`` is ``dense`` or ``{method}/round{k}`` / ``{method}/sparsity{pct}``.
``deepfake-lth quantize`` is the workflow's stage; ``deepfake-lth export --int8`` writes one
INT8 ONNX file (face settings in its metadata) that ``deepfake-lth detect --model`` runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.execution import add_execution_arguments, apply_execution
from deepfake_lth.core.schema import section_defaults

log = logging.getLogger(__name__)

META_KEY = "deepfake_lth"  # ONNX metadata_props entry: model, input size, face settings
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags (the first ``flags`` line of /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def has_vnni(flags: set[str] | None = None) -> bool:
    """Whether the CPU has an int8 dot-product instruction (VNNI, AMX) for u8×s8."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in VNNI_FLAGS)


def resolve_reduce_range(value: Any, flags: set[str] | None = None) -> bool:
    """``reduce_range`` as a bool: ``auto`` is True exactly on CPUs without VNNI."""
    if value == "auto":
        return not has_vnni(flags)
    if isinstance(value, bool):
        return value
    raise UserError(f"compression.reduce_range must be auto, true or false, got {value!r}")


def job_spec(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The config slice a compression job computes from (the rule's ``--spec``)."""
    c = config["compression"]
    keys = ("calibration_samples", "per_channel", "reduce_range", "batch_sizes", "repeats",
            "warmup")
    return {"input_size": config["models"][model].get("input_size"), **{k: c[k] for k in keys}}


def parse_spec(spec: Mapping[str, Any] | str | None) -> dict[str, Any]:
    from deepfake_lth.core.schema import stage_spec

    out = stage_spec(spec, "compression")
    n = out["calibration_samples"]
    if not isinstance(n, int) or n < 1:
        raise UserError(f"compression.calibration_samples must be an integer ≥ 1, got {n!r}")
    batches = out["batch_sizes"]
    if not batches or not all(isinstance(b, int) and b >= 1 for b in batches):
        raise UserError(f"compression.batch_sizes must be integers ≥ 1, got {batches!r}")
    resolve_reduce_range(out["reduce_range"])
    return out


# --------------------------------------------------------------------------- quantization


class _Calibration:
    """onnxruntime's CalibrationDataReader over float NCHW batches."""

    def __init__(self, name: str, data: np.ndarray, batch_size: int = 32) -> None:
        self.batches = iter(
            [{name: data[i : i + batch_size]} for i in range(0, len(data), batch_size)]
        )

    def get_next(self):
        return next(self.batches, None)


def quantize_onnx(
    fp32: str | Path,
    int8: str | Path,
    calibration: np.ndarray,
    per_channel: bool = True,
    reduce_range: bool = False,
) -> Path:
    """Write the INT8 (QDQ) model of ``fp32`` to ``int8``: weights int8 (per channel),
    activations uint8 with min–max ranges calibrated on ``calibration`` (N×3×S×S float32,
    normalised as in training)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from deepfake_lth.core.files import atomic_path

    if len(calibration) == 0:
        raise UserError("no calibration faces: the train split is empty")
    CalibrationDataReader.register(_Calibration)
    int8 = Path(int8)
    with tempfile.TemporaryDirectory() as tmp, atomic_path(int8) as out:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(out), _Calibration("input", np.ascontiguousarray(calibration)),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range,
        )
    return int8


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
    onnx.save(model, str(path))


def session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session of ``path`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
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


def calibration_faces(faces_dir: str | Path, n: int, size: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``n`` training faces, normalised NCHW float32."""
    from deepfake_lth.data.store import load_split, to_tensor

    train = load_split(faces_dir, "train")
    if len(train) == 0:
        raise UserError(f"{faces_dir}: the train split is empty; no faces to calibrate on")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(train), size=min(n, len(train)), replace=False))
    return to_tensor(np.asarray(train.images[keep]), size).contiguous().numpy()


def time_sessions(models: Sequence[OnnxModule], x: np.ndarray, warmup: int,
                  repeats: int) -> list[list[float]]:
    """Seconds per forward of each model on ``x``, round-robin after ``warmup`` passes."""
    times: list[list[float]] = [[] for _ in models]
    for _ in range(warmup):
        for m in models:
            m.logits(x)
    for _ in range(repeats):
        for i, m in enumerate(models):
            t0 = time.perf_counter()
            m.logits(x)
            times[i].append(time.perf_counter() - t0)
    return times


def latency_rows(fp32: str | Path, int8: str | Path, size: int, spec: Mapping[str, Any]
                 ) -> list[dict[str, Any]]:
    """Median ms of the fp32 and INT8 models at each batch size, timed side by side."""
    threads = int(spec["threads"])
    models = [OnnxModule(fp32, threads), OnnxModule(int8, threads)]
    rng = np.random.default_rng(0)
    rows = []
    for batch in spec["batch_sizes"]:
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        t32, t8 = time_sessions(models, x, int(spec["warmup"]), int(spec["repeats"]))
        m32, m8 = statistics.median(t32), statistics.median(t8)
        rows.append({"batch": batch, "threads": threads, "fp32_ms": 1e3 * m32,
                     "int8_ms": 1e3 * m8, "speedup": m32 / m8})
    return rows


# --------------------------------------------------------------------------- stage


def write_int8(run_folder: str | Path, out: str | Path, faces_dir: str | Path | None = None,
               spec: Mapping[str, Any] | None = None, seed: int = 0,
               workdir: str | Path | None = None) -> dict[str, Any]:
    """Quantize the network of ``run_folder`` to ``out`` (INT8 ONNX, the run's face settings
    in its metadata), calibrated on ``faces_dir``'s training faces (default: the run's
    dataset's). The sparse ticket and fp32 ONNX go to ``workdir`` (default: a temporary
    folder). Returns the paths, sizes and settings."""
    from deepfake_lth.deploy.export import check_onnx, export_ticket, read_ticket, to_onnx

    spec = parse_spec(spec)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        info = export_ticket(run_folder, None, work / "ticket.pt")
        ticket = read_ticket(work / "ticket.pt")
        faces_dir = Path(faces_dir) if faces_dir else _run_faces(info, run_folder)
        size = int(spec["input_size"] or ticket.input_size)
        model = ticket.build()
        fp32 = to_onnx(model, work / "model.onnx", size)
        import torch

        check_onnx(model, fp32, torch.randn(2, 3, size, size), atol=1e-3)
        reduce_range = resolve_reduce_range(spec["reduce_range"])
        calib = calibration_faces(faces_dir, int(spec["calibration_samples"]), size, seed)
        quantize_onnx(fp32, out, calib, bool(spec["per_channel"]), reduce_range)
        meta = {"model": ticket.model_name, "input_size": size, **ticket.meta,
                "faces": ticket.meta.get("faces"), "int8": True}
        set_metadata(out, meta)
        set_metadata(fp32, {**meta, "int8": False})
        return {**info, "onnx_fp32": str(fp32), "onnx_fp32_bytes": fp32.stat().st_size,
                "onnx_int8": str(out), "onnx_int8_bytes": Path(out).stat().st_size,
                "reduce_range": reduce_range, "per_channel": bool(spec["per_channel"]),
                "calibration_samples": len(calib), "faces_dir": str(faces_dir),
                "input_size": size}


def _run_faces(info: Mapping[str, Any], run_folder: str | Path) -> Path:
    """The packed faces of a run's dataset: ``{results}/{dataset}/faces`` above the folder."""
    from deepfake_lth.core.runfolder import read_run_folder

    dataset = read_run_folder(run_folder).metrics.get("dataset")
    folder = Path(run_folder).absolute()
    for parent in folder.parents if dataset else ():
        faces = parent / str(dataset) / "faces"
        if (faces / "faces.npy").is_file() and (faces / "manifest.csv").is_file():
            return faces
    raise UserError(f"{run_folder}: no packed faces of its dataset ({dataset}) found above it; "
                    "give --calibration results/{dataset}/faces")


def quantize_stage(faces_dir: str | Path, level: str | Path, out_dir: str | Path,
                   spec: Mapping[str, Any] | str | None = None, seed: int = 0) -> dict:
    """The workflow's stage: the INT8 model of one level folder, evaluated on the test split
    through onnxruntime beside its fp32 ONNX model, timed side by side; writes ``out_dir``."""
    import pandas as pd

    from deepfake_lth.core.files import read_metrics, write_csv, write_metrics
    from deepfake_lth.data.store import load_split
    from deepfake_lth.training.scoring import split_metrics

    spec = parse_spec(spec)
    level, out_dir = Path(level), Path(out_dir)
    run = read_metrics(level)
    info = write_int8(level, out_dir / "model.int8.onnx", faces_dir, spec, seed, out_dir)
    size = info["input_size"]
    test = load_split(faces_dir, "test")
    labels, videos = np.asarray(test.labels), np.asarray(test.video_ids)
    probs = {}
    for kind, path in (("fp32", info["onnx_fp32"]), ("int8", info["onnx_int8"])):
        probs[kind] = probabilities(OnnxModule(path, int(spec["threads"])), test.images, size)
    scores = {k: split_metrics(labels, p, videos) for k, p in probs.items()}
    write_csv(pd.DataFrame({"row": np.asarray(test.rows), "video_id": videos, "label": labels,
                            "prob": probs["int8"], "prob_fp32": probs["fp32"]}),
              out_dir / "predictions.csv")
    same = float(np.mean((probs["int8"] > 0.5) == (probs["fp32"] > 0.5))) if len(labels) else 1.0
    metrics = {
        "dataset": run.get("dataset"), "model": run.get("model"), "seed": run.get("seed"),
        "method": run.get("method") or "dense", "round": run.get("round"),
        "level": level.name, "sparsity": info["sparsity"],
        "channel_sparsity": _channel_sparsity(level),
        "test_acc": scores["int8"]["acc"], "test_auc": scores["int8"]["auc"],
        "video_acc": scores["int8"]["video_acc"], "fp32": scores["fp32"],
        "int8": scores["int8"], "run_test_acc": run.get("test_acc"),
        "test_auc_drop": scores["fp32"]["auc"] - scores["int8"]["auc"],
        "label_agreement": same,
        "bytes": {"checkpoint": info["checkpoint_bytes"], "ticket": info["ticket_bytes"],
                  "onnx_fp32": info["onnx_fp32_bytes"], "onnx_int8": info["onnx_int8_bytes"]},
        "latency": latency_rows(info["onnx_fp32"], info["onnx_int8"], size, spec),
        "quantization": {"library": "onnxruntime", "format": "QDQ", "weights": "int8",
                         "activations": "uint8", "calibration": "minmax",
                         "per_channel": info["per_channel"], "reduce_range": info["reduce_range"],
                         "calibration_samples": info["calibration_samples"],
                         "cpu_vnni": has_vnni()},
        "input_size": size, "test_samples": len(labels),
    }
    write_metrics(out_dir / "metrics.json", metrics)
    log.info("%s: INT8 %d bytes (%.2f× the fp32 ONNX), test AUC %.4f (fp32 %.4f), batch 1 "
             "%.2f× faster", out_dir, info["onnx_int8_bytes"],
             info["onnx_int8_bytes"] / info["onnx_fp32_bytes"], scores["int8"]["auc"],
             scores["fp32"]["auc"], metrics["latency"][0]["speedup"])
    return metrics


def _channel_sparsity(level: Path) -> float:
    if not (level / "channels.pt").is_file():
        return 0.0
    from deepfake_lth.pruning.structured import channel_sparsity, load_channels

    return float(channel_sparsity(load_channels(level / "channels.pt")))


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", required=True, help="packed dataset folder (calibration on "
                        "its train split, evaluation on its test split)")
    parser.add_argument("--level", required=True, help="run folder to quantize (dense/ or a "
                        "ticket's round{k}/ or sparsity{pct}/)")
    parser.add_argument("--out", required=True, help="folder to write (the level's int8/)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    parser.add_argument("--spec", default="{}", help="JSON: input_size, calibration_samples, "
                        "per_channel, reduce_range, batch_sizes, threads, warmup, repeats")
    add_execution_arguments(parser, ("threads",))


def run(args: argparse.Namespace) -> int:
    spec = apply_execution(args.spec, args, ("threads",))
    quantize_stage(args.faces, args.level, args.out, spec, args.seed)
    return 0


# `deepfake-lth export` (cli.COMMANDS): the ticket exporter's arguments, and --int8


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    from deepfake_lth.deploy.export import add_arguments as add_ticket_arguments

    add_ticket_arguments(parser)
    parser.add_argument(
        "--int8", action="store_true",
        help="write an INT8 ONNX model to -o instead of a ticket (post-training static "
        "quantization, calibrated on the run's training faces); `deepfake-lth detect --model` "
        "runs it",
    )
    parser.add_argument("--calibration", help="packed faces folder to calibrate --int8 on "
                        "(default: the run's dataset's, results/{dataset}/faces)")
    parser.add_argument("--calibration-samples", type=int,
                        default=section_defaults("compression")["calibration_samples"],
                        help="training faces to calibrate --int8 on")


def run_export(args: argparse.Namespace) -> int:
    from deepfake_lth.deploy.export import run as run_ticket_export

    if not args.int8:
        return run_ticket_export(args)
    clashing = [f for f, v in (("--fp16", args.fp16), ("--onnx", args.onnx), ("--mask", args.mask),
                               ("--channels", args.channels), ("--faces", args.faces)) if v]
    if clashing or args.model or args.input_size:
        raise UserError(f"--int8 takes a run folder as it is; drop {', '.join(clashing) or '--model/--input-size'}")
    if not str(args.out).endswith(".onnx"):
        raise UserError(f"-o {args.out}: an INT8 model is an ONNX file; name it e.g. model.int8.onnx")
    info = write_int8(args.checkpoint, args.out, args.calibration,
                      {"calibration_samples": args.calibration_samples})
    print(f"{args.out}: INT8 ONNX, {info['onnx_int8_bytes']:,} bytes "
          f"({info['onnx_int8_bytes'] / info['onnx_fp32_bytes']:.3f}× the fp32 ONNX, "
          f"{info['onnx_int8_bytes'] / info['checkpoint_bytes']:.3f}× {args.checkpoint}); "
          f"{info['model']} at {info['input_size']} px, calibrated on "
          f"{info['calibration_samples']} faces of {info['faces_dir']}, reduce_range "
          f"{info['reduce_range']} (VNNI {'yes' if has_vnni() else 'no'})")
    return 0
