"""The stage spec: the slice of the config a training stage depends on, as one JSON object.

::

    {"train": {lr, weight_decay, batch_size, max_epochs, patience, monitor, augment,
               max_train_samples, amp, compile},
     "prune": {rate, rewind}, "distill": {temperature, weight},
     "input_size": int | null, "pretrained": path | null, "device": "auto", "threads": 1}

Defaults are the config schema's (workflow/schemas/config.schema.yaml), read from it: there is
no second copy. ``device`` and ``threads`` say how a job runs, not what it computes: the
workflow passes them as ``--device``/``--threads`` flags outside the spec, so that changing
them reruns nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from deepfake_lth.core.errors import UserError


def _section_defaults(schema: Mapping[str, Any], key: str) -> dict[str, Any]:
    props = schema["properties"][key]["properties"]
    return {name: copy.deepcopy(p.get("default")) for name, p in props.items()}


@cache
def spec_defaults() -> dict[str, Any]:
    """The spec's defaults, from the config schema."""
    from deepfake_lth.workflow.config import load_schema

    schema = load_schema()
    prune = _section_defaults(schema, "prune")
    distill = _section_defaults(schema, "distill")
    top = schema["properties"]
    return {
        "train": _section_defaults(schema, "train"),
        "prune": {"rate": prune["rate"], "rewind": prune["rewind"]},
        "distill": {"temperature": distill["temperature"], "weight": distill["weight"]},
        "input_size": None,
        "pretrained": None,
        "device": top["device"].get("default", "auto"),
        "threads": top["threads"].get("default", 1),
    }


def parse_spec(spec: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """The stage spec (a dict or its JSON, or ``@file.json``) with defaults filled in and
    keys checked."""
    if spec is None:
        spec = {}
    if isinstance(spec, str):
        text = spec
        if text.startswith("@"):
            path = Path(text[1:])
            if not path.is_file():
                raise UserError(f"--spec {text}: file {path} does not exist")
            text = path.read_text()
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"--spec is not valid JSON ({exc}); pass e.g. '{{\"train\": {{}}}}'"
            ) from None
    if not isinstance(spec, Mapping):
        raise UserError("--spec must be a JSON object")
    defaults = spec_defaults()
    out = copy.deepcopy(defaults)
    for key, value in spec.items():
        if key not in defaults:
            raise UserError(f"spec: unknown key {key!r}; allowed keys: {', '.join(defaults)}")
        if key in ("train", "prune", "distill"):
            if not isinstance(value, Mapping):
                raise UserError(f"spec.{key} must be an object")
            unknown = sorted(set(value) - set(defaults[key]))
            if unknown:
                raise UserError(
                    f"spec.{key}: unknown key(s) {', '.join(unknown)}; allowed keys: "
                    f"{', '.join(defaults[key])}"
                )
            out[key].update(value)
        else:
            out[key] = value
    from deepfake_lth.pruning.rewind import parse_rewind

    parse_rewind(out["prune"]["rewind"])
    rate = out["prune"]["rate"]
    if not isinstance(rate, (int, float)) or not 0 < rate < 1:
        raise UserError(f"spec.prune.rate must be in (0, 1), got {rate!r}")
    return out


def input_size_of(model_name: str, spec: Mapping[str, Any]) -> int:
    """The spec's input size, or the registry's default for ``model_name``."""
    from deepfake_lth.models.registry import get_spec

    return int(spec["input_size"] or get_spec(model_name).input_size)
