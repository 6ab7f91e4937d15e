"""Time writing a phantom dataset (default 1,000 cases at 256x256, all CPUs) to a temporary directory.

    python benchmarks/bench_phantom.py [--n 1000] [--size 256] [--workers N]

Goal: < 60 s for 1,000 cases on a 2-core machine. Prints one line: cases, workers, seconds, cases/s, MB written.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from model.phantom import write_dataset  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=None, help="default: all CPUs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    workers = args.workers or os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_dataset(tmp, args.n, args.seed, args.size, workers=workers)
        elapsed = time.perf_counter() - start
        nbytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp) for f in fs)
    goal = "PASS" if args.n != 1000 or elapsed < 60 else "FAIL"
    print(f"phantom: {args.n} cases at {args.size}x{args.size}, {workers} workers: {elapsed:.1f} s "
          f"({args.n / elapsed:.1f} cases/s), {nbytes / 1e6:.0f} MB written; goal < 60 s for 1000: {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
