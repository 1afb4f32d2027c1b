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

from deepfake_lth.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def load_schema() -> dict:
    """The config schema, its ``x-registry`` markers filled in from the registries."""
    from deepfake_lth.pruning.methods import fill_registries

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
    """Check ``config`` against the schema and return a copy with defaults filled in.

    Strings where the schema wants a number, integer, boolean or null are converted first
    (``--config "prune={rate: 0.3}"`` gives the string ``'0.3'``). Each dataset's ``faces``
    becomes the global ``faces`` section with the dataset's own ``faces`` keys on top.
    """
    import jsonschema

    schema = load_schema()
    config = coerce(config, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # an 'allOf/if-then' error wraps the real one; report the innermost cause
        lines = []
        for err in errors:
            leaf = err
            while leaf.context:
                leaf = min(leaf.context, key=lambda e: -len(e.absolute_path))
            lines.append(_explain(leaf))
        raise ConfigError("invalid config: " + "; ".join(dict.fromkeys(lines)))
    from snakemake.utils import validate as sm_validate

    filled = copy.deepcopy(config)
    sm_validate(filled, str(SCHEMA_PATH), set_default=True)
    _fill_source_defaults(filled, schema)
    for ds in filled["datasets"].values():
        ds["faces"] = merge(filled["faces"], ds.get("faces") or {})
    _check_semantics(filled)
    return filled


_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,), "number": (int, float), "boolean": (bool,), "null": (type(None),),
    "array": (list,), "object": (dict,), "string": (str,),
}


def _fits(value: Any, types: list[str]) -> bool:
    for t in types:
        if isinstance(value, _TYPES[t]) and not (t in ("integer", "number")
                                                 and isinstance(value, bool)):
            return True
    return False


def coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with strings read as YAML where the schema wants another type there.

    Snakemake passes the values inside a nested ``--config key={a: 1}`` as strings; a
    string is replaced only when it reads as a value of a type the schema allows at its key
    (and the key does not take strings).
    """
    if not isinstance(schema, Mapping):
        return value
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if isinstance(value, str) and types and "string" not in types:
        parsed: Any = value
        for t, convert in (("integer", int), ("number", float)):  # 1e-3 too, unlike YAML 1.1
            if t in types and parsed is value:
                try:
                    parsed = convert(value.strip())
                except ValueError:
                    pass
        if parsed is value:
            try:
                parsed = yaml.safe_load(value) if value.strip() else None
            except yaml.YAMLError:
                parsed = value
        if _fits(parsed, types):
            value = parsed
    if isinstance(value, dict):
        props = dict(schema.get("properties") or {})
        for branch in schema.get("allOf") or []:  # a source's type-specific keys
            const = branch.get("if", {}).get("properties", {}).get("type", {}).get("const")
            if const is not None and value.get("type") == const:
                props.update(branch.get("then", {}).get("properties") or {})
        extra = schema.get("additionalProperties")
        return {k: coerce(v, props.get(k, extra if isinstance(extra, Mapping) else {}))
                for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [coerce(v, schema["items"]) for v in value]
    return value


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
    # ``kind`` stays unset unless the config says it: the files acquired decide it


# a requested sparsity farther than this from every one-shot level has no one-shot ticket
ONESHOT_TOLERANCE = 0.05


def _check_semantics(config: dict) -> None:
    """Checks the schema cannot express; every problem found is named in one ConfigError."""
    problems: list[str] = []
    datasets = config["datasets"]
    for i, pair in enumerate(config["transfer"]["pairs"]):
        for end in ("from", "to"):
            if pair[end] not in datasets:
                problems.append(
                    f"'transfer.pairs[{i}].{end}': dataset {pair[end]!r} is not in 'datasets' "
                    f"({', '.join(datasets)}); add it there or fix the name"
                )
        if pair["from"] == pair["to"]:
            problems.append(f"'transfer.pairs[{i}]': 'from' and 'to' are the same dataset")
    problems += _check_faces("faces", config["faces"])
    problems += _check_generalisation(config)
    problems += _check_robustness(config)
    for name, ds in datasets.items():
        if ds.get("faces") and ds["faces"] != config["faces"]:
            problems += _check_faces(f"datasets.{name}.faces", ds["faces"])
    rewind = config["prune"]["rewind"]
    if rewind.startswith("epoch:") and int(rewind.split(":")[1]) > config["train"]["max_epochs"]:
        problems.append(
            f"'prune.rewind': {rewind} is past 'train.max_epochs' ({config['train']['max_epochs']})"
        )
    problems += _check_input_sizes(config)
    problems += _check_local_paths(config)
    problems += _check_rounds(config)
    if problems:
        raise ConfigError("; ".join(dict.fromkeys(problems)))


def _check_generalisation(config: dict) -> list[str]:
    """What is wrong with the config's ``generalisation`` entries (for config validation)."""
    out = []
    datasets = config["datasets"]
    for i, entry in enumerate(config.get("generalisation", [])):
        for name in [entry["from"], *entry.get("to", [])]:
            if name not in datasets:
                out.append(f"'generalisation[{i}]': dataset {name!r} is not in 'datasets' "
                           f"({', '.join(datasets)}); add it there or fix the name")
        if entry["from"] in entry.get("to", []):
            out.append(f"'generalisation[{i}]': 'to' names its 'from' dataset "
                       f"{entry['from']!r}; its own test split is the run's metrics.json "
                       "(set manipulations: true to score it per manipulation)")
        if not entry.get("to") and not entry.get("manipulations", False):
            out.append(f"'generalisation[{i}]': nothing to score; give 'to' datasets or set "
                       "manipulations: true")
    return out


def _check_robustness(config: dict) -> list[str]:
    """Unknown perturbations and levels out of range (``robustness``), naming the allowed."""
    from deepfake_lth.data.perturbations import config_problems

    section = config.get("robustness") or {}
    return config_problems(section.get("perturbations") or [], section.get("levels") or [])


def _check_faces(key: str, faces: Mapping[str, Any]) -> list[str]:
    out = []
    split = faces["split"]
    total = split["train"] + split["val"] + split["test"]
    if abs(total - 1.0) > 1e-6:
        out.append(f"'{key}.split': train + val + test = {total:g}; they must add up to 1")
    if faces["min_frames"] > faces["frames_per_video"]:
        out.append(f"'{key}.min_frames' ({faces['min_frames']}) must not exceed "
                   f"'{key}.frames_per_video' ({faces['frames_per_video']})")
    return out


def _check_input_sizes(config: dict) -> list[str]:
    from deepfake_lth.models.registry import get_spec

    out = []
    for name, m in config["models"].items():
        size, low = m.get("input_size"), get_spec(name).min_input_size
        if size is not None and size < low:
            out.append(f"'models.{name}.input_size': {size} is below {name}'s smallest input "
                       f"({low} px); set it to at least {low}")
    return out


def _check_local_paths(config: dict) -> list[str]:
    out = []
    for name, ds in config["datasets"].items():
        src = ds["source"]
        if src["type"] == "local" and not Path(src["path"]).expanduser().exists():
            out.append(f"'datasets.{name}.source.path': {src['path']} does not exist (a relative "
                       f"path is read from {Path.cwd()}); fix the path, or mount the data there")
    return out


def _ideal_round(rate: float, sparsity: float) -> int:
    """The IMP round at ``rate`` nearest ``sparsity`` with no limit on rounds (0: dense)."""
    k = 0
    while k < 10_000 and 1.0 - (1.0 - rate) ** (k + 1) <= sparsity:
        k += 1
    below, above = 1.0 - (1.0 - rate) ** k, 1.0 - (1.0 - rate) ** (k + 1)
    return k if sparsity - below <= above - sparsity else k + 1


def _level_problem(config: dict, key: str, method: str, s: float) -> str | None:
    """Why ``method`` has no ticket at sparsity ``s`` under this config (None: it has one)."""
    from deepfake_lth.pruning import plan

    rate, rounds = config["prune"]["rate"], config["prune"]["rounds"]
    kind = method.partition("-")[0]
    imp_levels = kind in ("imp", "control") or (kind == "oneshot"
                                                and not config["oneshot"]["sparsities"])
    if imp_levels:
        k = _ideal_round(rate, s)
        if k == 0:
            return (f"'{key}': {s:g} is nearer the dense model than IMP round 1 "
                    f"({plan.pct(plan.imp_sparsity(rate, 1))} %); use a sparsity of at least "
                    f"{plan.imp_sparsity(rate, 1) / 2:.2f}, or 0 for the dense model")
        if k > rounds:
            reach = plan.imp_sparsity(rate, rounds) if rounds else 0.0
            return (f"'{key}': {s:g} ({method}) needs IMP round {k} "
                    f"({100 * plan.imp_sparsity(rate, k):.1f} %) but 'prune.rounds' is {rounds} "
                    f"(reaching {100 * reach:.1f} %); set 'prune.rounds' to at least {k}, or "
                    f"lower '{key}'")
        return None
    if kind == "oneshot":
        levels = plan.oneshot_sparsities(config)
        near = min(levels, key=lambda x: abs(x - s))
        if abs(near - s) > ONESHOT_TOLERANCE:
            return (f"'{key}': {s:g} ({method}) has no one-shot level within "
                    f"{ONESHOT_TOLERANCE:g} in 'oneshot.sparsities' (nearest {near:g}); add "
                    f"{s:g} to 'oneshot.sparsities', or set it to null for the IMP levels")
    return None


def _check_rounds(config: dict) -> list[str]:
    """Rounds too few for the levels the stages ask for, or none where tickets are needed."""
    rounds, rate = config["prune"]["rounds"], config["prune"]["rate"]
    imp_criteria, os_criteria = config["prune"]["criteria"], config["oneshot"]["criteria"]

    def configured(method: str) -> bool:
        kind, _, criterion = method.partition("-")
        if kind == "imp":
            return criterion in imp_criteria
        if kind == "oneshot":
            return criterion in os_criteria
        return True

    if rounds == 0:
        oneshot_from_imp = os_criteria and not config["oneshot"]["sparsities"]
        needs = []
        if imp_criteria:
            needs.append(f"'prune.criteria' ({', '.join(imp_criteria)})")
        if oneshot_from_imp:
            needs.append("'oneshot.sparsities' (null: the IMP levels, none with 0 rounds)")
        if config["controls"] and imp_criteria:
            needs.append(f"'controls' ({', '.join(config['controls'])})")
        if config["step_sizes"]["rates"]:
            needs.append("'step_sizes.rates'")
        for key in ("transfer.methods", "gradcam.methods", "latency.methods",
                    "separability.methods"):
            section, field = key.split(".")
            if section == "transfer" and not config["transfer"]["pairs"]:
                continue
            if section == "gradcam" and not any(s > 0 for s in config["gradcam"]["sparsities"]):
                continue
            bad = [m for m in config[section][field]
                   if m.startswith(("imp-", "control-"))
                   or (m.startswith("oneshot-") and oneshot_from_imp)]
            if bad:
                needs.append(f"'{key}' ({', '.join(bad)})")
        if needs:
            return [(f"'prune.rounds' is 0, so there are no IMP tickets, but these ask for "
                     f"them: {', '.join(needs)}; set 'prune.rounds' to at least 1, or empty "
                     "those keys")]
        return []
    out = []
    if config["transfer"]["pairs"]:
        for method in config["transfer"]["methods"]:
            for s in config["transfer"]["sparsities"]:
                problem = _level_problem(config, "transfer.sparsities", method, s)
                if problem:
                    out.append(problem)
    for method in config["gradcam"]["methods"]:
        if not configured(method):
            continue
        for s in config["gradcam"]["sparsities"]:
            problem = s > 0 and _level_problem(config, "gradcam.sparsities", method, s)
            if problem:
                out.append(problem)
    if imp_criteria:
        for s in config["oneshot"]["sparsities"] or []:
            k = _ideal_round(rate, s)
            if k > rounds:
                out.append(f"'oneshot.sparsities': {s:g} matches IMP round {k} but "
                           f"'prune.rounds' is {rounds}, so it has no IMP ticket to compare "
                           f"with; set 'prune.rounds' to at least {k}, or drop {s:g}")
    return out


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


def load(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict:
    """Read a YAML config file, apply ``overrides`` (as --config does) and validate it."""
    path = Path(path)
    raw = read_yaml(path)
    if overrides:
        raw = merge(raw, dict(overrides))
    try:
        return validate(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_overrides(entries: list[str] | None) -> dict:
    """``KEY=VALUE`` entries the way ``snakemake --config`` reads them: a number, a boolean,
    else YAML whose scalars stay strings (``prune={rate: 0.3}``); validate() converts those
    strings where the schema wants numbers."""
    out: dict = {}
    for entry in entries or []:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ConfigError(f"--config {entry!r}: write KEY=VALUE, e.g. prune={{rate: 0.3}}")
        parsed: Any = value
        for parser in (int, float):
            try:
                parsed = parser(value)
                break
            except ValueError:
                continue
        else:
            if value.lower() in ("true", "false"):
                parsed = value.lower() == "true"
            elif value == "":
                parsed = None
            else:
                try:
                    parsed = yaml.load(value, Loader=yaml.BaseLoader)
                except yaml.YAMLError:
                    parsed = value
        out = merge(out, {key: parsed})
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file, e.g. config.yaml or config/paper.yaml")
    parser.add_argument(
        "--config",
        dest="overrides",
        nargs="+",
        metavar="KEY=VALUE",
        help="overrides applied as `snakemake --config` applies them, e.g. "
        "\"prune={rate: 0.3}\" threads=4",
    )


def run(args: argparse.Namespace) -> int:
    cfg = load(args.config, parse_overrides(args.overrides))
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

    from deepfake_lth.core.errors import UserError

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
