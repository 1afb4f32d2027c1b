"""Score new videos or images with a trained detector: ``deepfake-lth detect``.

The frames and faces come from the workflow's own code (:func:`deepfake_lth.data.faces.extract_file`
with MTCNN), so a file is seen exactly as in training: ``frames`` evenly spaced frames, the
largest face per frame, the same margin and crop size. Every face crop gets a fake
probability (sigmoid of the logit); a file's score is their mean, ``fake`` at or above
``threshold``: ``--threshold``, else the one the model records (its run's ``val_threshold``,
chosen on the validation split: :mod:`deepfake_lth.deploy.decisions`), else 0.5; every result
says which (``threshold``). A model trained on the synthetic demo faces says so in one line.

Each file's result is printed as soon as it is scored (``--json``: one JSON object per
line), then a one-line summary (``--json``: ``{"summary": ...}``; ``--quiet``: the summary
alone). A bad file (missing, zero-byte, corrupt, a text file named .mp4, no face) gets one
line with its status (the statuses of ``extraction_log.csv``) and no score; the command exits
0 when at least one file was scored, else 1; Ctrl-C exits 130, the lines printed kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.faces import FaceDetector, FaceSpec, extract_file
from deepfake_lth.data.media import IMAGE_EXTS, VIDEO_EXTS

log = logging.getLogger(__name__)



@dataclass
class Detector:
    """A model ready to score face crops."""

    model: nn.Module
    input_size: int
    device: torch.device
    meta: dict[str, Any]

    @torch.inference_mode()
    def probabilities(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Fake probability of each uint8 face crop (N×S×S×3, RGB)."""
        from deepfake_lth.data.store import to_tensor

        out = []
        for start in range(0, len(crops), batch_size):
            x = to_tensor(crops[start : start + batch_size], self.input_size, self.device)
            logits = self.model(x).float().reshape(len(x), -1)[:, 0]
            out.append(torch.sigmoid(logits).cpu())
        return torch.cat(out).double().numpy() if out else np.zeros(0)


def load_detector(
    model_path: str | Path,
    arch: str | None = None,
    mask: str | Path | None = None,
    input_size: int | None = None,
    device: torch.device | str = "cpu",
) -> Detector:
    """A ticket file (from ``deepfake-lth export``), or a checkpoint.pt, as an eval-mode
    :class:`Detector`. A checkpoint's architecture, input size, mask and face settings come
    from its run folder (``metrics.json`` beside it, as for ``deepfake-lth export``) or, where
    the folder records none, from ``arch``, ``input_size`` and ``mask``; a value given that
    contradicts the folder is an error."""
    from deepfake_lth.core.runfolder import resolve_run
    from deepfake_lth.deploy.decisions import run_meta
    from deepfake_lth.deploy.export import TICKET_FORMAT, load_file, unpack_ticket
    from deepfake_lth.models import build_model
    from deepfake_lth.pruning.checkpoints import load_mask
    from deepfake_lth.pruning.masks import apply_mask

    path = Path(model_path)
    if path.is_dir():  # a run folder, read as `deepfake-lth export` reads it
        if not (path / "checkpoint.pt").is_file():
            raise UserError(f"--model {path} is a folder without checkpoint.pt; give a run folder "
                            "of the workflow, a ticket file or an ONNX file from `deepfake-lth "
                            "export`")
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise UserError(f"--model {path} does not exist; give a ticket file or an ONNX file from "
                        "`deepfake-lth export`, a run folder or a checkpoint.pt")
    device = torch.device(device)
    if path.suffix in (".onnx", ".onnxz"):  # `deepfake-lth export --int8`: onnxruntime, CPU
        from deepfake_lth.deploy.runtime import OnnxModule

        model = OnnxModule(path, max(1, torch.get_num_threads()))
        if "input_size" not in model.meta:
            raise UserError(f"{path} records no input size; write it with "
                            "`deepfake-lth export <run folder> --int8 -o model.int8.onnx`")
        return Detector(model, int(model.meta["input_size"]), torch.device("cpu"), model.meta)
    obj = load_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == TICKET_FORMAT:
        ticket = unpack_ticket(obj, str(path))
        if arch and arch != ticket.model_name:
            raise UserError(f"--arch {arch} but the ticket {path} holds a {ticket.model_name}")
        if input_size and int(input_size) != ticket.input_size:
            raise UserError(f"--input-size {input_size} but the ticket {path} was trained at "
                            f"{ticket.input_size}; drop --input-size")
        model = ticket.build(device=device)
        return Detector(model, ticket.input_size, device, dict(ticket.meta))
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"--model {path} is neither a ticket file nor a state_dict checkpoint")
    try:
        run, arch, size, faces = resolve_run(path, mask, arch, input_size)
    except UserError as exc:
        raise UserError(str(exc).replace("--model", "--arch")) from None
    mask = run.mask
    model = build_model(arch, input_size=size)
    try:
        model.load_state_dict(obj)
    except RuntimeError as exc:
        raise UserError(
            f"{path} does not fit {arch} at input size {size} ({str(exc).splitlines()[0]}); "
            "check --arch and --input-size"
        ) from None
    if mask:
        apply_mask(model, load_mask(mask))
    if run.channels:
        from deepfake_lth.pruning.structured import compact_model, load_channels

        model = compact_model(model, load_channels(run.channels))
    return Detector(model.to(device).eval(), size, device, run_meta(run, faces))


def collect_files(paths: Iterable[str | Path]) -> list[Path]:
    """The given files, and the videos and images under the given folders (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            exts = VIDEO_EXTS | IMAGE_EXTS
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        else:
            out.append(p)
    return out


def face_spec(frames: int | None, overrides: Mapping[str, Any] | None = None) -> FaceSpec:
    """The crop parameters: ``overrides`` (a dataset's face settings) on the defaults,
    ``frames`` frames per video (None: the settings' ``frames_per_video``) and no minimum
    frame count."""
    spec = FaceSpec.from_dict(dict(overrides or {}))
    if frames is not None:
        spec.frames_per_video = int(frames)
    spec.min_frames = 1
    return spec


def score_file(
    path: Path,
    detector: Detector,
    spec: FaceSpec,
    faces: FaceDetector | None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Result of one file: ``status`` (``ok`` or why not), and when ok the mean and per-frame
    fake probabilities."""
    kind = "video" if path.suffix.lower() in VIDEO_EXTS else "image"
    row = {"path": str(path), "video_id": path.stem, "label": ""}
    crops, rows, entry = extract_file(row, path, spec, faces, kind)
    result: dict[str, Any] = {
        "path": str(path),
        "kind": kind,
        "status": entry["status"],
        "message": entry["message"],
        "frames_read": int(entry["frames_read"]),
        "faces": int(entry["faces"]),
    }
    if entry["status"] != "ok" or not crops:
        return result
    probs = detector.probabilities(np.stack(crops))
    mean = float(probs.mean())
    result.update(
        fake_probability=mean,
        label="fake" if mean >= threshold else "real",
        frame_indices=[int(r["frame_index"]) for r in rows],
        frame_probabilities=[float(p) for p in probs],
    )
    return result


def iter_detect(
    paths: Iterable[str | Path],
    detector: Detector,
    spec: FaceSpec,
    threshold: float = 0.5,
    face_crops: bool = False,
) -> Iterator[dict[str, Any]]:
    """Score every file of ``paths`` (folders searched for videos and images), yielding each
    result as soon as it is scored. ``face_crops``: the images are already face crops (no
    MTCNN; videos always get it)."""
    files = collect_files(paths)
    needs_mtcnn = any(f.suffix.lower() in VIDEO_EXTS for f in files) or not face_crops
    faces = FaceDetector(spec, str(detector.device)) if files and needs_mtcnn else None
    faces_log = logging.getLogger("deepfake_lth.data.faces")
    level = faces_log.level
    faces_log.setLevel(logging.ERROR)  # the status line below says it once
    try:
        for f in files:
            is_video = f.suffix.lower() in VIDEO_EXTS
            use = faces if (is_video or not face_crops) else None
            yield {**score_file(f, detector, spec, use, threshold), "threshold": threshold}
    finally:
        faces_log.setLevel(level)


def detect(
    paths: Iterable[str | Path],
    detector: Detector,
    spec: FaceSpec,
    threshold: float = 0.5,
    face_crops: bool = False,
) -> list[dict[str, Any]]:
    """Every result of :func:`iter_detect`, as a list."""
    return list(iter_detect(paths, detector, spec, threshold, face_crops))


def resolve_threshold(given: float | None, meta: Mapping[str, Any]) -> tuple[float, str]:
    """The threshold to apply and where it comes from: ``--threshold``, else the one the
    ticket records (chosen on its run's validation split), else 0.5."""
    if given is not None:
        if not 0.0 <= given <= 1.0:
            raise UserError(f"--threshold {given} is not a probability; give a value from 0 to "
                            "1 (a file is fake at or above it), or leave it out to use the "
                            "ticket's own")
        return float(given), "--threshold"
    recorded = meta.get("threshold")
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        return float(recorded), "chosen on the run's validation split"
    return 0.5, "the default: the model records no threshold"


def summary(results: list[Mapping[str, Any]], total: int, threshold: float, source: str,
            stopped: bool = False) -> dict[str, Any]:
    """Counts of a detect run: files, scored, fake, real, failed by status."""
    ok = [r for r in results if r["status"] == "ok"]
    failed: dict[str, int] = {}
    for r in results:
        if r["status"] != "ok":
            failed[r["status"]] = failed.get(r["status"], 0) + 1
    return {"files": total, "done": len(results), "scored": len(ok),
            "fake": sum(r["label"] == "fake" for r in ok),
            "real": sum(r["label"] == "real" for r in ok), "failed": failed,
            "threshold": threshold, "threshold_from": source, "stopped": stopped}


def format_summary(s: Mapping[str, Any]) -> str:
    """The summary in one line."""
    head = (f"stopped after {s['done']} of {s['files']} files: " if s["stopped"]
            else f"{s['files']} file{'' if s['files'] == 1 else 's'}: ")
    text = (f"{head}{s['scored']} scored, {s['fake']} fake, {s['real']} real at threshold "
            f"{s['threshold']:.4f} ({s['threshold_from']})")
    if s["failed"]:
        text += "; not scored: " + ", ".join(f"{n} {k}" for k, n in sorted(s["failed"].items()))
    return text


def format_result(r: Mapping[str, Any], per_frame: bool = True) -> str:
    """One line per file (and one with the per-frame probabilities when ``per_frame``)."""
    if r["status"] != "ok":
        return f"{r['path']}: {r['status']} ({r['message']})"
    n = len(r["frame_probabilities"])
    line = (
        f"{r['path']}: {r['label'].upper()} fake probability {r['fake_probability']:.3f} "
        f"(mean of {n} {'frame' if n == 1 else 'frames'})"
    )
    if per_frame and r["kind"] == "video":
        frames = " ".join(
            f"{i}:{p:.3f}"
            for i, p in zip(r["frame_indices"], r["frame_probabilities"], strict=True)
        )
        line += f"\n  per frame: {frames}"
    return line


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="videos, images or folders of them")
    parser.add_argument(
        "--model",
        required=True,
        help="ticket file from `deepfake-lth export`, an .onnxz or .onnx from `export --int8`, or a "
        "checkpoint.pt with --arch",
    )
    parser.add_argument(
        "--arch",
        help="registry model name of a checkpoint, e.g. cnn5 (default: its run folder's "
        "metrics.json; needed without one)",
    )
    parser.add_argument(
        "--mask", help="mask.pt applied to a checkpoint (default: the one beside it, if any)"
    )
    parser.add_argument(
        "--input-size",
        type=int,
        help="input side of a checkpoint (default: its run folder's; needed without one)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames sampled per video (default: the recorded frames_per_video, else 40)",
    )
    parser.add_argument(
        "--faces",
        help="face settings as JSON (crop size, margin, min_face_size, detect_max_side, ...), "
        "default: those recorded in the ticket (the run's dataset's), else the built-in defaults",
    )
    parser.add_argument(
        "--face-crops", action="store_true", help="images are already face crops: no MTCNN"
    )
    parser.add_argument(
        "--threshold", type=float, default=None,
        help="fake at or above this probability, 0 to 1 (default: the threshold the ticket "
        "records, chosen on its run's validation split; 0.5 where it records none)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line: a line per file as it is scored, then "
                        '{"summary": ...}')
    parser.add_argument("--quiet", action="store_true", help="print the summary line alone")


def _face_overrides(detector: Detector, faces: str | None) -> dict[str, Any]:
    """The recorded face settings with ``--faces`` on top."""
    from deepfake_lth.core.runfolder import parse_faces

    recorded = detector.meta.get("faces") if isinstance(detector.meta.get("faces"), dict) else {}
    return {**recorded, **(parse_faces(faces) or {})}


def _emit(line: str, stream=None) -> None:
    print(line, file=stream or sys.stdout, flush=True)


def run(args: argparse.Namespace) -> int:
    """Score the inputs, printing each result as it is done; Ctrl-C stops with exit code 130,
    what was printed kept, and the summary of the files done."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("deepfake-lth detect: stopped (Ctrl-C)", file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:  # the reader went away (`detect ... | head`): stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it


def _run(args: argparse.Namespace) -> int:
    from deepfake_lth.deploy.decisions import synthetic_notice
    from deepfake_lth.training.device import resolve_device

    if args.threshold is not None:
        resolve_threshold(args.threshold, {})  # a bad value is refused before any work
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames must be at least 1, got {args.frames}")
    device = resolve_device(args.device)
    detector = load_detector(args.model, args.arch, args.mask, args.input_size, device)
    threshold, source = resolve_threshold(args.threshold, detector.meta)
    notice = synthetic_notice(detector.meta)
    if notice:
        _emit(notice, sys.stderr)
    spec = face_spec(args.frames, _face_overrides(detector, args.faces))
    total = len(collect_files(args.inputs))
    if not total:
        print(f"no videos or images found in {' '.join(args.inputs)}", file=sys.stderr)
    results: list[dict[str, Any]] = []
    stopped = False
    try:
        for r in iter_detect(args.inputs, detector, spec, threshold, args.face_crops):
            results.append(r)
            if args.quiet:
                continue
            if args.json:
                _emit(json.dumps(r))
                if r["status"] != "ok":
                    _emit(format_result(r), sys.stderr)
            else:
                _emit(format_result(r))
    except KeyboardInterrupt:
        stopped = True
    s = summary(results, total, threshold, source, stopped)
    _emit(json.dumps({"summary": s}) if args.json else format_summary(s))
    if stopped:
        print("deepfake-lth detect: stopped (Ctrl-C); the lines above are the files done",
              file=sys.stderr, flush=True)
        return 130
    return 0 if s["scored"] else 1
