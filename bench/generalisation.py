"""What the zero-shot generalise jobs add to a finished run of the workflow.

    python bench/generalisation.py [--results results] [--goal 0.10]

Reads the Snakemake benchmark files of a finished run (``{results}/benchmarks/{rule}/*.tsv``)
and sets the generalise jobs against everything else measured in the same run: their CPU
seconds (column ``cpu_time``) over the CPU seconds of every other job. On a CPU-bound run whose
jobs fill the cores (the demo: wall ≈ compute / cores, see BENCHMARKS.md's overhead figures)
that ratio is what they add to its wall time. Wall seconds (column ``s``) are given beside it;
on a shared machine they swell with other processes' load and are not the target.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

RULE = "generalise"


def totals(results: Path) -> dict[str, dict[str, float]]:
    """Per rule: jobs, CPU seconds and wall seconds from its benchmark files."""
    out: dict[str, dict[str, float]] = {}
    for path in sorted((results / "benchmarks").glob("*/**/*.tsv")):
        rule = path.relative_to(results / "benchmarks").parts[0]
        with path.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        t = out.setdefault(rule, {"jobs": 0, "cpu": 0.0, "wall": 0.0})
        for row in rows[-1:]:  # the last measurement of the job
            t["jobs"] += 1
            t["cpu"] += float(row.get("cpu_time") or 0.0)
            t["wall"] += float(row.get("s") or 0.0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="results folder of a finished run")
    parser.add_argument("--goal", type=float, default=0.10,
                        help="the target: generalise CPU / other jobs' CPU at most this")
    args = parser.parse_args(argv)
    rules = totals(Path(args.results))
    if RULE not in rules:
        raise SystemExit(f"{args.results}/benchmarks/{RULE}/: no generalise jobs measured; run "
                         "the workflow with a generalisation config first")
    mine = rules[RULE]
    rest = {k: sum(v[k] for r, v in rules.items() if r != RULE) for k in ("jobs", "cpu", "wall")}
    ratio = mine["cpu"] / rest["cpu"] if rest["cpu"] else float("nan")
    print("| rule | jobs | CPU s | wall s |\n|---|---:|---:|---:|")
    for rule, v in sorted(rules.items()):
        print(f"| {rule} | {int(v['jobs'])} | {v['cpu']:.1f} | {v['wall']:.1f} |")
    print(f"\ngeneralise / other jobs, CPU seconds: {100 * ratio:.1f} % (goal <= "
          f"{100 * args.goal:.0f} %); wall seconds: {100 * mine['wall'] / rest['wall']:.1f} %")
    print(json.dumps({"target": "generalise CPU / other jobs' CPU", "goal": args.goal,
                      "measured": ratio, "met": bool(ratio <= args.goal)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
