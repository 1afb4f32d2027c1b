"""What a run folder of the workflow knows about its checkpoint, for the tools that read one
(``export``, ``detect``): the files beside it, its ``metrics.json`` (model, input size,
dataset) and its dataset's face settings, with explicit flags checked against them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError, json_object


@dataclass
class RunFolder:
    """What a run folder (a round, sparsity or dense folder of the workflow) knows about its
    checkpoint: the files beside it, its ``metrics.json`` and its dataset's face settings."""

    checkpoint: Path
    mask: Path | None = None
    channels: Path | None = None
    metrics_path: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    faces: dict[str, Any] | None = None  # the dataset's face settings (summary.json)
    faces_path: Path | None = None
    source: dict[str, Any] | None = None  # where the faces came from (summary.json's source)

    @property
    def model(self) -> str | None:
        return self.metrics.get("model")

    @property
    def input_size(self) -> int | None:
        size = self.metrics.get("input_size")
        return int(size) if isinstance(size, (int, float)) else None


def read_run_folder(path: str | Path) -> RunFolder:
    """The checkpoint of a run folder (or the folder of a ``checkpoint.pt``) and what the
    folder records: ``mask.pt``, ``channels.pt``, ``metrics.json`` (model, input size,
    dataset) and the dataset's face settings and source, from
    ``{results}/{dataset}/faces/summary.json`` (found in the folders above; the
    ``face_settings`` and ``source`` that ``deepfake-lth pack`` records)."""
    path = Path(path)
    if path.is_dir():
        folder, checkpoint = path, path / "checkpoint.pt"
        if not checkpoint.is_file():
            raise UserError(f"{path} has no checkpoint.pt; give a round folder of the workflow "
                            "(e.g. results/{dataset}/{model}/seed0/imp-global/round7) or a "
                            "checkpoint file")
    else:
        folder, checkpoint = path.parent, path
        if not checkpoint.is_file():
            raise UserError(f"{path} does not exist")
    run = RunFolder(checkpoint=checkpoint)
    for name, attr in (("mask.pt", "mask"), ("channels.pt", "channels")):
        if (folder / name).is_file():
            setattr(run, attr, folder / name)
    metrics = folder / "metrics.json"
    if metrics.is_file():
        try:
            data = json.loads(metrics.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{metrics} is not valid JSON ({exc}); rerun the job that wrote "
                            "it, or give --model and --input-size") from None
        if isinstance(data, dict):
            run.metrics_path, run.metrics = metrics, data
    dataset = run.metrics.get("dataset")
    if isinstance(dataset, str) and dataset:
        for parent in folder.absolute().parents:
            summary = parent / dataset / "faces" / "summary.json"
            if summary.is_file():
                try:
                    recorded = json.loads(summary.read_text())
                except json.JSONDecodeError:
                    recorded = None
                recorded = recorded if isinstance(recorded, dict) else {}
                settings = recorded.get("face_settings")
                if isinstance(settings, dict) and settings:
                    run.faces, run.faces_path = settings, summary
                if isinstance(recorded.get("source"), dict):
                    run.source = dict(recorded["source"])
                break
    return run


def _agree(flag: str, given: Any, recorded: Any, where: Path | None) -> Any:
    """The recorded value, or the flag's when nothing is recorded; UserError when both are
    there and differ."""
    if given is not None and recorded is not None and given != recorded:
        raise UserError(f"{flag} {given} contradicts the run folder: {where} records "
                        f"{recorded}; drop {flag}, or give the folder of the run you mean")
    return recorded if recorded is not None else given


def resolve_run(
    checkpoint: str | Path,
    mask: str | Path | None = None,
    model_name: str | None = None,
    input_size: int | None = None,
    channels: str | Path | None = None,
    faces: Mapping[str, Any] | None = None,
) -> tuple[RunFolder, str, int, dict[str, Any] | None]:
    """The run folder of ``checkpoint`` (a folder or a file) with the explicit values checked
    against what it records: (run, model, input size, face settings). A value the folder
    does not record must be given; there is no registry default."""
    run = read_run_folder(checkpoint)
    if mask:
        run.mask = Path(mask)
    if channels:
        run.channels = Path(channels)
    where = run.metrics_path
    model = _agree("--model", model_name, run.model, where)
    size = _agree("--input-size", int(input_size) if input_size else None, run.input_size, where)
    missing = [flag for flag, v in (("--model", model), ("--input-size", size)) if v is None]
    if missing:
        raise UserError(
            f"{run.checkpoint}: no metrics.json beside it records the "
            f"{' and '.join(f[2:].replace('-', ' ') for f in missing)}; give "
            f"{' and '.join(missing)} (the model and the input side it was trained at)"
        )
    settings = dict(run.faces) if run.faces else None
    if faces:
        for key, value in faces.items():
            if settings is not None and key in settings and settings[key] != value:
                raise UserError(
                    f"--faces {key}={value!r} contradicts the run's face settings: "
                    f"{run.faces_path} records {key}={settings[key]!r}; drop it from --faces"
                )
        settings = {**(settings or {}), **dict(faces)}
    return run, str(model), int(size), settings


def parse_faces(text: str | None) -> dict[str, Any] | None:
    """``--faces`` JSON as a dict (None when not given)."""
    if not text:
        return None
    return json_object(text, "--faces", '{"size": 64}')
