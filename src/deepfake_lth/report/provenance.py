"""The claims' rows and the provenance: commit, date, versions, devices, data, wall time."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from deepfake_lth.report.collect import GradcamRun
from deepfake_lth.report.common import NOT_RUN, PACKAGES, Context, Part, Section, Table


def claims_rows(runs, transfers, gradcam_runs: list[GradcamRun], config: dict,
                kinds: dict | None = None) -> list:
    """The paper's claims with this run's verdicts (see deepfake_lth.analysis.claims)."""
    import pandas as pd

    from deepfake_lth.analysis.claims import evaluate_claims

    frames = [r.delta.assign(dataset=r.dataset, model=r.model, group=r.method, seed=r.seed)
              for r in gradcam_runs if r.delta is not None and not r.delta.empty]
    deltas = pd.concat(frames, ignore_index=True) if frames else None
    if deltas is not None and "row" not in deltas:
        deltas = deltas.assign(row=deltas.groupby(["dataset", "model", "group", "seed",
                                                   "sparsity"]).cumcount())
    return evaluate_claims(runs, transfers, deltas, config, kinds)


def git_state(root: str | Path = ".") -> tuple[str, str]:
    """(commit, state): the commit the code was built from and whether the tree was dirty
    ("clean" / "uncommitted changes"), or ("unknown", why) outside a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parents[3]
    for where in (Path(root), here):
        try:
            commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"],
                                    capture_output=True, text=True, timeout=10, check=True
                                    ).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain",
                                    "--untracked-files=no"], capture_output=True, text=True,
                                   timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if commit:
            return commit, "uncommitted changes" if dirty else "clean"
    return "unknown", "not a git checkout"


def run_facts(command: str | None = None) -> list[tuple[str, str]]:
    """Commit, date, command line: what the provenance section starts with."""
    from datetime import datetime, timezone

    commit, state = git_state()
    facts = [("git commit", f"{commit} ({state})"),
             ("report built", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    if command:
        facts.append(("command line", command))
    return facts


def package_versions() -> list[tuple[str, str]]:
    from importlib import metadata

    out = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    out.append(("platform", platform.platform()))
    return out


def dataset_tables(results_dir: Path, datasets: list[str]) -> tuple[Table, Table]:
    """Faces and videos per split, and extraction-log status counts, per dataset."""
    import pandas as pd

    sizes = Table("Dataset sizes", ["Dataset", "Split", "Faces", "Real faces", "Fake faces",
                                    "Videos"], text_columns=2,
                  note="Videos: distinct video ids (for an image set, every image is its own).")
    statuses = Table("Extraction log", ["Dataset", "Status", "Sources", "Faces"],
                     text_columns=2)
    for dataset in datasets:
        faces = results_dir / dataset / "faces"
        manifest = faces / "manifest.csv"
        if manifest.is_file():
            try:
                m = pd.read_csv(manifest, dtype={"video_id": str})
                for split in ("train", "val", "test"):
                    part = m[m["split"] == split]
                    sizes.rows.append([
                        dataset, split, f"{len(part):,}", f"{int((part['label'] == 0).sum()):,}",
                        f"{int((part['label'] == 1).sum()):,}",
                        f"{part['video_id'].nunique():,}",
                    ])
            except (OSError, ValueError, KeyError) as exc:
                sizes.rows.append([dataset, f"unreadable manifest ({exc})", "", "", "", ""])
        else:
            sizes.rows.append([dataset, NOT_RUN, "", "", "", ""])
        logfile = faces / "extraction_log.csv"
        if logfile.is_file():
            try:
                lg = pd.read_csv(logfile)
                faces_col = lg["faces"] if "faces" in lg else pd.Series(0, index=lg.index)
                for status, g in lg.groupby("status", sort=True):
                    statuses.rows.append([dataset, str(status), f"{len(g):,}",
                                          f"{int(faces_col[g.index].fillna(0).sum()):,}"])
            except (OSError, ValueError, KeyError) as exc:
                statuses.rows.append([dataset, f"unreadable log ({exc})", "", ""])
        else:
            statuses.rows.append([dataset, NOT_RUN, "", ""])
    return sizes, statuses


def benchmark_table(benchmarks_dir: str | Path | None) -> Table | None:
    """Wall time per rule from Snakemake benchmark files (tab-separated, column ``s``); the
    rule is the first folder under ``benchmarks_dir`` (the file's stem when it lies at the top)."""
    import pandas as pd

    if not benchmarks_dir or not Path(benchmarks_dir).is_dir():
        return None
    base = Path(benchmarks_dir)
    times: dict[str, list[float]] = {}
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base).parts
        rule = rel[0] if len(rel) > 1 else path.stem
        try:
            df = pd.read_csv(path, sep="\t")
        except (OSError, ValueError, pd.errors.ParserError):
            continue
        if "s" not in df:
            continue
        times.setdefault(rule, []).extend(pd.to_numeric(df["s"], errors="coerce").dropna())
    if not times:
        return None
    table = Table("Wall time per rule", ["Rule", "Jobs", "Total (s)", "Mean (s)", "Max (s)"],
                  note="From Snakemake benchmark files; repeated measurements count as jobs.")
    for rule, ts in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        table.rows.append([rule, str(len(ts)), f"{sum(ts):.1f}", f"{np.mean(ts):.1f}",
                           f"{max(ts):.1f}"])
    return table




def config_yaml(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)


def section(ctx: Context) -> Section:
    """Commit, software, devices, the runs included, the data, wall time, the config."""
    from collections import Counter

    from deepfake_lth.report.collect import face_warnings

    devices = Counter(d for d in ctx.runs["device"].tolist() + ctx.transfers["device"].tolist()
                      if d)
    sizes, statuses = dataset_tables(ctx.results_dir, ctx.datasets)
    run = Table("This report", ["Fact", "Value"], text_columns=0,
                rows=[list(f) for f in run_facts(ctx.extra.get("command"))])
    software = Table("Software", ["Package", "Version"], text_columns=0,
                     rows=[list(v) for v in package_versions()])
    sec = Section("provenance", "Provenance", "")
    sec.parts.append(Part("Run", None, [run]))
    sec.parts.append(Part("Software", None, [software], folded=True))
    if devices:
        sec.parts.append(Part("Devices", None, [Table(
            "Devices", ["Device", "Runs"], text_columns=0,
            rows=[[d, str(n)] for d, n in sorted(devices.items())])]))
    else:
        sec.parts.append(Part("Devices", notrun="no device recorded in metrics.json."))
    left = ctx.left_out.sentences()
    sec.parts.append(Part(
        "Runs included", lines=[f"{len(ctx.runs)} trained networks and {len(ctx.transfers)} "
                                "transfer runs that the config plans are included."]
        + ([f"Left out of every figure, table and claim ({sum(ctx.left_out.values())} run "
            "folders found under results/): " + "; ".join(left) + "."] if left else
           ["No other run folders were found under results/."])))
    warnings = face_warnings(ctx.results_dir, ctx.datasets)
    sec.parts.append(Part("Data", None, [sizes, statuses], notes=warnings, folded=True))
    bench = benchmark_table(ctx.benchmarks_dir)
    sec.parts.append(Part("Wall time", None, [bench] if bench else [], folded=True,
                          notrun="" if bench else "no Snakemake benchmark files."))
    sec.parts.append(Part("Config as run", pre=config_yaml(ctx.config), folded=True))
    return sec

