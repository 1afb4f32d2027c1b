"""Score new videos or images with a trained detector: ``deepfake-lth detect``.

The frames and faces come from the workflow's own code (:func:`deepfake_lth.data.faces.extract_file`
with MTCNN), so a file is seen exactly as in training: ``frames`` evenly spaced frames, the
largest face per frame, the same margin and crop size. Every face crop gets a fake
probability (sigmoid of the logit); a file's score is their mean, ``fake`` at or above
``threshold``.

A bad file (missing, zero-byte, corrupt, a text file named .mp4, no face) gets one line with
its status (the statuses of ``extraction_log.csv``) and no score; the command exits 0 when
at least one file was scored, else 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Mapping
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
    from deepfake_lth.deploy.export import TICKET_FORMAT, load_file, unpack_ticket
    from deepfake_lth.models import build_model
    from deepfake_lth.pruning.checkpoints import load_mask
    from deepfake_lth.pruning.masks import apply_mask

    path = Path(model_path)
    if not path.is_file():
        raise UserError(f"--model {path} does not exist; give a ticket file or a checkpoint.pt")
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
    meta: dict[str, Any] = {"faces": faces} if faces else {}
    return Detector(model.to(device).eval(), size, device, meta)


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


def detect(
    paths: Iterable[str | Path],
    detector: Detector,
    spec: FaceSpec,
    threshold: float = 0.5,
    face_crops: bool = False,
) -> list[dict[str, Any]]:
    """Score every file of ``paths`` (folders searched for videos and images). ``face_crops``:
    the images are already face crops (no MTCNN; videos always get it)."""
    files = collect_files(paths)
    needs_mtcnn = any(f.suffix.lower() in VIDEO_EXTS for f in files) or not face_crops
    faces = FaceDetector(spec, str(detector.device)) if files and needs_mtcnn else None
    faces_log = logging.getLogger("deepfake_lth.data.faces")
    level = faces_log.level
    faces_log.setLevel(logging.ERROR)  # the status line below says it once
    try:
        results = []
        for f in files:
            is_video = f.suffix.lower() in VIDEO_EXTS
            use = faces if (is_video or not face_crops) else None
            results.append(score_file(f, detector, spec, use, threshold))
        return results
    finally:
        faces_log.setLevel(level)


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
    parser.add_argument("--threshold", type=float, default=0.5, help="fake at or above this")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    from deepfake_lth.training.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames must be at least 1, got {args.frames}")
    device = resolve_device(args.device)
    detector = load_detector(args.model, args.arch, args.mask, args.input_size, device)
    recorded = detector.meta.get("faces") if isinstance(detector.meta.get("faces"), dict) else {}
    overrides = dict(recorded)
    if args.faces:
        try:
            given = json.loads(args.faces)
        except json.JSONDecodeError as exc:
            raise UserError(f"--faces is not valid JSON ({exc}); e.g. '{{\"size\": 64}}'") from None
        if not isinstance(given, dict):
            raise UserError("--faces must be a JSON object, e.g. '{\"size\": 64}'")
        overrides.update(given)
    spec = face_spec(args.frames, overrides)
    results = detect(args.inputs, detector, spec, args.threshold, args.face_crops)
    if not results:
        print(f"no videos or images found in {' '.join(args.inputs)}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
        for r in results:
            if r["status"] != "ok":
                print(format_result(r), file=sys.stderr)
    else:
        for r in results:
            print(format_result(r))
    return 0 if any(r["status"] == "ok" for r in results) else 1
