"""Load and check a study config against workflow/schemas/config.schema.yaml.

Errors name the key (``prune.rate``) and say what is allowed, before any job runs.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from deepfake_lth.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def load_schema() -> dict:
    """The config schema, its ``x-registry`` markers filled in from the registries."""
    from deepfake_lth.methods import fill_registries

    with open(SCHEMA_PATH) as fh:
        return fill_registries(yaml.safe_load(fh))


def _key(path) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def _explain(err) -> str:
    """One line for a jsonschema error, naming the key and the fix."""
    key = _key(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(sorted(err.schema.get("properties", {}))) or "none"
        where = f" under '{key}'" if err.absolute_path else ""
        return f"unknown key {', '.join(repr(e) for e in extra)}{where}; allowed keys: {allowed}"
    if v == "propertyNames":
        bad = err.instance if isinstance(err.instance, str) else err.message
        allowed = err.validator_value.get("enum")
        hint = f"; allowed: {', '.join(allowed)}" if allowed else " (letters, digits, '-', '_', '.')"
        return f"'{key}': name {bad!r} is not allowed{hint}"
    if v in ("enum", "const"):
        allowed = err.validator_value if v == "enum" else [err.validator_value]
        return f"'{key}': {err.instance!r} is not one of {', '.join(map(repr, allowed))}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "greater than",
            "exclusiveMaximum": "less than",
        }
        return f"'{key}': {err.instance!r} is out of range; it must be {words[v]} {err.validator_value}"
    if v == "required":
        return f"'{key}': {err.message}; add it to the config"
    if v == "type":
        return f"'{key}': {err.instance!r} should be of type {err.validator_value}"
    if v == "pattern":
        return f"'{key}': {err.instance!r} does not match the expected form {err.validator_value}"
    return f"'{key}': {err.message}"


def validate(config: dict) -> dict:
    """Check ``config`` against the schema and return a copy with defaults filled in."""
    import jsonschema

    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # an 'allOf/if-then' error wraps the real one; report the innermost cause
        lines = []
        for err in errors:
            leaf = err
            while leaf.context:
                leaf = sorted(leaf.context, key=lambda e: -len(e.absolute_path))[0]
            lines.append(_explain(leaf))
        raise ConfigError("invalid config: " + "; ".join(dict.fromkeys(lines)))
    from snakemake.utils import validate as sm_validate

    filled = copy.deepcopy(config)
    sm_validate(filled, str(SCHEMA_PATH), set_default=True)
    _fill_source_defaults(filled, schema)
    _check_semantics(filled)
    return filled


def _fill_source_defaults(config: dict, schema: dict) -> None:
    """Defaults inside the conditional source schemas (validate() does not reach them)."""
    branches = schema["properties"]["datasets"]["additionalProperties"]["properties"]["source"]
    for ds in config["datasets"].values():
        src = ds["source"]
        for branch in branches["allOf"]:
            if branch["if"]["properties"]["type"]["const"] == src["type"]:
                for name, prop in branch["then"].get("properties", {}).items():
                    if "default" in prop:
                        src.setdefault(name, copy.deepcopy(prop["default"]))
        if "kind" not in ds:
            ds["kind"] = src.get("kind", "videos")


def _check_semantics(config: dict) -> None:
    datasets = config["datasets"]
    for i, pair in enumerate(config["transfer"]["pairs"]):
        for end in ("from", "to"):
            if pair[end] not in datasets:
                raise ConfigError(
                    f"'transfer.pairs[{i}].{end}': dataset {pair[end]!r} is not in 'datasets' "
                    f"({', '.join(datasets)}); add it there or fix the name"
                )
        if pair["from"] == pair["to"]:
            raise ConfigError(f"'transfer.pairs[{i}]': 'from' and 'to' are the same dataset")
    split = config["faces"]["split"]
    total = split["train"] + split["val"] + split["test"]
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"'faces.split': train + val + test = {total:g}; they must add up to 1")
    if config["faces"]["min_frames"] > config["faces"]["frames_per_video"]:
        raise ConfigError("'faces.min_frames' must not exceed 'faces.frames_per_video'")
    rewind = config["prune"]["rewind"]
    if rewind.startswith("epoch:") and int(rewind.split(":")[1]) > config["train"]["max_epochs"]:
        raise ConfigError(
            f"'prune.rewind': {rewind} is past 'train.max_epochs' ({config['train']['max_epochs']})"
        )


def read_yaml(path: str | Path) -> dict:
    """A YAML config file as a dict, with a clear message when it is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    with open(path) as fh:
        try:
            return yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None


def merge(base: dict, override: dict) -> dict:
    """``base`` updated recursively with ``override`` (the way --config key=value applies)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(path: str | Path) -> dict:
    """Read a YAML config file and validate it."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        return validate(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")


def run(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    print(f"{args.config}: ok ({len(cfg['datasets'])} datasets, {len(cfg['models'])} models)")
    return 0


def get(config: dict[str, Any], dotted: str) -> Any:
    """``get(cfg, "prune.rate")``: a nested value by its dotted key."""
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def stage_spec(spec: Mapping[str, Any] | str | None, defaults: Mapping[str, Any],
               stage: str) -> dict[str, Any]:
    """A stage's ``--spec`` (a dict or its JSON) over ``defaults``; unknown keys are errors."""
    import json

    from deepfake_lth.errors import UserError

    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise UserError(f"--spec is not valid JSON ({exc})") from None
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(defaults))
    if unknown:
        raise UserError(f"{stage} spec: unknown key(s) {', '.join(unknown)}; allowed keys: "
                        f"{', '.join(defaults)}")
    return {**defaults, **spec}
