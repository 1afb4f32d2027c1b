"""A method family is one module, one registry line and its test: a toy family added to a copy
of the project in a temporary folder gets its rule, its subcommand, its config section and
its place in the report's inputs, with no other file touched (docs/ARCHITECTURE.md walks
through it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The whole family: a stage that trains the dense network pruned at random to a sparsity, its
# command line and its declaration (written to src/deepfake_lth/stages/toy.py of the copy).
TOY_MODULE = '''"""``deepfake-lth toy-prune``: the dense network pruned at random to a sparsity, trained."""

from __future__ import annotations

import argparse

from deepfake_lth.pruning import plan
from deepfake_lth.stages.family import Family, faces_inputs, level_of, train_spec
from deepfake_lth.stages.runner import (
    Job, add_common_arguments, build, load_into, spec_from_args, train_and_write,
)


def toy_prune(faces_dir, dense_dir, out_dir, model_name, seed, sparsity, spec=None):
    from pathlib import Path

    from deepfake_lth.pruning.checkpoints import load_state
    from deepfake_lth.pruning.masks import full_mask, mask_state, prune_to_sparsity
    from deepfake_lth.pruning.masks import random_mask_like

    job = Job.start(faces_dir, out_dir, model_name, seed, spec)
    model = build(model_name, job.spec)
    state = load_state(Path(dense_dir) / "checkpoint.pt")
    counts = prune_to_sparsity(state, sparsity, "global", mask=full_mask(model))
    mask = random_mask_like(counts, seed)
    load_into(model, mask_state(state, mask), "the dense weights")
    return train_and_write(job, model=model, mask=mask,
                           meta={"method": "toy-random", "round": 0,
                                 "target_sparsity": float(sparsity)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--dense", required=True, help="dense/ folder")
    parser.add_argument("--sparsity", type=float, required=True, help="fraction removed")


def run(args: argparse.Namespace) -> int:
    toy_prune(args.faces, args.dense, args.out, args.model, args.seed, args.sparsity,
              spec_from_args(args))
    return 0


def _levels(config, method):
    return [(plan.nearest_round(config, s), s) for s in config["toy"]["sparsities"]]


FAMILY = Family(
    name="toy", pattern="toy-random", level_dir="sparsity", stage="toy-prune",
    module=__name__, rule="toy_prune", help="the dense network pruned at random, trained",
    roles=frozenset(), order=99, label=lambda m: "Toy: random",
    planned=lambda config, model=None: ["toy-random"] if config["toy"]["sparsities"] else [],
    levels=_levels,
    inputs=lambda config, job: {**faces_inputs(job),
                                "dense": str(job.dense_dir / "checkpoint.pt")},
    spec=lambda config, job: train_spec(config, job.model, rewind=False),
    arguments=lambda config, job: ["--dense", str(job.dense_dir), "--sparsity",
                                   repr(level_of(config, FAMILY, job)[1])],
    config_key="toy",
    config_schema={"type": "object", "additionalProperties": False, "default": {},
                   "properties": {"sparsities": {"type": "array", "default": [],
                                                 "items": {"type": "number"}}}},
)
'''


def _copy_project(dest: Path) -> Path:
    for name in ("Snakefile", "config.yaml", "environment.yml"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("workflow", "src", "config"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _add_toy_family(work: Path) -> list[Path]:
    """The two source edits of a new family: its module and one line in the registry."""
    module = work / "src" / "deepfake_lth" / "stages" / "toy.py"
    module.write_text(TOY_MODULE)
    registry = work / "src" / "deepfake_lth" / "stages" / "methods.py"
    text = registry.read_text()
    text = text.replace("from deepfake_lth.stages import control,",
                        "from deepfake_lth.stages import toy\nfrom deepfake_lth.stages import control,")
    assert "    imp.STEP_SIZE_FAMILY,\n)" in text
    text = text.replace("    imp.STEP_SIZE_FAMILY,\n)", "    imp.STEP_SIZE_FAMILY,\n    toy.FAMILY,\n)")
    registry.write_text(text)
    return [module, registry]


def _run(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(work / "src")}
    return subprocess.run([sys.executable, *args], cwd=work, capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def toy_project(tmp_path_factory) -> Path:
    work = _copy_project(tmp_path_factory.mktemp("toy"))
    _add_toy_family(work)
    return work


def test_a_new_family_plans_its_jobs_through_to_the_report(toy_project):
    proc = _run(toy_project, "-m", "snakemake", "--workflow-profile", "none", "--cores", "1",
                "-n", "-p", "results/report.html", "--configfile", "config/smoke.yaml",
                "--config", "toy={sparsities: [0.5]}")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    out = proc.stdout
    toy_jobs = re.findall(r"^rule toy_prune:\n(?:    .*\n)*?    wildcards: (.*)$", out, re.M)
    # one job per dataset × model × seed at the one level asked for
    assert sorted(toy_jobs) == sorted(
        f"dataset={d}, model=mesonet, seed=0, method=toy-random, level=sparsity50"
        for d in ("smoke-images", "smoke-videos"))
    assert "python -m deepfake_lth toy-prune --faces results/smoke-videos/faces" in out
    assert "--sparsity 0.5" in out and "src/deepfake_lth/stages/toy.py" in out
    report = out[out.index("rule report:"):]
    assert "results/smoke-videos/mesonet/seed0/toy-random/sparsity50/metrics.json" in report
    assert re.search(r"toy_prune\s+2\b", out)  # the job table counts the new rule


def test_a_new_family_needs_no_other_file(toy_project):
    """Only its module and the registry line differ from the checkout; without its config
    key the family plans nothing, and its subcommand is on the command line."""
    changed = {p.relative_to(toy_project).as_posix()
               for p in (toy_project / "src").rglob("*.py")
               if not (ROOT / p.relative_to(toy_project)).is_file()
               or (ROOT / p.relative_to(toy_project)).read_bytes() != p.read_bytes()}
    assert changed == {"src/deepfake_lth/stages/toy.py", "src/deepfake_lth/stages/methods.py"}
    proc = _run(toy_project, "-m", "deepfake_lth", "toy-prune", "-h")
    assert proc.returncode == 0 and "--sparsity" in proc.stdout
    proc = _run(toy_project, "-m", "snakemake", "--workflow-profile", "none", "--cores", "1",
                "-n", "results/report.html", "--configfile", "config/smoke.yaml")
    assert proc.returncode == 0 and "toy_prune" not in proc.stdout
    bad = _run(toy_project, "-m", "deepfake_lth", "validate-config", "config/smoke.yaml",
               "--config", "toy={sparsities: oops}")
    assert bad.returncode != 0 and "toy" in bad.stderr
