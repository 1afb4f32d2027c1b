"""The structure docs/ARCHITECTURE.md describes: registries as the one source of names, modules
that import downwards only, and no module too large to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from deepfake_lth import cli
from deepfake_lth.models.registry import MODELS
from deepfake_lth.pruning.criteria import CRITERIA
from deepfake_lth.stages import methods
from deepfake_lth.workflow import config

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "deepfake_lth"
MAX_LINES = 600
MAX_FUNCTION_LINES = 80
# The layers, bottom to top (docs/ARCHITECTURE.md): a module imports its own package and
# packages of a lower layer only. Packages on one layer do not import each other.
LAYERS = {
    "core": 0,
    "models": 1, "data": 1,
    "pruning": 2,
    "training": 3,
    "stages": 4,
    "workflow": 5,
    "analysis": 6, "deploy": 6,
    "report": 7,
    "cli": 8, "__main__": 9,
}
# the only modules beside the packages in src/deepfake_lth/
TOP_LEVEL_MODULES = {"__init__", "__main__", "cli"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, name: str) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import in the file, function-level ones included."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            out.append((mod, [a.name for a in node.names]))
    return out


def test_no_module_imports_another_modules_private_names():
    mods = _modules()
    offenders = []
    for name, path in mods.items():
        for mod, names in _imports(path, name):
            if mod.startswith("deepfake_lth") and mod != name:
                offenders += [f"{name} imports {mod}.{n}" for n in names
                              if n.startswith("_") and not n.startswith("__")]
    assert offenders == []


def test_no_import_cycles():
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for mod, names in _imports(path, name):
            if not mod.startswith("deepfake_lth"):
                continue
            # `from pkg import sub` imports the submodule sub
            targets = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in mods] or [mod]
            deps |= {t for t in targets if t in mods and t != name}
        graph[name] = deps
    # a package's __init__ re-exporting its own submodules is not a cycle through them
    for name in graph:
        graph[name] = {d for d in graph[name] if not (d.startswith(name + ".") and
                                                      mods[name].name == "__init__.py")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_only_the_entry_points_lie_flat_in_the_package():
    flat = {p.stem for p in PKG.glob("*.py")}
    assert flat == TOP_LEVEL_MODULES
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS) - TOP_LEVEL_MODULES


def test_imports_only_go_down_the_layers():
    mods = _modules()
    upward = []
    for name, path in mods.items():
        if name == "deepfake_lth":
            continue
        own = _layer(name)
        for mod, names in _imports(path, name):
            if not mod.startswith("deepfake_lth."):
                if mod == "deepfake_lth":  # `from deepfake_lth import cli`
                    targets = [f"deepfake_lth.{n}" for n in names]
                else:
                    continue
            else:
                targets = [mod]
            for target in targets:
                other = _layer(target)
                if other != own and LAYERS[other] >= LAYERS[own]:
                    upward.append(f"{name} imports {target}")
    assert upward == []


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check above reads `from deepfake_lth.x import y` and function-level imports."""
    path = tmp_path / "fit.py"
    path.write_text("def f():\n    from deepfake_lth.analysis.stats import mean_ci\n")
    (mod, _), = _imports(path, "deepfake_lth.training.fit")
    assert LAYERS[_layer(mod)] > LAYERS[_layer("deepfake_lth.training.fit")]


def test_no_function_in_src_is_over_the_size_limit():
    long = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                name = f"{path.relative_to(PKG)}:{node.name}"
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name} {n} lines")
    assert long == []


def test_no_module_is_over_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def test_schema_names_come_from_the_registries():
    schema = config.load_schema()
    props = schema["properties"]
    assert props["prune"]["properties"]["criteria"]["items"]["enum"] == list(CRITERIA)
    assert props["oneshot"]["properties"]["criteria"]["items"]["enum"] == list(CRITERIA)
    assert props["models"]["propertyNames"]["enum"] == list(MODELS)
    assert props["controls"]["items"]["enum"] == list(methods.CONTROLS)
    raw = (ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text()
    for name in [*MODELS, *methods.CONTROLS]:  # never spelt in the schema itself
        assert not re.search(rf"enum: \[[^\]]*\b{re.escape(name)}\b", raw), name
    assert raw.count("x-registry: criteria") == 4  # prune, oneshot, step_sizes, kd criteria
    pattern = props["separability"]["properties"]["methods"]["items"]["pattern"]
    for ok in ("imp-global", "oneshot-local", "snip", "control-random-prune-trained"):
        assert re.fullmatch(pattern, ok)
    assert not re.fullmatch(pattern, "imp-nonsense")


def test_every_family_has_its_stage_and_one_rule_of_its_own():
    rules = [f.rule for f in methods.FAMILIES]
    assert len(rules) == len(set(rules))
    for fam in methods.FAMILIES:
        assert cli.COMMANDS[fam.stage][0] == fam.module, fam.name
        assert fam.module == f"deepfake_lth.stages.{fam.module.rpartition('.')[2]}"
    # the training rules are generated from the registry: no rule spells a family's name
    smk = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    for fam in methods.FAMILIES:
        assert not re.search(rf"^rule {fam.rule}:", smk, re.M), fam.rule


def test_every_method_name_has_exactly_one_family():
    cfg = config.validate(config.read_yaml(ROOT / "config" / "controls.yaml"))
    planned = methods.planned_methods(cfg)
    assert planned and len(planned) == len(set(planned))
    for method in planned:
        assert sum(bool(f.match(method)) for f in methods.FAMILIES) == 1, method
        assert methods.label(method) != method  # a label in the paper's words


def test_every_cli_argument_has_help_text():
    import argparse
    import importlib

    missing = []
    for name, (module, _) in cli.COMMANDS.items():
        parser = argparse.ArgumentParser()
        mod = importlib.import_module(module)
        adder = getattr(mod, f"add_{name.replace('-', '_')}_arguments", None) or mod.add_arguments
        adder(parser)
        missing += [f"{name} {a.option_strings or a.dest}" for a in parser._actions
                    if not a.help and a.dest != "help"]
    assert missing == []


def test_stage_defaults_are_the_schemas():
    """One source of each default: the stage spec and the SNIP/GraSP settings read the
    schema's."""
    import inspect

    from deepfake_lth.stages.prune_init import prune_at_init
    from deepfake_lth.stages.spec import parse_spec

    schema = config.load_schema()["properties"]
    spec = parse_spec({})
    for key, prop in schema["train"]["properties"].items():
        assert getattr(spec.train, key) == prop.get("default"), key
    assert spec.prune.rate == schema["prune"]["properties"]["rate"]["default"]
    assert spec.prune.rewind == schema["prune"]["properties"]["rewind"]["default"]
    assert spec.kd.temperature == schema["kd"]["properties"]["temperature"]["default"]
    # no second copy: the stage's keyword defaults defer to the schema
    params = inspect.signature(prune_at_init).parameters
    assert params["batches"].default is None and params["temperature"].default is None
