"""The labeler, anatomy and key phrases against the phantom world's ground truth (no shared data needed).

    python benchmarks/labeler_phantom.py [--n 500] [--seed 0]

Reports come from model.phantom (sample_specs + write_report); the truth is the finding list each report was
written from. Prints per-observation P / R / F1 (1 = positive; -1 and 0 negative), how often the sentence that
describes a located finding names that finding's CXAS region, and the recall of the phantom's gold key phrases.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model.phantom.understanding import evaluate  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="number of phantom reports (default 500)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    res = evaluate(args.n, args.seed)
    print(f"{args.n} phantom reports, seed {args.seed}\n")
    print("| observation | positives | precision | recall | F1 |\n|---|---:|---:|---:|---:|")
    for t, m in res["observations"].items():
        print(f"| {t} | {m['support']} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |")
    print(f"\nlocated findings whose sentence names their CXAS region: {res['region_hit_rate']:.3f}")
    print(f"phantom gold key phrases whose words all appear in one extracted phrase: {res['key_phrase_recall']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
