"""How a job runs, kept apart from what it computes.

``--device`` and ``--threads`` are flags of every subcommand that trains or runs a network.
The workflow passes them outside the ``--spec`` that keys a job's outputs, so changing
``device`` or ``threads`` in the config reruns nothing; the values a job ran with are still
recorded in its outputs (``metrics.json``: ``device``, ``threads``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from deepfake_lth.core.errors import UserError, json_object


def add_execution_arguments(parser: argparse.ArgumentParser,
                            keys: Sequence[str] = ("device", "threads")) -> None:
    """The ``--device`` and ``--threads`` flags (those named in ``keys``)."""
    if "device" in keys:
        parser.add_argument(
            "--device", default=os.environ.get("DLTH_DEVICE") or None,
            help="auto | cpu | cuda | cuda:N: where the network runs (default: $DLTH_DEVICE, "
            "which the workflow sets from the config's device; else the spec's, else auto)",
        )
    if "threads" in keys:
        parser.add_argument(
            "--threads", type=int, default=None,
            help="torch CPU threads (default: the spec's, else 1)",
        )


def apply_execution(spec: Mapping[str, Any] | str | None, args: argparse.Namespace,
                    keys: Sequence[str] = ("device", "threads")) -> Any:
    """``spec`` (a dict or its JSON) with the ``--device``/``--threads`` flags of ``args``
    applied; returns the same kind it was given (JSON text stays JSON text)."""
    overrides = {k: getattr(args, k, None) for k in keys}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "threads" in overrides and int(overrides["threads"]) < 1:
        raise UserError(f"--threads must be ≥ 1, got {overrides['threads']}")
    if not overrides:
        return spec
    if spec is None:
        spec = {}
    if isinstance(spec, str):
        return json.dumps({**json_object(spec, "--spec"), **overrides})
    return {**spec, **overrides}


def prepare_jobs(basedir: str, device: str) -> None:
    """The environment the workflow's jobs inherit (called once by workflow/rules/common.smk).

    Jobs run ``python -m deepfake_lth``: the Python of the environment a job runs in (a conda
    environment under ``--software-deployment-method conda``, else the one running Snakemake,
    put first on PATH here), with this checkout's ``src/`` on PYTHONPATH. ``device`` reaches
    the jobs as ``DLTH_DEVICE`` (the ``--device`` default): where a job runs is not what it
    computes, so changing it reruns nothing. The jobs' GPU claims lock in a folder of the
    host each job runs on (:func:`deepfake_lth.core.gpus.lock_dir`), which every run of the
    user there shares: not in the results, which may sit on a shared file system.
    """
    import shlex
    import sys

    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                          os.environ.get("PATH", "")])
    src = os.path.join(basedir, "src")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in [src, os.environ.get("PYTHONPATH", "")] if p)
    os.environ["DLTH_DEVICE"] = str(device)
    # the report's provenance names the command that ran the workflow (not a param: a new
    # command line must not rerun the report)
    os.environ.setdefault("DEEPFAKE_LTH_COMMAND", shlex.join(sys.argv))


def site_setting(name: str, default: str = "") -> str:
    """A site setting of the cluster profile, from the environment variable ``name``."""
    return os.environ.get(name, default)
