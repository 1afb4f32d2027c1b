"""The config schema as data: where it is, its sections' defaults, and a stage's ``--spec``.

``workflow/schemas/config.schema.yaml`` is the one place defaults are written. A stage that
runs on its own (``deepfake-lth latency --spec '{}'``) reads the defaults of its config section
from here, so no module keeps a second copy. The registries fill the schema's ``x-registry``
markers (:func:`deepfake_lth.workflow.config.load_schema`); the defaults need none of them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from deepfake_lth.core.errors import UserError

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"


@cache
def _raw_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def raw_schema() -> dict[str, Any]:
    """The schema as written (a copy), ``x-registry`` markers unfilled."""
    return copy.deepcopy(_raw_schema())


def section_defaults(section: str) -> dict[str, Any]:
    """The defaults of one top-level section (``train``, ``latency`` …) of the schema."""
    props = _raw_schema()["properties"]
    if section not in props:
        raise KeyError(f"the config schema has no section {section!r}")
    node = props[section]
    if "properties" not in node:
        return copy.deepcopy(node.get("default"))
    return {name: copy.deepcopy(p.get("default")) for name, p in node["properties"].items()}


def top_default(key: str) -> Any:
    """The default of a top-level scalar key (``device``, ``threads``)."""
    return copy.deepcopy(_raw_schema()["properties"][key].get("default"))


def read_spec(spec: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """A ``--spec`` value as a dict: a dict, its JSON, or ``@file.json``."""
    if spec is None:
        return {}
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
    return dict(spec)


# what a job's spec holds besides its section's keys: how it runs, and its model's input size
EXECUTION = {"input_size": None, "device": "auto", "threads": 1}


def stage_spec(spec: Mapping[str, Any] | str | None, section: str,
               extra: Mapping[str, Any] | None = None,
               drop: tuple[str, ...] = ("methods", "models", "tickets")) -> dict[str, Any]:
    """A stage's ``--spec`` over the defaults of its config ``section`` (less the ``drop`` keys,
    which say what is planned, not how a job computes) and ``extra`` keys the section does not
    hold (default :data:`EXECUTION`); unknown keys are errors naming the allowed ones."""
    own = {k: v for k, v in section_defaults(section).items() if k not in drop}
    defaults = {**own, **dict(EXECUTION if extra is None else extra)}
    spec = read_spec(spec)
    unknown = sorted(set(spec) - set(defaults))
    if unknown:
        raise UserError(f"{section} spec: unknown key(s) {', '.join(unknown)}; allowed keys: "
                        f"{', '.join(defaults)}")
    return {**defaults, **spec}
