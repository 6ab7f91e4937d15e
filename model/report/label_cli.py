"""`python -m model label`: CheXpert-style labels, anatomy (CXAS names) and key phrases for report texts.

Input: one report per line, on stdin or from `--input FILE`. Output: one JSON object per input line, in order
(a blank line gives a record with every label null), on stdout or atomically into `--output FILE`:
{"labels": {observation: 1|0|-1|null}, "sentences": [{"text", "start", "end", "labels", "anatomy"}],
 "key_phrases": [...]}
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Iterable

from model.atomic import atomic_write_text
from model.report.anatomy import sentence_anatomy
from model.report.keyphrases import extract_key_phrases
from model.report.labeler import label_report


def report_record(text: str, key_phrase_backend: str = "rules") -> dict[str, Any]:
    """The JSON record for one report (what each output line holds)."""
    result = label_report(text)
    return {"labels": result.labels,
            "sentences": [{"text": s.text, "start": s.start, "end": s.end, "labels": s.labels,
                           "anatomy": sentence_anatomy(s.text)} for s in result.sentences],
            "key_phrases": extract_key_phrases(text, backend=key_phrase_backend)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", metavar="FILE", help="reports, one per line (default: stdin)")
    parser.add_argument("--output", metavar="FILE", help="JSON lines out, written atomically (default: stdout)")
    parser.add_argument("--key-phrases", choices=("rules", "radgraph"), default="rules",
                        help="key-phrase backend; 'radgraph' needs the radgraph package and local weights")


def read_lines(path: str | None) -> list[str]:
    """Report lines from a file or stdin; a clear error for a missing or non-UTF-8 file."""
    if path is None:
        return sys.stdin.read().splitlines()
    if not os.path.isfile(path):
        raise SystemExit(f"error: input file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().splitlines()
    except UnicodeDecodeError as exc:
        raise SystemExit(f"error: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def write_atomic(path: str, lines: Iterable[str]) -> None:
    """Write all lines or nothing."""
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def run(args: argparse.Namespace) -> int:
    reports = read_lines(args.input)
    try:
        out = [json.dumps(report_record(text, args.key_phrases)) for text in reports]
    except RuntimeError as exc:  # e.g. the RadGraph backend is not installed
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output:
        write_atomic(args.output, out)
        print(f"wrote {len(out)} records to {args.output}", file=sys.stderr)
    else:
        for line in out:
            print(line)
    return 0
