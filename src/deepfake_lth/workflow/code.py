"""The source files a job runs, computed from the code: its rule's code inputs.

A job runs ``python -m deepfake_lth <stage>``: the stage's module and everything it imports,
at module level or inside a function (read from the source with :mod:`ast`, the way
tests/test_architecture.py reads the layers), with the ``__init__.py`` of every package on the
way. Four registries name modules by string and load them only when asked: the model registry
(a model's builder), the criteria registry (a criterion's scores), the source types and the
dataset layouts of acquisition. Those belong to a job only for its own model, criterion,
source type or layout
(:func:`job_code`), so editing ``models/xception.py`` reruns the Xception jobs and nothing
else. Editing a module reruns exactly the jobs whose stage imports it; the entry points
(``cli.py``, ``__main__.py``) only dispatch and are nobody's input. Importable without torch.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

PACKAGE = "deepfake_lth"
ROOT = Path(__file__).resolve().parents[1]  # src/deepfake_lth
ENTRY_POINTS = (f"{PACKAGE}.cli", f"{PACKAGE}.__main__")
# files besides Python a module reads at run time (package data), by module
DATA_FILES = {f"{PACKAGE}.report.build": ("templates/report.html.j2",)}


def module_path(module: str) -> Path:
    """The source file of a module of the package (a package: its ``__init__.py``)."""
    rel = Path(*module.split(".")[1:])
    pkg = ROOT / rel / "__init__.py"
    return pkg if pkg.is_file() else ROOT / rel.with_suffix(".py")


def is_module(module: str) -> bool:
    return module.split(".")[0] == PACKAGE and module_path(module).is_file()


def _resolve(node: ast.ImportFrom, module: str) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if module_path(module).name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def imports_of(module: str) -> frozenset[str]:
    """The package's modules ``module`` imports (``from pkg import sub`` imports ``sub``)."""
    tree = ast.parse(module_path(module).read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if is_module(a.name)}
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module)
            if not is_module(target):
                continue
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}")}
    return frozenset(out - {module})


def packages_of(module: str) -> list[str]:
    """The packages whose ``__init__`` importing ``module`` runs: ``a``, ``a.b`` of ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def closure(module: str) -> frozenset[str]:
    """``module`` and every module of the package it imports, directly or not."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += [m for m in imports_of(current) | set(packages_of(current)) if m not in seen]
    return frozenset(seen - set(ENTRY_POINTS))


def lazy_modules(model: str | None = None, criterion: str | None = None,
                 source_type: str | None = None, layout: str | None = None) -> list[str]:
    """The modules the string registries load for one job: its model's builder, its
    criterion's scores, its source type's acquisition module and its dataset layout's."""
    from deepfake_lth.models.registry import MODELS
    from deepfake_lth.pruning.criteria import CRITERIA

    out = []
    if model is not None and model in MODELS:
        out.append(MODELS[model].builder.partition(":")[0])
    if criterion is not None and criterion in CRITERIA and CRITERIA[criterion].scores:
        out.append(CRITERIA[criterion].scores.partition(":")[0])
    if source_type is not None:
        from deepfake_lth.data.acquire import LAYOUTS, SOURCE_TYPES

        out.append(SOURCE_TYPES[source_type])
        if layout is not None and layout in LAYOUTS:
            out.append(LAYOUTS[layout])
    return out


def files_of(modules: Iterable[str]) -> list[Path]:
    """The source files (and package data) of ``modules``, sorted."""
    out = set()
    for m in modules:
        out.add(module_path(m))
        out |= {ROOT / f for f in DATA_FILES.get(m, ())}
    return sorted(out)


def job_code(module: str, *, model: str | None = None, criterion: str | None = None,
             source_type: str | None = None, layout: str | None = None,
             relative_to: str | Path | None = None) -> list[str]:
    """The code inputs of a job of ``module`` (see the module docstring), as paths relative to
    ``relative_to`` (default: the working directory, so a copied checkout stays cached)."""
    modules = set(closure(module))
    for lazy in lazy_modules(model, criterion, source_type, layout):
        modules |= closure(lazy)
    base = Path(relative_to) if relative_to is not None else Path.cwd()
    return [os.path.relpath(p, base) for p in files_of(modules)]
