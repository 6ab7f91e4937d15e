"""`python -m model phantom --out DIR --n N --seed S [--size 256]`: write a phantom dataset in R2Gen layout."""
from __future__ import annotations

import argparse
import sys
import time

from .generate import DEFAULT_KNOBS
from .store import write_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (annotation.json, images/, masks/)")
    parser.add_argument("--n", type=int, required=True, help="number of cases")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
                        help="split fractions (default 0.8 0.1 0.1)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing annotation.json")
    for name, default in DEFAULT_KNOBS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=type(default), default=default,
                            help=f"difficulty knob (default {default}; docs/phantom.md)")


def run(args: argparse.Namespace) -> int:
    knobs = {name: getattr(args, name) for name in DEFAULT_KNOBS}
    start = time.perf_counter()
    try:
        ann = write_dataset(args.out, args.n, args.seed, args.size, fractions=tuple(args.split),
                            workers=args.workers, overwrite=args.overwrite, **knobs)
    except (ValueError, FileExistsError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {len(v)}" for k, v in ann.items())
    print(f"wrote {args.n} phantom cases to {args.out} ({counts}) in {time.perf_counter() - start:.1f} s")
    return 0
