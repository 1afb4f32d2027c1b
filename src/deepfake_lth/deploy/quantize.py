"""INT8 post-training static quantization of the dense network and its tickets (ONNX Runtime).

A run folder's network (dense, an IMP ticket, a structured ticket compacted first) is written
as ONNX (:func:`deepfake_lth.deploy.export.to_onnx`) and quantized with ONNX Runtime's
``quantize_static``: QDQ format, int8 weights per output channel, uint8 activations whose
ranges are calibrated (min–max) on a seeded sample of the dataset's training faces. x86
CPUs without VNNI multiply u8×s8 with ``VPMADDUBSW``, whose 16-bit sums can saturate; there
the weights are quantized to 7 bits (``reduce_range``), as ONNX Runtime advises; with VNNI
(``avx512_vnni`` or ``avx_vnni`` in /proc/cpuinfo) the full 8 bits are used.

Which operators INT8 quantizes, and whether INT8 is served at all, is measured on the CPU
that runs the stage (:mod:`deepfake_lth.deploy.serve`): candidates (all operators, those
with weights, node by node) are timed side by side against fp32, and INT8 is served only
where it is measurably faster; otherwise fp32 is served, and the stage says why. Both forms
are stored sparse and entropy-coded (``.onnxz``, :mod:`deepfake_lth.deploy.onnxz`: only a
ticket's surviving weights), evaluated, not assumed: the stage scores the test split through
onnxruntime with both served files (the scores of every run,
:func:`deepfake_lth.training.scoring.split_metrics`), times them side by side and records
every file's bytes, the coding's bytes per stream and the choice::

    results/{dataset}/{model}/seed{seed}/{level}/int8/
        model.onnx, model.int8.onnx            plain ONNX (fp32; the INT8 candidate chosen)
        model.onnxz, model.int8.onnxz          the same, sparse and coded: what is served
        metrics.json, predictions.csv

``{level}`` is ``dense`` or ``{method}/round{k}`` / ``{method}/sparsity{pct}``.
``deepfake-lth quantize`` is the workflow's stage; ``deepfake-lth export --int8`` writes the
served file that ``deepfake-lth detect --model`` runs. Each file's metadata holds its own
decisions (:mod:`deepfake_lth.deploy.decisions`): the run's validation threshold, the face
settings, ``reduce_range`` and the file's own test scores (INT8 scores for the INT8 file).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.execution import add_execution_arguments, apply_execution
from deepfake_lth.core.schema import section_defaults
from deepfake_lth.deploy.runtime import (  # noqa: F401 - the INT8 model's runtime, re-exported
    META_KEY,
    OnnxModule,
    onnx_metadata,
    probabilities,
    quiet,
    session,
    set_metadata,
    time_sessions,
)
from deepfake_lth.deploy.serve import COMPUTE_OPS, latency_rows, search_int8

log = logging.getLogger(__name__)

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
            "warmup", "serve", "search_nodes")
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
    if out["serve"] not in ("auto", "int8"):
        raise UserError(f"compression.serve must be auto or int8, got {out['serve']!r}")
    n = out["search_nodes"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise UserError(f"compression.search_nodes must be an integer ≥ 0, got {n!r}")
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


class Quantizer:
    """INT8 (QDQ) models of one fp32 ONNX model: weights int8 (per output channel), activations
    uint8 with min–max ranges calibrated once on ``calibration`` (N×3×S×S float32, normalised
    as in training) and reused for every choice of operators (:meth:`write`)."""

    def __init__(self, fp32: str | Path, calibration: np.ndarray, per_channel: bool = True,
                 reduce_range: bool = False) -> None:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        if len(calibration) == 0:
            raise UserError("no calibration faces: the train split is empty")
        self.tmp = tempfile.TemporaryDirectory()
        self.pre = Path(self.tmp.name) / "pre.onnx"
        self.cache = Path(self.tmp.name) / "calibration.json"
        with quiet(""):  # its warnings go to the root logger
            quant_pre_process(str(fp32), str(self.pre), skip_symbolic_shape=True)
        self.calibration = np.ascontiguousarray(calibration)
        self.per_channel, self.reduce_range = bool(per_channel), bool(reduce_range)

    def compute_nodes(self) -> list[str]:
        """Names of the operators with weights (convolutions, matrix products), in order."""
        import onnx

        return [n.name for n in onnx.load(str(self.pre)).graph.node if n.op_type in COMPUTE_OPS]

    def write(self, out: str | Path, op_types: Sequence[str] | None = None,
              nodes: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> Path:
        """The INT8 model quantizing ``op_types`` (None: all ONNX Runtime quantizes), only
        ``nodes`` when given, never ``exclude``; written atomically to ``out``."""
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        from deepfake_lth.core.files import atomic_path

        CalibrationDataReader.register(_Calibration)
        # an onnxruntime with calibration_cache_path (1.32 has it) reuses the ranges; an older
        # one calibrates again, with the same result
        cached = "calibration_cache_path" in inspect.signature(quantize_static).parameters
        if cached and op_types and not self.cache.is_file():  # calibrate every tensor, once
            self.write(Path(self.tmp.name) / "all.onnx")
        with atomic_path(out) as tmp, quiet(""):  # it warns on the root logger
            quantize_static(
                str(self.pre), str(tmp), _Calibration("input", self.calibration),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, per_channel=self.per_channel,
                reduce_range=self.reduce_range,
                op_types_to_quantize=list(op_types) if op_types else None,
                nodes_to_quantize=list(nodes) if nodes else None,
                nodes_to_exclude=list(exclude) or None,
                **({"calibration_cache_path": self.cache} if cached else {}),
            )
        return Path(out)


def calibration_faces(faces_dir: str | Path, n: int, size: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``n`` training faces, normalised NCHW float32."""
    from deepfake_lth.data.store import load_split, to_tensor

    train = load_split(faces_dir, "train")
    if len(train) == 0:
        raise UserError(f"{faces_dir}: the train split is empty; no faces to calibrate on")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(train), size=min(n, len(train)), replace=False))
    return to_tensor(np.asarray(train.images[keep]), size).contiguous().numpy()


FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}  # plain ONNX, in a work folder
SERVED = {"fp32": "model.onnxz", "int8": "model.int8.onnxz"}  # sparse, coded (.onnxz)


def build_int8(run_folder: str | Path, work: str | Path, faces_dir: str | Path | None = None,
               spec: Mapping[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """The fp32 and INT8 models of ``run_folder``'s network in ``work``: plain ONNX
    (:data:`FILES`) and sparse, coded (:data:`SERVED`, what is served), the run's face
    settings in their metadata. INT8 is calibrated on ``faces_dir``'s training faces (default:
    the run's dataset's); which operators it quantizes is measured (:func:`search_int8`;
    ``serve: int8``: all of them), and fp32 and INT8 are timed side by side to decide which
    is served (:func:`deepfake_lth.deploy.serve.decide`). Returns paths, bytes, the timing
    and the choice."""
    from deepfake_lth.deploy import onnxz
    from deepfake_lth.deploy.decisions import onnx_meta
    from deepfake_lth.deploy.export import export_ticket, read_ticket
    from deepfake_lth.deploy.serve import decide

    spec, work = parse_spec(spec), Path(work)
    faces_dir = check_faces(faces_dir) if faces_dir else _run_faces(run_folder)
    info = export_ticket(run_folder, None, work / "ticket.pt")
    ticket = read_ticket(work / "ticket.pt")
    size = int(spec["input_size"] or ticket.input_size)
    reduce_range = resolve_reduce_range(spec["reduce_range"])
    calib = calibration_faces(faces_dir, int(spec["calibration_samples"]), size, seed)
    files = {}
    # the plain files are made in a staging folder and renamed once their metadata is set
    with tempfile.TemporaryDirectory(dir=work, prefix=".int8-") as stage:
        plain, search = _plain_models(ticket, Path(stage), size, calib, reduce_range, spec)
        probs, scores = served_scores(plain, faces_dir, size, int(spec["threads"]),
                                      ticket.meta.get("threshold"))
        for form, path in plain.items():
            set_metadata(path, onnx_meta(ticket, input_size=size, int8=form == "int8",
                                         reduce_range=reduce_range if form == "int8" else None,
                                         scores={**scores[form], "model": form}))
            onnxz.write(path, work / SERVED[form])
            files[form] = onnxz.info(work / SERVED[form])
        for form, path in plain.items():
            os.replace(path, work / FILES[form])
    fp32, int8 = work / FILES["fp32"], work / FILES["int8"]
    latency = latency_rows(work / SERVED["fp32"], work / SERVED["int8"], size, spec)
    choice = decide(latency) if spec["serve"] == "auto" else {
        "form": "int8", "reason": "compression.serve is int8: INT8 served without a choice"}
    return {**info, "onnx_fp32": str(fp32), "onnx_fp32_bytes": fp32.stat().st_size,
            "onnx_int8": str(int8), "onnx_int8_bytes": int8.stat().st_size,
            "onnxz": {k: str(work / v) for k, v in SERVED.items()},
            "onnxz_bytes": {k: v["bytes"] for k, v in files.items()},
            "coding": {k: v["sections"] for k, v in files.items()},
            "reduce_range": reduce_range, "per_channel": bool(spec["per_channel"]),
            "calibration_samples": len(calib), "faces_dir": str(faces_dir),
            "input_size": size, "latency": latency, "search": search, "probs": probs,
            "scores": scores,
            "serve": {**choice, "policy": spec["serve"], "file": SERVED[choice["form"]],
                      "bytes": files[choice["form"]]["bytes"]}}


def _plain_models(ticket, stage: Path, size: int, calib: np.ndarray, reduce_range: bool,
                  spec: Mapping[str, Any]) -> tuple[dict[str, Path], dict | None]:
    """The fp32 ONNX model (checked against torch) and the INT8 one (every operator, or the
    candidate :func:`search_int8` measures fastest) in ``stage``; and the search."""
    import shutil

    import torch

    from deepfake_lth.deploy.export import check_onnx, to_onnx

    model = ticket.build()
    fp32 = to_onnx(model, stage / FILES["fp32"], size)
    check_onnx(model, fp32, torch.randn(2, 3, size, size), atol=1e-3)
    q = Quantizer(fp32, calib, bool(spec["per_channel"]), reduce_range)
    int8, search = stage / FILES["int8"], None
    if spec["serve"] == "int8":
        q.write(int8)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            best, search = search_int8(q, fp32, Path(tmp), size, spec)
            shutil.copyfile(best, int8)
    return {"fp32": fp32, "int8": int8}, search


def served_scores(paths: Mapping[str, Path], faces_dir: Path, size: int, threads: int,
                  threshold: float | None) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """p(fake) of ``faces_dir``'s test faces through each ONNX file of ``paths`` and their
    scores (:func:`deepfake_lth.training.scoring.split_metrics`; ``acc_at_threshold``: the
    accuracy at the run's validation threshold), recorded in each file's metadata."""
    from deepfake_lth.data.store import load_split
    from deepfake_lth.training.scoring import split_metrics

    test = load_split(faces_dir, "test")
    labels, videos = np.asarray(test.labels), np.asarray(test.video_ids)
    probs = {k: probabilities(OnnxModule(path, threads), test.images, size)
             for k, path in paths.items()}
    scores = {}
    for k, p in probs.items():
        m = split_metrics(labels, p, videos)
        t = 0.5 if threshold is None else float(threshold)
        scores[k] = {"scored_on": f"{faces_dir} (test split)", "test_samples": len(labels),
                     **{f"test_{n}": m[n] for n in ("acc", "auc", "eer", "ap")},
                     **{n: m[n] for n in ("video_acc", "video_auc")},
                     "test_acc_val_threshold": float(np.mean((p > t) == (labels > 0.5)))
                     if len(labels) else float("nan")}
    return probs, scores


def check_faces(faces_dir: str | Path, flag: str = "--calibration") -> Path:
    """A packed faces folder (faces.npy and manifest.csv, as the pack stage writes them);
    UserError naming ``flag`` and the fix otherwise."""
    faces = Path(faces_dir)
    missing = [n for n in ("faces.npy", "manifest.csv") if not (faces / n).is_file()]
    if missing:
        raise UserError(f"{flag} {faces}: {'not a folder' if not faces.is_dir() else 'no ' + ' or '.join(missing)}; "
                        "give a packed faces folder of the workflow, results/{dataset}/faces "
                        "(the pack stage writes faces.npy and manifest.csv there)")
    return faces


def _run_faces(run_folder: str | Path) -> Path:
    """The packed faces of a run's dataset: ``{results}/{dataset}/faces`` above the folder."""
    from deepfake_lth.core.runfolder import read_run_folder

    dataset = read_run_folder(run_folder).metrics.get("dataset")
    folder = Path(run_folder).absolute()
    for parent in folder.parents if dataset else ():
        faces = parent / str(dataset) / "faces"
        if (faces / "faces.npy").is_file() and (faces / "manifest.csv").is_file():
            return faces
    raise UserError(f"{run_folder}: no packed faces of its dataset ({dataset}) found in the "
                    "folders above it (results/{dataset}/faces with faces.npy and "
                    "manifest.csv); give --calibration with the packed faces folder the run "
                    "was trained on")


def quantize_stage(faces_dir: str | Path, level: str | Path, out_dir: str | Path,
                   spec: Mapping[str, Any] | str | None = None, seed: int = 0) -> dict:
    """The workflow's stage: the fp32 and INT8 models of one level folder (:func:`build_int8`),
    the served .onnxz files evaluated on the test split through onnxruntime and timed side by
    side, which of them is served and why; writes ``out_dir``."""
    import pandas as pd

    from deepfake_lth.core.files import read_metrics, write_csv, write_metrics
    from deepfake_lth.data.store import load_split
    from deepfake_lth.training.scoring import split_metrics

    spec = parse_spec(spec)
    level, out_dir = Path(level), Path(out_dir)
    run = read_metrics(level)
    info = build_int8(level, out_dir, faces_dir, spec, seed)
    size = info["input_size"]
    test = load_split(faces_dir, "test")
    labels, videos = np.asarray(test.labels), np.asarray(test.video_ids)
    probs = info["probs"]  # the plain ONNX files' (the .onnxz hold the same graph and weights)
    scores = {k: split_metrics(labels, p, videos) for k, p in probs.items()}
    write_csv(pd.DataFrame({"row": np.asarray(test.rows), "video_id": videos, "label": labels,
                            "prob": probs["int8"], "prob_fp32": probs["fp32"]}),
              out_dir / "predictions.csv")
    same = float(np.mean((probs["int8"] > 0.5) == (probs["fp32"] > 0.5))) if len(labels) else 1.0
    metrics = {
        "dataset": run.get("dataset"), "model": run.get("model"), "seed": run.get("seed"),
        "method": run.get("method") or "dense", "round": run.get("round"),
        # a low-rank network's: its parameter-equivalent sparsity (its factors are dense)
        "level": level.name, "sparsity": run["sparsity"] if info["ranks"] else info["sparsity"],
        "channel_sparsity": _channel_sparsity(level),
        "test_acc": scores["int8"]["acc"], "test_auc": scores["int8"]["auc"],
        "video_acc": scores["int8"]["video_acc"], "fp32": scores["fp32"],
        "int8": scores["int8"], "run_test_acc": run.get("test_acc"),
        "test_auc_drop": scores["fp32"]["auc"] - scores["int8"]["auc"],
        "label_agreement": same,
        "bytes": {"checkpoint": info["checkpoint_bytes"], "ticket": info["ticket_bytes"],
                  "onnx_fp32": info["onnx_fp32_bytes"], "onnx_int8": info["onnx_int8_bytes"],
                  "onnxz_fp32": info["onnxz_bytes"]["fp32"],
                  "onnxz_int8": info["onnxz_bytes"]["int8"]},
        "coding": info["coding"], "latency": info["latency"], "serve": info["serve"],
        "search": info["search"],
        "quantization": {"library": "onnxruntime", "format": "QDQ", "weights": "int8",
                         "activations": "uint8", "calibration": "minmax",
                         "per_channel": info["per_channel"], "reduce_range": info["reduce_range"],
                         "calibration_samples": info["calibration_samples"],
                         "cpu_vnni": has_vnni()},
        "input_size": size, "test_samples": len(labels),
    }
    write_metrics(out_dir / "metrics.json", metrics)
    log.info("%s: serves %s (%s); INT8 .onnxz %d bytes (%.2f× the fp32 ONNX), test AUC %.4f "
             "(fp32 %.4f)", out_dir, info["serve"]["form"], info["serve"]["reason"],
             info["onnxz_bytes"]["int8"], info["onnxz_bytes"]["int8"] / info["onnx_fp32_bytes"],
             scores["int8"]["auc"], scores["fp32"]["auc"])
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
        help="write the served ONNX model to -o instead of a ticket: INT8 (post-training static "
        "quantization, calibrated on the run's training faces) where it measures faster than "
        "fp32 on this CPU, else fp32; -o model.onnxz stores it sparse and coded (smallest), "
        "-o model.onnx as plain ONNX; `deepfake-lth detect --model` runs either",
    )
    parser.add_argument("--always-int8", action="store_true",
                        help="with --int8: serve INT8 without timing it against fp32 (e.g. for "
                        "another CPU than this one)")
    parser.add_argument("--calibration", help="packed faces folder to calibrate --int8 on "
                        "(default: the run's dataset's, results/{dataset}/faces)")
    parser.add_argument("--calibration-samples", type=int,
                        default=section_defaults("compression")["calibration_samples"],
                        help="training faces to calibrate --int8 on")


def run_export(args: argparse.Namespace) -> int:
    import shutil

    from deepfake_lth.core.files import atomic_path, check_output
    from deepfake_lth.deploy.decisions import synthetic_notice
    from deepfake_lth.deploy.export import run as run_ticket_export

    if not args.int8:
        if args.always_int8:
            raise UserError("--always-int8 goes with --int8")
        return run_ticket_export(args)
    clashing = [f for f, v in (("--fp16", args.fp16), ("--onnx", args.onnx), ("--mask", args.mask),
                               ("--channels", args.channels), ("--faces", args.faces)) if v]
    if clashing or args.model or args.input_size:
        raise UserError(f"--int8 takes a run folder as it is; drop {', '.join(clashing) or '--model/--input-size'}")
    out = Path(args.out)
    if out.suffix not in (".onnx", ".onnxz"):
        raise UserError(f"-o {args.out}: --int8 writes an ONNX model; name it e.g. model.onnxz "
                        "(sparse and coded, the smallest) or model.onnx (plain ONNX)")
    check_output(out)  # before any work: the folder, the calibration faces
    from deepfake_lth.core.runfolder import read_run_folder

    read_run_folder(args.checkpoint)
    faces = check_faces(args.calibration) if args.calibration else _run_faces(args.checkpoint)
    spec = {"calibration_samples": args.calibration_samples,
            "serve": "int8" if args.always_int8 else "auto"}
    with tempfile.TemporaryDirectory() as tmp:
        info = build_int8(args.checkpoint, tmp, faces, spec)
        form = info["serve"]["form"]
        with atomic_path(out) as dst:
            shutil.copyfile(Path(tmp) / (SERVED if out.suffix == ".onnxz" else FILES)[form], dst)
    print(export_summary(info, out, args.checkpoint))
    notice = synthetic_notice(info["meta"])
    if notice:
        print(notice, file=sys.stderr)
    return 0


def export_summary(info: Mapping[str, Any], out: Path, source: str) -> str:
    """What `export --int8` wrote, which form it serves and the measurement behind it."""
    form, size = info["serve"]["form"], out.stat().st_size
    lines = [f"{out}: {form.upper()} {'sparse, coded .onnxz' if out.suffix == '.onnxz' else 'ONNX'}"
             f", {size:,} bytes ({size / info['checkpoint_bytes']:.3f}× {source}); "
             f"{info['model']} at {info['input_size']} px",
             f"served {form}: {info['serve']['reason']}"]

    for r in info["latency"]:
        lines.append(f"  batch {r['batch']}, {r['threads']} thread(s): fp32 {r['fp32_ms']:.3f} ms, "
                     f"INT8 {r['int8_ms']:.3f} ms ({r['verdict']})")
    chosen = (info["search"] or {}).get("chosen", "all")
    lines.append(f"INT8 quantizes {_operators_text(info['search'])} (candidate {chosen}); "
                 f"calibrated on {info['calibration_samples']} faces of {info['faces_dir']}, "
                 f"reduce_range {info['reduce_range']} (VNNI {'yes' if has_vnni() else 'no'}); "
                 f".onnxz bytes fp32 {info['onnxz_bytes']['fp32']:,}, INT8 "
                 f"{info['onnxz_bytes']['int8']:,}")
    sc, t = info["scores"][form], info["meta"].get("threshold")
    lines.append((f"recorded: threshold {t:.4f} (chosen on validation)" if t is not None
                  else "recorded: no threshold (detect uses 0.5)")
                 + f"; {form.upper()} test AUC {sc['test_auc']:.4f}, accuracy at the threshold "
                 f"{sc['test_acc_val_threshold']:.4f} on {sc['test_samples']} faces")
    return "\n".join(lines)


def _operators_text(search: Mapping[str, Any] | None) -> str:
    """Which operators the chosen INT8 candidate quantizes, in words."""
    if not search:
        return "every operator ONNX Runtime quantizes"
    plan = search["candidates"][search["chosen"]]
    if plan.get("nodes"):
        return f"{len(plan['nodes'])} operator(s): {', '.join(plan['nodes'])}"
    text = ("the operators with weights" if plan.get("op_types")
            else "every operator ONNX Runtime quantizes")
    if plan.get("exclude"):
        text += f" except {', '.join(plan['exclude'])}"
    return text
