"""The command line every benchmark script shares: ``--quick``, its table, its targets."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable


def main(doc: str, run: Callable[[bool], dict], table: Callable[[dict], str], quick_help: str,
         argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Parse ``argv`` (with ``parser``'s own options, if given), run the benchmark, print its
    markdown table and its targets as JSON."""
    parser = parser or argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args(argv)
    result = run(args.quick)
    print(table(result))
    print(json.dumps(result["targets"], indent=2))
    return 0
