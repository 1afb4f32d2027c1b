"""What the robustness jobs add to a finished run of the workflow.

    python bench/robustness.py [--results results] [--goal 0.15]

Measured as bench/generalisation.py measures the zero-shot scoring: from the Snakemake
benchmark files of a finished run (``{results}/benchmarks/{rule}/*.tsv``), the CPU seconds of
the robustness jobs (column ``cpu_time``) over the CPU seconds of every other job of the same
run. On a CPU-bound run whose jobs fill the cores (the demo) that ratio is what the jobs add
to its wall time. Wall seconds (column ``s``) are given beside it; on a shared machine they
swell with other processes' load and are not the target. The per-perturbation cost of a job
is in its log (``{results}/logs/robustness/*.log``: "N faces perturbed in S s").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generalisation import totals  # noqa: E402  bench/generalisation.py: per-rule sums

RULE = "robustness"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="results folder of a finished run")
    parser.add_argument("--goal", type=float, default=0.15,
                        help="the target: robustness CPU / other jobs' CPU at most this")
    args = parser.parse_args(argv)
    rules = totals(Path(args.results))
    if RULE not in rules:
        raise SystemExit(f"{args.results}/benchmarks/{RULE}/: no robustness jobs measured; run "
                         "the workflow with robustness.methods set first")
    mine = rules[RULE]
    rest = {k: sum(v[k] for r, v in rules.items() if r != RULE) for k in ("jobs", "cpu", "wall")}
    ratio = mine["cpu"] / rest["cpu"] if rest["cpu"] else float("nan")
    print("| rule | jobs | CPU s | wall s |\n|---|---:|---:|---:|")
    for rule, v in sorted(rules.items()):
        print(f"| {rule} | {int(v['jobs'])} | {v['cpu']:.1f} | {v['wall']:.1f} |")
    print(f"\nrobustness / other jobs, CPU seconds: {100 * ratio:.1f} % (goal <= "
          f"{100 * args.goal:.0f} %); wall seconds: {100 * mine['wall'] / rest['wall']:.1f} %")
    print(json.dumps({"target": "robustness CPU / other jobs' CPU", "goal": args.goal,
                      "measured": ratio, "met": bool(ratio <= args.goal)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
