"""`python -m model metrics --refs FILE --hyps FILE`: NLG and clinical-efficacy metrics as JSON.

Both files hold one report per line and must have the same number of lines (line i of --hyps is scored against
line i of --refs). Conventions: docs/metrics.md.
"""
from __future__ import annotations

import argparse
import json
import sys

from model.report.label_cli import read_lines, write_atomic
from model.report.metrics import compute_all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--refs", required=True, metavar="FILE", help="reference reports, one per line")
    parser.add_argument("--hyps", required=True, metavar="FILE", help="generated reports, one per line")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java process)")
    parser.add_argument("--output", metavar="FILE", help="also write the JSON here (atomically)")


def run(args: argparse.Namespace) -> int:
    refs, hyps = read_lines(args.refs), read_lines(args.hyps)
    if len(refs) != len(hyps):
        print(f"error: {args.refs} has {len(refs)} lines but {args.hyps} has {len(hyps)}; "
              "they must pair up line by line", file=sys.stderr)
        return 2
    if not refs:
        print(f"error: {args.refs} and {args.hyps} are empty", file=sys.stderr)
        return 2
    result = compute_all(refs, hyps, with_meteor=not args.no_meteor)
    text = json.dumps(result, indent=2)
    if args.output:
        write_atomic(args.output, [text])
    print(text)
    return 0
