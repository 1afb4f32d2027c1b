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
from deepfake_lth.core.schema import ROOT, SCHEMA_PATH, raw_schema
from deepfake_lth.workflow.schema import fill_defaults, fill_layouts, properties_at

__all__ = ["ROOT", "SCHEMA_PATH", "load", "load_schema", "merge", "read_yaml", "validate"]

# deprecated config keys -> their names now (one name per concept: module, rule, family, key)
RENAMED = {"distill": "kd", "prune_at_init": "prune_init"}


def load_schema() -> dict:
    """The config schema, its ``x-registry`` markers filled in from the registries (the
    dataset layouts' from :data:`deepfake_lth.data.acquire.LAYOUTS`) and the sections of the
    method families that declare their own (``Family.config_schema``)."""
    from deepfake_lth.stages.methods import family_sections, fill_registries

    schema = fill_layouts(raw_schema())
    for key, section in family_sections().items():
        if key in schema["properties"]:
            raise ValueError(f"method family section {key!r} is in the schema file too")
        schema["properties"][key] = section
    return fill_registries(schema)


def rename_deprecated(config: dict) -> dict:
    """``config`` with deprecated keys under their new names, each said once on stderr."""
    import sys

    out = dict(config)
    for old, new in RENAMED.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"invalid config: '{old}' is the deprecated name of '{new}'; "
                              f"keep one of them (rename '{old}' to '{new}')")
        print(f"deepfake-lth: config key '{old}' is deprecated; call it '{new}'",
              file=sys.stderr)
        out[new] = out.pop(old)
    return out


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
    if v == "unevaluatedProperties":
        allowed = ", ".join(sorted(properties_at(err.schema, err.instance))) or "none"
        extra = sorted(set(err.instance) - set(properties_at(err.schema, err.instance)))
        layout = err.instance.get("layout")
        which = f" (layout {layout})" if layout else ""
        return (f"unknown key {', '.join(repr(e) for e in extra)} under '{key}'{which}; "
                f"allowed keys: {allowed}")
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
    config = coerce(rename_deprecated(config), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ConfigError("invalid config: " + "; ".join(_explain_all(errors)))
    from deepfake_lth.workflow.dataset_checks import take_faces_from

    filled = fill_defaults(copy.deepcopy(config), schema)
    take_faces_from(filled, config)
    for ds in filled["datasets"].values():
        ds["faces"] = merge(filled["faces"], ds.get("faces") or {})
    _check_semantics(filled)
    return filled


def _explain_all(errors) -> list[str]:
    """One line per error, the innermost cause of an 'allOf/if-then' error; an unevaluated
    key is not reported where a key below it is wrong (a bad layout leaves its options
    unevaluated)."""
    leaves = []
    for err in errors:
        leaf = err
        while leaf.context:
            leaf = min(leaf.context, key=lambda e: -len(e.absolute_path))
        leaves.append(leaf)
    paths = [tuple(e.absolute_path) for e in leaves if e.validator != "unevaluatedProperties"]
    kept = [e for e in leaves if e.validator != "unevaluatedProperties"
            or not any(p[:len(e.absolute_path)] == tuple(e.absolute_path) for p in paths)]
    return list(dict.fromkeys(_explain(e) for e in kept))


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
        props = properties_at(schema, value)  # a source's type- and layout-specific keys too
        extra = schema.get("additionalProperties")
        return {k: coerce(v, props.get(k, extra if isinstance(extra, Mapping) else {}))
                for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [coerce(v, schema["items"]) for v in value]
    return value


# a requested sparsity farther than this from every one-shot level has no one-shot ticket
ONESHOT_TOLERANCE = 0.05
KD = "kd"  # the config section of knowledge distillation (method family kd)


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
    problems += _check_rounds(config)
    problems += _check_model_lists(config)
    problems += _check_compression_tickets(config)
    from deepfake_lth.workflow.dataset_checks import check_datasets

    problems += check_datasets(config)
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


def _ideal_round(rate: float, sparsity: float) -> int:
    """The IMP round at ``rate`` nearest ``sparsity`` with no limit on rounds (0: dense)."""
    k = 0
    while k < 10_000 and 1.0 - (1.0 - rate) ** (k + 1) <= sparsity:
        k += 1
    below, above = 1.0 - (1.0 - rate) ** k, 1.0 - (1.0 - rate) ** (k + 1)
    return k if sparsity - below <= above - sparsity else k + 1


def _rounds_of(config: dict, kind: str) -> tuple[int, str]:
    """The rounds a family of IMP rounds runs and the key that sets them."""
    if kind == "kd" and config[KD]["rounds"] is not None:
        return config[KD]["rounds"], f"{KD}.rounds"
    if kind == "structured":
        return config["structured"]["rounds"], "structured.rounds"
    return config["prune"]["rounds"], "prune.rounds"


def _level_problem(config: dict, key: str, method: str, s: float) -> str | None:
    """Why ``method`` has no ticket at sparsity ``s`` under this config (None: it has one)."""
    from deepfake_lth.pruning import plan

    rate = config["prune"]["rate"]
    kind = method.partition("-")[0]
    imp_levels = kind in ("imp", "control", "kd", "structured") or (
        kind == "oneshot" and not config["oneshot"]["sparsities"])
    if imp_levels:
        rounds, rounds_key = _rounds_of(config, kind)
        what = f"{kind} round" if kind in ("kd", "structured") else "IMP round"
        k = _ideal_round(rate, s)
        if k == 0:
            return (f"'{key}': {s:g} is nearer the dense model than {what} 1 "
                    f"({plan.pct(plan.imp_sparsity(rate, 1))} %); use a sparsity of at least "
                    f"{plan.imp_sparsity(rate, 1) / 2:.2f}, or 0 for the dense model")
        if k > rounds:
            reach = plan.imp_sparsity(rate, rounds) if rounds else 0.0
            return (f"'{key}': {s:g} ({method}) needs {what} {k} "
                    f"({100 * plan.imp_sparsity(rate, k):.1f} %) but '{rounds_key}' is {rounds} "
                    f"(reaching {100 * reach:.1f} %); set '{rounds_key}' to at least {k}, or "
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


def _check_model_lists(config: dict) -> list[str]:
    """Models named by compression and kd that are not under ``models``."""
    out = []
    for key in ("compression.models", f"{KD}.models"):
        section, field = key.split(".")
        missing = [m for m in config[section][field] if m not in config["models"]]
        if missing:
            out.append(f"'{key}': {', '.join(missing)} not under 'models' "
                       f"({', '.join(config['models'])}), so nothing of it would run; add it "
                       f"to 'models' or drop it from '{key}'")
    return out


def _check_compression_tickets(config: dict) -> list[str]:
    """Each ``compression.tickets`` entry: a method the config runs for one of
    ``compression.models``, at a sparsity one of its levels reaches (the rule of the transfer
    and Grad-CAM levels: never silently another level)."""
    from deepfake_lth.stages import methods

    out = []
    models = [m for m in config["compression"]["models"] if m in config["models"]]
    if config["prune"]["rounds"] == 0:
        models = []  # no IMP levels: _check_rounds names the tickets
    for i, ticket in enumerate(config["compression"]["tickets"] if models else []):
        method, s = ticket["method"], ticket["sparsity"]
        runs = [m for m in models if method in methods.planned_methods(config, m)]
        if not runs:
            out.append(f"'compression.tickets[{i}].method': {method} is not run by this config "
                       f"for any of 'compression.models' ({', '.join(models)}); configure it "
                       f"(its criterion, {KD}.models, structured.criteria) or drop the ticket")
            continue
        key = f"compression.tickets[{i}].sparsity"
        problem = _level_problem(config, key, method, s)
        k = _ideal_round(config["prune"]["rate"], s)
        if problem is None and methods.family_of(method).level_dir == "round":
            try:  # the level the workflow plans for it
                chosen = methods.level_for(config, "d", runs[0], 0, method, s).round
            except StopIteration:
                chosen = None
            if chosen != k:
                problem = (f"'{key}': {s:g} ({method}) is round {k}, but the level is picked "
                           f"among the IMP rounds and 'prune.rounds' is "
                           f"{config['prune']['rounds']}; set 'prune.rounds' to at least {k}")
        if problem:
            out.append(problem)
    return out


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
        if config[KD]["models"] and config[KD]["rounds"] is None:
            needs.append(f"'{KD}.models' ({KD}.rounds null: prune.rounds)")
        from deepfake_lth.stages import methods

        # a ticket at IMP's rounds, or at a family's sparsities that are the IMP levels
        bad = [t["method"] for t in config["compression"]["tickets"]
               if methods.family_of(t["method"]).level_dir == "round"
               or not methods.family_of(t["method"]).levels(config, t["method"])]
        if bad and config["compression"]["models"]:
            needs.append(f"'compression.tickets' ({', '.join(dict.fromkeys(bad))})")
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
    """``base`` updated recursively with ``override`` (the way --config key=value applies);
    a mapping given with another ``type`` (a dataset's ``source``) replaces the old one whole,
    so that no key of the old type is left behind (a Kaggle ``slug`` under a local source)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        old = out.get(key)
        retyped = (isinstance(value, dict) and isinstance(old, dict) and "type" in value
                   and "type" in old and value["type"] != old["type"])
        if isinstance(value, dict) and isinstance(old, dict) and not retyped:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_files(paths, overrides: Mapping[str, Any] | None = None) -> dict:
    """The config as ``snakemake --configfile A B --config k=v`` means it: the files merged in
    order, then the overrides, each with :func:`merge` (not yet validated). A study that does
    not name its folders gets its own (:func:`study_folders`)."""
    raw: dict = {}
    for path in paths:
        raw = merge(raw, read_yaml(path))
    raw = merge(raw, dict(overrides or {}))
    for key, folder in study_folders(paths).items():
        raw.setdefault(key, folder)
    return raw


def study_folders(paths) -> dict[str, str]:
    """The ``results`` and ``resources`` folders of a study whose config names none: those of
    the project's config.yaml (``results``, ``resources``), and ``results/{name}``,
    ``resources/{name}`` for any other file (config/paper.yaml: results/paper), so that a
    second study never overwrites the first one's files."""
    paths = [Path(p) for p in paths]
    if not paths or (len(paths) == 1 and paths[0].resolve() == (ROOT / "config.yaml").resolve()):
        return {"results": "results", "resources": "resources"}
    name = paths[-1].stem
    return {"results": f"results/{name}", "resources": f"resources/{name}"}


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
