"""Command line: `deepfake-lth <stage> ...`, one subcommand per workflow stage.

Each stage module exposes ``add_arguments(parser)`` and ``run(args) -> int``; modules are
imported only when their subcommand runs, so a job pays only for the imports it uses.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from deepfake_lth.core.errors import UserError
from deepfake_lth.core.gpus import EXTRACT_SHARE
from deepfake_lth.stages import methods
from deepfake_lth.training.resume import StopRequested

# subcommand -> (module, one-line help); the training stages of the method families are
# added from the method registry (their FAMILY declarations)
COMMANDS: dict[str, tuple[str, str]] = {
    "acquire": ("deepfake_lth.data.acquire", "fetch or generate a dataset's raw files"),
    "extract": ("deepfake_lth.data.faces", "sample frames and crop faces for one shard"),
    "pack": ("deepfake_lth.data.pack", "merge shards into a packed dataset with splits"),
    "train": ("deepfake_lth.stages.dense", "train the dense model (round 0)"),
    **{f.stage: (f.module, f.help) for f in methods.FAMILIES},
    "transfer": ("deepfake_lth.stages.transfer", "train a ticket of one dataset on another"),
    "gradcam": ("deepfake_lth.analysis.gradcam", "Grad-CAM heatmaps and their change across sparsities"),
    "separability": ("deepfake_lth.analysis.separability", "probe and silhouette of penultimate features"),
    "latency": ("deepfake_lth.analysis.latency", "CPU latency of the dense network and its tickets"),
    "generalise": ("deepfake_lth.analysis.generalisation",
                   "score a run zero-shot on unseen test sets and per manipulation"),
    "robustness": ("deepfake_lth.analysis.robustness",
                   "score runs on their test split under perturbations (DeeperForensics, JPEG)"),
    "report": ("deepfake_lth.report", "the study's self-contained HTML report"),
    "export": ("deepfake_lth.deploy.quantize",
               "write a compact ticket with only surviving weights (--int8: an INT8 ONNX model)"),
    "quantize": ("deepfake_lth.deploy.quantize",
                 "INT8 model of a run folder, evaluated and timed beside its fp32 model"),
    "detect": ("deepfake_lth.deploy.detect", "fake probability for new videos or images"),
    "validate-config": ("deepfake_lth.workflow.config", "check a config file against the schema"),
    "plan-time": ("deepfake_lth.workflow.plan_time",
                  "expected wall time of a config's DAG on N GPUs (list scheduling)"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfake-lth", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"deepfake-lth {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == wanted:  # only the chosen stage's module is imported
            _DISPATCHER.update(m for m in sys.modules if m.startswith("deepfake_lth"))
            _DISPATCHER.discard(module)
            mod = importlib.import_module(module)
            adder = getattr(mod, f"add_{name.replace('-', '_')}_arguments", None) or mod.add_arguments
            adder(p)
            p.set_defaults(_module=mod, _name=name)
    return parser


# GPU share (percent) of subcommands that run no registry model: MTCNN is small. The
# workflow's extract_faces rule declares the same (job_resources.extract_job).
GPU_SHARES = {"extract": EXTRACT_SHARE}


def _requested_device(args: argparse.Namespace) -> str:
    """``--device``, else the spec's ``device``, else ``auto``."""
    if getattr(args, "device", None):
        return str(args.device)
    spec = getattr(args, "spec", None)
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            return str(json.loads(spec).get("device") or "auto")
        except (json.JSONDecodeError, AttributeError):
            return "auto"  # the stage itself reports a bad --spec
    return "auto"


def gpu_share(args: argparse.Namespace) -> int:
    """The share of one GPU (percent) a subcommand's job claims; 0: it runs no GPU work
    (``extract --detect no``: no face detector, as its rule declares no share)."""
    from deepfake_lth.models.registry import MODELS, gpu_share_percent

    if args._name == "extract" and getattr(args, "detect", None) == "no":
        return 0
    model = getattr(args, "model", None)
    return gpu_share_percent(model) if model in MODELS else GPU_SHARES.get(args._name, 100)


def _claim_gpu(args: argparse.Namespace) -> None:
    """A subcommand with ``--device`` claims its share of one GPU before CUDA starts
    (:mod:`deepfake_lth.core.gpus`; nothing happens without GPUs). One that claims no share
    but would pick a device itself runs on the CPU."""
    if not hasattr(args, "device"):
        return
    from deepfake_lth.core.gpus import claim_for_job, wants_claim

    share = gpu_share(args)
    if share <= 0:
        if wants_claim(_requested_device(args)):
            args.device = "cpu"
        return
    claim_for_job(_requested_device(args), share)


def version() -> str:
    """The installed package's version (the source tree's when it is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("deepfake-lth")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


_DISPATCHER: set[str] = set()  # the package's modules loaded before a stage's module


def record_imports() -> None:
    """With ``DLTH_RECORD_IMPORTS`` set (a folder), write which of the package's modules this
    process loaded once dispatching was done (the stage's module and what it imported, at
    module level or in a function), beside its command line: tests compare them with the
    rule's code inputs (deepfake_lth.workflow.code). What the dispatcher itself loads (this
    module, the registry of subcommands) is nobody's input."""
    import atexit
    import os

    folder = os.environ.get("DLTH_RECORD_IMPORTS")
    if not folder:
        return

    def write() -> None:
        from pathlib import Path

        loaded = sorted(m for m in sys.modules if (m == "deepfake_lth" or m.startswith(
            "deepfake_lth.")) and m not in _DISPATCHER)
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{os.getpid()}.json").write_text(
            json.dumps({"argv": sys.argv[1:], "modules": loaded}))

    atexit.register(write)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    record_imports()
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    mod = args._module
    runner = getattr(mod, f"run_{args._name.replace('-', '_')}", None) or mod.run
    try:
        before = set(sys.modules)
        _claim_gpu(args)  # a bad lock folder or environment value: a UserError too
        _DISPATCHER.update(set(sys.modules) - before)  # the claim is the dispatcher's too
        return int(runner(args) or 0)
    except UserError as exc:  # bad input: a clear message, no traceback
        print(f"deepfake-lth {args._name}: error: {exc}", file=sys.stderr)
        return 2
    except StopRequested as exc:  # SIGTERM/SIGINT: the state is saved, a rerun resumes
        print(f"deepfake-lth {args._name}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
