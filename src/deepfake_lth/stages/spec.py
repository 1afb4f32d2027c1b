"""The stage spec: the slice of the config a training job computes from, as one record.

The workflow passes it as JSON (``--spec``), built by the job's family
(:attr:`deepfake_lth.stages.family.Family.spec`) with exactly the keys the job reads::

    {"train": {lr, weight_decay, batch_size, max_epochs, min_epochs, patience, monitor,
               augment, max_train_samples, amp, compile},
     "prune": {rate, rewind}, "kd": {temperature, weight},
     "input_size": int | null, "pretrained": path | null, "save_epochs": [E, …]}

``save_epochs`` (the dense run's) defaults to the epoch of ``prune.rewind: epoch:E``.

Keys left out take the config schema's defaults (workflow/schemas/config.schema.yaml, read by
:mod:`deepfake_lth.core.schema`): there is no second copy. ``device`` and ``threads`` say how a
job runs, not what it computes: they come as ``--device``/``--threads`` flags, outside the
spec, so that changing them reruns nothing. ``distill`` is read as ``kd``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.schema import read_spec, section_defaults, top_default
from deepfake_lth.training.hparams import TrainingHparams

SECTIONS = ("train", "prune", "kd")
SCALARS = ("input_size", "pretrained", "save_epochs", "device", "threads")
ALIASES = {"distill": "kd"}


@dataclass(frozen=True)
class PruneHparams:
    """How a round prunes and where its survivors restart (the schema's ``prune``)."""

    rate: float = 0.2
    rewind: str = "none"  # none | init | epoch:E


@dataclass(frozen=True)
class KdHparams:
    """Distillation from the dense network (the schema's ``kd``)."""

    temperature: float = 4.0
    weight: float = 0.5


@dataclass(frozen=True)
class StageSpec:
    """A training job's spec (see the module docstring)."""

    train: TrainingHparams
    prune: PruneHparams = field(default_factory=PruneHparams)
    kd: KdHparams = field(default_factory=KdHparams)
    input_size: int | None = None
    pretrained: str | None = None
    save_epochs: tuple[int, ...] = ()
    device: str = "auto"
    threads: int = 1

    def with_execution(self, device: str | None, threads: int | None) -> StageSpec:
        """The spec with ``--device``/``--threads`` applied (None keeps the spec's)."""
        import dataclasses

        return dataclasses.replace(self, device=str(device or self.device),
                                   threads=int(threads or self.threads))


def _section(values: Any, name: str, allowed: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise UserError(f"spec.{name} must be an object")
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise UserError(f"spec.{name}: unknown key(s) {', '.join(unknown)}; allowed keys: "
                        f"{', '.join(allowed)}")
    return {**allowed, **values}


def parse_spec(spec: Mapping[str, Any] | str | StageSpec | None) -> StageSpec:
    """The stage spec (a dict or its JSON, ``@file.json``, or a StageSpec) with defaults
    filled in and keys checked."""
    if isinstance(spec, StageSpec):
        return spec
    raw = {ALIASES.get(k, k): v for k, v in read_spec(spec).items()}
    unknown = sorted(set(raw) - set(SECTIONS) - set(SCALARS))
    if unknown:
        raise UserError(f"spec: unknown key(s) {', '.join(unknown)}; allowed keys: "
                        f"{', '.join(SECTIONS + SCALARS)}")
    prune_defaults = {k: section_defaults("prune")[k] for k in ("rate", "rewind")}
    prune = _section(raw.get("prune", {}), "prune", prune_defaults)
    kd_defaults = {k: section_defaults("kd")[k] for k in ("temperature", "weight")}
    kd = _section(raw.get("kd", {}), "kd", kd_defaults)
    from deepfake_lth.pruning.rewind import parse_rewind

    kind, epoch = parse_rewind(prune["rewind"])
    # the dense run keeps the weights rewinding restarts from; a spec naming only the rewind
    # mode (a run by hand) means its epoch
    save_epochs = raw.get("save_epochs", [epoch] if kind == "epoch" else [])
    rate = prune["rate"]
    if not isinstance(rate, (int, float)) or not 0 < rate < 1:
        raise UserError(f"spec.prune.rate must be in (0, 1), got {rate!r}")
    return StageSpec(
        train=TrainingHparams.from_dict(raw.get("train")),
        prune=PruneHparams(float(rate), str(prune["rewind"])),
        kd=KdHparams(float(kd["temperature"]), float(kd["weight"])),
        input_size=raw.get("input_size"),
        pretrained=raw.get("pretrained"),
        save_epochs=tuple(int(e) for e in save_epochs or ()),
        device=str(raw.get("device") or top_default("device")),
        threads=int(raw.get("threads") or top_default("threads")),
    )


def input_size_of(model_name: str, spec: StageSpec) -> int:
    """The spec's input size, or the registry's default for ``model_name``."""
    from deepfake_lth.models.registry import get_spec

    return int(spec.input_size or get_spec(model_name).input_size)
