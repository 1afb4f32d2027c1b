"""The study's report: one self-contained HTML file (figures embedded as PNG data URIs).

Reads the results tree (docs/ARCHITECTURE.md: every ``metrics.json`` and ``predictions.csv``
the config plans, the Grad-CAM ``heatmaps.npz`` / ``delta.csv``, the faces' ``manifest.csv``
/ ``extraction_log.csv``) and Snakemake benchmark files, and renders
``templates/report.html.j2`` with jinja2. The sections are registered in one list,
:data:`deepfake_lth.report.build.SECTIONS`; a part that has not been run says "not run".

Modules: ``common`` (tables, figures, formats, the sections' Context), ``collect`` (reading,
only what the config plans), ``curves`` (Fig. 2, per-layer sparsity), ``tables`` (results
tables, Table I), ``gradcam_maps`` (Fig. 3, ΔL), ``ablations`` (controls, SNIP/GraSP, step
sizes, seeds), ``separability_latency``, ``compression``, ``generalisation``, ``robustness``,
``claims`` (the verdict summary and the claims), ``provenance`` (commit, versions, data),
``build`` (the registry of sections and the page). Each section decides itself whether it
is shown.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from deepfake_lth.core.errors import UserError
from deepfake_lth.report.build import SECTIONS, build_report
from deepfake_lth.report.collect import collect_gradcam, collect_metrics
from deepfake_lth.report.common import SYNTHETIC_SENTENCE, Figures, method_label
from deepfake_lth.report.curves import accuracy_figures, curves_figure

__all__ = ["SECTIONS", "SYNTHETIC_SENTENCE", "Figures", "accuracy_figures", "add_arguments",
           "build_report", "collect_gradcam", "collect_metrics", "curves_figure",
           "method_label", "run"]


def load_config(text: str) -> dict:
    """``--config-json``: a JSON object, or the path of a JSON (or YAML) file holding one."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UserError(f"--config-json is not valid JSON ({exc})") from None
    else:
        path = Path(text)
        if not path.is_file():
            raise UserError(f"--config-json: {text!r} is neither a JSON object nor a file")
        import yaml

        try:
            data = yaml.safe_load(path.read_text())  # JSON is YAML
        except yaml.YAMLError as exc:
            raise UserError(f"--config-json: {path} is not valid JSON/YAML ({exc})") from None
    if not isinstance(data, dict):
        raise UserError("--config-json must hold a JSON object (the config as run)")
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, help="results folder")
    parser.add_argument("--config-json", required=True,
                        help="the config as run: a JSON object or a JSON file")
    parser.add_argument("--benchmarks", default=None, help="Snakemake benchmark folder")
    parser.add_argument("--out", required=True, help="HTML file to write")
    parser.add_argument("--figures", default=None, help="also write each figure as PNG here")
    parser.add_argument("--command", default=os.environ.get("DEEPFAKE_LTH_COMMAND"),
                        help="the command line that ran the workflow, for the provenance "
                        "(default: $DEEPFAKE_LTH_COMMAND)")


def run(args: argparse.Namespace) -> int:
    results = Path(args.results)
    if not results.is_dir():
        raise UserError(f"--results {results} is not a folder: run the workflow first")
    build_report(results, load_config(args.config_json), args.out,
                 benchmarks_dir=args.benchmarks, figures_dir=args.figures,
                 command=args.command)
